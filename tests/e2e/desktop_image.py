"""The Debian desktop image (guest-drivers/linux/build-desktop-image) for tests and benchmarks:
where it is, fresh qcow2 overlays over it, and the command lines that boot it under saffron and
under QEMU the same way (2G, SeaBIOS from virtio-blk, QXL, SPICE, the serial port on stdio).

    disk = overlay("name")                        # qcow2 over the raw image, never writing it
    guest = Guest(saffron_desktop(disk, port, extra=[...]), name)
    guest = Guest(qemu_desktop(disk, port, extra_disks=[raw]), name)
    seconds = wait_desktop(guest)                 # to SAFFRON-DESKTOP-READY on ttyS0

The image logs root in on ttyS0, so Guest.run() works once the marker is there.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Sequence

from harness import REPO, RESULTS_DIR, Guest, GuestError, GuestTimeout, saffron_binary

IMAGE = REPO / "build" / "desktop" / "desktop.raw"
KERNEL = IMAGE.with_suffix(".vmlinuz")
INITRD = IMAGE.with_suffix(".initrd.img")
READY = "SAFFRON-DESKTOP-READY"
FAILED = "SAFFRON-DESKTOP-FAILED"
MEMORY = os.environ.get("SAFFRON_DESKTOP_MEMORY", "2G")


def overlay(name: str, directory: Path = RESULTS_DIR) -> Path:
    """A fresh qcow2 overlay on the desktop image, in `directory`."""
    if not IMAGE.is_file():
        raise GuestError(f"no {IMAGE}: run guest-drivers/linux/build-desktop-image "
                         f"{IMAGE.relative_to(REPO)} on the host first")
    path = directory / f"{name}.qcow2"
    directory.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(IMAGE), "-F", "raw",
                    str(path)], check=True, timeout=60)
    return path


def saffron_desktop(disk: Path, port: int, cpus: int = 2, extra_disks: Sequence[Path] = (),
                    extra: Sequence[str] = ()) -> list[str]:
    """saffron booting the overlay `disk` (then raw `extra_disks`) through SeaBIOS."""
    binary = saffron_binary()
    if binary is None:
        raise GuestError("saffron binary not found: build it (cargo build --release)")
    disks = [f"path={disk},format=qcow2", *(f"path={d},format=raw" for d in extra_disks)]
    return [str(binary), "run", "--memory", MEMORY, "--cpus", str(cpus), "--serial", "stdio",
            "--spice", f"port={port},disable-ticketing",
            *(arg for d in disks for arg in ("--disk", d)), *extra]


def qemu_desktop(disk: Path, port: int, cpus: int = 2, extra_disks: Sequence[Path] = (),
                 extra: Sequence[str] = ()) -> list[str]:
    """QEMU booting the same disks the same way (its defaults: SeaBIOS, cache=writeback)."""
    drives = [f"file={disk},format=qcow2,if=virtio",
              *(f"file={d},format=raw,if=virtio" for d in extra_disks)]
    return ["qemu-system-x86_64", "-enable-kvm", "-m", MEMORY, "-smp", str(cpus),
            "-vga", "qxl", "-spice", f"port={port},disable-ticketing=on",
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-nic", "none", *(arg for d in drives for arg in ("-drive", d)), *extra]


def wait_desktop(guest: Guest, timeout: float = 300) -> float:
    """Seconds from starting the VMM to the image's ready marker (X, openbox and an xterm up)."""
    try:
        match = guest.wait_for(f"{READY}|{FAILED}", timeout)
    except GuestTimeout:
        guest.dump_vcpus()     # where the guest is, for the saved log
        raise
    if match.group(0) != READY:
        raise GuestError(f"{guest.name}: the desktop session did not come up")
    return time.monotonic() - guest.started
