#!/usr/bin/python3
"""End-to-end test of sound: saffron's HDA card driven by Linux's snd-hda-intel in the agent
guest image, alsa-utils (Debian's aplay, arecord, amixer) in the guest, and a spice-glib client
of the playback and record channels on the host side (tests/spice/audio_client.py).

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_audio.py [TEST_NAME...]

Needs on the host first: `cargo build --release` and
`guest-drivers/linux/build-agent-image build/guest-agent` (tests/run-all does both).

What is checked, in one guest boot:
- the guest finds the card and its codec (ALSA card 0, the generic codec driver);
- playback: the guest plays a 2 s 440 Hz tone (`aplay` of a WAV in the image); the client's
  playback channel receives it: 440 +- 2 Hz, a clean tone, 2 s +- 10 %, no wait between
  packets over 50 ms once they flow (`status` counts the bytes);
- volume: the guest's mixer at 50 % and muted reaches the client (VOLUME, MUTE);
- record: the client sends a 1 kHz tone on the record channel while the guest's `arecord`
  captures 2 s; the guest finds 1 kHz as the dominant frequency (from the spacing of the zero
  crossings, computed in the guest with awk) and little silence after the first sound;
- first with Opus both ways (spice-glib takes it), then with a second client that does not
  (SPICE_DISABLE_OPUS): raw PCM both ways; `status` shows which went.
Hostile guests (BDLs outside RAM, empty or huge buffers, CORB garbage) are covered by unit tests
(devices/src/hda/tests.rs) and the hda fuzz target.
"""

import os
import random
import tempfile
import time
from pathlib import Path

from harness import REPO, Guest, GuestError, run_tests
from screens import Api
from test_agent import agent_image
from test_input import Client

AUDIO_CLIENT = REPO / "tests" / "spice" / "audio_client.py"
TONE = "/usr/share/sounds/saffron/tone-440.wav"

# Zero crossings of the left channel (od prints a frame per line), interpolated; the most common
# spacing, rounded, picks the tone; the mean of the spacings near it gives its frequency (gaps
# of silence do not move it). Prints "FREQ hz frames crossings used silent_frames_after_start".
ANALYSE = r"""awk '
{ x = $1
  if (n > 0 && p < 0 && x >= 0) { t = n - 1 + (-p) / (x - p); if (c > 0) { d = t - l; iv[c] = d; h[int(d + 0.5)]++ } l = t; c++ }
  if (x != 0) { if (!started) started = 1; run = 0 } else if (started) { run++; if (run > 48) silent++ }
  p = x; n++ }
END { best = 0; for (k in h) if (h[k] > h[best]) best = k
  s = 0; m = 0; for (i = 1; i < c; i++) if (iv[i] > best * 0.8 && iv[i] < best * 1.2) { s += iv[i]; m++ }
  printf "FREQ %.2f %d %d %d %d\n", (m ? 48000 * m / s : 0), n, c, m, silent }'"""


def audio_vm() -> tuple[Guest, int, Path]:
    port = random.randint(20000, 40000)
    # (Unix sockets cannot live on the nested machine's shared results directory.)
    sock = Path(tempfile.mkdtemp(prefix="audio-")) / "api.sock"
    args = ["--spice", f"port={port},disable-ticketing", "--api-socket", str(sock)]
    guest = Guest.saffron(agent_image(), memory="512M", cpus=2, extra_args=args, name="audio")
    return guest, port, sock


def check(what: str, ok: bool, detail: str) -> None:
    if not ok:
        raise GuestError(f"{what}: {detail}")


def playback(guest: Guest, client: Client, api: Api, opus: bool) -> None:
    before = api.call("status")["spice"]["sent"]["audio_bytes"]
    played = guest.run(f"aplay -q -D hw:0,0 {TONE}; echo APLAY $?", timeout=60)
    check("aplay", "APLAY 0" in played.output, played.output)
    client.wait(r"PLAYBACK_START 1 2 48000", timeout=30)
    stop = client.wait(r"PLAYBACK_STOP (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", timeout=30)
    size, gap, hz, purity, seconds = (float(v) for v in stop.groups())
    print(f"  playback: {size:.0f} bytes, {seconds} s, {hz} Hz, purity {purity}, "
          f"longest gap {gap:.0f} ms")
    check("the tone's frequency", abs(hz - 440) <= 2, stop.group(0))
    check("a clean tone", purity > 0.9, stop.group(0))
    check("the tone's duration", abs(seconds - 2.0) <= 0.2, stop.group(0))
    check("no gap over 50 ms", gap <= 50, stop.group(0))
    status = api.call("status")
    audio, sent = status["audio"], status["spice"]["sent"]["audio_bytes"] - before
    print(f"  {'Opus' if opus else 'raw'}: {sent} bytes on the wire")
    check("status counts the bytes", audio["playback"]["bytes"] >= size, str(audio))
    check("Opus" if opus else "raw PCM", sent < size / 5 if opus else sent == size,
          f"{sent} bytes sent for {size}")


def volume(guest: Guest, client: Client) -> None:
    # Debian's kernel powers the codec down 1 s after the last stream (snd_hda_intel's
    # power_save) and then keeps mixer changes in its cache until the next stream: a desktop's
    # sound server keeps it up; here it is turned off.
    guest.run("echo 0 > /sys/module/snd_hda_intel/parameters/power_save", timeout=30)
    controls = guest.run("amixer -c 0 scontrols", timeout=30).output
    check("a playback control", "'Master'" in controls or "'PCM'" in controls, controls)
    name = "Master" if "'Master'" in controls else "PCM"
    guest.run(f"amixer -q -c 0 sset {name} 50% unmute", timeout=30)
    # 50 % of 74 steps is 37 steps, -37 dB: about 927 of 65535.
    # (The driver may set the amp on its way; the 50 % is the one that counts.)
    deadline = time.monotonic() + 30
    while True:
        level = client.wait(r"VOLUME (\d+) (\d+)", timeout=max(1, deadline - time.monotonic()))
        left, right = int(level.group(1)), int(level.group(2))
        if left == right and 500 < left < 2000:
            break
        check("volume at 50 % in time", time.monotonic() < deadline, level.group(0))
    guest.run(f"amixer -q -c 0 sset {name} mute", timeout=30)
    client.wait(r"MUTE 1", timeout=30)
    guest.run(f"amixer -q -c 0 sset {name} 100% unmute", timeout=30)
    client.wait(r"MUTE 0", timeout=30)


def record(guest: Guest, client: Client, api: Api, opus: bool) -> None:
    before = api.call("status")["audio"]["record"]
    out = guest.run("arecord -q -D hw:0,0 -f S16_LE -c 2 -r 48000 -d 2 -t raw /tmp/rec.raw; "
                    f"echo ARECORD $?; od -An -v -td2 -w4 /tmp/rec.raw | {ANALYSE}", timeout=90)
    check("arecord", "ARECORD 0" in out.output, out.output)
    client.wait(r"RECORD_START 1 2 48000", timeout=30)
    client_sent = int(client.wait(r"RECORD_STOP (\d+)", timeout=30).group(1))
    after = api.call("status")["audio"]["record"]
    print(f"  record: the client sent {client_sent} bytes, "
          f"{after['bytes'] - before['bytes']} reached the card's ring")
    found = next((line.split() for line in out.output.splitlines()
                  if line.startswith("FREQ ")), None)
    check("the guest's analysis", found is not None, out.output)
    hz, frames, silent = float(found[1]), int(found[2]), int(found[5])
    print(f"  record: {frames} frames, {hz} Hz, {silent} silent frames after the first sound")
    check("2 s recorded", abs(frames - 96000) <= 4800, str(found))
    check("the client's 1 kHz tone", abs(hz - 1000) <= 2, str(found))
    # (A quarter: the client is a Python program sharing the nested machine's two CPUs.)
    check("little silence once sound came", silent < 24000, str(found))
    coded = after["opus_bytes"] - before["opus_bytes"]
    check("Opus" if opus else "raw PCM", (coded > 0) == opus, f"{coded} bytes of Opus")


def open_client(port: int, opus: bool) -> Client:
    env = None if opus else {**os.environ, "SPICE_DISABLE_OPUS": "1"}
    client = Client(port, script=AUDIO_CLIENT, env=env)
    opened = {client.wait(r"OPENED (Playback|Record)Channel", timeout=60).group(1)
              for _ in range(2)}
    check("both sound channels open", opened == {"Playback", "Record"}, str(opened))
    return client


def test_sound_both_ways():
    guest, port, sock = audio_vm()
    with guest:
        guest.wait_ready(timeout=180)
        cards = guest.run("cat /proc/asound/cards; ls /dev/snd", timeout=30).output
        check("the guest's sound card", "HDA-Intel" in cards and "pcmC0D0p" in cards, cards)
        irqs = guest.run("grep snd_hda_intel /proc/interrupts", timeout=30).output
        check("the card interrupts by MSI", "PCI-MSI" in irqs, irqs)
        api = Api(sock)
        client = open_client(port, opus=True)
        try:
            playback(guest, client, api, opus=True)
            volume(guest, client)
            record(guest, client, api, opus=True)
        finally:
            client.proc.kill()
        client = open_client(port, opus=False)
        try:
            playback(guest, client, api, opus=False)
            record(guest, client, api, opus=False)
        finally:
            client.proc.kill()


if __name__ == "__main__":
    run_tests(globals())
