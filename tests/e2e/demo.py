#!/usr/bin/python3
"""The demo run by scripts/demo inside the nested machine: boot the guest with saffron, show its
serial console as it comes, type a few commands, power off."""

import sys
import time

from harness import Guest, GuestImage

COMMANDS = ["uname -a", "grep -c ^processor /proc/cpuinfo", "free -m", "cat /proc/cmdline"]


def main() -> int:
    with Guest.saffron(GuestImage.default(), memory="1G", cpus=2, name="demo") as guest:
        shown = 0

        def show() -> None:
            nonlocal shown
            sys.stdout.write(guest.output[shown:].replace("\r", ""))
            sys.stdout.flush()
            shown = len(guest.output)

        seconds = guest.wait_ready(timeout=120)
        show()
        print(f"\n[demo] guest ready {seconds:.1f} s after saffron started")
        for command in COMMANDS:
            print(f"\n[demo] $ {command}")
            print(guest.run(command, timeout=30).output.rstrip())
        guest.send("poweroff -f\n")
        status = guest.wait_exit(timeout=60)
        time.sleep(0.1)
        print(f"\n[demo] saffron exited with status {status} (0: the guest powered off)")
        return status


if __name__ == "__main__":
    sys.exit(main())
