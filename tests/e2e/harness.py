"""Small harness for Saffron's end-to-end tests.

The tests run INSIDE the nested outer machine (tests/nested/run), where /dev/kvm is real KVM,
with Debian's /usr/bin/python3 (it has python3-gi for SPICE clients; the default `python3` on
PATH does not). A test starts a VMM (QEMU or saffron) with the test guest image built by
guest-drivers/linux/build-image, talks to the guest's shell over the serial port and checks
what comes back:

    from harness import Guest, GuestImage, READY_MARKER

    image = GuestImage.default()                 # build/guest-linux, build it on the host first
    with Guest.qemu(image, memory="1G", cpus=2, extra_args=["-vga", "qxl"]) as guest:
        guest.wait_ready(timeout=60)             # waits for SAFFRON-GUEST-READY
        status, output = guest.run("grep -c ^processor /proc/cpuinfo")
        guest.send("poweroff -f\\n")
        assert guest.wait_exit(timeout=30) == 0

    Guest.saffron(image, ...)                    # the same with `saffron run ...`

API
    GuestImage(kernel, initrd, cmdline)          GuestImage.default() reads build/guest-linux
                                                 (or $SAFFRON_GUEST_IMAGE); default(True) boots
                                                 its uncompressed vmlinux (faster)
    Guest(argv, name)                            start any VMM command whose stdin/stdout are
                                                 the guest's serial port
    Guest.qemu(image, memory, cpus, extra_args, name)
    Guest.saffron(image, memory, cpus, extra_args, name)
                                                 binary: $SAFFRON_BIN or target/release/saffron;
                                                 saffron_binary() tells whether it exists
    guest.wait_for(regex, timeout) -> re.Match   searches the serial output received after the
                                                 previous match (expect-style), waiting for more
    guest.wait_ready(timeout) -> float           seconds from VMM start to the ready marker
    guest.send(text)                             write to the serial port (add "\\n" yourself)
    guest.run(cmd, timeout, check=False) -> RunResult(status, output)
                                                 run a shell command in the guest, return its exit
                                                 status and output (\\r removed)
    guest.wait_exit(timeout) -> int              the VMM's exit status
    guest.kill()                                 SIGKILL the VMM (and its process group);
                                                 waits at most KILL_WAIT_SECONDS, then reports
                                                 the VMM as left behind and goes on
    guest.output / guest.stderr                  everything received so far
    guest.save_log(reason)                       write the serial output, the VMM's stderr and
                                                 its command line to the results directory
Leaving a `with Guest...` block kills the VMM if it still runs; when the block raised, the logs
are saved first (to $SAFFRON_RESULTS, default build/nested-results). Timeouts raise GuestTimeout,
a VMM that exits while we wait raises GuestExited; both carry the tail of the serial output.

Commands given to run() are typed into an interactive busybox shell: they must not read stdin.

    run_tests(globals())                         a test file's main: runs its test_* functions
                                                 (or those named on the command line), prints
                                                 PASS/FAIL/FLAKY per test and "N passed, N flaky,
                                                 N failed", exits 1 on any failure

Nested guests (QEMU TCG emulating SVM, running real KVM) now and then hang or triple-fault under
load, whatever the VMM (QEMU as the inner VMM does it too). So a test that fails because its
guest stalled (GuestTimeout) or its VMM exited early (GuestExited, or any failure of a test in
which a VMM exited on its own, e.g. a triple fault seen by a SPICE client first) is run again,
at most twice; if it then passes it is reported as "FLAKY name (passed on retry)", never
silently as a pass.
Any other failure, or a third stall, is a FAIL.
"""

from __future__ import annotations

import bisect
import codecs
import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(os.environ.get("SAFFRON_RESULTS", REPO / "build" / "nested-results"))

READY_MARKER = "SAFFRON-GUEST-READY"      # printed on ttyS0 by the guest's /init
TTY1_MARKER = "SAFFRON TTY1 MARKER"       # printed on tty1 (the display) by the guest's /init
DEFAULT_CMDLINE = "console=ttyS0 quiet"
# How long kill() waits for a VMM to go after SIGKILL before leaving it behind.
KILL_WAIT_SECONDS = 30


class GuestError(Exception):
    """A guest did not do what the test expected."""


class GuestTimeout(GuestError):
    pass


class GuestExited(GuestError):
    pass


# --------------------------------------------------------------------------------------------
# The guest image and the VMM command lines


_LIBC = ctypes.CDLL(None, use_errno=True)
_SYS_TGKILL = 234      # x86-64


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    cmdline: str = DEFAULT_CMDLINE

    @classmethod
    def default(cls, uncompressed: bool = False) -> "GuestImage":
        """The image from guest-drivers/linux/build-image (dir: $SAFFRON_GUEST_IMAGE or
        build/guest-linux). Inside the nested machine the host is read-only, so build it on the
        host first. uncompressed=True boots the ELF vmlinux instead of the bzImage vmlinuz:
        the same kernel, 6-7 s faster in the nested machine (no xz decompression)."""
        directory = Path(os.environ.get("SAFFRON_GUEST_IMAGE", REPO / "build" / "guest-linux"))
        kernel = directory / ("vmlinux" if uncompressed else "vmlinuz")
        initrd = directory / "initramfs.cpio.gz"
        if not (kernel.is_file() and initrd.is_file()):
            raise GuestError(
                f"no guest image in {directory}: run "
                f"`guest-drivers/linux/build-image {directory}` on the host first")
        cmdline_file = directory / "cmdline"
        cmdline = cmdline_file.read_text().strip() if cmdline_file.exists() else DEFAULT_CMDLINE
        return cls(kernel, initrd, cmdline)


def saffron_binary() -> Path | None:
    """$SAFFRON_BIN, else target/release/saffron; None when it does not exist."""
    path = Path(os.environ.get("SAFFRON_BIN", REPO / "target" / "release" / "saffron"))
    return path if path.is_file() and os.access(path, os.X_OK) else None


def qemu_command(image: GuestImage, memory: str = "1G", cpus: int = 2,
                 extra_args: Sequence[str] = ()) -> list[str]:
    return ["qemu-system-x86_64", "-enable-kvm", "-m", memory, "-smp", str(cpus),
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            *extra_args]


def saffron_command(image: GuestImage, memory: str = "1G", cpus: int = 2,
                    extra_args: Sequence[str] = ()) -> list[str]:
    binary = saffron_binary()
    if binary is None:
        raise GuestError("saffron binary not found: build it (cargo build --release) "
                         "or set SAFFRON_BIN")
    return [str(binary), "run", "--kernel", str(image.kernel), "--initrd", str(image.initrd),
            "--cmdline", image.cmdline, "--memory", memory, "--cpus", str(cpus),
            "--serial", "stdio", *extra_args]


class RunResult(NamedTuple):
    status: int
    output: str


# --------------------------------------------------------------------------------------------
# A running VMM with the guest's serial port on its stdin/stdout


class Guest:
    # Names of guests whose VMM exited on its own while no test waited for that (wait_exit),
    # e.g. a triple fault, however the test then failed (run_tests counts it as a stall).
    died_unexpectedly: list[str] = []
    # VMMs that did not die within KILL_WAIT_SECONDS of SIGKILL (reported, not waited for).
    left_behind: list[str] = []

    def __init__(self, argv: Sequence[str], name: str = "guest"):
        self.argv = list(argv)
        self.name = name
        self._exit_expected = False
        self._lock = threading.Condition()
        self._output = ""            # serial output received so far
        self._arrivals: list[tuple[int, float]] = []   # (len(output) after a read, time)
        self._stderr = ""
        self._cursor = 0             # wait_for() searches from here
        self._echo_off = False
        self._commands = 0
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)  # own process group: kill() takes its children too
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def qemu(cls, image: GuestImage, memory: str = "1G", cpus: int = 2,
             extra_args: Sequence[str] = (), name: str = "qemu-guest") -> "Guest":
        return cls(qemu_command(image, memory, cpus, extra_args), name)

    @classmethod
    def saffron(cls, image: GuestImage, memory: str = "1G", cpus: int = 2,
                extra_args: Sequence[str] = (), name: str = "saffron-guest") -> "Guest":
        return cls(saffron_command(image, memory, cpus, extra_args), name)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.save_log(f"{exc_type.__name__}: {exc}")
        self.kill()

    # ---- output ------------------------------------------------------------------------

    def _read(self, pipe, is_serial: bool) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            data = os.read(pipe.fileno(), 65536)
            text = decoder.decode(data, final=not data)
            with self._lock:
                if is_serial:
                    self._output += text
                    self._arrivals.append((len(self._output), time.monotonic()))
                else:
                    self._stderr += text
                self._lock.notify_all()
            if not data:
                return

    @property
    def output(self) -> str:
        with self._lock:
            return self._output

    @property
    def stderr(self) -> str:
        with self._lock:
            return self._stderr

    def _arrival_time(self, offset: int) -> float:
        """When the serial output up to `offset` had arrived (monotonic clock)."""
        index = bisect.bisect_left(self._arrivals, (offset, float("-inf")))
        return self._arrivals[index][1]

    def _tail(self, chars: int = 1500) -> str:
        return self._output[-chars:].replace("\r", "")

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 30) -> re.Match:
        """Wait until `pattern` matches serial output received after the previous match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                match = regex.search(self._output, self._cursor)
                if match:
                    self._cursor = match.end()
                    return match
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    raise GuestExited(
                        f"{self.name}: VMM exited with status {self.proc.returncode} while "
                        f"waiting for {regex.pattern!r}; serial output ends with:\n{self._tail()}"
                        f"\nVMM stderr ends with:\n{self._stderr[-1500:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestTimeout(
                        f"{self.name}: no {regex.pattern!r} within {timeout} s; serial output "
                        f"ends with:\n{self._tail()}")
                self._lock.wait(min(left, 0.5))

    def wait_ready(self, timeout: float = 120) -> float:
        """Wait for the ready marker; return seconds from VMM start until it arrived."""
        match = self.wait_for(re.escape(READY_MARKER), timeout)
        with self._lock:
            return self._arrival_time(match.end()) - self.started

    # ---- input -------------------------------------------------------------------------

    def send(self, text: str) -> None:
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise GuestExited(f"{self.name}: VMM has closed the serial port (exit status "
                              f"{self.proc.poll()})") from None

    def run(self, cmd: str, timeout: float = 30, check: bool = False) -> RunResult:
        """Run a shell command in the guest; return its exit status and output."""
        if not self._echo_off:
            # Without tty echo, busybox's shell reads plain lines: no echoed input, no
            # line-editing escape sequences in the output; without prompts, nothing between
            # the command's output and the end marker. `$((6*7))` only becomes 42 when run.
            self.send("stty -echo; PS1=''; PS2=''; echo SAFFRON-ECHO-OFF-$((6*7))\n")
            self.wait_for(r"SAFFRON-ECHO-OFF-42\r?\n", timeout)
            self._echo_off = True
        self._commands += 1
        token = f"{self._commands}-{secrets.token_hex(4)}"
        # printf's format keeps the marker text out of anything the tty might echo.
        self.send(f"printf 'SAFFRON-BEGIN-%s\\n' {token}; {cmd}\n"
                  f"printf 'SAFFRON-END-%s-%s\\n' {token} $?\n")
        begin = self.wait_for(rf"SAFFRON-BEGIN-{token}\r?\n", timeout)
        end = self.wait_for(rf"SAFFRON-END-{token}-(\d+)", timeout)
        status = int(end.group(1))
        output = self.output[begin.end():end.start()].replace("\r", "")
        if check and status != 0:
            raise GuestError(f"{self.name}: `{cmd}` exited with {status}:\n{output}")
        return RunResult(status, output)

    # ---- process -----------------------------------------------------------------------

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the VMM to exit; return its exit status."""
        self._exit_expected = True
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestTimeout(f"{self.name}: VMM still running after {timeout} s; serial "
                               f"output ends with:\n{self._tail()}") from None
        for reader in self._readers:
            reader.join(5)
        if status == 3 and "triple fault" in self.stderr:
            # A guest that triple-faulted on its way out (the nested machine now and then
            # faults a guest): a test expecting a clean exit may retry it as a stall.
            Guest.died_unexpectedly.append(f"{self.name} (triple fault)")
        return status

    def kill(self) -> None:
        exited = self.proc.poll() is not None
        if not exited:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                # Seen in the nested machine: a VMM stuck in the kernel outlives SIGKILL for
                # many minutes. Say so and leave it behind, so the suite goes on.
                Guest.left_behind.append(f"{self.name} (pid {self.proc.pid})")
                print(f"[{self.name}] VMM pid {self.proc.pid} still alive {KILL_WAIT_SECONDS} s "
                      f"after SIGKILL: left behind", flush=True)
        for reader in self._readers:
            reader.join(5)
        # A VMM that exited on its own, or was on its way out after a triple fault when it
        # was killed (the test saw its sockets close first), died unexpectedly: a stall.
        if not self._exit_expected and (exited or "triple fault" in self.stderr):
            why = f"status {self.proc.returncode}" if exited else "triple fault"
            Guest.died_unexpectedly.append(f"{self.name} ({why})")
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def dump_vcpus(self, rounds: int = 2, pause: float = 2) -> None:
        """Asks a saffron VMM for its vCPUs' registers and exit counts (SIGUSR1 to each vCPU
        thread; the lines go to its stderr, which save_log keeps), `rounds` times `pause`
        seconds apart: enough to tell a spinning guest from a halted or stuck one."""
        if self.proc.poll() is not None or "saffron" not in Path(self.argv[0]).name:
            return
        tasks = Path(f"/proc/{self.proc.pid}/task")
        for _ in range(rounds):
            try:
                threads = [t.name for t in tasks.iterdir()
                           if (t / "comm").read_text().startswith("vcpu")]
            except OSError:
                return
            for tid in threads:
                # tgkill: kill() would hand the signal to any thread of the process.
                _LIBC.syscall(_SYS_TGKILL, self.proc.pid, int(tid), signal.SIGUSR1)
            time.sleep(pause)

    def save_log(self, reason: str = "") -> Path:
        """Write the serial output (and the VMM's stderr and command) to the results dir."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.serial.log"
        with self._lock:
            path.write_text(self._output)
            (RESULTS_DIR / f"{self.name}.vmm.log").write_text(
                f"command: {subprocess.list2cmdline(self.argv)}\n"
                f"exit status: {self.proc.poll()}\nreason: {reason}\n"
                f"--- stderr ---\n{self._stderr}")
        print(f"[{self.name}] serial output saved to {path}", flush=True)
        # CI shows only the console: the VMM's last words go there too.
        tail = [line for line in self.stderr.splitlines() if line.strip()][-15:]
        for line in tail:
            print(f"[{self.name}] vmm: {line[:300]}", flush=True)
        return path


# --------------------------------------------------------------------------------------------
# A minimal test runner (Debian's python3 has no pytest)


# Failures that the nested machine causes now and then (see the module docs), and how many
# times a test that failed so is run again. Measured: an inner guest triple-faults or hangs,
# or the outer kernel dies of a recursive fault in the thread of an inner vCPU, about once per
# 5-10 minutes of nested run time, with one or two inner vCPUs, with saffron or QEMU inside,
# with or without transparent huge pages in the outer machine.
STALLS = (GuestTimeout, GuestExited)
STALL_RETRIES = 2


def _attempt(fn) -> BaseException | None:
    """Runs one test; the exception it failed with, or None."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report any failure and go on with the next test
        traceback.print_exc()
        sys.stderr.flush()
        return e
    return None


def run_tests(namespace: dict, argv: Sequence[str] | None = None) -> None:
    """Run the test_* functions of `namespace` in order, or only those named in argv
    (default sys.argv[1:]). Prints PASS, FAIL or FLAKY (passed when run again after a guest
    stall; at most STALL_RETRIES times again) per test with its time, and "N passed, N flaky,
    N failed"; exits the process with status 1 when a test failed (or a named test does not
    exist), else 0."""
    tests = {name: fn for name, fn in namespace.items()
             if name.startswith("test_") and callable(fn)}
    selected = list(sys.argv[1:] if argv is None else argv)
    unknown = [name for name in selected if name not in tests]
    if unknown:
        print(f"unknown tests: {' '.join(unknown)}; available: {' '.join(tests)}")
        sys.exit(1)
    passed = flaky = failed = 0
    for name, fn in tests.items():
        if selected and name not in selected:
            continue
        print(f"{name} ...", flush=True)
        start = time.monotonic()
        Guest.died_unexpectedly.clear()
        error = _attempt(fn)
        retries = 0
        while (isinstance(error, STALLS) or (error and Guest.died_unexpectedly)) \
                and retries < STALL_RETRIES:
            retries += 1
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            died = f"; VMM exited on its own: {', '.join(Guest.died_unexpectedly)}" \
                if Guest.died_unexpectedly else ""
            print(f"  {name}: the guest stalled or exited early ({first_line}{died}); "
                  f"running it again ({retries}/{STALL_RETRIES})", flush=True)
            Guest.died_unexpectedly.clear()
            error = _attempt(fn)
        if error is None and retries:
            flaky += 1
            print(f"FLAKY {name} (passed on retry) ({time.monotonic() - start:.1f} s)",
                  flush=True)
            continue
        if error is None:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)
        else:
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s)", flush=True)
    print(f"{passed} passed, {flaky} flaky, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
