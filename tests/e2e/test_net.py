#!/usr/bin/python3
"""End-to-end tests of saffron's network cards (virtio-net) with the test guest.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_net.py [TEST_NAME...]

One boot with two cards, brought up by the guest's init (kernel arguments saffron.dhcp= and
saffron.ip=):
- net0, user-mode networking through passt (`--net user,hostfwd=...,dns=GATEWAY`): the guest
  gets its address by DHCP (busybox udhcpc) at boot, resolves a name through the gateway's address
  (answered by a small DNS server this test runs on the outer machine's loopback), fetches a
  file by that name from an HTTP server on the host side, and a host client fetches a file
  from an HTTP server in the guest through hostfwd;
- net1, a TAP device the test creates (`--net tap=NAME`): the same both ways, with static
  addresses.
Every file is checked by SHA-256. Then the guest floods both cards with random frames (the
`netflood` helper, fetched over the network) while the test checks that saffron answers on its
control socket and that a SPICE client (spicy-screenshot) sees exactly the screendump, then
that the guest answers on its serial port and both networks still work.
`status` reports both cards; passt ends with saffron.
"""

import hashlib
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness import RESULTS_DIR, REPO, Guest, GuestError, GuestImage, run_tests, saffron_command
from screens import Api, client_matches_screendump, spice_screenshot, still_console

USER_MAC = "52:54:00:12:34:56"
TAP_MAC = "52:54:00:77:00:02"
TAP = "sfn-tap0"
HOST_TAP_IP = "192.168.77.1"
GUEST_TAP_IP = "192.168.77.2"
HOSTFWD_PORT = 18080
GUEST_HTTP_PORT = 8080
# The outer machine's own address (tests/nested/run), which passt gives the guest.
OUTER_ADDR = "10.0.2.15"
# passt maps the gateway's address to the host's loopback: the guest's DNS server (the test's,
# on 127.0.0.1:53) and the name's answer.
GATEWAY = "10.0.2.2"
NAME = "files.saffron.test"
BLOB_BYTES = 1 << 20
SPICE_PORT = 5931
# The flood: random frames out of each card for this long (a SPICE screenshot is taken
# meanwhile), at most this many.
FLOOD_SECONDS = 25
FLOOD_FRAMES = 1_000_000


class DnsResponder:
    """Answers A queries for one name on UDP port 53 of `address`; NXDOMAIN otherwise."""

    def __init__(self, address: str, name: str, answer: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.5)
        self.name, self.answer = name.lower(), socket.inet_aton(answer)
        self.queries = 0
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            reply = self.reply(query)
            if reply:
                self.queries += 1
                self.sock.sendto(reply, peer)

    def reply(self, query: bytes) -> bytes | None:
        if len(query) < 17:
            return None
        labels, at = [], 12
        while at < len(query) and query[at]:
            labels.append(query[at + 1:at + 1 + query[at]].decode(errors="replace"))
            at += 1 + query[at]
        question = query[12:at + 5]
        qtype = struct.unpack(">H", query[at + 1:at + 3])[0] if at + 3 <= len(query) else 0
        found = ".".join(labels).lower() == self.name
        answers = 1 if found and qtype == 1 else 0
        rcode = 0 if found else 3
        header = query[:2] + struct.pack(">HHHHH", 0x8180 | rcode, 1, answers, 0, 0)
        record = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + self.answer if answers else b""
        return header + question + record

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


@contextmanager
def http_server(directory: Path):
    """An HTTP server for `directory` on every address; yields its port."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = partial(Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def tap_device():
    """The TAP device for net1 with the host's address on it."""
    subprocess.run(["ip", "link", "del", TAP], capture_output=True, timeout=30)
    ip("tuntap", "add", "dev", TAP, "mode", "tap")
    try:
        ip("addr", "add", f"{HOST_TAP_IP}/24", "dev", TAP)
        ip("link", "set", TAP, "up")
        yield
    finally:
        subprocess.run(["ip", "link", "del", TAP], capture_output=True, timeout=30)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def guest_lines(guest: Guest, command: str, timeout: float = 60) -> str:
    return guest.run(command, check=True, timeout=timeout).output.strip()


def interface(guest: Guest, mac: str) -> str:
    name = guest_lines(guest, "for i in /sys/class/net/eth*; do "
                              f"[ \"$(cat $i/address)\" = {mac} ] && basename $i; done; true")
    assert name, f"no guest interface has the MAC {mac}"
    return name


def guest_fetch(guest: Guest, url: str) -> str:
    """The SHA-256 of what the guest's wget gets from `url`."""
    # (Debian's static busybox wget crashes with -T.)
    out = guest_lines(guest, f"wget -q -O /tmp/fetched {url} && sha256sum /tmp/fetched",
                      timeout=180)
    return out.split()[0]


def host_fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return sha256(answer.read())


def user_network(guest: Guest, eth: str, port: int, blob_hash: str, served_hash: str) -> None:
    addr = guest_lines(guest, f"ip -4 -o addr show dev {eth}")
    assert f"{OUTER_ADDR}/24" in addr, f"DHCP at boot gave {addr!r}"
    resolv = guest_lines(guest, "cat /etc/resolv.conf")
    assert f"nameserver {GATEWAY}" in resolv, resolv
    route = guest_lines(guest, "ip route | grep ^default")
    assert f"via {GATEWAY} dev {eth}" in route, route
    print(f"  DHCP from passt at boot: {addr.split()[3]}, {route}, DNS {GATEWAY}")
    # busybox's nslookup has its own resolver; its static wget would need glibc's NSS modules
    # for names, so it gets the address nslookup found.
    answer = guest_lines(guest, f"nslookup {NAME}", timeout=90)
    found = re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)", answer.split(NAME, 1)[-1])
    assert found == [GATEWAY], f"nslookup:\n{answer}"
    assert guest_fetch(guest, f"http://{found[0]}:{port}/blob") == blob_hash, "fetched blob differs"
    print(f"  guest resolved {NAME} and fetched {BLOB_BYTES} bytes through passt, same hash")
    assert host_fetch(f"http://127.0.0.1:{HOSTFWD_PORT}/g") == served_hash
    print(f"  host fetched the guest's file through hostfwd {HOSTFWD_PORT}, same hash")


def tap_network(guest: Guest, eth: str, port: int, blob_hash: str, served_hash: str) -> None:
    addr = guest_lines(guest, f"ip -4 -o addr show dev {eth}")
    assert f"{GUEST_TAP_IP}/24" in addr, f"the static address is missing: {addr!r}"
    assert guest_fetch(guest, f"http://{HOST_TAP_IP}:{port}/blob") == blob_hash
    assert host_fetch(f"http://{GUEST_TAP_IP}:{GUEST_HTTP_PORT}/g") == served_hash
    print(f"  TAP {TAP}: guest fetched the host's file and the host the guest's, same hashes")


def flood(guest: Guest, api: Api, eths: list[str], port: int) -> None:
    """Random frames out of every card; saffron and the guest stay responsive, and a SPICE
    client's picture equals the screendump while the flood runs."""
    guest_lines(guest, f"wget -q -O /tmp/netflood http://{HOST_TAP_IP}:{port}/netflood"
                       " && chmod +x /tmp/netflood")
    still_console(guest)
    guest_lines(guest, "clear >/dev/tty1; echo network flood under way >/dev/tty1")
    runs = " & ".join(f"/tmp/netflood {eth} {FLOOD_FRAMES} {n + 1} {FLOOD_SECONDS}"
                      for n, eth in enumerate(eths))
    result = {}
    flooder = threading.Thread(target=lambda: result.update(
        out=guest_lines(guest, f"{runs}; wait", timeout=600)))
    slowest, started = 0.0, time.monotonic()
    flooder.start()
    time.sleep(1)
    client_matches_screendump(api, tempfile.mkdtemp(), "net-flood",
                              lambda name: spice_screenshot(SPICE_PORT, name), attempts=3)
    assert flooder.is_alive(), "the flood ended before the picture was compared"
    while flooder.is_alive():
        asked = time.monotonic()
        api.call("status")
        slowest = max(slowest, time.monotonic() - asked)
        time.sleep(0.5)
    took = time.monotonic() - started
    assert "out" in result, "the flood did not finish"
    assert guest_lines(guest, "echo $((6*7))") == "42"
    logs = result["out"]
    assert slowest < 5, f"status took {slowest:.1f} s during the flood"
    print(f"  flood of random frames ({logs.replace(chr(10), '; ')}) in {took:.0f} s; "
          f"slowest status answer {slowest * 1000:.0f} ms; the SPICE picture was exact "
          "meanwhile")


def carrier(guest: Guest, eth: str, want: str) -> None:
    deadline = time.monotonic() + 30
    while guest_lines(guest, f"cat /sys/class/net/{eth}/carrier") != want:
        assert time.monotonic() < deadline, f"{eth}'s carrier did not become {want}"
        time.sleep(0.5)


def link_down_and_up(guest: Guest, api: Api, eth: str) -> None:
    """set-link: the guest loses its carrier and gets it back, and the card works again."""
    api.call("set-link", name="net1", up=False)
    carrier(guest, eth, "0")
    assert api.call("status")["nics"][1]["link"] == "down"
    refused = api.request("set-link", name="net7", up=True)
    assert refused["error"]["code"] == "no_device", refused
    api.call("set-link", name="net1", up=True)
    carrier(guest, eth, "1")
    assert api.call("status")["nics"][1]["link"] == "up"
    guest_lines(guest, f"ping -c 1 -W 10 {HOST_TAP_IP}", timeout=60)
    print("  set-link net1 down and up: the guest's carrier followed; the TAP answers again")


def check_status(api: Api) -> int:
    nics = api.call("status")["nics"]
    assert [(n["backend"], n["mac"], n["link"]) for n in nics] == \
        [("user", USER_MAC, "up"), ("tap", TAP_MAC, "up")], nics
    for n in nics:
        assert not n["backend_failed"], n
        # passt's MTU is 65520: a MiB is a few dozen frames.
        assert n["rx_packets"] > 10 and n["tx_packets"] > 10, n
        assert n["rx_bytes"] >= BLOB_BYTES and n["tx_bytes"] >= BLOB_BYTES, n
    print("  status: " + "; ".join(
        f"{n['device']} {n['backend']} rx {n['rx_packets']} pkts/{n['rx_bytes']} B, "
        f"tx {n['tx_packets']} pkts/{n['tx_bytes']} B, refused {n['tx_refused']}, "
        f"dropped {n['rx_dropped']}" for n in nics))
    return nics[0]["backend_detail"]["passt_pid"]


def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A zombie is gone too, for the user.
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return
        time.sleep(0.2)
    raise AssertionError(f"passt (pid {pid}) still runs after saffron ended")


def prepare_files(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    blob = os.urandom(BLOB_BYTES)
    (directory / "blob").write_bytes(blob)
    # Built before the nested run (tests/run-all): the host's files are read-only in here.
    tool = REPO / "build" / "guest-tools" / "netflood"
    assert tool.exists(), f"{tool} is missing: guest-drivers/linux/tools/build-tool netflood"
    (directory / "netflood").write_bytes(tool.read_bytes())
    return sha256(blob)


def saffron_with_two_cards(sock: Path) -> list[str]:
    nets = ["--net", f"user,mac={USER_MAC},dns={GATEWAY},"
                     f"hostfwd=tcp:127.0.0.1:{HOSTFWD_PORT}-:{GUEST_HTTP_PORT}",
            "--net", f"tap={TAP},mac={TAP_MAC}", "--api-socket", str(sock),
            "--spice", f"port={SPICE_PORT},disable-ticketing"]
    argv = saffron_command(GuestImage.default(True), memory="512M", cpus=2, extra_args=nets)
    # The guest's init brings both up (guest-drivers/linux/extra/etc/saffron/init.d/20-network);
    # the cards are eth0 and eth1 in PCI slot order.
    at = argv.index("--cmdline") + 1
    argv[at] += f" saffron.dhcp=eth0 saffron.ip=eth1:{GUEST_TAP_IP}/24"
    return argv


def test_user_and_tap_networking():
    directory = RESULTS_DIR / "net-test"
    blob_hash = prepare_files(directory)
    sock = Path(tempfile.mkdtemp()) / "api.sock"
    dns = DnsResponder("127.0.0.1", NAME, GATEWAY)
    try:
        with tap_device(), http_server(directory) as port, \
                Guest(saffron_with_two_cards(sock), "net") as guest:
            guest.wait_ready(timeout=120)
            user_eth, tap_eth = interface(guest, USER_MAC), interface(guest, TAP_MAC)
            assert (user_eth, tap_eth) == ("eth0", "eth1"), (user_eth, tap_eth)
            served = guest_lines(guest, "mkdir -p /srv && head -c 1048576 /dev/urandom >/srv/g"
                                        f" && sha256sum /srv/g && httpd -p {GUEST_HTTP_PORT}"
                                        " -h /srv").split()[0]
            user_network(guest, user_eth, port, blob_hash, served)
            tap_network(guest, tap_eth, port, blob_hash, served)
            api = Api(sock)
            passt = check_status(api)
            flood(guest, api, [user_eth, tap_eth], port)
            assert guest_fetch(guest, f"http://{GATEWAY}:{port}/blob") == blob_hash
            assert host_fetch(f"http://{GUEST_TAP_IP}:{GUEST_HTTP_PORT}/g") == served
            print("  both networks work after the flood")
            link_down_and_up(guest, api, tap_eth)
            check_status(api)
            guest.send("poweroff -f\n")
            if guest.wait_exit(timeout=60) != 0:
                raise GuestError("saffron did not exit cleanly at poweroff")
        wait_gone(passt)
        print(f"  passt (pid {passt}) ended with saffron; {dns.queries} DNS answers")
    finally:
        dns.close()


if __name__ == "__main__":
    run_tests(globals())
