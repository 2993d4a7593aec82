#!/usr/bin/python3
"""End-to-end test of every image codec with real SPICE clients, in one boot of the replay
guest image (it has the pictures and fbtool of tests/replay) on saffron.

Runs inside the nested machine (real KVM), from the repository root:
    flock /tmp/saffron-nested.lock tests/nested/run -- /usr/bin/python3 tests/e2e/test_codecs.py [TEST...]

Needs on the host first: `cargo build --release` and the replay image
(`/usr/bin/python3 tests/replay/recording.py image` makes build/replay-image;
$SAFFRON_REPLAY_IMAGE overrides the directory).

What is checked:
- Each lossless image compression mode (off, auto_glz, auto_lz, quic, glz, lz, lz4), set over
  the control socket (`set-spice-compression`) for the clients that connect next: a spice-glib
  client watches while the guest runs /etc/replay/codecs.sh (coloured console text, a synthetic
  picture and a photo written to /dev/fb0, real icons, then console lines that scroll it all
  up); its picture, a fresh spicy-screenshot's and the screendump are then equal pixel for
  pixel. `status` shows which encodings were sent: the mode's own (LZ4, GLZ, QUIC...), and no
  other compressed one (the auto modes: QUIC for photos, GLZ or LZ for the rest).
- JPEG (`jpeg-wan-compression=always`): a photo written to /dev/fb0 while a client watches
  goes as JPEG images; the client's picture is within 30 dB PSNR of the screendump, and not
  equal to it (it is lossy).
- MJPEG (`streaming-video=all`): a 256x160 window redrawn every 40 ms becomes a video stream
  (status: a stream and its frames); while the guest keeps redrawing its last frame, the
  client's picture of the window is within 30 dB PSNR of the screendump and not equal to it.
"""

import math
import os
import random
import tempfile
import time
from pathlib import Path

from harness import REPO, RESULTS_DIR, Guest, GuestError, GuestImage, run_tests
from screens import Api, GlibClient, diff_pictures, psnr, screendump, spice_screenshot

LOSSLESS_MODES = ["off", "auto_glz", "auto_lz", "quic", "glz", "lz", "lz4"]
COMPRESSED = ["quic", "lz", "glz", "lz4", "jpeg"]
# Per mode: encodings that must have been used, and the compressed ones that may be.
EXPECTED = {
    "off": ([], []),
    "auto_glz": (["quic", "glz"], ["lz"]),   # LZ for noise-like images
    "auto_lz": (["quic", "lz"], []),
    "quic": (["quic"], []),
    "glz": (["glz"], ["lz"]),                # LZ for an image the window refuses
    "lz": (["lz"], []),
    "lz4": (["lz4"], []),
}
VIDEO = (256, 160, 600, 480)       # w, h, x, y of the MJPEG test's window
MIN_PSNR = 30.0


def replay_image() -> GuestImage:
    directory = Path(os.environ.get("SAFFRON_REPLAY_IMAGE", REPO / "build" / "replay-image"))
    kernel, initrd = directory / "vmlinux", directory / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        raise GuestError(f"no replay image in {directory}: run "
                         f"`/usr/bin/python3 tests/replay/recording.py image` on the host")
    return GuestImage(kernel, initrd, (directory / "cmdline").read_text().strip())


def sent_images(api: Api) -> dict:
    """Images sent so far per encoding, plus the video stream counters."""
    sent = api.call("status")["spice"]["sent"]
    return {**sent["images"], "streams": sent["streams"],
            "stream_frames": sent["stream_frames"],
            "stream_frames_unchanged": sent["stream_frames_unchanged"],
            "stream_stills_made_exact": sent["stream_stills_made_exact"]}


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def still_picture(api: Api, client: GlibClient, tmp: str, name: str) -> tuple:
    """The watching client's picture and the screendump once the client has had no update for
    2 s, taken when two screendumps around the client's agree (the screen held still)."""
    for attempt in range(5):
        # A retry follows a change the client may already have received (while dumping).
        client.wait_still(settle=2, timeout=120, fresh=attempt == 0)
        dump = screendump(api, tmp, f"{name}-dump")
        seen = client.dump(RESULTS_DIR / f"{name}-glib.bgrx")
        after = screendump(api, tmp, f"{name}-dump-after")
        if diff_pictures(dump, after) is None:
            return seen, dump
        time.sleep(1)
    raise AssertionError(f"{name}: the screen kept changing")


def lossless_round(guest: Guest, api: Api, port: int, mode: str, run: int, tmp: str) -> dict:
    """One lossless mode: a client watches the codec workload; its picture and a fresh
    spicy-screenshot's equal the screendump. Returns the images sent, per encoding."""
    options = api.call("set-spice-compression", **{"image-compression": mode})
    assert options["image-compression"] == mode, options
    name = f"codecs-{mode}"
    before = sent_images(api)
    with GlibClient(port, lifetime=900) as client:
        client.wait_still(settle=1.5, timeout=120)
        # The session's network test (its pings went before the channels list): a local
        # client is on a fast link, so JPEG stays off (jpeg-wan-compression=auto).
        link = None
        for _ in range(100):
            link = api.call("status")["spice"]["client_link"]
            if link is not None:
                break
            time.sleep(0.1)
        assert link is not None and not link["low_bandwidth"], f"{mode}: network test: {link}"
        started = time.monotonic()
        guest.run(f"sh -e /etc/replay/codecs.sh {run}", timeout=300, check=True)
        workload = time.monotonic() - started
        seen, dump = still_picture(api, client, tmp, name)
        difference = diff_pictures(dump, seen)
        assert difference is None, f"{mode}: the watching client's picture differs: {difference}"
    shot = spice_screenshot(port, f"{name}-spicy")
    difference = diff_pictures(dump, shot)
    assert difference is None, f"{mode}: spicy-screenshot's picture differs: {difference}"
    images = delta(before, sent_images(api))
    rate = link["bits_per_second"]
    print(f"  {mode}: workload {workload:.0f} s; spice-glib (watching) == spicy-screenshot == "
          f"screendump ({dump.width}x{dump.height}); images sent: "
          f"{ {k: v for k, v in images.items() if v} }; network test: latency "
          f"{link['latency_ms']:.1f} ms, "
          f"{'too fast to measure' if rate is None else f'{rate / 1e6:.0f} Mbit/s'}")
    return images


def check_encodings(mode: str, images: dict) -> None:
    required, allowed = EXPECTED[mode]
    missing = [m for m in required if images[m] == 0]
    assert not missing, f"{mode}: no {', '.join(missing)} images were sent: {images}"
    stray = [m for m in COMPRESSED if images[m] and m not in required + allowed]
    assert not stray, f"{mode}: {', '.join(stray)} images were sent: {images}"
    assert images["streams"] == 0, f"{mode}: a video stream started: {images}"


def wait_guest_file(guest: Guest, path: str, text: str, timeout: float,
                    poll: float = 0.5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = guest.run(f"cat {path} 2>/dev/null", check=False).output
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise GuestError(f"no {text!r} in the guest's {path} within {timeout} s: "
                             f"{content[-300:]!r}")
        time.sleep(poll)


def lossy_checks(guest: Guest, api: Api, port: int, tmp: str) -> None:
    """JPEG for a photo update, then an MJPEG stream of a video window."""
    options = api.call("set-spice-compression", **{
        "image-compression": "auto_glz", "jpeg-wan-compression": "always",
        "streaming-video": "all"})
    print(f"  lossy: {options}")
    with GlibClient(port, lifetime=900) as client:
        client.wait_still(settle=1.5, timeout=120)
        before = sent_images(api)
        guest.run("dd if=/usr/share/replay/photo.raw of=/dev/fb0 bs=262144 2>/dev/null",
                  timeout=120, check=True)
        seen, dump = still_picture(api, client, tmp, "codecs-jpeg")
        images = delta(before, sent_images(api))
        quality = psnr(seen, dump, 0, 0, dump.width, dump.height)
        print(f"  jpeg: a full-screen photo: {quality:.1f} dB PSNR; images sent "
              f"{ {k: v for k, v in images.items() if v} }")
        assert images["jpeg"] > 0, f"no JPEG image was sent for the photo: {images}"
        assert quality >= MIN_PSNR, f"JPEG picture: {quality:.1f} dB < {MIN_PSNR} dB"
        assert not math.isinf(quality), "the JPEG picture is exact: no lossy image was used"

        w, h, x, y = VIDEO
        before = sent_images(api)
        guest.run(f"(fbtool video /usr/share/replay/video-source.raw 256 256 {w} {h} {x} {y} "
                  f"60 40 150 >/tmp/video.log 2>&1 &)", check=True)
        wait_guest_file(guest, "/tmp/video.log", "fbtool: holding", timeout=180, poll=0.1)
        # Frames are shown 400 ms after they are sent (the multimedia time lag). The held
        # picture must be looked at within 5 s: then the server sends it exactly over the
        # stream (stream_stills_made_exact), and the stream can no longer be told apart.
        time.sleep(1.0)
        assert delta(before, sent_images(api))["stream_stills_made_exact"] == 0, \
            "the held frame went exact before the client was looked at: the test was too slow"
        for attempt in range(3):
            seen = client.dump(RESULTS_DIR / "codecs-mjpeg-glib.bgrx")
            dump = screendump(api, tmp, "codecs-mjpeg-dump")
            quality = psnr(seen, dump, x, y, w, h)
            if not math.isinf(quality):
                break
            time.sleep(0.5)
        images = delta(before, sent_images(api))
        print(f"  mjpeg: the {w}x{h} window while its last frame is redrawn: {quality:.1f} dB "
              f"PSNR; {images['streams']} stream(s), {images['stream_frames']} frames, "
              f"{images['stream_frames_unchanged']} unchanged redraws not sent")
        assert images["streams"] >= 1 and images["stream_frames"] > 0, \
            f"the video window never became a stream: {images}"
        assert quality >= MIN_PSNR, f"MJPEG picture: {quality:.1f} dB < {MIN_PSNR} dB"
        assert not math.isinf(quality), \
            f"the video window is exact: the stream was not seen ({images})"


def test_every_codec_with_real_clients():
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        args = ["--api-socket", str(sock), "--spice",
                f"port={port},disable-ticketing,streaming-video=off"]
        with Guest.saffron(replay_image(), memory="1G", cpus=2, extra_args=args,
                           name="codecs") as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            deadline = time.monotonic() + 60
            while api.call("status")["display"]["device"] != "qxl" or \
                    guest.run("cat /proc/fb", check=True).output.strip() != "0 qxldrmfb":
                if time.monotonic() > deadline:
                    raise AssertionError("the qxl driver never took the screen")
                time.sleep(0.5)
            guest.run("echo 0 > /sys/class/graphics/fbcon/cursor_blink;"
                      " printf '\\033[?25l' > /dev/tty1", check=True)
            for run, mode in enumerate(LOSSLESS_MODES):
                check_encodings(mode, lossless_round(guest, api, port, mode, run, tmp))
            lossy_checks(guest, api, port, tmp)
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    run_tests(globals())
