#!/usr/bin/python3
"""TEST ONLY: a headless spice-glib client that drives a VM's keyboard and mouse, for
tests/e2e/test_input.py. Runs with Debian's /usr/bin/python3 (python3-gi,
gir1.2-spiceclientglib-2.0).

Usage: /usr/bin/python3 spice_input_client.py HOST PORT

Commands on stdin, one per line (numbers may be hex, 0x...):
  SEQ d:CODE u:CODE ...       press (d) / release (u) set-1 scancodes, ~GAP ms apart; extended
                              keys as 0x100|code (spice-glib's convention: Up = 0x148)
  GAP MS                      time between the SEQ steps (default 40)
  MOTION DX DY STATE          relative motion (server mouse mode)
  POSITION X Y DISPLAY STATE  absolute position (client mouse mode)
  PRESS BUTTON STATE          button press (1 left, 2 middle, 3 right, 4 wheel up, 5 down)
  RELEASE BUTTON STATE
  LOCKS MASK                  the client's lock keys (1 scroll, 2 num, 4 caps): modifier sync
  FLOOD N                     N key events (shift down/up) sent back to back
  QUIT
Lines printed:
  READY                       the inputs channel is open
  MODE N                      the main channel's mouse mode (1 server, 2 client), on change
  LEDS N                      the guest's LEDs as the server reported them, on change
  DONE <monotonic time>       a command finished (the time its last message was handed to
                              spice-glib, comparable with time.monotonic() in other processes)
  ERROR <what>
"""
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

host, port = sys.argv[1], sys.argv[2]
loop = GLib.MainLoop()
state = {"inputs": None, "main": None, "gap": 40, "queue": [], "busy": False}


def say(*words):
    print(*words, flush=True)


def done():
    say("DONE", "%.6f" % time.monotonic())


def on_channel_event(channel, event):
    if event == SpiceClientGLib.ChannelEvent.OPENED:
        if isinstance(channel, SpiceClientGLib.InputsChannel):
            if state["main"] is not None:
                say("MODE", state["main"].get_property("mouse-mode"))
            say("READY")
        return
    say("ERROR", "channel", type(channel).__name__, int(event))
    if isinstance(channel, SpiceClientGLib.MainChannel):
        loop.quit()


def on_mode(main, _pspec):
    say("MODE", main.get_property("mouse-mode"))


def on_modifiers(inputs):
    say("LEDS", inputs.get_property("key-modifiers"))


def on_channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", on_channel_event)
    if isinstance(channel, SpiceClientGLib.MainChannel):
        state["main"] = channel
        GObject.Object.connect(channel, "notify::mouse-mode", on_mode)
    elif isinstance(channel, SpiceClientGLib.InputsChannel):
        state["inputs"] = channel
        GObject.Object.connect(channel, "inputs-modifiers", on_modifiers)
        channel.connect()


def run_seq(steps):
    """Runs SEQ steps one per GAP ms from the main loop."""
    inputs = state["inputs"]
    if not steps:
        state["busy"] = False
        done()
        next_command()
        return False
    kind, code = steps[0].split(":")
    code = int(code, 0)
    if kind == "d":
        inputs.key_press(code)
    else:
        inputs.key_release(code)
    GLib.timeout_add(state["gap"], run_seq, steps[1:])
    return False


def execute(words):
    inputs = state["inputs"]
    command, args = words[0], [int(w, 0) for w in words[1:] if ":" not in w]
    if command == "QUIT":
        loop.quit()
        return
    if inputs is None:
        say("ERROR", "no inputs channel yet")
        return
    if command == "SEQ":
        state["busy"] = True
        run_seq(words[1:])
        return
    if command == "GAP":
        state["gap"] = args[0]
    elif command == "MOTION":
        inputs.motion(args[0], args[1], args[2])
    elif command == "POSITION":
        inputs.position(args[0], args[1], args[2], args[3])
    elif command == "PRESS":
        inputs.button_press(args[0], args[1])
    elif command == "RELEASE":
        inputs.button_release(args[0], args[1])
    elif command == "LOCKS":
        inputs.set_key_locks(args[0])
    elif command == "FLOOD":
        for _ in range(args[0] // 2):
            inputs.key_press(0x2a)
            inputs.key_release(0x2a)
    else:
        say("ERROR", "unknown command", command)
        return
    done()


def next_command():
    while state["queue"] and not state["busy"]:
        execute(state["queue"].pop(0))


def on_stdin(source, condition):
    line = sys.stdin.readline()
    if not line:
        loop.quit()
        return False
    words = line.split()
    if words:
        state["queue"].append(words)
        next_command()
    return True


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
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
loop.run()
session.disconnect()
