#!/usr/bin/python3
"""Smoke test of the test chain with QEMU as the inner VMM (no saffron needed).

Proves that the nested outer machine has working KVM and that the guest image boots, loads its
modules and answers on the serial console.

Run from the repository root, on the host:
    guest-drivers/linux/build-image build/guest-linux
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_qemu_smoke.py

Each test_* function below runs in turn (or only those named as arguments); the last line is
"N passed, N failed", and the exit status is 1 when any test failed. Serial logs of failed
tests go to build/nested-results/.
"""

import re

from harness import TTY1_MARKER, Guest, GuestImage, run_tests


def test_boot_cpus_memory_poweroff():
    image = GuestImage.default()
    with Guest.qemu(image, memory="1G", cpus=2, name="smoke-basic") as guest:
        seconds = guest.wait_ready(timeout=120)
        print(f"  ready marker {seconds:.1f} s after QEMU start")

        status, output = guest.run("grep -c ^processor /proc/cpuinfo")
        assert status == 0, f"grep failed with {status}: {output}"
        assert output.strip() == "2", f"expected 2 CPUs, guest says {output!r}"

        status, output = guest.run("cat /proc/meminfo")
        assert status == 0
        total_kib = int(re.search(r"MemTotal:\s+(\d+) kB", output).group(1))
        print(f"  MemTotal {total_kib} kB")
        assert 800 * 1024 < total_kib <= 1024 * 1024, f"unexpected MemTotal {total_kib} kB"

        status, output = guest.run("uname -r; cat /proc/cmdline; cut -d' ' -f1 /proc/uptime")
        print("  guest: " + " | ".join(output.split("\n")[:3]))

        assert guest.run("false").status == 1   # exit statuses come back

        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0, "QEMU did not exit cleanly after poweroff -f"


def test_qxl_driver_binds():
    image = GuestImage.default()
    extra = ["-vga", "qxl", "-spice", "port=5930,addr=127.0.0.1,disable-ticketing=on"]
    with Guest.qemu(image, memory="1G", cpus=2, extra_args=extra, name="smoke-qxl") as guest:
        guest.wait_ready(timeout=120)

        lsmod = guest.run("lsmod", check=True).output
        assert re.search(r"^qxl\s", lsmod, re.M), f"qxl not loaded:\n{lsmod}"

        bound = guest.run("ls /sys/bus/pci/drivers/qxl/", check=True).output
        assert re.search(r"0000:00:..\.\d", bound), f"no PCI device bound to qxl: {bound!r}"

        fb = guest.run("cat /sys/class/graphics/fb0/name", check=True).output.strip()
        assert fb == "qxldrmfb", f"fb0 is {fb!r}, expected qxldrmfb"

        dmesg = guest.run("dmesg | grep -i qxl", check=True).output
        print("  " + dmesg.strip().replace("\n", "\n  "))
        assert "[drm] Initialized qxl" in dmesg, dmesg

        # The init wrote its tty1 marker to the VT; tty1's screen is readable from /dev/vcs1.
        screen = guest.run("cat /dev/vcs1", check=True).output
        assert TTY1_MARKER in screen, "tty1 marker not on the console screen"

        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    run_tests(globals())
