#!/usr/bin/python3
"""End-to-end tests of keyboard and mouse input: a spice-glib client drives the guest through
saffron's SPICE server, the PS/2 keyboard and mouse and the virtio-input tablet.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_input.py [TEST_NAME...]

Needs on the host first: `cargo build --release` and `guest-drivers/linux/build-image
build/guest-linux` (tests/run-all does both).

What is checked:
- keyboard: text typed by the client into tty1's shell (shift, ctrl-c, arrow keys, history)
  runs there and its output reaches the serial console; key-to-output latency;
- LEDs: the client's lock-key sync toggles the guest's caps lock (typed letters change case),
  and LEDs the guest sets come back to the client;
- server mouse mode (mouse=server): relative motion, buttons and the wheel arrive on the PS/2
  mouse's evdev device in the guest;
- client mouse mode: the tablet's driver makes the server offer client mode and the client
  takes it; positions land on the tablet's axes within 1 pixel of the guest's screen
  coordinates, at 1024x768 (QXL's default mode) and 1920x1080 (`--qxl xres=1920,yres=1080`,
  the size the guest's qxl driver then picks);
- a 100 000-event flood leaves the guest responsive and saffron's memory bounded.
Events on the guest's evdev devices are recorded with `cat` and decoded from `od` output in
this process (the serial console stays quiet: heavy serial output stalls nested guests).
"""

import dataclasses
import random
import re
import subprocess
import threading
import time
from pathlib import Path

from harness import Guest, GuestError, GuestImage, run_tests

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "spice_input_client.py"

EV_SYN, EV_KEY, EV_REL, EV_ABS = 0, 1, 2, 3
REL_X, REL_Y, REL_WHEEL = 0, 1, 8
ABS_X, ABS_Y = 0, 1
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE = 0x110, 0x111, 0x112
AXIS_MAX = 32767

# US layout, set-1 make codes (spice-glib wants extended keys as 0x100|code).
PLAIN = dict(zip("1234567890-=", range(0x02, 0x0e)))
PLAIN.update(zip("qwertyuiop[]", range(0x10, 0x1c)))
PLAIN.update(zip("asdfghjkl;'`", range(0x1e, 0x2a)))
PLAIN.update({"\\": 0x2b})
PLAIN.update(zip("zxcvbnm,./", range(0x2c, 0x36)))
PLAIN.update({" ": 0x39, "\n": 0x1c})
SHIFTED = dict(zip('!@#$%^&*()_+{}:"~|<>?', '1234567890-=[];\'`\\,./'))
SHIFT, CTRL, CAPS = 0x2a, 0x1d, 0x3a
LEFT, UP = 0x14b, 0x148


def keys_for(text: str, caps_lock: bool = False) -> list[str]:
    """SEQ steps that type `text` (with caps lock on, letters need the opposite shift)."""
    steps = []
    for ch in text:
        if ch.isalpha():
            code, shift = PLAIN[ch.lower()], ch.isupper() != caps_lock
        elif ch in SHIFTED:
            code, shift = PLAIN[SHIFTED[ch]], True
        else:
            code, shift = PLAIN[ch], False
        if shift:
            steps.append(f"d:{SHIFT:#x}")
        steps += [f"d:{code:#x}", f"u:{code:#x}"]
        if shift:
            steps.append(f"u:{SHIFT:#x}")
    return steps


class Client:
    """A spice-glib client process (by default spice_input_client.py) and what it reported."""

    def __init__(self, port: int, script: Path = CLIENT, env: dict | None = None):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(script), "127.0.0.1", str(port)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.cursor = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.strip())
                self.cond.notify_all()

    def _drain_stderr(self):
        self.errors: list[str] = []
        for line in self.proc.stderr:
            self.errors = (self.errors + [line.rstrip()])[-400:]

    def wait(self, pattern: str, timeout: float = 30) -> re.Match:
        """The next line (after the previous match) matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(self.cursor, len(self.lines)):
                    m = regex.fullmatch(self.lines[i])
                    if m:
                        self.cursor = i + 1
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise GuestError(f"client: no {pattern!r} in {timeout} s; it said: "
                                     f"{self.lines[-20:]}; on stderr: "
                                     f"{getattr(self, 'errors', [])[-10:]}")
                self.cond.wait(min(left, 0.5))

    def last(self, prefix: str) -> str | None:
        with self.cond:
            for line in reversed(self.lines):
                if line.startswith(prefix + " "):
                    return line.split()[1]
        return None

    def wait_value(self, prefix: str, value: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.last(prefix) != str(value):
            if time.monotonic() > deadline:
                raise GuestError(f"client: {prefix} is {self.last(prefix)}, not {value}, "
                                 f"after {timeout} s")
            time.sleep(0.1)

    def command(self, line: str, timeout: float = 60) -> float:
        """Sends a command; returns the time its last message went out."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return float(self.wait(r"DONE (\S+)", timeout).group(1))

    def type(self, text: str, caps_lock: bool = False) -> float:
        steps = keys_for(text, caps_lock)
        return self.command("SEQ " + " ".join(steps), timeout=30 + len(steps) * 0.2)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def spice_vm(name: str, mouse: str | None = None, size: tuple[int, int] | None = None,
             cmdline: str = ""):
    """saffron with SPICE; `size`: the screen size QXL announces to the guest as preferred."""
    port = random.randint(20000, 40000)
    options = f"port={port},disable-ticketing" + (f",mouse={mouse}" if mouse else "")
    args = ["--spice", options]
    if size:
        args += ["--qxl", f"xres={size[0]},yres={size[1]}"]
    image = GuestImage.default()
    if cmdline:
        image = dataclasses.replace(image, cmdline=f"{image.cmdline} {cmdline}")
    return Guest.saffron(image, memory="512M", cpus=2, extra_args=args, name=name), port


def connect(guest: Guest, port: int) -> Client:
    guest.wait_ready(timeout=180)
    client = Client(port)
    client.wait("READY", timeout=60)
    return client


def tty1_screen(guest: Guest) -> str:
    """What tty1 shows (its non-blank rows), read from /dev/vcs1."""
    try:
        return guest.run("fold -w 80 /dev/vcs1 | grep -v '^ *$' | tail -8", timeout=20).output
    except GuestError as e:
        return f"(cannot read tty1: {e})"


def keyboard_messages(guest: Guest) -> str:
    """The guest kernel's last messages about its keyboard and controller."""
    try:
        return guest.run("dmesg | grep -iE 'atkbd|i8042|serio|keyboard' | tail -12",
                         timeout=20).output
    except GuestError as e:
        return f"(cannot read the kernel log: {e})"


def wait_line(guest: Guest, line: str, timeout: float = 30) -> None:
    """Waits for `line` on the serial console; on failure says what tty1 shows and what the
    guest kernel said about its keyboard."""
    try:
        guest.wait_for(rf"(?m)^{re.escape(line)}\r?$", timeout)
    except GuestError as e:
        # The same class: a timeout stays a stall, which the harness runs again.
        raise type(e)(f"{e}\ntty1 shows:\n{tty1_screen(guest)}\n"
                      f"kernel keyboard messages:\n{keyboard_messages(guest)}") from None


def typed_line_appears(guest: Guest, client: Client, marker: str, timeout: float = 30) -> float:
    """Types `echo MARKER > /dev/ttyS0` on tty1; returns the seconds from Enter to the line."""
    client.type(f"echo {marker} > /dev/ttyS0")
    sent = client.command(f"SEQ d:{PLAIN[chr(10)]:#x} u:{PLAIN[chr(10)]:#x}")
    wait_line(guest, marker, timeout)
    return time.monotonic() - sent


def input_device(guest: Guest, name_pattern: str, timeout: float = 60) -> str:
    """The evdev node (eventN) of the input device whose name matches."""
    deadline = time.monotonic() + timeout
    while True:
        devices = guest.run("grep -E '^(N|H):|^$' /proc/bus/input/devices",
                            check=True).output
        for block in devices.split("\n\n"):
            name = re.search(r'N: Name="([^"]*)"', block)
            handler = re.search(r"H: Handlers=.*\b(event\d+)", block)
            if name and handler and re.search(name_pattern, name.group(1)):
                return handler.group(1)
        if time.monotonic() > deadline:
            raise GuestError(f"no input device named {name_pattern!r}:\n{devices}")
        time.sleep(1)


def record(guest: Guest, node: str) -> None:
    """Starts copying the evdev node's events to a file; returns once the reader has the node
    open (a slow guest may take a while to get there)."""
    guest.run(f"cat /dev/input/{node} > /tmp/{node}.ev & echo $! > /tmp/{node}.pid", check=True)
    guest.run(f"p=$(cat /tmp/{node}.pid); for i in $(seq 1 100); do"
              f" ls -l /proc/$p/fd 2>/dev/null | grep -q {node} && break; sleep 0.1; done",
              check=True, timeout=60)


def irq_count(guest: Guest, irq: int) -> int:
    """How often the guest took interrupt `irq` (all CPUs)."""
    line = guest.run(f"grep -E '^ *{irq}:' /proc/interrupts", check=True).output.split()
    return sum(int(n) for n in line[1:] if n.isdigit())


def recorded(guest: Guest, node: str, expect: int = 0) -> list[tuple[int, int, int]]:
    """Stops recording once `expect` events may have come and no more came for a second (a
    stalled nested guest may take a while; at most a minute);
    the events (type, code, value), SYN_REPORTs left out. The guest turns each 24-byte event
    into 14 hex digits (type, code, value), all on one line: heavy serial output stalls
    nested guests."""
    # Each event is 24 bytes (SYN_REPORTs count too, so this is a lower bound). Up to 40 s
    # for them, then until a second passes without more (at most 60 s in all): a test that
    # gets too few events still reports them rather than time out.
    guest.run(f"f=/tmp/{node}.ev; end=$(($(date +%s) + 40));"
              f" while [ $(stat -c %s $f) -lt {24 * expect} ] && [ $(date +%s) -lt $end ];"
              f" do sleep 0.1; done; end=$((end + 20)); last=-1;"
              f" while [ $(stat -c %s $f) != $last ] && [ $(date +%s) -lt $end ]; do"
              f" last=$(stat -c %s $f); sleep 1; done", timeout=150)
    guest.run(f"kill $(cat /tmp/{node}.pid)", timeout=90)
    dump = guest.run(
        f"od -An -v -tx1 -w24 /tmp/{node}.ev | awk '$17 != \"00\" "
        f"{{printf \"%s%s%s%s%s%s%s \", $17, $19, $20, $21, $22, $23, $24}} END {{print \"\"}}';"
        f" rm -f /tmp/{node}.ev", timeout=90, check=True).output
    events = []
    for word in dump.split():
        if len(word) != 14:
            continue
        raw = bytes.fromhex(word)
        events.append((raw[0], int.from_bytes(raw[1:3], "little"),
                       int.from_bytes(raw[3:7], "little", signed=True)))
    return events


def keyboard_interrupts(guest: Guest) -> int:
    line = guest.run("grep -E '^ *1:' /proc/interrupts", check=True).output
    return sum(int(n) for n in line.split()[1:] if n.isdigit())


def keyboard_quiet(guest: Guest, timeout: float) -> float:
    """Waits until the guest's keyboard interrupt count stops rising; returns when."""
    deadline = time.monotonic() + timeout
    last = keyboard_interrupts(guest)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = keyboard_interrupts(guest)
        if now == last:
            return time.monotonic()
        last = now
    raise GuestError(f"keyboard interrupts still rising after {timeout} s")


def rss_kib(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return rss, hwm


# ----------------------------------------------------------------------------------------------


def test_keyboard_leds_and_server_mouse():
    guest, port = spice_vm("input-server-mode", mouse="server")
    with guest:
        client = connect(guest, port)
        try:
            client.wait_value("MODE", 1)

            # Typing into tty1's shell: the line appears on the serial console. The shell on
            # tty1 may still be starting: try a few times.
            for attempt in range(5):
                client.type(f"echo ready-{attempt} > /dev/ttyS0\n")
                try:
                    # Not anchored: the serial shell's prompt may share the line.
                    guest.wait_for(rf"ready-{attempt}\r?\n", 10)
                    break
                except GuestError:
                    continue
            else:
                raise GuestError(f"typing never reached tty1's shell; it shows:\n"
                                 f"{tty1_screen(guest)}")
            latencies = [typed_line_appears(guest, client, "typed-through-spice")]
            for i in range(3):
                latencies.append(typed_line_appears(guest, client, f"latency-{i}"))
            print(f"  Enter to serial output: {', '.join(f'{s * 1000:.0f}' for s in latencies)}"
                  " ms")

            # Shift: upper case and symbols.
            typed_line_appears(guest, client, 'Shift-OK_"Q"!'.replace('"', ""))
            client.type('echo "Mixed_Case:+{}|<>?" > /dev/ttyS0\n')
            wait_line(guest, "Mixed_Case:+{}|<>?")

            # Ctrl-C: the shell's line editor drops the half-typed line (if only "c" arrived,
            # the next command would be glued to it). Interrupting a running command cannot be
            # tested here: /init starts tty1's shell as a background job of a non-interactive
            # shell, so its children ignore SIGINT (the ^C does reach the tty: it is echoed).
            client.type("echo half-typed-line")
            client.command(f"SEQ d:{CTRL:#x} d:{PLAIN['c']:#x} u:{PLAIN['c']:#x} u:{CTRL:#x}")
            typed_line_appears(guest, client, "after-ctrl-c", timeout=20)

            # Arrow keys: Left moves the cursor back (insert "b" between "a" and "c"), Up
            # recalls the previous line.
            client.type("echo ac > /dev/ttyS0")
            client.command("SEQ " + " ".join(f"d:{LEFT:#x} u:{LEFT:#x}" for _ in range(14)))
            client.type("b\n")
            wait_line(guest, "abc")
            client.command(f"SEQ d:{UP:#x} u:{UP:#x}")
            client.type("\n")
            wait_line(guest, "abc")

            # The client's lock keys reach the guest: caps lock on, letters invert...
            client.command("LOCKS 4")
            client.wait_value("LEDS", 4, timeout=20)
            client.type("echo caps-on-Q > /dev/ttyS0\n", caps_lock=True)
            wait_line(guest, "caps-on-Q")
            # ... and off again.
            client.command("LOCKS 0")
            client.wait_value("LEDS", 0, timeout=20)
            typed_line_appears(guest, client, "caps-off-q")
            # LEDs the guest sets (DECLL on the console) are reported to the client.
            guest.run("printf '\\033[3q' > /dev/tty1", check=True)
            client.wait_value("LEDS", 4, timeout=20)
            guest.run("printf '\\033[1q' > /dev/tty1", check=True)
            client.wait_value("LEDS", 1, timeout=20)
            guest.run("printf '\\033c' > /dev/tty1", check=True)  # reset: LEDs follow locks

            # Server mouse mode: the PS/2 mouse's evdev device.
            mouse = input_device(guest, r"PS/2")
            record(guest, mouse)
            irq12_before = irq_count(guest, 12)
            client.command("MOTION 10 5 0")
            time.sleep(0.3)
            client.command("PRESS 1 1")
            client.command("RELEASE 1 0")
            client.command("PRESS 3 4")
            client.command("RELEASE 3 0")
            client.command("PRESS 4 0")   # wheel up
            client.command("RELEASE 4 0")
            client.command("PRESS 5 0")   # wheel down
            client.command("RELEASE 5 0")
            time.sleep(0.3)
            client.command("MOTION -7 0 0")
            events = recorded(guest, mouse, expect=9)
            irq12 = irq_count(guest, 12) - irq12_before
            print(f"  PS/2 mouse events: {events} ({irq12} mouse interrupts)")
            moved_x = sum(v for k, c, v in events if (k, c) == (EV_REL, REL_X))
            moved_y = sum(v for k, c, v in events if (k, c) == (EV_REL, REL_Y))
            assert (moved_x, moved_y) == (3, 5), \
                f"motion {moved_x},{moved_y}: {events}; {irq12} mouse interrupts"
            keys = [(c, v) for k, c, v in events if k == EV_KEY]
            assert keys == [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0)], keys
            wheel = [v for k, c, v in events if (k, c) == (EV_REL, REL_WHEEL)]
            assert wheel == [1, -1], f"wheel {wheel}"

            # A flood: 100 000 key events (shift down/up) as fast as the client sends them.
            # The server takes them at its rate limit; the PS/2 queue stays bounded (keys that
            # do not fit are dropped, releases never); saffron's memory must not grow.
            pid = guest.proc.pid
            quiet_start = time.monotonic()
            guest.run("echo alive-before-flood", check=True)
            baseline = time.monotonic() - quiet_start
            before = rss_kib(pid)
            samples = []
            sampling = threading.Event()

            def sample():
                # Until told to stop, or the VMM exits (a failed attempt): no VmRSS then.
                while not sampling.wait(0.5):
                    try:
                        samples.append(rss_kib(pid)[0])
                    except (OSError, AttributeError):
                        return
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.monotonic()
            queued = client.command("FLOOD 100000", timeout=120)
            asked = time.monotonic()
            alive = guest.run("echo alive-during-flood", timeout=120, check=True)
            responsive = time.monotonic() - asked
            assert "alive-during-flood" in alive.output
            drained = keyboard_quiet(guest, timeout=600) - start
            sampling.set()
            sampler.join()
            after = rss_kib(pid)
            typed = typed_line_appears(guest, client, "after-flood", timeout=60)
            peak = max(samples + [after[0]])
            print(f"  flood: the client queued it in {queued - start:.1f} s; during it a serial "
                  f"shell command took {responsive:.2f} s ({baseline:.2f} s without a flood); "
                  f"the keyboard went quiet {drained:.1f} s after it began; then Enter to output "
                  f"{typed * 1000:.0f} ms; saffron RSS {before[0]} KiB before, {peak} KiB at "
                  f"most during, {after[0]} KiB after")
            assert peak - before[0] < 16 * 1024, f"RSS grew {peak - before[0]} KiB"
        finally:
            client.close()
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def check_tablet(guest: Guest, client: Client, width: int, height: int,
                 interrupts: str = "MSI") -> None:
    """Positions land on the tablet's axes within a pixel; buttons work; interrupts arrive
    the expected way (MSI-X, or INTx through the IOAPIC)."""
    tablet = input_device(guest, r"Saffron Virtio Tablet")
    record(guest, tablet)
    time.sleep(0.5)
    # Both coordinates change at every step (evdev drops repeated values; the axes start at 0).
    points = [(width // 2, height // 3), (width - 1, height - 1), (0, 0), (1, height - 2),
              (width * 3 // 4 + 1, 7)]
    for x, y in points:
        client.command(f"POSITION {x} {y} 0 0")
        time.sleep(0.3)
    client.command(f"POSITION {width + 500} {height + 500} 0 0")  # off the screen: clamped
    points.append((width - 1, height - 1))
    time.sleep(0.3)
    client.command("PRESS 1 1")
    client.command("RELEASE 1 0")
    events = recorded(guest, tablet, expect=2 * len(points) + 2)
    xs = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_X)]
    ys = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_Y)]
    print(f"  {width}x{height}: tablet X {xs}, Y {ys}")
    assert len(xs) == len(points) and len(ys) == len(points), (points, events)
    for (px, py), vx, vy in zip(points, xs, ys):
        # The two ways guests map a 0..32767 axis to pixels: v * W / 32768 (libinput, X)
        # and v * (W - 1) / 32767.
        for extent, p, v in ((width, px, vx), (height, py, vy)):
            libinput = v * extent / (AXIS_MAX + 1)
            exact = v * (extent - 1) / AXIS_MAX
            assert abs(libinput - p) <= 1 and abs(exact - p) <= 1, \
                f"sent {p} of {extent}: axis {v} -> {libinput:.2f} / {exact:.2f}"
    keys = [(c, v) for k, c, v in events if k == EV_KEY]
    assert keys == [(BTN_LEFT, 1), (BTN_LEFT, 0)], keys
    # MSI-X messages (KVM_SIGNAL_MSI), or the INTx line (KVM_IRQ_LINE via _PRT).
    lines = guest.run("grep virtio /proc/interrupts", check=True).output
    print("  " + "\n  ".join(line.strip() for line in lines.splitlines()))
    ours = [line for line in lines.splitlines() if interrupts in line]
    if interrupts == "MSI":
        ours = [line for line in ours if "event" in line]
    assert ours, f"no {interrupts} interrupt for the tablet:\n{lines}"
    counts = [int(n) for n in ours[0].split()[1:3] if n.isdigit()]
    assert sum(counts) > 0, f"no tablet interrupts: {ours[0]}"


def wait_screen_size(guest: Guest, width: int, height: int, timeout: float = 60) -> None:
    """Waits until the guest's console (qxldrmfb) has the size: positions scale to it."""
    deadline = time.monotonic() + timeout
    while True:
        size = guest.run("cat /sys/class/graphics/fb0/virtual_size 2>/dev/null",
                         timeout=30).output.strip()
        if size == f"{width},{height}":
            return
        if time.monotonic() > deadline:
            raise GuestError(f"fb0 is {size!r}, not {width}x{height}")
        time.sleep(1)


def test_client_mouse_mode():
    for size in [(1024, 768), (1920, 1080)]:
        name = f"input-client-mode-{size[0]}x{size[1]}"
        guest, port = spice_vm(name, size=None if size == (1024, 768) else size)
        with guest:
            client = connect(guest, port)
            try:
                # The tablet's driver loads at boot: the server offers client mode and the
                # client takes it.
                client.wait_value("MODE", 2, timeout=60)
                wait_screen_size(guest, *size)
                check_tablet(guest, client, *size)
                # Motion is ignored in client mode: nothing on the PS/2 mouse.
                mouse = input_device(guest, r"PS/2")
                record(guest, mouse)
                time.sleep(0.5)
                client.command("MOTION 10 10 0")
                assert recorded(guest, mouse) == [], "motion reached the PS/2 mouse"
            finally:
                client.close()
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


def test_tablet_with_intx():
    """Without MSI (pci=nomsi) the tablet interrupts through its INTx line."""
    guest, port = spice_vm("input-tablet-intx", cmdline="pci=nomsi")
    with guest:
        client = connect(guest, port)
        try:
            client.wait_value("MODE", 2, timeout=60)
            wait_screen_size(guest, 1024, 768)
            check_tablet(guest, client, 1024, 768, interrupts="IO-APIC")
        finally:
            client.close()
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def test_forced_client_mode():
    """mouse=client: the server offers client mode only; the tablet's driver binds, MSI-X."""
    guest, port = spice_vm("input-forced-client", mouse="client")
    with guest:
        client = connect(guest, port)
        try:
            client.wait_value("MODE", 2, timeout=30)
            input_device(guest, r"Saffron Virtio Tablet")
            lines = guest.run("grep virtio /proc/interrupts", check=True).output
            assert "MSI" in lines, f"the tablet does not use MSI-X:\n{lines}"
            # Server mode is refused: the mode stays client.
            client.command("MOTION 1 1 0")
            time.sleep(1)
            assert client.last("MODE") == "2"
        finally:
            client.close()
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    run_tests(globals())
