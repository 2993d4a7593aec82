"""Real QXL recordings for the replay tests and benchmarks: the guest image with the replay
workloads, and a QEMU (TCG, native: no KVM needed) + libspice run that records one workload
(SPICE_WORKER_RECORD_FILENAME) and takes a live SPICE screenshot once the guest is done.

    image = prepare_image()                      # build/replay-image (cached by build-image)
    with LiveGuest(image, "console", Path("out/console.rec")) as guest:
        guest.wait_done()
        guest.screenshot(Path("out/console.live.ppm"))
        guest.finish()                           # the guest powers off, QEMU flushes the file

Workloads (guest side: tests/replay/guest/etc/replay/NAME.sh, run by the image's
/etc/saffron/init.d/50-replay-workload when the kernel command line says replay_workload=NAME):
    console     coloured text on tty1, scrolled several times
    slideshow   a synthetic picture, a real one and real icons (PNGs of installed Debian
                packages converted here with ImageMagick into raw B,G,R,X files)
    video       60 frames of a 480x270 window where every pixel changes every frame
    modeswitch  a KMS client switches to 640x480 and back, then to 800x600 (the final mode)
    mixed       console, slideshow and a 10-second video (250 frames) in one boot (for benchmarks)
    codecs      text, a synthetic picture, a photo and icons, then scrolling (the end-to-end
                codec test, tests/e2e/test_codecs.py, runs it in saffron guests)

Used by tests/replay/make-recording, tests/replay/test_replay.py and
tests/bench/replay-vs-libspice. Run with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from harness import Guest  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKLOADS = ("console", "slideshow", "video", "modeswitch")
# For benchmarks: console, slideshow and video in one boot; the codec test's workload.
ALL_WORKLOADS = (*WORKLOADS, "mixed", "codecs")
IMAGE_DIR = REPO / "build" / "replay-image"
INPUTS_DIR = REPO / "build" / "replay-image-inputs"
CMDLINE = "console=ttyS0 quiet video=Virtual-1:1024x768"

# Real pictures from installed Debian packages: (package's file, size on screen, background).
# The first one that exists of each group is used.
BACKGROUND = ["/usr/share/icons/Adwaita/512x512/places/folder-pictures.png",
              "/usr/share/icons/Adwaita/512x512/devices/video-display.png",
              "/usr/share/icons/hicolor/256x256/apps/virt-viewer.png"]
ICONS = [
    (["/usr/share/icons/hicolor/256x256/apps/virt-viewer.png"], 256, "#f0f0f0"),
    (["/usr/share/icons/hicolor/192x192/apps/display-im6.q16.png",
      "/usr/share/icons/hicolor/128x128/apps/display-im6.q16.png"], 192, "#303030"),
    (["/usr/share/icons/Adwaita/512x512/devices/camera-web.png"], 320, "#6080a0"),
    (["/usr/share/icons/Adwaita/512x512/mimetypes/image-x-generic.png"], 160, "#000000"),
    (["/usr/share/libvirt/test-screenshot.png"], 300, "#000000"),
]
# A photograph: the jpeg-decoder crate's test picture, in the local cargo registry once
# `cargo build` has fetched the project's dependencies (no Debian package ships a photo).
PHOTO_GLOB = "registry/src/*/jpeg-decoder-*/benches/large_image.jpg"
VIDEO_SOURCE = ["/usr/share/icons/Adwaita/512x512/devices/input-gaming.png",
                "/usr/share/icons/hicolor/256x256/apps/virt-viewer.png"]


class RecordingError(Exception):
    pass


def _run(argv: list[str], **kwargs) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RecordingError(f"{' '.join(argv[:3])}... failed ({result.returncode}): "
                             f"{(result.stderr or result.stdout)[-800:]}")


def _first_existing(paths: list[str]) -> Path | None:
    return next((Path(p) for p in paths if Path(p).is_file()), None)


def _convert(source: Path, size: str, extent: str, background: str, out: Path) -> None:
    """source scaled into size, centred on an extent-sized background, as raw B,G,R,A."""
    _run(["convert", str(source), "-resize", size, "-background", background,
          "-gravity", "center", "-extent", extent, "-alpha", "remove", "-alpha", "off",
          "-depth", "8", f"bgra:{out}"])


def _synthetic(out: Path, width: int = 1024, height: int = 768) -> None:
    """A deterministic synthetic picture: gradients, rings, a checkerboard and fine noise
    (hard for every codec in a different way)."""
    rows = []
    seed = 12345
    for y in range(height):
        row = bytearray(width * 4)
        for x in range(width):
            seed = (seed * 1103515245 + 12345) & 0x7fffffff
            d2 = (x - 512) ** 2 + (y - 384) ** 2
            ring = 255 if (d2 >> 11) & 1 else 0
            check = 255 if ((x >> 5) ^ (y >> 5)) & 1 else 0
            if y < 256:
                b, g, r = x * 255 // width, y, (x + y) & 0xff
            elif y < 512:
                b, g, r = ring, check, (x * 3) & 0xff
            else:
                noise = (seed >> 16) & 0x3f
                b, g, r = (x & 0xc0) + noise, (y * 2) & 0xff, (ring ^ check) & 0xc0
            row[x * 4:x * 4 + 4] = bytes((b & 0xff, g & 0xff, r & 0xff, 0))
        rows.append(bytes(row))
    out.write_bytes(b"".join(rows))


def _build_inputs() -> list[str]:
    """The helper programs and pictures of the image; returns build-image --file arguments."""
    INPUTS_DIR.mkdir(parents=True, exist_ok=True)
    files = []
    tools = [(HERE / "fbtool.c", "fbtool"),
             (REPO / "guest-drivers" / "linux" / "tools" / "qxl-modeset.c", "qxl-modeset")]
    for source, name in tools:
        binary = INPUTS_DIR / name
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            _run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(source)])
        files.append(f"{binary}:/usr/bin/{name}")

    synthetic = INPUTS_DIR / "synthetic.raw"
    if not synthetic.exists() or synthetic.stat().st_mtime < Path(__file__).stat().st_mtime:
        _synthetic(synthetic)
    files.append(f"{synthetic}:/usr/share/replay/synthetic.raw")

    background = _first_existing(BACKGROUND)
    if background is None:
        raise RecordingError(f"none of {BACKGROUND} exists (install adwaita-icon-theme)")
    _convert(background, "700x700", "1024x768", "#204060", INPUTS_DIR / "background.raw")
    files.append(f"{INPUTS_DIR / 'background.raw'}:/usr/share/replay/background.raw")

    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    photo = next(iter(sorted(cargo_home.glob(PHOTO_GLOB))), None)
    if photo is None:
        raise RecordingError(f"no {cargo_home}/{PHOTO_GLOB} (run `cargo build` first)")
    _run(["convert", str(photo), "-resize", "1024x768^", "-gravity", "center", "-extent",
          "1024x768", "-alpha", "off", "-depth", "8", f"bgra:{INPUTS_DIR / 'photo.raw'}"])
    files.append(f"{INPUTS_DIR / 'photo.raw'}:/usr/share/replay/photo.raw")

    video = _first_existing(VIDEO_SOURCE)
    if video is None:
        raise RecordingError(f"none of {VIDEO_SOURCE} exists")
    _convert(video, "256x256", "256x256", "#808000", INPUTS_DIR / "video-source.raw")
    files.append(f"{INPUTS_DIR / 'video-source.raw'}:/usr/share/replay/video-source.raw")

    slides, x, y = [], 16, 16
    for index, (candidates, size, colour) in enumerate(ICONS):
        source = _first_existing(candidates)
        if source is None:
            continue
        name = f"icon{index}.raw"
        _convert(source, f"{size}x{size}", f"{size}x{size}", colour, INPUTS_DIR / name)
        files.append(f"{INPUTS_DIR / name}:/usr/share/replay/{name}")
        if x + size > 1024:
            x, y = 16, y + 330
        slides.append(f"{name} {size} {size} {x} {y}")
        x += size + 24
    if len(slides) < 2:
        raise RecordingError("fewer than two icons found (install virt-viewer, imagemagick, "
                             "adwaita-icon-theme)")
    (INPUTS_DIR / "slides").write_text("\n".join(slides) + "\n")
    files.append(f"{INPUTS_DIR / 'slides'}:/usr/share/replay/slides")
    return files


def prepare_image(outdir: Path = IMAGE_DIR) -> Path:
    """Builds (or finds up to date) the replay guest image; returns its directory."""
    argv = [str(REPO / "guest-drivers" / "linux" / "build-image"),
            "--extra", str(HERE / "guest"), "--cmdline", CMDLINE]
    for spec in _build_inputs():
        argv += ["--file", spec]
    _run(argv + [str(outdir)], timeout=900)
    return outdir


def image_key(image: Path = IMAGE_DIR) -> str:
    """Changes whenever the image or anything that makes a recording changes."""
    digest = hashlib.sha256((image / ".stamp").read_bytes())
    for path in sorted([*(HERE / "guest").rglob("*"), Path(__file__), HERE / "make-recording"]):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True).stdout
    digest.update(version.encode())
    return digest.hexdigest()[:32]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, thread_name: str | None = None) -> float:
    """CPU seconds of a process's live threads, or of those named thread_name.

    From each thread's schedstat (nanoseconds on a CPU): tick-based utime/stime
    are 10 ms samples, too coarse for sub-second comparisons. Threads that have
    already exited are not counted (the VMMs measured keep theirs to the end)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if thread_name is not None and (task / "comm").read_text().strip() != thread_name:
                continue
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue            # the thread ended meanwhile
    return total / 1e9


class LiveGuest:
    """QEMU (TCG) + libspice running one workload of the replay image, recording it."""

    def __init__(self, image: Path, workload: str, record: Path, compression: str = "off",
                 port: int | None = None, wait_start: bool = False, memory: str = "512M",
                 streaming: str = "off"):
        if workload not in ALL_WORKLOADS:
            raise RecordingError(f"unknown workload {workload!r} "
                                 f"(one of {', '.join(ALL_WORKLOADS)})")
        self.workload = workload
        self.record = record
        self.port = port or free_port()
        record.parent.mkdir(parents=True, exist_ok=True)
        record.unlink(missing_ok=True)
        kernel = image / "vmlinux" if (image / "vmlinux").exists() else image / "vmlinuz"
        cmdline = (image / "cmdline").read_text().strip() + f" replay_workload={workload}"
        if wait_start:
            cmdline += " replay_wait_start"
        spice = (f"port={self.port},addr=127.0.0.1,disable-ticketing=on,"
                 f"image-compression={compression},streaming-video={streaming}")
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", memory, "-smp", "1",
                "-kernel", str(kernel), "-initrd", str(image / "initramfs.cpio.gz"),
                "-append", cmdline, "-vga", "qxl", "-spice", spice,
                "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot"]
        saved = os.environ.get("SPICE_WORKER_RECORD_FILENAME")
        os.environ["SPICE_WORKER_RECORD_FILENAME"] = str(record)
        try:
            self.guest = Guest(argv, f"record-{workload}")
        finally:
            if saved is None:
                del os.environ["SPICE_WORKER_RECORD_FILENAME"]
            else:
                os.environ["SPICE_WORKER_RECORD_FILENAME"] = saved
        self.pid = self.guest.proc.pid

    def __enter__(self) -> "LiveGuest":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.guest.save_log(f"{exc_type.__name__}: {exc}")
        self.guest.kill()
        log = self.record.with_suffix(".serial.log")
        log.write_text(self.guest.output.replace("\r", "") + "\n--- QEMU stderr ---\n"
                       + self.guest.stderr)

    def wait_waiting(self, timeout: float = 240) -> None:
        """(wait_start) The guest has booted and waits for start()."""
        self.guest.wait_for(f"REPLAY-WORKLOAD-WAITING {self.workload}", timeout)

    def start(self) -> None:
        self.guest.send("start\n")

    def wait_done(self, timeout: float = 300) -> float:
        """Waits until the workload is done and the screen is still; returns the time."""
        match = self.guest.wait_for(f"REPLAY-WORKLOAD-(DONE|FAILED) {self.workload}", timeout)
        if match.group(1) == "FAILED":
            raise RecordingError(f"workload {self.workload} failed in the guest:\n"
                                 f"{self.guest.output[-1500:]}")
        return time.monotonic()

    def screenshot(self, path: Path) -> None:
        _run(["spicy-screenshot", "-h", "127.0.0.1", "-p", str(self.port), "-o", str(path)],
             timeout=120)

    def finish(self, timeout: float = 120) -> None:
        """The guest powers off; QEMU exits and so completes the recording."""
        self.guest.send("go\n")
        status = self.guest.wait_exit(timeout)
        if status != 0:
            raise RecordingError(f"QEMU exited with status {status}: {self.guest.stderr[-800:]}")
        if not self.record.is_file() or self.record.stat().st_size < 1000:
            raise RecordingError(f"QEMU wrote no recording to {self.record}")


def make_recording(workload: str, outdir: Path, compression: str = "off",
                   image: Path | None = None) -> tuple[Path, Path]:
    """OUTDIR/WORKLOAD.rec and OUTDIR/WORKLOAD.live.ppm (the live picture at the end)."""
    image = image or prepare_image()
    outdir.mkdir(parents=True, exist_ok=True)
    record, live = outdir / f"{workload}.rec", outdir / f"{workload}.live.ppm"
    live.unlink(missing_ok=True)
    with LiveGuest(image, workload, record, compression) as guest:
        guest.wait_done()
        guest.screenshot(live)
        guest.finish()
    return record, live


if __name__ == "__main__":
    # `/usr/bin/python3 tests/replay/recording.py image`: builds build/replay-image (tests/run-all
    # does, for the end-to-end codec tests that boot it in the nested machine).
    if sys.argv[1:] != ["image"]:
        sys.exit("usage: recording.py image")
    print(f"recording.py: replay image in {prepare_image()}")


def run_each(tests: dict, selected: list, call) -> tuple[int, int]:
    """Runs `call(fn)` for each test (only the `selected` names, when any), printing PASS or
    FAIL with the time and, on failure, the assertion or the traceback; (passed, failed)."""
    passed = failed = 0
    for name, fn in tests.items():
        if selected and name not in selected:
            continue
        t = time.monotonic()
        try:
            call(fn)
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAIL {name} ({time.monotonic() - t:.1f} s): {detail}", flush=True)
    return passed, failed
