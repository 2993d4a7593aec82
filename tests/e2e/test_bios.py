#!/usr/bin/python3
"""End-to-end tests of booting through SeaBIOS from a virtio-blk disk.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_bios.py [TEST...]

Needs on the host first: `cargo build --release`, `guest-drivers/linux/build-image
build/guest-linux` and `guest-drivers/linux/build-boot-disk build/guest-linux
build/guest-linux-boot.raw` (tests/run-all does all of this).

No --kernel: saffron maps Debian's SeaBIOS, which finds the disk (virtio-blk), loads GRUB from
its MBR; GRUB shows its menu on the serial line and the screen (the QXL's VGA BIOS in text
mode) and boots the test guest's kernel and initramfs from the disk's ext4 partition. Checked:
- the BIOS screen (held by `--boot menu=on,splash-time=...`) and the GRUB menu: a SPICE client
  sees exactly what `screendump` shows, and the screen is not blank;
- the guest finds the ACPI tables SeaBIOS placed from saffron's table loader (the RSDP in the
  BIOS segment), its disk read-only, both CPUs, its memory; `poweroff -f` ends saffron with 0.
With --kernel and --firmware bios, SeaBIOS boots the test guest's kernel and initramfs from
fw_cfg (QEMU's linuxboot option ROM) before the disk, with the command line given.
"""

import random
import re
import tempfile
import time
from pathlib import Path

from harness import REPO, Guest, GuestError, GuestImage, run_tests, saffron_binary
from screens import Api, client_matches_screendump, screendump, spice_screenshot

BOOT_DISK = REPO / "build" / "guest-linux-boot.raw"
GRUB_ENTRY = "Saffron test guest"
DOWN_ARROW = "\x1b[B"


def bios_guest(name: str, sock: Path, port: int, extra: tuple = ()) -> Guest:
    if not BOOT_DISK.is_file():
        raise GuestError(f"no {BOOT_DISK}: run guest-drivers/linux/build-boot-disk "
                         "build/guest-linux build/guest-linux-boot.raw on the host first")
    argv = [str(saffron_binary()), "run", "--memory", "512M", "--cpus", "2",
            "--serial", "stdio", "--api-socket", str(sock),
            "--spice", f"port={port},disable-ticketing",
            "--disk", f"path={BOOT_DISK},format=raw,readonly=on", *extra]
    return Guest(argv, name=name)


def lit_pixels(picture) -> int:
    return sum(1 for row in picture.rows for i in range(0, len(row), 3) if any(row[i:i + 3]))


def client_sees_screendump(api: Api, port: int, directory: str, name: str) -> int:
    """spicy-screenshot equals the screendump (the text cursor blinks: up to 8 tries);
    returns the picture's lit pixel count."""
    shot = client_matches_screendump(
        api, directory, name, lambda n: spice_screenshot(port, f"{n}-spice"), attempts=8)
    lit = lit_pixels(shot)
    print(f"  {name}: {lit} lit pixels")
    return lit


def wait_for_lit_screen(api: Api, directory: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lit_pixels(screendump(api, directory, name)) > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}: the screen stayed blank for {timeout} s")


def test_bios_screen_grub_menu_and_boot():
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        extra = ("--boot", "menu=on,splash-time=30000")
        with bios_guest("bios-boot", sock, port, extra) as guest:
            api = Api(sock)
            # SeaBIOS waits at "Press ESC for boot menu"; GRUB has not run yet.
            wait_for_lit_screen(api, tmp, "bios-wait", timeout=60)
            assert GRUB_ENTRY not in guest.output, "GRUB ran before the BIOS screen was seen"
            bios_lit = client_sees_screendump(api, port, tmp, "bios-screen")
            assert GRUB_ENTRY not in guest.output, "the BIOS screen was gone before the check"
            started = time.monotonic()
            guest.wait_for(re.escape(GRUB_ENTRY), timeout=60)
            guest.send(DOWN_ARROW)  # stops GRUB's countdown: the menu holds still
            print(f"  GRUB menu {time.monotonic() - started:.1f} s after the BIOS screen")
            time.sleep(1)
            grub_lit = client_sees_screendump(api, port, tmp, "grub-menu")
            assert grub_lit != bios_lit, "the GRUB menu looks like the BIOS screen"
            guest.send("\r")
            seconds = guest.wait_ready(timeout=240)
            print(f"  ready marker {seconds:.1f} s after saffron started")
            check_guest(guest)
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


def test_kernel_through_the_bios():
    """--kernel with --firmware bios: SeaBIOS runs QEMU's linuxboot ROM, which loads the kernel
    and initramfs from fw_cfg, before the bootable disk that is also attached."""
    image = GuestImage.default()
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        extra = ("--firmware", "bios", "--kernel", str(image.kernel), "--initrd",
                 str(image.initrd), "--cmdline", image.cmdline)
        with bios_guest("bios-kernel", sock, port, extra) as guest:
            seconds = guest.wait_ready(timeout=240)
            print(f"  ready marker {seconds:.1f} s after saffron started")
            assert GRUB_ENTRY not in guest.output, "the disk's GRUB ran, not the kernel"
            cmdline = guest.run("cat /proc/cmdline", check=True).output.strip()
            assert cmdline == image.cmdline, cmdline
            dmesg = guest.run("dmesg | grep -E 'ACPI: RSDP'", timeout=60).output
            assert re.search(r"ACPI: RSDP 0x00000000000F[0-9A-F]{4}", dmesg), dmesg
            cpus = guest.run("grep -c ^processor /proc/cpuinfo", check=True).output.strip()
            assert cpus == "2", f"{cpus} CPUs"
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


def check_guest(guest: Guest) -> None:
    dmesg = guest.run("dmesg | grep -E 'ACPI: RSDP|ACPI BIOS Error|ACPI: PM:|not reserved'",
                      timeout=60).output
    assert re.search(r"ACPI: RSDP 0x00000000000F[0-9A-F]{4}", dmesg), dmesg
    assert "ACPI BIOS Error" not in dmesg and "not reserved" not in dmesg, dmesg
    assert "ACPI: PM: (supports S0 S5)" in dmesg, dmesg
    cpus = guest.run("grep -c ^processor /proc/cpuinfo", check=True).output.strip()
    assert cpus == "2", f"{cpus} CPUs"
    assert guest.run("cat /sys/block/vda/ro", check=True).output.strip() == "1"
    cmdline = guest.run("cat /proc/cmdline", check=True).output
    assert "BOOT_IMAGE=/boot/vmlinuz" in cmdline, cmdline
    print(f"  ACPI from the BIOS's table loader, 2 CPUs, vda read-only; cmdline: {cmdline.strip()}")


if __name__ == "__main__":
    run_tests(globals())
