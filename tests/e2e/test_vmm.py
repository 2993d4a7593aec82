#!/usr/bin/python3
"""End-to-end tests of the VMM foundation: saffron boots Debian's kernel and the test image.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_vmm.py [TEST_NAME...]

Needs on the host first: `cargo build --release`, `guest-drivers/linux/build-image build/guest-linux`
and, for the ELF test, `guest-drivers/linux/extract-vmlinux build/guest-linux/vmlinuz
build/guest-linux/vmlinux` (tests/run-all does all of this).
"""

import dataclasses
import re
import time

from harness import Guest, GuestImage, run_tests

# Messages that mean a platform device was not found or misbehaved (an extended regex,
# matched inside the guest: streaming all of dmesg over the serial console is slow and, in the
# nested machine, heavy serial output can stall a guest whatever the VMM).
BAD_DMESG = r"i8042: .*(failed|Can.t)|rtc_cmos .*broken|ACPI (BIOS )?Error|PCI: .*not reserved"
# Lines that must be there: ACPI power states, the i8042 found through ACPI, COM1 with its IRQ.
GOOD_DMESG = [
    r"ACPI: PM: \(supports S0 S5\)",
    r"i8042: PNP: PS/2 Controller \[PNP0303:PS2K,PNP0f13:PS2M\]",
    r"ttyS0 at I/O 0x3f8 \(irq = 4",
    r"rtc_cmos .*registered as rtc0",
]


def mem_total_kib(guest: Guest) -> int:
    meminfo = guest.run("cat /proc/meminfo", check=True).output
    return int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1))


def test_boot_smp_console_clock_poweroff():
    with Guest.saffron(GuestImage.default(), memory="1G", cpus=2, name="vmm-basic") as guest:
        seconds = guest.wait_ready(timeout=120)
        print(f"  ready marker {seconds:.1f} s after saffron started")

        cpus = guest.run("grep -c ^processor /proc/cpuinfo", check=True).output.strip()
        assert cpus == "2", f"guest sees {cpus} CPUs"
        online = guest.run("cat /sys/devices/system/cpu/online", check=True).output.strip()
        assert online == "0-1", f"CPUs online: {online}"

        total = mem_total_kib(guest)
        print(f"  MemTotal {total} kB")
        assert 900 * 1024 < total <= 1024 * 1024, f"MemTotal {total} kB is not about 1 GiB"

        # The serial console answers, both ways.
        echoed = guest.run("echo serial-$((6*7))", check=True).output.strip()
        assert echoed == "serial-42", echoed

        # kvmclock gives the guest the right wall-clock time.
        guest_time = int(guest.run("date +%s", check=True).output.strip())
        skew = abs(guest_time - time.time())
        print(f"  clock skew {skew:.1f} s")
        assert skew < 10, f"guest clock is {skew:.0f} s off"
        clocksource = guest.run(
            "cat /sys/devices/system/clocksource/clocksource0/current_clocksource", check=True
        ).output.strip()
        assert clocksource == "kvm-clock", clocksource

        bad = guest.run(f"dmesg | grep -E '{BAD_DMESG}'").output.strip()
        assert not bad, f"dmesg: {bad}"
        for pattern in GOOD_DMESG:
            found = guest.run(f"dmesg | grep -cE '{pattern}'").output.strip()
            assert found != "0", f"dmesg lacks {pattern!r}"

        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0, "saffron did not exit 0 after poweroff -f"


def test_memory_above_4g():
    with Guest.saffron(GuestImage.default(), memory="5G", cpus=1, name="vmm-5g") as guest:
        guest.wait_ready(timeout=120)
        total = mem_total_kib(guest)
        print(f"  MemTotal {total} kB")
        assert total > 4_900_000, f"MemTotal {total} kB: not all of 5 GiB is seen"
        iomem = guest.run("cat /proc/iomem", check=True).output
        assert re.search(r"^100000000-17fffffff : System RAM", iomem, re.M), iomem
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def test_reboot_exits_with_status_3():
    with Guest.saffron(GuestImage.default(), memory="512M", cpus=1, name="vmm-reboot") as guest:
        guest.wait_ready(timeout=120)
        guest.send("reboot -f\n")
        assert guest.wait_exit(timeout=60) == 3


def test_i8042_reset_reboots():
    image = GuestImage.default()
    image = dataclasses.replace(image, cmdline=image.cmdline + " reboot=k")
    with Guest.saffron(image, memory="512M", cpus=1, name="vmm-reboot-kbd") as guest:
        guest.wait_ready(timeout=120)
        guest.send("reboot -f\n")
        assert guest.wait_exit(timeout=60) == 3


def test_elf_vmlinux_boots_with_cpu_features_taken_out():
    image = GuestImage.default()
    vmlinux = image.kernel.with_name("vmlinux")
    assert vmlinux.is_file(), f"{vmlinux} is missing: run guest-drivers/linux/extract-vmlinux"
    image = dataclasses.replace(image, kernel=vmlinux)
    # --cpu host,-xsave: AVX goes with XSAVE; the rest of the host's features stay.
    with Guest.saffron(image, memory="512M", cpus=2, name="vmm-elf",
                       extra_args=["--cpu", "host,-xsave"]) as guest:
        guest.wait_ready(timeout=120)
        assert guest.run("grep -c ^processor /proc/cpuinfo", check=True).output.strip() == "2"
        flags = set(guest.run("grep -m1 ^flags /proc/cpuinfo", check=True).output.split())
        assert not flags & {"xsave", "avx", "avx2", "xsaveopt"}, sorted(flags)
        assert {"sse4_2", "hypervisor"} <= flags, sorted(flags)
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    run_tests(globals())
