#!/usr/bin/python3
"""TEST ONLY: a headless spice-glib client driven over stdin/stdout.

Usage: /usr/bin/python3 glib_client.py HOST PORT [PASSWORD] [--lifetime=SECONDS]
                                        [--cache-size=BYTES] [--tls-port=N --ca-file=PEM]

It quits after SECONDS (default 60), so a forgotten client never lingers. --cache-size sets
the session's pixmap cache (spice-glib's cache-size property; the server is told a quarter of
it in pixels). --tls-port and --ca-file give the session a TLS port and the CA to check the
server's certificate with (a channel the server wants secured moves there).

Prints one line per event:
  PRIMARY <width> <height> <stride>
  MARK <0|1>
  INVALIDATE <x> <y> <w> <h>
  PIXEL <x> <y> <0xRRGGBB>          (answer to "PIXEL x y" on stdin)
  DUMPED <path>                     (answer to "DUMP path": the primary
                                     surface, raw B,G,R,X rows)
  ERROR <what>
Commands on stdin: "PIXEL x y", "DUMP path", "KEY <scancode>", "QUIT".
"""
import ctypes
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

options = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
host, port = args[0], args[1]
password = args[2] if len(args) > 2 else None
lifetime = int(options.get("lifetime", 60))

loop = GLib.MainLoop()
state = {"data": None, "stride": 0, "width": 0, "height": 0, "inputs": None}


def say(*words):
    print(*words, flush=True)


def on_primary_create(channel, fmt, width, height, stride, shmid, imgdata):
    state.update(data=imgdata, stride=stride, width=width, height=height)
    say("PRIMARY", width, height, stride)


def on_invalidate(channel, x, y, w, h):
    say("INVALIDATE", x, y, w, h)


def on_mark(channel, mark):
    say("MARK", mark)


def on_channel_event(channel, event):
    if event not in (SpiceClientGLib.ChannelEvent.OPENED,):
        say("ERROR", "channel", type(channel).__name__, int(event))
        if isinstance(channel, SpiceClientGLib.MainChannel):
            loop.quit()


def on_channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", on_channel_event)
    if isinstance(channel, SpiceClientGLib.DisplayChannel):
        GObject.Object.connect(channel, "display-primary-create", on_primary_create)
        GObject.Object.connect(channel, "display-invalidate", on_invalidate)
        GObject.Object.connect(channel, "display-mark", on_mark)
        channel.connect()
    elif isinstance(channel, SpiceClientGLib.InputsChannel):
        state["inputs"] = channel
        channel.connect()


def pixel(x, y):
    if not state["data"]:
        return None
    address = state["data"] + y * state["stride"] + x * 4
    b, g, r, _ = (ctypes.c_uint8 * 4).from_address(address)
    return (r << 16) | (g << 8) | b


def on_stdin(source, condition):
    line = sys.stdin.readline()
    if not line:
        loop.quit()
        return False
    words = line.split()
    if words and words[0] == "PIXEL":
        x, y = int(words[1]), int(words[2])
        value = pixel(x, y)
        say("PIXEL", x, y, "none" if value is None else "0x%06x" % value)
    elif words and words[0] == "DUMP" and state["data"]:
        size = state["stride"] * state["height"]
        with open(words[1], "wb") as f:
            f.write(bytes((ctypes.c_uint8 * size).from_address(state["data"])))
        say("DUMPED", words[1])
    elif words and words[0] == "KEY" and state["inputs"]:
        code = int(words[1], 0)
        state["inputs"].key_press(code)
        state["inputs"].key_release(code)
        say("KEYSENT", code)
    elif words and words[0] == "QUIT":
        loop.quit()
        return False
    return True


session = SpiceClientGLib.Session()
# Not an audio test: no playback or record channels (spice-glib would open them and start
# GStreamer pipelines; tests/spice/audio_client.py is the audio client).
session.set_property("enable-audio", False)
session.set_property("host", host)
session.set_property("port", port)
if password is not None:
    session.set_property("password", password)
if "cache-size" in options:
    session.set_property("cache-size", int(options["cache-size"]))
if "tls-port" in options:
    session.set_property("tls-port", options["tls-port"])
    session.set_property("ca-file", options["ca-file"])
GObject.Object.connect(session, "channel-new", on_channel_new)
if not session.connect():
    say("ERROR", "connect")
    sys.exit(1)
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
GLib.timeout_add_seconds(lifetime, loop.quit)
loop.run()
session.disconnect()
