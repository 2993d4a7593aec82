#!/usr/bin/python3
"""TEST ONLY: a headless spice-glib client of the playback and record channels.

Usage: /usr/bin/python3 audio_client.py HOST PORT [--lifetime=SECONDS] [--out=PATH]
                                         [--record-tone=HZ]

The session has audio enabled but no audio backend: spice-glib decodes what the playback
channel receives and hands it to us ("playback-data"), and we feed the record channel
ourselves. Quits after SECONDS (default 60).

Prints one line per event:
  PLAYBACK_START <format> <channels> <rate>
  STARTED_AT <when PLAYBACK_START arrived: monotonic seconds>
  FIRST_SOUND <time>             the first sample above 1/30 of full scale since START arrived
                                 (Python's time.monotonic(), the machine's CLOCK_MONOTONIC)
  PLAYBACK_STOP <bytes> <gap> <frequency> <purity> <seconds>
                                 the PCM since START: its size, the longest wait between packets
                                 in ms (after the first), and tone.analyse() of it; with --out
                                 it is also written to PATH.N.raw (N = 0, 1, ...)
  VOLUME <left> <right>          (the playback channel's volume property changed)
  MUTE <0|1>
  RECORD_START <format> <channels> <rate>   (then we send a sine of HZ in real time, in
                                             packets of 480 frames)
  RECORD_STOP <bytes sent>
  OPENED <PlaybackChannel|RecordChannel|MainChannel>
  ERROR <what>
"""
import ctypes
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

sys.path.insert(0, __import__("os").path.dirname(__file__))
import tone  # noqa: E402

options = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
host, port = args[0], args[1]
lifetime = int(options.get("lifetime", 60))
out_path = options.get("out")
record_hz = float(options.get("record-tone", 1000))

loop = GLib.MainLoop()
state = {"pcm": bytearray(), "arrivals": [], "streams": 0, "record": None}

client = ctypes.CDLL("libspice-client-glib-2.0.so.8")
client.spice_record_send_data.argtypes = [
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def say(*words):
    print(*words, flush=True)


def on_playback_start(_channel, fmt, channels, rate):
    now = time.monotonic()
    state.update(pcm=bytearray(), arrivals=[], format=(rate, channels), heard=False)
    say("PLAYBACK_START", fmt, channels, rate)
    say("STARTED_AT", f"{now:.6f}")


def on_playback_data(_channel, data, size):
    now = time.monotonic()
    pcm = ctypes.string_at(data, size)
    state["pcm"] += pcm
    state["arrivals"].append(now)
    if not state["heard"] and any(abs(v) > 1092 for v in tone.left(pcm, 1)):
        state["heard"] = True
        say("FIRST_SOUND", f"{now:.6f}")


def on_playback_stop(_channel):
    arrivals = state["arrivals"]
    gap = max((b - a for a, b in zip(arrivals[1:], arrivals[2:])), default=0.0)
    if out_path:
        with open(f"{out_path}.{state['streams']}.raw", "wb") as f:
            f.write(state["pcm"])
    state["streams"] += 1
    found = tone.analyse(bytes(state["pcm"]), *state["format"])
    say("PLAYBACK_STOP", len(state["pcm"]), round(gap * 1000), round(found["frequency"], 2),
        round(found["purity"], 3), round(found["seconds"], 3))


def on_volume(channel, _pspec):
    # "volume" is a pointer to "nchannels" 16-bit values, which PyGObject gives as an address.
    address = channel.get_property("volume")
    count = channel.get_property("nchannels")
    say("VOLUME", *((ctypes.c_uint16 * count).from_address(address) if address else []))


def on_mute(channel, _pspec):
    say("MUTE", int(channel.get_property("mute")))


def send_tone():
    """Sends what a microphone would have captured by now, in packets of 480 frames (a timer
    that fires late must not make the tone slower than real time)."""
    record = state["record"]
    if record is None:
        return False
    channel, rate, channels, frame, sent, started = record
    pointer = ctypes.pythonapi.PyCapsule_GetPointer(channel.__gpointer__, None)
    loop, size = state["tone"], 480 * 2 * channels
    while frame + 480 <= (time.monotonic() - started) * rate:
        at = frame % rate * 2 * channels
        pcm = (loop + loop[:size])[at:at + size] if at + size > len(loop) else loop[at:at + size]
        buf = ctypes.create_string_buffer(pcm, len(pcm))
        client.spice_record_send_data(pointer, buf, len(pcm), 0)
        frame, sent = frame + 480, sent + len(pcm)
    state["record"] = (channel, rate, channels, frame, sent, started)
    return True


def on_record_start(channel, fmt, channels, rate):
    # One second of the tone, made once (a whole number of periods for a whole number of
    # hertz, so it loops without a seam): making it per packet is too slow for real time in
    # the nested test machine.
    if state.get("tone_key") != (rate, channels):
        state["tone"] = tone.make(record_hz, rate, channels, rate)
        state["tone_key"] = (rate, channels)
    say("RECORD_START", fmt, channels, rate)
    state["record"] = (channel, rate, channels, 0, 0, time.monotonic())
    GLib.timeout_add(5, send_tone)


def on_record_stop(_channel):
    sent = state["record"][4] if state["record"] else 0
    state["record"] = None
    say("RECORD_STOP", sent)


def on_channel_event(channel, event):
    if event == SpiceClientGLib.ChannelEvent.OPENED:
        say("OPENED", type(channel).__name__)
    else:
        say("ERROR", "channel", type(channel).__name__, int(event))
        if isinstance(channel, SpiceClientGLib.MainChannel):
            loop.quit()


def on_channel_new(_session, channel):
    GObject.Object.connect(channel, "channel-event", on_channel_event)
    if isinstance(channel, SpiceClientGLib.PlaybackChannel):
        GObject.Object.connect(channel, "playback-start", on_playback_start)
        GObject.Object.connect(channel, "playback-data", on_playback_data)
        GObject.Object.connect(channel, "playback-stop", on_playback_stop)
        GObject.Object.connect(channel, "notify::volume", on_volume)
        GObject.Object.connect(channel, "notify::mute", on_mute)
        channel.connect()
    elif isinstance(channel, SpiceClientGLib.RecordChannel):
        GObject.Object.connect(channel, "record-start", on_record_start)
        GObject.Object.connect(channel, "record-stop", on_record_stop)
        channel.connect()


# The usual record format's tone, made before connecting.
state["tone"], state["tone_key"] = tone.make(record_hz, 48000, 2, 48000), (48000, 2)
session = SpiceClientGLib.Session()
session.set_property("host", host)
session.set_property("port", port)
session.set_property("enable-audio", True)
GObject.Object.connect(session, "channel-new", on_channel_new)
if not session.connect():
    say("ERROR", "connect")
    sys.exit(1)
GLib.timeout_add_seconds(lifetime, loop.quit)
loop.run()
