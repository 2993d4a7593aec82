#!/usr/bin/python3
"""End-to-end tests of saffron's disks (virtio-blk) with the test guest and Debian's kernel.

Runs inside the nested machine (real KVM), from the repository root:
    tests/nested/run -- /usr/bin/python3 tests/e2e/test_disk.py [TEST_NAME...]

One boot with three disks: an ext4 file system in a raw image (vda, with a serial number), a
qcow2 overlay made by qemu-img over a raw base of known bytes (vdb), and a read-only raw image
(vdc). The guest reads and writes them; saffron is then killed with SIGKILL right after the
guest's `sync`, and the host checks the images with e2fsprogs and qemu-img: what the guest
synced is there, the overlay's base and the read-only image are unchanged. A second saffron
asking for the same image while the first runs is refused.
"""

import hashlib
import shutil
import tempfile
import subprocess
import time
from pathlib import Path

from harness import RESULTS_DIR, Guest, GuestImage, run_tests, saffron_command
from screens import Api

MIB = 1 << 20
FILE_BYTES = 1_000_000
OVERLAY_BLOCK = 2000          # 4 KiB block of vdb the guest writes
READ_BLOCK = 1000             # 4 KiB block of vdb the guest reads (16 blocks)


def pattern(size: int, seed: int) -> bytes:
    """Bytes whose every 4 KiB block differs: block i holds (i * seed) mod 251 repeated."""
    return b"".join(bytes([(i * seed) % 251]) * 4096 for i in range(size // 4096))


def tool(*argv: str, ok=(0,)) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode in ok, f"{argv}: status {result.returncode}: {result.stderr}"
    return result.stdout


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_images(directory):
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    data = directory / "data.raw"
    data.write_bytes(b"\0" * (64 * MIB))
    tool("mke2fs", "-q", "-F", "-t", "ext4", str(data))
    (directory / "base.raw").write_bytes(pattern(32 * MIB, 7))
    tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
         str(directory / "overlay.qcow2"))
    (directory / "ro.raw").write_bytes(pattern(8 * MIB, 13))
    return data


def guest_lines(guest: Guest, command: str) -> str:
    return guest.run(command, check=True, timeout=60).output.strip()


def check_devices(guest: Guest):
    assert guest_lines(guest, "ls /sys/block | grep ^vd | tr '\\n' ' '") == "vda vdb vdc"
    sizes = guest_lines(guest, "cat /sys/block/vda/size /sys/block/vdb/size /sys/block/vdc/size")
    assert sizes.split() == [str(64 * 2048), str(32 * 2048), str(8 * 2048)], sizes
    assert guest_lines(guest, "cat /sys/block/vda/serial") == "saffron-data"
    ro = guest_lines(guest, "cat /sys/block/vda/ro /sys/block/vdc/ro").split()
    assert ro == ["0", "1"], f"read-only flags {ro}"


def check_reads(guest: Guest, directory):
    base = (directory / "base.raw").read_bytes()
    want = hashlib.md5(base[READ_BLOCK * 4096:(READ_BLOCK + 16) * 4096]).hexdigest()
    got = guest_lines(guest, f"dd if=/dev/vdb bs=4096 skip={READ_BLOCK} count=16 2>/dev/null"
                             " | md5sum").split()[0]
    assert got == want, "vdb (qcow2 overlay) does not read as its base"
    ro = (directory / "ro.raw").read_bytes()
    got = guest_lines(guest, "md5sum </dev/vdc").split()[0]
    assert got == hashlib.md5(ro).hexdigest(), "vdc reads wrong"


def check_read_only(guest: Guest):
    status, output = guest.run("dd if=/dev/zero of=/dev/vdc bs=4096 count=1 conv=fsync", timeout=60)
    assert status != 0, f"a write to the read-only disk succeeded: {output}"
    print(f"  write to the read-only disk refused: {output.strip().splitlines()[0]}")


def check_second_writer_refused(image):
    argv = saffron_command(GuestImage.default(), memory="256M", cpus=1,
                           extra_args=["--disk", f"path={image},format=raw"])
    argv[argv.index("--serial") + 1] = "none"
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, f"{result.returncode}: {result.stderr}"
    assert "in use by another process" in lines[0], lines[0]
    print(f"  second saffron: {lines[0]}")


def write_and_sync(guest: Guest):
    guest_lines(guest, "mount -t ext4 /dev/vda /mnt")
    guest_lines(guest, f"yes saffron-disk-test | head -c {FILE_BYTES} >/mnt/hello.txt")
    guest_lines(guest, f"yes overlay-block | head -c 65536 | dd of=/dev/vdb bs=4096"
                       f" seek={OVERLAY_BLOCK} conv=fsync 2>/dev/null")
    guest_lines(guest, "blkdiscard -o 8388608 -l 1048576 /dev/vda || true")
    guest_lines(guest, "sync")


def check_status(api: Api):
    """`status` lists the disks with their formats and what they did."""
    disks = api.call("status")["disks"]
    assert [(d["format"], d["read_only"]) for d in disks] == \
        [("raw", False), ("qcow2", False), ("raw", True)], disks
    data, overlay, ro = disks
    assert data["serial"] == "saffron-data" and data["size_bytes"] == 64 * MIB, data
    assert data["bytes_written"] >= FILE_BYTES and data["flushes"] > 0, data
    assert overlay["bytes_written"] >= 65536 and overlay["bytes_read"] >= 16 * 4096, overlay
    assert ro["writes"] == 0 and ro["bytes_read"] >= 8 * MIB, ro
    assert all(d["io_errors"] == 0 for d in disks), disks
    print(f"  status: vda wrote {data['bytes_written']} bytes in {data['writes']} requests, "
          f"{data['flushes']} flushes, {data['discards']} discards; vdc read {ro['bytes_read']}")


def expected_text(size: int, line: str) -> bytes:
    text = (line + "\n").encode()
    return (text * (size // len(text) + 1))[:size]


def check_synced_file(directory):
    copy = directory / "data-copy.raw"
    shutil.copyfile(directory / "data.raw", copy)
    # The journal may hold the last metadata: replay it as a mount would (status 1: fixed).
    tool("e2fsck", "-fy", str(copy), ok=(0, 1))
    content = subprocess.run(["debugfs", "-R", "cat /hello.txt", str(copy)],
                             capture_output=True, timeout=120).stdout
    assert content == expected_text(FILE_BYTES, "saffron-disk-test"), \
        f"the synced file is not in the image ({len(content)} bytes)"


def check_overlay(directory, base_hash: str):
    assert sha256(directory / "base.raw") == base_hash, "the overlay's base was written"
    tool("qemu-img", "check", "-q", str(directory / "overlay.qcow2"))
    flat = directory / "overlay-flat.raw"
    tool("qemu-img", "convert", "-O", "raw", str(directory / "overlay.qcow2"), str(flat))
    data = flat.read_bytes()
    start = OVERLAY_BLOCK * 4096
    assert data[start:start + 65536] == expected_text(65536, "overlay-block")
    base = (directory / "base.raw").read_bytes()
    assert data[:start] == base[:start] and data[start + 65536:] == base[start + 65536:]


def test_disks_read_write_sync_kill():
    directory = RESULTS_DIR / "disk-test"
    data = make_images(directory)
    base_hash, ro_hash = sha256(directory / "base.raw"), sha256(directory / "ro.raw")
    sock = Path(tempfile.mkdtemp()) / "api.sock"
    disks = ["--api-socket", str(sock),
             "--disk", f"path={data},format=raw,serial=saffron-data",
             "--disk", f"path={directory / 'overlay.qcow2'}",
             "--disk", f"path={directory / 'ro.raw'},format=raw,readonly=on"]
    with Guest.saffron(GuestImage.default(True), memory="512M", cpus=2, extra_args=disks,
                       name="disk-basic") as guest:
        guest.wait_ready(timeout=120)
        check_devices(guest)
        check_reads(guest, directory)
        check_read_only(guest)
        check_second_writer_refused(data)
        write_and_sync(guest)
        check_status(Api(sock))
        started = time.monotonic()
        guest.kill()
        print(f"  saffron killed with SIGKILL {time.monotonic() - started:.2f} s after sync")
    check_synced_file(directory)
    check_overlay(directory, base_hash)
    assert sha256(directory / "ro.raw") == ro_hash, "the read-only image changed"
    print("  synced file in the raw image, overlay block in the qcow2, base and read-only intact")


if __name__ == "__main__":
    run_tests(globals())
