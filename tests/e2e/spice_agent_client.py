#!/usr/bin/python3
"""TEST ONLY: a headless spice-glib client that uses the guest agent, for tests/e2e/test_agent.py.
Runs with Debian's /usr/bin/python3 (python3-gi, gir1.2-spiceclientglib-2.0).

Usage: /usr/bin/python3 spice_agent_client.py HOST PORT

Commands on stdin, one per line:
  CLIP_OFFER TYPE PATH        grab the clipboard with TYPE (1 text, 2 PNG) and answer the guest's
                              request with the bytes of PATH
  CLIP_FETCH PATH             after the guest grabbed the clipboard, request its first type and
                              write what arrives to PATH
  MONITOR W H                 ask for one monitor of W x H (update_display + send_monitor_config)
  MONITORS WxH+X+Y|off ...    ask for these monitors, display 0, 1, ... (the rest of the four off)
  SEND PATH [CANCEL_AT]       send the file PATH to the guest (file transfer); with CANCEL_AT,
                              cancel it once that many bytes went out
  POSITION X Y STATE [ID]     client mouse position on display ID (default 0)
  DUMP PATH                   write the client's picture of display 0 to PATH (raw B,G,R,X rows)
  QUIT
Lines printed:
  READY                       the main and inputs channels are open
  AGENT 0|1                   whether the agent is connected, on change
  CAPS HEX                    the agent's first capability word, once known after AGENT 1
  MODE N                      the mouse mode (1 server, 2 client), on change
  GRAB TYPES                  the guest grabbed the clipboard (its types, comma-separated)
  CLIP TYPE LENGTH            CLIP_FETCH got its data (written to its PATH)
  CANCELLING BYTES            a transfer is being cancelled, BYTES sent
  SENT OK | SENT ERROR WHAT   a file transfer ended
  PRIMARY W H STRIDE          the display channel's primary surface was (re)created (0 0 0:
                              destroyed)
  DUMPED W H STRIDE           DUMP wrote the picture (0 0 0: there is none)
  LAYOUT MAX ID:WxH+X+Y ...   the display channel's monitors config (MAX: monitors-max), on change
  DONE TIME                   a command was handed to spice-glib (time.monotonic())
  ERROR WHAT
"""
import ctypes
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import Gio, GLib, GObject, SpiceClientGLib  # noqa: E402

host, port = sys.argv[1], sys.argv[2]
loop = GLib.MainLoop()
state = {"main": None, "inputs": None, "offer": None, "fetch": None, "grabbed": [],
         "agent": None, "caps": None, "open": set(), "primary": None}


def say(*words):
    print(*words, flush=True)


def on_agent(main, _pspec=None):
    connected = int(bool(main.get_property("agent-connected")))
    if connected != state["agent"]:
        state["agent"] = connected
        if not connected:
            state["caps"] = None  # the next agent's are reported again
        say("AGENT", connected)


def on_caps(main, _pspec=None):
    caps = main.get_property("agent-caps-0")
    if caps and state["agent"] == 1 and caps != state["caps"]:
        state["caps"] = caps
        say("CAPS", "%x" % caps)


def c_array(value, count: int, kind) -> list:
    """A C array signal argument: PyGObject hands over a list where the GIR annotates the
    length, else a GPointer object whose hash is the address."""
    if isinstance(value, (list, tuple, bytes, bytearray)):
        return list(value)[:count]
    address = value if isinstance(value, int) else hash(value) & ((1 << 64) - 1)
    array = ctypes.cast(address, ctypes.POINTER(kind))
    return [array[i] for i in range(count)]


def on_grab(_main, selection, types, ntypes):
    state["grabbed"] = c_array(types, ntypes, ctypes.c_uint32)
    say("GRAB", ",".join(str(t) for t in state["grabbed"]))
    return True


def on_request(main, selection, kind):
    if state["offer"] is None:
        say("ERROR", "the guest asked for a clipboard we do not hold")
        return False
    offered, path = state["offer"]
    with open(path, "rb") as f:
        data = f.read()
    main.clipboard_selection_notify(selection, offered if kind == offered else kind, data)
    return True


def on_selection(_main, selection, kind, data, size):
    path = state["fetch"]
    if path is None:
        return
    with open(path, "wb") as f:
        f.write(bytes(c_array(data, size, ctypes.c_uint8)))
    state["fetch"] = None
    say("CLIP", kind, size)


def on_channel_event(channel, event):
    if event == SpiceClientGLib.ChannelEvent.OPENED:
        state["open"].add(type(channel).__name__)
        if {"MainChannel", "InputsChannel"} <= state["open"] and "ready" not in state:
            state["ready"] = True
            say("READY")
            on_agent(state["main"])
        return
    say("ERROR", "channel", type(channel).__name__, int(event))
    if isinstance(channel, SpiceClientGLib.MainChannel):
        loop.quit()


def on_channel_new(_session, channel):
    GObject.Object.connect(channel, "channel-event", on_channel_event)
    if isinstance(channel, SpiceClientGLib.MainChannel):
        state["main"] = channel
        GObject.Object.connect(channel, "notify::agent-connected", on_agent)
        # (spice-glib does not notify agent-caps-0: it is polled.)
        GLib.timeout_add(200, lambda: on_caps(channel) or True)
        GObject.Object.connect(channel, "notify::mouse-mode",
                               lambda m, _p: say("MODE", m.get_property("mouse-mode")))
        GObject.Object.connect(channel, "main-clipboard-selection-grab", on_grab)
        GObject.Object.connect(channel, "main-clipboard-selection-request", on_request)
        GObject.Object.connect(channel, "main-clipboard-selection", on_selection)
        GObject.Object.connect(channel, "new-file-transfer", on_new_transfer)
    elif isinstance(channel, SpiceClientGLib.InputsChannel):
        state["inputs"] = channel
        channel.connect()
    elif isinstance(channel, SpiceClientGLib.DisplayChannel):
        GObject.Object.connect(channel, "display-primary-create", on_primary)
        GObject.Object.connect(channel, "display-primary-destroy", on_primary_gone)
        GObject.Object.connect(channel, "notify::monitors", on_monitors)
        channel.connect()


class GArray(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


gobject = ctypes.CDLL("libgobject-2.0.so.0")
glib = ctypes.CDLL("libglib-2.0.so.0")
ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def display_monitors(channel) -> list:
    """The channel's "monitors" (a GArray of SpiceDisplayMonitorConfig, which PyGObject cannot
    convert): (id, surface_id, x, y, width, height) each."""
    pointer = ctypes.pythonapi.PyCapsule_GetPointer(channel.__gpointer__, None)
    array = ctypes.POINTER(GArray)()
    gobject.g_object_get(ctypes.c_void_p(pointer), b"monitors", ctypes.byref(array), None)
    if not array:
        return []
    found = []
    if array.contents.len:
        words = (ctypes.c_uint * (6 * array.contents.len)).from_address(array.contents.data)
        found = [tuple(words[6 * i:6 * i + 6]) for i in range(array.contents.len)]
    glib.g_array_unref(array)
    return found


def on_monitors(channel, _pspec):
    say("LAYOUT", channel.get_property("monitors-max"),
        *(f"{m[0]}:{m[4]}x{m[5]}+{m[2]}+{m[3]}" for m in display_monitors(channel)))


def on_primary(_channel, _format, width, height, stride, _shmid, data):
    state["primary"] = (width, height, stride, data)
    say("PRIMARY", width, height, stride)


def on_primary_gone(_channel):
    state["primary"] = None  # (its memory is freed)
    say("PRIMARY", 0, 0, 0)


def dump(path):
    if state["primary"] is None:
        say("DUMPED", 0, 0, 0)
        return
    width, height, stride, data = state["primary"]
    with open(path, "wb") as f:
        f.write(bytes((ctypes.c_uint8 * (stride * height)).from_address(data)))
    say("DUMPED", width, height, stride)


def on_new_transfer(_main, task):
    """Cancels the transfer once CANCEL_AT bytes went out, when asked to. (spice-glib's own
    progress callback cannot be used from Python: it is only valid during the call.)"""
    cancel_at = state.get("cancel_at")
    if cancel_at is None:
        return

    def progress(task, _pspec):
        sent = task.get_transferred_bytes()
        if sent >= cancel_at and not state.get("cancelled"):
            state["cancelled"] = True
            say("CANCELLING", sent)
            task.cancel()

    GObject.Object.connect(task, "notify::progress", progress)


def send_file(path, cancel_at):
    state["cancel_at"], state["cancelled"] = cancel_at, False

    def finished(main, result, *_):
        try:
            main.file_copy_finish(result)
            say("SENT", "OK")
        except GLib.Error as e:
            say("SENT", "ERROR", e.message.replace("\n", " "))

    state["main"].file_copy_async([Gio.File.new_for_path(path)], Gio.FileCopyFlags.NONE,
                                  None, None, None, finished, None)


def execute(words):
    main, command = state["main"], words[0]
    if command == "QUIT":
        loop.quit()
        return
    if command == "CLIP_OFFER":
        state["offer"] = (int(words[1]), words[2])
        main.clipboard_selection_grab(0, [int(words[1])])
    elif command == "CLIP_FETCH":
        if not state["grabbed"]:
            say("ERROR", "the guest holds no clipboard")
            return
        state["fetch"] = words[1]
        main.clipboard_selection_request(0, state["grabbed"][0])
    elif command == "MONITOR":
        main.update_display_enabled(0, True, False)
        main.update_display(0, 0, 0, int(words[1]), int(words[2]), False)
        main.send_monitor_config()
    elif command == "MONITORS":
        for display in range(4):
            size = words[1 + display] if display + 1 < len(words) else "off"
            if size == "off":
                main.update_display_enabled(display, False, False)
                continue
            w, h, x, y = map(int, size.replace("x", " ").replace("+", " ").split())
            main.update_display_enabled(display, True, False)
            main.update_display(display, x, y, w, h, False)
        main.send_monitor_config()
    elif command == "SEND":
        send_file(words[1], int(words[2]) if len(words) > 2 else None)
    elif command == "POSITION":
        display = int(words[4]) if len(words) > 4 else 0
        state["inputs"].position(int(words[1]), int(words[2]), display, int(words[3]))
    elif command == "DUMP":
        dump(words[1])
    else:
        say("ERROR", "unknown command", command)
        return
    say("DONE", "%.6f" % time.monotonic())


def on_stdin(source, _condition):
    line = source.readline()
    if not line:
        loop.quit()
        return False
    words = line.split()
    if words:
        try:
            execute(words)
        except Exception as e:  # report and go on: the test decides
            say("ERROR", type(e).__name__, str(e).replace("\n", " "))
    return True


session = SpiceClientGLib.Session()
# Not an audio test: no playback or record channels (spice-glib would open them and start
# GStreamer pipelines; tests/spice/audio_client.py is the audio client).
session.set_property("enable-audio", False)
session.set_property("uri", f"spice://{host}:{port}")
GObject.Object.connect(session, "channel-new", on_channel_new)
if not session.connect():
    say("ERROR", "connect failed")
    sys.exit(1)
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
loop.run()
