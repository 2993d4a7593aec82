//! Bad command lines and bad input files get one line on stderr and a non-zero
//! exit status, never a panic. Runs the real binary; needs no KVM for these cases.

use std::path::PathBuf;
use std::process::Command;

fn saffron(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_saffron"))
        .args(args)
        .output()
        .expect("run saffron");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saffron-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// One line, prefixed, mentioning `needle`, and no panic.
fn assert_one_line_error(status: i32, stderr: &str, expected_status: i32, needle: &str) {
    assert_eq!(status, expected_status, "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr:?}"
    );
    assert!(stderr.starts_with("saffron: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn missing_kernel() {
    let (status, err) = saffron(&["run", "--kernel", "/nonexistent/vmlinuz"]);
    assert_one_line_error(status, &err, 1, "No such file");
}

#[test]
fn unreadable_kernel_is_a_directory() {
    let dir = std::env::temp_dir();
    let (status, err) = saffron(&["run", "--kernel", dir.to_str().unwrap()]);
    assert_one_line_error(status, &err, 1, "not a regular file");
}

#[test]
fn file_that_is_not_a_kernel() {
    let path = scratch("not-a-kernel", b"#!/bin/sh\necho I am a script\n");
    let (status, err) = saffron(&["run", "--kernel", path.to_str().unwrap()]);
    assert_one_line_error(status, &err, 1, "is not a Linux kernel");
}

#[test]
fn missing_initrd() {
    let kernel = scratch("fake-elf", b"\x7fELF\x02\x01\x01");
    let (status, err) = saffron(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        "/nonexistent/initrd",
    ]);
    assert_one_line_error(status, &err, 1, "/nonexistent/initrd");
}

#[test]
fn memory_zero_and_too_much() {
    let (status, err) = saffron(&["run", "--kernel", "k", "--memory", "0"]);
    assert_one_line_error(status, &err, 2, "--memory");
    let (status, err) = saffron(&["run", "--kernel", "k", "--memory", "12Q"]);
    assert_one_line_error(status, &err, 2, "--memory");
    let kernel = scratch("fake-elf-2", b"\x7fELF\x02\x01\x01");
    let (status, err) = saffron(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "64T",
    ]);
    assert_one_line_error(status, &err, 1, "this host has only");
}

#[test]
fn cpus_zero_and_too_many() {
    let (status, err) = saffron(&["run", "--kernel", "k", "--cpus", "0"]);
    assert_one_line_error(status, &err, 2, "--cpus");
    let (status, err) = saffron(&["run", "--kernel", "k", "--cpus", "99"]);
    assert_one_line_error(status, &err, 2, "--cpus");
}

#[test]
fn malformed_serial() {
    for bad in ["tcp:1234", "file=", "stdio2"] {
        let (status, err) = saffron(&["run", "--kernel", "k", "--serial", bad]);
        assert_one_line_error(status, &err, 2, "--serial");
    }
}

#[test]
fn bad_audio_options() {
    let (status, err) = saffron(&["run", "--kernel", "k", "--audio", "ac97"]);
    assert_one_line_error(status, &err, 2, "--audio");
    let (status, err) = saffron(&["run", "--kernel", "k", "--audio", "hda"]);
    assert_one_line_error(status, &err, 2, "--audio hda needs --spice");
}

#[test]
fn unknown_flag_and_boot_source_conflicts() {
    let (status, err) = saffron(&["run", "--kernel", "k", "--frobnicate"]);
    assert_one_line_error(status, &err, 2, "--frobnicate");
    let (status, err) = saffron(&["run", "--initrd", "i"]);
    assert_one_line_error(status, &err, 2, "need --kernel");
    let (status, err) = saffron(&["run", "--firmware", "none"]);
    assert_one_line_error(status, &err, 2, "nothing to boot");
    let (status, err) = saffron(&["run", "--kernel", "k", "--boot", "menu=on"]);
    assert_one_line_error(status, &err, 2, "--boot needs a BIOS");
}

#[test]
fn kernel_through_the_bios_must_be_a_bzimage() {
    let bios = scratch("bios-64k.bin", &[0u8; 64 * 1024]);
    let elf = scratch("vmlinux", b"\x7fELF not a bzImage, too short for a header");
    let (status, err) = saffron(&[
        "run",
        "--firmware",
        bios.to_str().unwrap(),
        "--kernel",
        elf.to_str().unwrap(),
    ]);
    assert_one_line_error(status, &err, 1, "not a bzImage");
}

#[test]
fn bad_firmware_images() {
    let (status, err) = saffron(&["run", "--firmware", "/nonexistent/bios.bin"]);
    assert_one_line_error(status, &err, 1, "/nonexistent/bios.bin");
    let odd = scratch("odd-bios.bin", &[0u8; 1000]);
    let (status, err) = saffron(&["run", "--firmware", odd.to_str().unwrap()]);
    assert_one_line_error(status, &err, 1, "multiple of 64 KiB");
}

#[test]
fn help_documents_every_flag_and_exit_status() {
    let out = Command::new(env!("CARGO_BIN_EXE_saffron"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--kernel",
        "--initrd",
        "--cmdline",
        "--memory",
        "--cpus",
        "--serial",
        "--pvm-guest",
        "--disk",
        "--net",
        "--audio",
        "--firmware",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("Exit status"));
}

#[test]
fn truncated_recording_is_one_error_line() {
    // A debug message whose blob is cut short, after one complete event.
    let path = scratch(
        "truncated.rec",
        b"SPICE_REPLAY 1\nevent 0 1 2 5\nevent 1 0 4 6\nbinary 0 message 100:abc",
    );
    let (status, err) = saffron(&["replay", path.to_str().unwrap(), "--pace", "fast"]);
    assert_one_line_error(status, &err, 1, "in its message blob of 100 bytes");
}

fn run_with_disk(disk: &str) -> (i32, String) {
    let kernel = scratch("fake-elf-disk", b"\x7fELF\x02\x01\x01");
    saffron(&["run", "--kernel", kernel.to_str().unwrap(), "--disk", disk])
}

#[test]
fn bad_disk_options() {
    for bad in [
        "",
        "format=raw",
        "path=/a,format=vmdk",
        "path=/a,cache=none",
        "path=/a,x=1",
    ] {
        let (status, err) = run_with_disk(bad);
        assert_one_line_error(status, &err, 2, "--disk");
    }
}

#[test]
fn missing_disk_image() {
    let (status, err) = run_with_disk("path=/nonexistent/disk.img");
    assert_one_line_error(status, &err, 1, "/nonexistent/disk.img: No such file");
}

#[test]
fn locked_disk_image() {
    use std::os::unix::io::AsRawFd;
    let path = scratch("locked.raw", &[0u8; 4096]);
    let holder = std::fs::File::open(&path).unwrap();
    // SAFETY: flock on a file we own.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
    let (status, err) = run_with_disk(&format!("path={},format=raw", path.display()));
    assert_one_line_error(status, &err, 1, "in use by another process");
    let (status, err) = run_with_disk(&format!("path={},readonly=on", path.display()));
    assert_one_line_error(status, &err, 1, "locked by a writer");
}

#[test]
fn truncated_qcow2_image_is_refused_unmodified() {
    // A qcow2 header whose tables lie past the end of the file.
    let mut header = vec![0u8; 104];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[4..8].copy_from_slice(&3u32.to_be_bytes());
    header[20..24].copy_from_slice(&16u32.to_be_bytes());
    header[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    header[36..40].copy_from_slice(&8u32.to_be_bytes());
    header[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
    header[48..56].copy_from_slice(&0x10000u64.to_be_bytes());
    header[56..60].copy_from_slice(&1u32.to_be_bytes());
    let path = scratch("truncated.qcow2", &header);
    let (status, err) = run_with_disk(path.to_str().unwrap());
    assert_one_line_error(status, &err, 1, "beyond the end of the file");
    assert_eq!(std::fs::read(&path).unwrap(), header);
}

fn run_with_net(net: &str) -> (i32, String) {
    let kernel = scratch("fake-elf-net", b"\x7fELF\x02\x01\x01");
    saffron(&["run", "--kernel", kernel.to_str().unwrap(), "--net", net])
}

#[test]
fn bad_net_options() {
    for bad in [
        "tap",
        "tap=a/b",
        "user,hostfwd=tcp::0-:80",
        "user,mac=01:00:00:00:00:01",
        "user,model=e1000",
        "vde",
    ] {
        let (status, err) = run_with_net(bad);
        assert_one_line_error(status, &err, 2, "--net");
    }
}

#[test]
fn a_busy_hostfwd_port_is_refused_before_the_vm_starts() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (status, err) = run_with_net(&format!("user,hostfwd=tcp:127.0.0.1:{port}-:80"));
    assert_one_line_error(
        status,
        &err,
        1,
        &format!("port {port} on 127.0.0.1 is in use"),
    );
}
