#!/usr/bin/python3
"""Native replay test: real QEMU + libspice recordings replayed by `saffron replay`.

    /usr/bin/python3 tests/replay/test_replay.py [TEST...]

1. Fixtures: every workload of tests/replay/recording.py is recorded with QEMU (TCG) +
   libspice and its live SPICE picture taken (tests/replay/make-recording does the same for
   one workload). They are kept in build/replay-fixtures and made again when the replay image,
   the workload scripts, the recording code or QEMU change (key in build/replay-fixtures/key).
2. test_<workload>_<mode>: `saffron replay WORKLOAD.rec --pace fast --spice
   port=..,disable-ticketing,image-compression=MODE`, then spicy-screenshot: the picture must
   equal the live QEMU picture pixel for pixel, for the lossless modes off, auto_glz, quic, lz;
   the replay summary must show no skipped (unreadable) or failed (not replayable) event.
3. test_hostile_*: damaged copies of a real recording (truncated in the middle, a blob size,
   a chunk count or a primary surface size made huge, a rectangle, source area or surface id
   corrupted, garbage in a text line, a wrong header). When the file cannot be read on,
   `saffron replay` must end with one line `saffron: ...` and status 1; when only one event
   is damaged (the format lets a player skip it, as libspice does), status 0 with more events
   skipped or refused than in the undamaged recording. Never a panic.

Needs: qemu-system-x86, spice-client-gtk (spicy-screenshot), imagemagick, gcc, and the replay
guest image's packages (like guest-drivers/linux/build-image; $SAFFRON_DEB_CACHE). The saffron
binary is $SAFFRON_BIN or target/release/saffron. Prints PASS/FAIL per test; exit status 1 when
a test failed.
"""

from __future__ import annotations

import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import (REPO, WORKLOADS, free_port, image_key, make_recording,  # noqa: E402
                       prepare_image, run_each)
from screens import (GlibClient, Picture, diff_pictures, psnr,  # noqa: E402
                     read_ppm)  # (tests/e2e, on the path)

FIXTURES = REPO / "build" / "replay-fixtures"
RESULTS = FIXTURES / "results"
MODES = ("off", "auto_glz", "quic", "lz")
SAFFRON = Path(os.environ.get("SAFFRON_BIN", REPO / "target" / "release" / "saffron"))
SUMMARY = re.compile(r"^replay: events=.*$", re.M)
# The recording the hostile copies are made from (the smallest one; ~40 MB).
SOURCE = "modeswitch.rec"


def fixtures() -> None:
    """Makes (or finds up to date) WORKLOAD.rec and WORKLOAD.live.ppm for every workload."""
    image = prepare_image()
    key = image_key(image)
    key_file = FIXTURES / "key"
    complete = all((FIXTURES / f"{w}.rec").is_file() and (FIXTURES / f"{w}.live.ppm").is_file()
                   for w in WORKLOADS)
    if complete and key_file.is_file() and key_file.read_text().strip() == key:
        print(f"fixtures: {FIXTURES} up to date", flush=True)
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    key_file.unlink(missing_ok=True)
    for workload in WORKLOADS:
        started = time.monotonic()
        record, _ = make_recording(workload, FIXTURES, image=image)
        print(f"fixtures: recorded {workload} ({record.stat().st_size / 1e6:.1f} MB) in "
              f"{time.monotonic() - started:.0f} s", flush=True)
    key_file.write_text(key + "\n")


def replay_and_screenshot(workload: str, mode: str) -> None:
    record = FIXTURES / f"{workload}.rec"
    port = free_port()
    argv = [str(SAFFRON), "replay", str(record), "--pace", "fast", "--spice",
            f"port={port},addr=127.0.0.1,disable-ticketing,image-compression={mode}",
            "--linger", "120"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # The summary line comes once the whole recording has been replayed.
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "saffron replay gave no summary within 120 s"
        summary = proc.stdout.readline()
        assert SUMMARY.match(summary), f"no summary from saffron replay: {summary!r}"
        # Not "refused": the device refuses what libspice refused live too (e.g. a draw the
        # worker dequeued between the guest's async destroy and create of the primary).
        for field in ("skipped", "failed"):
            value = re.search(rf"\b{field}=(\d+)", summary).group(1)
            assert value == "0", f"{field}={value} in {summary.strip()}"
        RESULTS.mkdir(parents=True, exist_ok=True)
        shot = RESULTS / f"{workload}-{mode}.ppm"
        shot.unlink(missing_ok=True)
        result = subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-p", str(port),
                                 "-o", str(shot)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"spicy-screenshot failed: {result.stderr[-500:]}"
        assert proc.poll() is None, f"saffron exited early ({proc.returncode})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert "panicked" not in stderr, f"saffron panicked: {stderr[-1500:]}"
    live = read_ppm(FIXTURES / f"{workload}.live.ppm")
    difference = diff_pictures(read_ppm(shot), live)
    assert difference is None, f"replayed ({shot}) vs live picture: {difference}"


def make_replay_test(workload: str, mode: str):
    def test() -> None:
        replay_and_screenshot(workload, mode)
    test.__name__ = f"test_{workload}_{mode}"
    return test


# ---- video streams ---------------------------------------------------------------------------

STREAM_STARTED = re.compile(r"video stream (\d+) started at (\d+),(\d+) (\d+)x(\d+)")
STREAM_ENDED = re.compile(r"video stream (\d+) ended: (\d+) frames, (\d+) KiB")
STREAM_FRAME = re.compile(r"video stream \d+ frame \d+: \d+ bytes")


class Inconclusive(Exception):
    """A timing-dependent test could not observe what it checks; it is run again."""


def test_video_streams_as_mjpeg() -> None:
    """See video_stream_attempt; run again (at most twice) when its timing missed the window
    in which the client holds the last JPEG frame."""
    for attempt in range(3):
        try:
            video_stream_attempt()
            return
        except Inconclusive as e:
            print(f"  attempt {attempt + 1}: {e}")
    raise AssertionError("the client's picture was never taken while the stream ran")


def video_stream_attempt() -> None:
    """The video workload replayed at 3 times its recorded pace (QEMU's TCG guest drew ~5
    frames a second, less than video rate; pauses cut to 0.5 s) with streaming-video=filter, a
    spice-glib client watching: the 480x270 window becomes an MJPEG stream; once the frames
    stop, the client holds the last JPEG frame (PSNR >= 30 dB against the live QEMU picture, not
    identical, the rest exact); after the stream ends (1 s) its area is sent again losslessly
    and the picture equals QEMU's pixel for pixel."""
    port = free_port()
    argv = [str(SAFFRON), "replay", str(FIXTURES / "video.rec"), "--pace", "recorded",
            "--speed", "3", "--max-gap", "0.5", "--wait-client", "--spice",
            f"port={port},addr=127.0.0.1,disable-ticketing,image-compression=auto_glz,"
            "streaming-video=filter", "--linger", "120"]
    env = dict(os.environ, SAFFRON_LOG="warn,saffron::spice::video_stream=debug")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    log: list[tuple[float, str]] = []      # saffron's stderr lines with their arrival times
    reader = threading.Thread(target=lambda: log.extend((time.monotonic(), line)
                                                        for line in proc.stderr), daemon=True)
    reader.start()
    # The client connects once saffron listens (it says so), not before: on a loaded machine
    # setting up the replay's guest memory can take a while.
    deadline = time.monotonic() + 60
    while not any("serving the replay" in line for _, line in list(log)):
        assert proc.poll() is None, f"saffron exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "saffron did not listen within 60 s"
        time.sleep(0.05)
    client = GlibClient(port)
    RESULTS.mkdir(parents=True, exist_ok=True)
    live = read_ppm(FIXTURES / "video.live.ppm")

    def frames_sent() -> list[float]:
        return [at for at, line in list(log) if STREAM_FRAME.search(line)]

    try:
        # saffron logs each frame it sends. The client shows a frame 400 ms after it was sent,
        # and the stream ends 1 s after the guest's last frame. Playback pauses are at most
        # 0.5 s, so once no frame has been sent for 0.6 s the last one has been, and the client
        # holds it for about 0.4 s more.
        deadline = time.monotonic() + 120
        while True:
            while client.next(0.05):
                pass
            sent = frames_sent()
            now = time.monotonic()
            assert now < deadline, f"no still video in 120 s: {''.join(l for _, l in log[-5:])}"
            if len(sent) >= 10 and now - sent[-1] >= 0.6:
                break
        lossy = client.dump(RESULTS / "video-stream-lossy.bgrx")
        dumped_at = time.monotonic()        # (after the client answered)
        time.sleep(2.5)
        exact = client.dump(RESULTS / "video-stream-exact.bgrx")
        assert proc.poll() is None, f"saffron exited early ({proc.returncode})"
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
    stderr = "".join(line for _, line in log)
    assert "panicked" not in stderr, f"saffron panicked: {stderr[-1500:]}"
    started = STREAM_STARTED.findall(stderr)
    ended = STREAM_ENDED.findall(stderr)
    assert len(started) == 1 and len(ended) == 1, f"streams: {stderr[-1500:]}"
    _, x, y, w, h = map(int, started[0])
    frames, kib = int(ended[0][1]), int(ended[0][2])
    ended_at = next(at for at, line in log if STREAM_ENDED.search(line))
    last_frame_at = frames_sent()[-1]
    print(f"  stream at {x},{y} {w}x{h}: {frames} frames, {kib} KiB; the client's picture "
          f"taken {dumped_at - last_frame_at:.2f} s after the last frame was sent, "
          f"{ended_at - dumped_at:.2f} s before the stream ended")
    if not last_frame_at + 0.4 < dumped_at < ended_at:
        raise Inconclusive("the client's picture was not taken while it showed the last frame")
    assert frames >= 10, f"only {frames} frames streamed"
    quality = psnr(lossy, live, x, y, w, h)
    print(f"  last frame at the client: PSNR {quality:.1f} dB")
    if quality == math.inf:
        raise Inconclusive("the client already had the lossless picture")
    assert 30 <= quality < math.inf, f"last stream frame: PSNR {quality:.1f} dB"
    for row in range(live.height):
        a, b = lossy.rows[row], live.rows[row]
        if y <= row < y + h:
            a, b = a[:3 * x] + a[3 * (x + w):], b[:3 * x] + b[3 * (x + w):]
        assert a == b, f"row {row} differs outside the stream"
    difference = diff_pictures(exact, live)
    assert difference is None, f"after the stream: {difference}"


# ---- hostile recordings --------------------------------------------------------------------

def run_replay(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SAFFRON), "replay", str(path), "--pace", "fast"],
                          capture_output=True, text=True, timeout=120)


def expect_error(path: Path, what: str) -> str:
    """saffron replay must fail with status 1 and one line `saffron: ...` mentioning what."""
    result = run_replay(path)
    assert "panicked" not in result.stderr, f"saffron panicked: {result.stderr[-1500:]}"
    assert result.returncode == 1, (f"status {result.returncode}, expected 1; "
                                    f"stderr: {result.stderr[-800:]}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("saffron: ")]
    assert len(errors) == 1, f"expected one 'saffron: ' line, got: {result.stderr[-800:]}"
    assert what in errors[0], f"{what!r} not in {errors[0]!r}"
    print(f"  {path.name}: {errors[0]}")
    path.unlink()                   # kept only when the check failed
    return errors[0]


COUNTS = re.compile(rb"\b(skipped|failed|refused)=(\d+)")
_baseline: list[int] = []


def rejected(stdout: bytes) -> int:
    """Events the replay skipped (reader), failed (driver) or the device refused."""
    summary = SUMMARY.search(stdout.decode(errors="replace"))
    assert summary, f"no summary: {stdout[-500:]!r}"
    return sum(int(v) for _, v in COUNTS.findall(summary.group(0).encode()))


def expect_skipped(path: Path) -> None:
    """A damaged event the player can skip: status 0, and more events skipped or refused than
    in the undamaged recording (which may already have some), no panic."""
    if not _baseline:
        clean = subprocess.run([str(SAFFRON), "replay", str(FIXTURES / SOURCE),
                                "--pace", "fast"], capture_output=True, timeout=120)
        _baseline.append(rejected(clean.stdout))
    result = subprocess.run([str(SAFFRON), "replay", str(path), "--pace", "fast"],
                            capture_output=True, timeout=120)
    stderr = result.stderr.decode(errors="replace")
    assert "panicked" not in stderr, f"saffron panicked: {stderr[-1500:]}"
    assert result.returncode == 0, f"status {result.returncode}; stderr: {stderr[-800:]}"
    count = rejected(result.stdout)
    assert count > _baseline[0], (f"the damaged event went unnoticed ({count} rejected, "
                                  f"{_baseline[0]} in the undamaged recording)")
    print(f"  {path.name}: {count} events skipped or refused (undamaged: {_baseline[0]})")
    path.unlink()


def source_recording() -> bytes:
    return (FIXTURES / SOURCE).read_bytes()


def hostile(name: str, data: bytes) -> Path:
    path = RESULTS / f"hostile-{name}.rec"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def replace_nth(data: bytes, pattern: bytes, replace, n: int = 0) -> bytes:
    """Replaces the n-th match of the regex pattern (replace: match -> bytes)."""
    matches = list(re.finditer(pattern, data, re.M))
    assert len(matches) > n, f"pattern {pattern!r} found {len(matches)} times"
    m = matches[n]
    return data[:m.start()] + replace(m) + data[m.end():]


def test_hostile_truncated() -> None:
    data = source_recording()
    # In the middle of a big pixel blob, and in the middle of a text line.
    expect_error(hostile("truncated-blob", data[:len(data) // 2]), "truncated")
    line = data.index(b"\nrect src_area", len(data) // 3) + 8
    expect_error(hostile("truncated-line", data[:line]), "truncated")


def test_hostile_huge_blob_size() -> None:
    data = source_recording()
    huge = replace_nth(data, rb"^binary 0 bitmap\.data (\d+):",
                       lambda m: b"binary 0 bitmap.data 99999999999:", 3)
    expect_error(hostile("huge-blob", huge), "bitmap.data blob of 99999999999 bytes")
    chunks = replace_nth(data, rb"^data_chunks 0 (\d+)$",
                         lambda m: b"data_chunks 4000000000 " + m.group(1), 2)
    expect_error(hostile("huge-chunk-count", chunks), "saffron: ")


def test_hostile_huge_primary() -> None:
    data = source_recording()
    # The guest driver's primary: "1024 768 4096 32" -> a 4 GB tall surface.
    huge = replace_nth(data, rb"^1024 768 4096 32$", lambda m: b"1024 1048576 4096 32", 0)
    # Its data no longer matches the declared size: the event is skipped, and the draws that
    # follow find no primary surface (refused by the device).
    expect_skipped(hostile("huge-primary", huge))


def test_hostile_corrupted_position() -> None:
    data = source_recording()
    # Numbers that do not fit the field: a format error.
    bad = replace_nth(data, rb"^rect bbox (\d+) (\d+) (\d+) (\d+)$",
                      lambda m: b"rect bbox 0 0 768 99999999999", 20)
    expect_error(hostile("bbox-overflow", bad), "saffron: ")
    # In range for the format, but outside the surface / an unknown surface: the event is
    # refused by the device and counted, the replay goes on.
    outside = replace_nth(data, rb"^rect bbox (\d+) (\d+) (\d+) (\d+)$",
                          lambda m: b"rect bbox 700 900 2000000 3000000", 20)
    expect_skipped(hostile("bbox-outside", outside))
    surface = replace_nth(data, rb"^surface_id 0$", lambda m: b"surface_id 77", 20)
    expect_skipped(hostile("unknown-surface", surface))
    src = replace_nth(data, rb"^rect src_area (\d+) (\d+) (\d+) (\d+)$",
                      lambda m: b"rect src_area -5 -5 100000 100000", 20)
    expect_skipped(hostile("src-area-outside", src))


def test_hostile_garbage() -> None:
    data = source_recording()
    at = data.index(b"\nrect src_area", len(data) // 4) + 1
    expect_error(hostile("garbage-line", data[:at] + b"\x00\xff garbage \x01" + data[at + 12:]),
                 "saffron: ")
    # A draw announced as a surface command: its body does not follow the grammar.
    retyped = replace_nth(data, rb"^event (\d+) 0 1 (\d+)$",
                          lambda m: b"event " + m.group(1) + b" 0 5 " + m.group(2), 10)
    expect_error(hostile("draw-as-surface-command", retyped), "saffron: ")
    expect_error(hostile("bad-header", b"SPICE_REPLAY 2\n" + data[15:]), "saffron: ")
    expect_error(hostile("empty", b""), "saffron: ")


def main() -> None:
    if not SAFFRON.is_file():
        sys.exit(f"test_replay: {SAFFRON} not found (cargo build --release, or set SAFFRON_BIN)")
    tests = {}
    for workload in WORKLOADS:
        for mode in MODES:
            test = make_replay_test(workload, mode)
            tests[test.__name__] = test
    tests[test_video_streams_as_mjpeg.__name__] = test_video_streams_as_mjpeg
    for name, fn in list(globals().items()):
        if name.startswith("test_hostile_"):
            tests[name] = fn
    selected = sys.argv[1:]
    unknown = [n for n in selected if n not in tests]
    if unknown:
        sys.exit(f"unknown tests: {' '.join(unknown)}; available: {' '.join(tests)}")
    started = time.monotonic()
    try:
        fixtures()
    except Exception:
        traceback.print_exc()
        print("FAIL fixtures")
        sys.exit(1)
    passed, failed = run_each(tests, selected, lambda fn: fn())
    print(f"{passed} passed, {failed} failed in {time.monotonic() - started:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
