#!/usr/bin/python3
"""TEST ONLY: a headless spice-glib client that reports the cursor channel.

Usage: /usr/bin/python3 spice_cursor.py HOST PORT SECONDS

Prints one line per event, then exits after SECONDS:
  CURSOR-SET <width> <height> <hot_x> <hot_y> <0xAARRGGBB of the centre pixel> <0xAARRGGBB of (0,0)>
  CURSOR-MOVE <x> <y>
  CURSOR-HIDE
  ERROR <what>
"""
import ctypes
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

host, port, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
loop = GLib.MainLoop()


def say(*words):
    print(*words, flush=True)


def pixel(rgba, width, x, y):
    # spice-glib hands over the shape as R, G, B, A bytes (ready for a GdkPixbuf).
    if not isinstance(rgba, int):
        return "?"
    r, g, b, a = (ctypes.c_uint8 * 4).from_address(rgba + 4 * (y * width + x))
    return f"0x{a:02x}{r:02x}{g:02x}{b:02x}"


def on_set(channel, width, height, hot_x, hot_y, rgba):
    say("CURSOR-SET", width, height, hot_x, hot_y, pixel(rgba, width, width // 2, height // 2),
        pixel(rgba, width, 0, 0))


def on_channel_event(channel, event):
    if event != SpiceClientGLib.ChannelEvent.OPENED:
        say("ERROR", "channel", type(channel).__name__, int(event))


def on_channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", on_channel_event)
    if isinstance(channel, SpiceClientGLib.CursorChannel):
        GObject.Object.connect(channel, "cursor-set", on_set)
        GObject.Object.connect(channel, "cursor-move", lambda c, x, y: say("CURSOR-MOVE", x, y))
        GObject.Object.connect(channel, "cursor-hide", lambda c: say("CURSOR-HIDE"))
        channel.connect()
    elif isinstance(channel, SpiceClientGLib.DisplayChannel):
        channel.connect()


session = SpiceClientGLib.Session()
# Not an audio test: no playback or record channels (spice-glib would open them and start
# GStreamer pipelines; tests/spice/audio_client.py is the audio client).
session.set_property("enable-audio", False)
session.set_property("host", host)
session.set_property("port", port)
GObject.Object.connect(session, "channel-new", on_channel_new)
if not session.connect():
    say("ERROR", "connect")
    sys.exit(1)
GLib.timeout_add(int(seconds * 1000), loop.quit)
loop.run()
session.disconnect()
