#!/usr/bin/python3
"""End-to-end tests with the Debian desktop image (guest-drivers/linux/build-desktop-image).

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run --timeout 1800 -- /usr/bin/python3 tests/e2e/desktop.py [TEST...]

Not part of tests/run-all yet (hence not named test_*.py): in the nested machine saffron's
desktop boots die far more often than QEMU's. Measured on 2026-12-06 with tests/bench/desktop:
saffron 0 of 18 boots (SeaBIOS or direct kernel boot, 1 or 2 vCPUs: guest triple faults,
hangs with a vCPU making no exits, panics of the outer kernel), but 2 of 3 with XSAVE taken out
of the outer machine's CPU (SAFFRON_NESTED_CPU); QEMU 5 of 7 on the same image.
Until that is understood, running these in CI would fail it at random.
$SAFFRON_DESKTOP_CPUS sets the guest's vCPUs (default 2) and $SAFFRON_DESKTOP_MEMORY its memory
(default 2G); tests/nested/run passes SAFFRON_*. (1G with 1 vCPU did no better on 2026-12-06:
0 of 2 direct kernel boots, both ending in a guest reset.)

Needs on the host first: `cargo build --release` and
`guest-drivers/linux/build-desktop-image build/desktop/desktop.raw`.

Each boot runs on a qcow2 overlay (made with qemu-img in the results directory) over the
read-only raw image, so the image itself is never written:
- through SeaBIOS and GRUB from virtio-blk (no --kernel) to X with Xorg's qxl driver, openbox
  and an xterm (the image writes SAFFRON-DESKTOP-READY on ttyS0 when they are up): a
  spice-glib client's picture equals the screendump, pixel for pixel;
- with direct kernel boot of the image's own kernel and initramfs and root=/dev/vda1.
"""

import os
import random
import tempfile
from pathlib import Path

from desktop_image import INITRD, KERNEL, overlay, saffron_desktop, wait_desktop
from harness import Guest, run_tests
from screens import Api, client_matches_screendump, glib_screenshot

XORG_LOG = "/home/saffron/.local/share/xorg/Xorg.0.log"
CPUS = int(os.environ.get("SAFFRON_DESKTOP_CPUS", "2"))


def desktop(name: str, sock: Path, port: int, extra: tuple = ()) -> Guest:
    argv = saffron_desktop(overlay(name), port, CPUS, extra=["--api-socket", str(sock), *extra])
    return Guest(argv, name=name)


def check_x_uses_qxl(guest: Guest) -> None:
    log = guest.run(f"grep -h -E 'qxl\\(0\\): (Output|Driver)|LoadModule: \"qxl\"' {XORG_LOG}",
                    timeout=60).output
    assert 'LoadModule: "qxl"' in log and "qxl(0)" in log, f"Xorg did not use qxl:\n{log}"


def client_sees_screendump(api: Api, port: int, directory: str, name: str) -> None:
    """A spice-glib client's picture equals the screendump (up to 5 tries)."""
    client_matches_screendump(api, directory, name,
                              lambda n: glib_screenshot(port, f"{n}-glib"), attempts=5, pause=1)


def test_desktop_boots_through_bios_to_x_with_qxl():
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with desktop("desktop-bios", sock, port) as guest:
            api = Api(sock)
            guest.wait_for("Debian desktop \\(Saffron\\)", timeout=120)
            seconds = wait_desktop(guest)
            print(f"  desktop ready {seconds:.1f} s after saffron started (SeaBIOS, GRUB)")
            check_x_uses_qxl(guest)
            client_sees_screendump(api, port, tmp, "desktop")
            status = api.call("status")
            assert status["display"]["device"] == "qxl", status["display"]
            disk = status["disks"][0]
            print(f"  disk: {disk['reads']} reads, {disk['bytes_read']} bytes, "
                  f"{disk['writes']} writes, {disk['flushes']} flushes")
            guest.send("poweroff\n")
            assert guest.wait_exit(timeout=120) == 0


def test_desktop_direct_kernel_boot():
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        kernel = ("--kernel", str(KERNEL), "--initrd", str(INITRD),
                  "--cmdline", "root=/dev/vda1 ro console=ttyS0")
        with desktop("desktop-kernel", sock, port, kernel) as guest:
            seconds = wait_desktop(guest)
            print(f"  desktop ready {seconds:.1f} s after saffron started (direct kernel boot)")
            # (bash's bracketed-paste switches may follow the answer on the serial line)
            out = guest.run("findmnt -n -o SOURCE /", check=True, timeout=60).output
            root = out.strip().splitlines()[0]
            assert root == "/dev/vda1", out
            check_x_uses_qxl(guest)
            guest.send("poweroff\n")
            assert guest.wait_exit(timeout=120) == 0


if __name__ == "__main__":
    run_tests(globals())
