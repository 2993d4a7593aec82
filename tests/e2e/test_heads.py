#!/usr/bin/python3
"""End-to-end test of multiple monitors: one QXL card with `--qxl heads=4`, the agent guest image
(tests/e2e/test_agent.py), a spice-glib client on the host side.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_heads.py [TEST_NAME...]

Needs on the host first: `cargo build --release` and
`guest-drivers/linux/build-agent-image build/guest-agent` (tests/run-all does both).

What is checked, in one guest boot:
- the client hears that the card offers four monitors (`monitors-max`), and `status` says so;
- the client asks for two monitors, 1000x750 above 1024x768 (the main channel's monitors
  config, which reaches QXL's client monitors config in the ROM and its interrupt): the guest's
  first two connectors become connected with those preferred modes; the guest shows one picture
  across both (`qxl-modeset heads`, as a desktop does on that hotplug event; Linux's driver puts
  its outputs side by side in one primary surface, whatever the client asked); the client's
  display channel then reports the guest's layout, `status` lists it, and each monitor's part
  of the client's picture equals `screendump head=N` pixel for pixel, which holds the guest's
  pattern at that monitor's place;
- client mouse positions on monitor 1 land on its part of the screen (the tablet's axes);
- then four monitors of different sizes, the same checks;
- then the client turns monitors 1-3 off: the guest's connectors 2-4 become disconnected, the
  guest turns those outputs off, and the client is left with one monitor (the others listed
  as 0x0, turned off, when the guest's config still names them, as libspice passes them on);
  positions on it span that monitor although the guest's surface stays wider.
Hostile monitors configs from the guest and the client are covered by unit tests
(devices/src/qxl/tests.rs, src/spice/agent/tests.rs) and the qxl_commands fuzz target.
"""

import random
import re
import tempfile
import time
from pathlib import Path

from harness import Guest, GuestError, run_tests
from screens import Api, Picture, diff_pictures, screendump
from test_agent import AGENT_CLIENT, agent_image, check, client_picture, expect, start_agent
from test_input import (ABS_X, ABS_Y, AXIS_MAX, EV_ABS, Client, input_device, record,
                        recorded)

Head = tuple[int, int, int, int]  # width, height, x, y


def heads_vm() -> tuple[Guest, int, Api]:
    port = random.randint(20000, 40000)
    # (Unix sockets cannot live on the nested machine's shared results directory.)
    sock = Path(tempfile.mkdtemp(prefix="heads-")) / "api.sock"
    args = ["--qxl", "heads=4", "--spice", f"port={port},disable-ticketing",
            "--api-socket", str(sock)]
    guest = Guest.saffron(agent_image(), memory="512M", cpus=2, extra_args=args, name="heads")
    return guest, port, sock


def connector(index: int) -> str:
    return f"/sys/class/drm/card0-Virtual-{index + 1}"


def connectors(guest: Guest) -> list[str]:
    """Each connector's state, probed anew: its first (preferred) mode, or "disconnected"."""
    probe = "; ".join(
        f"echo detect > {connector(i)}/status; "
        f"if [ $(cat {connector(i)}/status) = connected ]; then head -n 1 {connector(i)}/modes;"
        f" else echo disconnected; fi" for i in range(4))
    return guest.run(probe, timeout=30).output.split()


def side_by_side(sizes: list[tuple[int, int]]) -> list[Head]:
    """Heads of these sizes left to right, tops aligned: how Linux's qxl driver lays out the
    dumb buffers of its outputs in its primary surface (and how clients place windows)."""
    heads, x = [], 0
    for w, h in sizes:
        heads.append((w, h, x, 0))
        x += w
    return heads


def spec(heads: list[Head]) -> str:
    return " ".join(f"{w}x{h}+{x}+{y}" for w, h, x, y in heads)


def pattern(x: int, y: int) -> tuple[int, int, int]:
    """qxl-modeset's pattern at (x, y) of its buffer."""
    return (7 * x + 3 * y) & 0xFF, (x ^ (5 * y)) & 0xFF, (x * y >> 3) & 0xFF


def pattern_mismatch(picture: Picture, head: Head) -> str | None:
    """Where a head's picture is not the pattern at the head's place (None: nowhere)."""
    w, h, x0, y0 = head
    if (picture.width, picture.height) != (w, h):
        return f"{picture.width}x{picture.height}, want {w}x{h}"
    for y in range(0, h, 37):
        for x in range(0, w, 41):
            if picture.pixel(x, y) != pattern(x0 + x, y0 + y):
                return f"at {x},{y}: {picture.pixel(x, y)} != {pattern(x0 + x, y0 + y)}"
    return None


def dumps_show_the_pattern(guest: Guest, api: Api, heads: list[Head]) -> list[Picture]:
    """`screendump head=N` of each head, once each holds the pattern at its place."""
    deadline = time.monotonic() + 60
    while True:
        directory = tempfile.mkdtemp(prefix="heads-")
        dumps = [screendump(api, directory, f"heads-{len(heads)}-{i}", i)
                 for i in range(len(heads))]
        wrong = [(i, m) for i, (d, h) in enumerate(zip(dumps, heads))
                 if (m := pattern_mismatch(d, h))]
        if not wrong:
            return dumps
        check(guest, "each head's screendump shows its part of the pattern",
              time.monotonic() < deadline, f"head {wrong[0][0]}: {wrong[0][1]}")
        time.sleep(1)


def apply_layout(guest: Guest, client: Client, api: Api, asked: list[Head]) -> list[Head]:
    """The client asks for `asked`; the guest turns on outputs of those sizes, placed as its
    driver places them (side by side, whatever the client asked); client, status and
    screendumps agree on the guest's layout, which is returned."""
    heads = side_by_side([(w, h) for w, h, _, _ in asked])
    client.command("MONITORS " + spec(asked))
    want = [f"{w}x{h}" for w, h, _, _ in heads] + ["disconnected"] * (4 - len(heads))
    deadline = time.monotonic() + 60
    while (state := connectors(guest)) != want:
        check(guest, f"the guest's connectors after asking for {spec(heads)}",
              time.monotonic() < deadline, f"{state}, want {want}")
        time.sleep(1)
    layout = ",".join(f"{w}x{h}" for w, h, _, _ in heads)
    guest.run("killall qxl-modeset 2>/dev/null; sleep 1", timeout=20)
    guest.run(f"(qxl-modeset heads {layout} 900 >/tmp/heads.log 2>&1 &)", timeout=20)
    deadline = time.monotonic() + 30
    while "HEADS-OK" not in (log := guest.run("cat /tmp/heads.log", timeout=20).output):
        check(guest, f"qxl-modeset heads {layout}", time.monotonic() < deadline, log)
        time.sleep(0.5)
    said = " ".join(f"{i}:{w}x{h}+{x}+{y}" for i, (w, h, x, y) in enumerate(heads))
    # (Outputs the guest turned off may stay in its list, as 0x0.)
    expect(guest, client, "LAYOUT 4 " + re.escape(said) + r"( \d+:0x0\+\d+\+\d+)*", 60)
    status = api.call("status")["display"]
    listed = [(d["width"], d["height"], d["x"], d["y"]) for d in status["heads"]]
    check(guest, "status lists the heads", listed == heads and status["max_heads"] == 4,
          f"{status}")
    dumps = dumps_show_the_pattern(guest, api, heads)
    # The primary surface holds the heads (Linux's driver may keep it larger than they need).
    whole = client_picture(guest, client, (status["width"], status["height"]))
    for i, ((w, h, x, y), dumped) in enumerate(zip(heads, dumps)):
        difference = diff_pictures(whole.crop(x, y, w, h), dumped)
        check(guest, f"the client's monitor {i} equals screendump head={i}", difference is None,
              str(difference))
    print(f"  asked {spec(asked)}, the guest shows {spec(heads)}: connectors, client layout, "
          "status and pictures agree")
    return heads


def positions_land_on_their_monitor(guest: Guest, client: Client, heads: list[Head],
                                    points: list[tuple[int, int, int]]) -> None:
    """Client-mode positions (monitor, x, y) reach the tablet at that monitor's place, the axes
    spanning the monitors (the surface may be larger). Both coordinates must change from one
    point to the next (evdev drops repeated values)."""
    client.wait_value("MODE", 2, timeout=60)
    tablet = input_device(guest, r"Saffron Virtio Tablet")
    record(guest, tablet)
    time.sleep(0.5)
    for monitor, x, y in points:
        client.command(f"POSITION {x} {y} 0 {monitor}")
        time.sleep(0.3)
    events = recorded(guest, tablet, expect=2 * len(points))
    xs = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_X)]
    ys = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_Y)]
    width = max(x + w for w, _, x, _ in heads)
    height = max(y + h for _, h, _, y in heads)
    check(guest, "one tablet position per client position", len(xs) == len(points) == len(ys),
          f"{events}")
    for (monitor, x, y), vx, vy in zip(points, xs, ys):
        _, _, mx, my = heads[monitor]
        for extent, p, v in ((width, mx + x, vx), (height, my + y, vy)):
            pixel = v * extent / (AXIS_MAX + 1)
            check(guest, f"monitor {monitor} ({x}, {y}) on the screen", abs(pixel - p) <= 1,
                  f"axis {v} -> {pixel:.1f}, want {p} of {extent}")
    print(f"  positions {points} land at their place: X {xs}, Y {ys}")


def test_heads_follow_the_client_layout():
    guest, port, sock = heads_vm()
    with guest:
        guest.wait_ready(timeout=180)
        client = Client(port, AGENT_CLIENT)
        try:
            expect(guest, client, "READY", 60)
            start_agent(guest, client)
            api = Api(sock)
            client.wait_value("LAYOUT", 4, timeout=60)  # (monitors-max)
            # Stacked, as asked; side by side, as the guest shows them.
            two = apply_layout(guest, client, api, [(1000, 750, 0, 0), (1024, 768, 0, 750)])
            positions_land_on_their_monitor(guest, client, two,
                                            [(1, 10, 20), (0, 500, 700), (1, 1023, 767)])
            apply_layout(guest, client, api, [(800, 600, 0, 0), (640, 480, 800, 0),
                                              (1024, 768, 0, 600), (640, 480, 1024, 600)])
            one = apply_layout(guest, client, api, [(1024, 768, 0, 0)])
            # The guest keeps its surface wider than the one monitor left.
            positions_land_on_their_monitor(guest, client, one, [(0, 512, 384), (0, 1023, 10)])
        except GuestError:
            print(f"  client stderr: {client.errors[-15:]}")
            raise
        finally:
            client.close()


if __name__ == "__main__":
    run_tests(globals())
