//! Disk images: raw files and qemu-img's qcow2 overlays, locks, the
//! `--disk` syntax, and damaged images.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::test_util::TempDir;

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("disk-{name}"))
}

fn options(path: &Path, format: Option<Format>, read_only: bool) -> DiskOptions {
    DiskOptions {
        format,
        read_only,
        ..DiskOptions::new(path)
    }
}

/// qemu-img (Debian's qemu-utils, installed by scripts/setup).
fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (package qemu-utils) must be installed: run scripts/setup");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `path` a qcow2 overlay on `backing` (a name next to it) of `format`.
fn overlay_on(backing: &str, format: &str, path: &Path) {
    let path = path.to_str().unwrap();
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", backing, "-F", format, path,
    ]);
}

#[test]
fn raw_reads_writes_and_holes() {
    let dir = temp_dir("raw");
    let path = dir.file("a.raw", &vec![7u8; 1 << 20]);
    let mut disk = open(&options(&path, Some(Format::Raw), false)).unwrap();
    assert_eq!(disk.size(), 1 << 20);
    disk.write_at(4096, &[1; 4096]).unwrap();
    disk.write_zeroes(65536, 65536, true).unwrap();
    disk.write_zeroes(8192, 512, false).unwrap();
    disk.discard(1 << 19, 4096).unwrap();
    disk.flush().unwrap();
    let mut buf = vec![0u8; 4096];
    disk.read_at(4096, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 1));
    let file = std::fs::read(&path).unwrap();
    assert!(file[65536..131072].iter().all(|&b| b == 0));
    assert!(file[8192..8704].iter().all(|&b| b == 0));
    assert_eq!(file[8704], 7);
    assert_eq!(file.len(), 1 << 20);
    assert!(
        disk.read_at((1 << 20) - 100, &mut buf).is_err(),
        "past the end"
    );
}

#[test]
fn a_guessed_raw_format_cannot_become_qcow2() {
    let dir = temp_dir("guess");
    let path = dir.file("g.img", &vec![0u8; 65536]);
    let mut header = QCOW2_MAGIC.to_vec();
    header.resize(512, 0);
    let mut guessed = open(&options(&path, None, false)).unwrap();
    assert!(guessed.write_at(0, &header).is_err());
    assert!(
        guessed.write_at(512, &header).is_ok(),
        "only sector 0 is guarded"
    );
    drop(guessed);
    let mut told = open(&options(&path, Some(Format::Raw), false)).unwrap();
    assert!(
        told.write_at(0, &header).is_ok(),
        "format=raw lifts the guard"
    );
}

#[test]
fn locks_keep_two_writers_apart() {
    let dir = temp_dir("lock");
    let path = dir.file("l.raw", &vec![0u8; 4096]);
    let raw = Some(Format::Raw);
    let writer = open(&options(&path, raw, false)).unwrap();
    let second = open(&options(&path, raw, false)).err().unwrap();
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    let reader = open(&options(&path, raw, true)).err().unwrap();
    assert!(
        reader.to_string().contains("locked by a writer"),
        "{reader}"
    );
    drop(writer);
    let r1 = open(&options(&path, raw, true)).unwrap();
    let _r2 = open(&options(&path, raw, true)).expect("readers share");
    assert!(
        open(&options(&path, raw, false)).is_err(),
        "no writer while read"
    );
    drop(r1);
}

/// Runs a qemu-utils command; its stderr when it fails.
fn qemu_error(command: &mut Command) -> Option<String> {
    let out = command
        .output()
        .expect("qemu-utils must be installed: run scripts/setup");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `qemu-img convert`: a QEMU reader that lets nobody write meanwhile.
fn qemu_reader(path: &Path, dir: &TempDir) -> Option<String> {
    let copy = dir.path().join("copy.raw");
    qemu_error(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(path)
            .arg(copy),
    )
}

/// `qemu-io` reading one sector: a QEMU writer.
fn qemu_writer(path: &Path) -> Option<String> {
    qemu_error(
        Command::new("qemu-io")
            .args(["-f", "raw", "-c", "read 0 512"])
            .arg(path),
    )
}

#[test]
fn saffron_and_qemu_keep_each_other_out() {
    let dir = temp_dir("qemu-lock");
    let path = dir.file("q.raw", &vec![0u8; 4096]);
    let raw = Some(Format::Raw);
    // saffron writes: neither a QEMU reader nor a QEMU writer gets in.
    let writer = open(&options(&path, raw, false)).unwrap();
    let read = qemu_reader(&path, &dir).expect("a QEMU reader opened a written image");
    assert!(read.contains("lock"), "{read}");
    let write = qemu_writer(&path).expect("a QEMU writer opened a written image");
    assert!(write.contains("lock"), "{write}");
    drop(writer);
    // saffron reads: QEMU readers are welcome, writers are not. (Another
    // test's thread that forks for a command holds the dropped writer's
    // lock until its child execs: retry for a moment.)
    let reader = (0..100)
        .find_map(|_| {
            let opened = open(&options(&path, raw, true)).ok();
            if opened.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened
        })
        .expect("the image opens for reading once the writer is gone");
    assert_eq!(qemu_reader(&path, &dir), None);
    assert!(
        qemu_writer(&path).is_some(),
        "a QEMU writer beside a reader"
    );
    drop(reader);
    // QEMU writes (qemu-io holds the image open while it sleeps).
    let mut qemu = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "sleep 20000"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io (package qemu-utils) must be installed: run scripts/setup");
    // Opening before it holds its locks would keep it out instead: wait.
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let held = format!(":{inode} 100 101");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("OFDLCK") && l.ends_with(&held))
    {
        assert!(qemu.try_wait().unwrap().is_none(), "qemu-io exited");
        assert!(std::time::Instant::now() < deadline, "qemu-io took no lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refused = open(&options(&path, raw, true)).err();
    let second = open(&options(&path, raw, false)).err();
    qemu.kill().unwrap();
    qemu.wait().unwrap();
    let refused = refused.expect("saffron read an image qemu-io was writing");
    assert!(refused.to_string().contains("in use"), "{refused}");
    assert!(
        second.is_some(),
        "saffron wrote an image qemu-io was writing"
    );
}

#[test]
fn missing_and_odd_paths() {
    let dir = temp_dir("missing");
    let error = open(&options(&dir.path().join("nope"), None, false))
        .err()
        .unwrap();
    assert!(error.to_string().contains("No such file"), "{error}");
    let error = open(&options(dir.path(), None, true)).err().unwrap();
    assert!(error.to_string().contains("not a regular file"), "{error}");
    // A FIFO is refused without blocking in open().
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let error = open(&options(&fifo, None, false)).err().unwrap();
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn qcow2_overlay_reads_its_base_and_never_writes_it() {
    let dir = temp_dir("qcow2");
    let base = dir.path().join("base.raw");
    let overlay = dir.path().join("overlay.qcow2");
    let content: Vec<u8> = (0..4u32 << 20).map(|i| (i / 4096) as u8).collect();
    std::fs::write(&base, &content).unwrap();
    overlay_on("base.raw", "raw", &overlay);
    let mut disk = open(&options(&overlay, None, false)).unwrap();
    assert_eq!(disk.size(), 4 << 20);
    let mut buf = vec![0u8; 8192];
    disk.read_at(8192, &mut buf).unwrap();
    assert_eq!(&buf[..], &content[8192..16384]);
    disk.write_at(8192, &[0xee; 4096]).unwrap();
    disk.write_zeroes(65536, 65536, true).unwrap();
    disk.flush().unwrap();
    // The base is locked shared while the overlay is open.
    assert!(open(&options(&base, Some(Format::Raw), false)).is_err());
    assert!(open(&options(&base, Some(Format::Raw), true)).is_ok());
    drop(disk);
    assert_eq!(
        std::fs::read(&base).unwrap(),
        content,
        "the base is never written"
    );
    // qemu-img sees what the guest wrote.
    let out = dir.path().join("out.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        overlay.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let flat = std::fs::read(&out).unwrap();
    assert!(flat[8192..12288].iter().all(|&b| b == 0xee));
    assert_eq!(&flat[12288..16384], &content[12288..16384]);
    assert!(flat[65536..131072].iter().all(|&b| b == 0));
    assert_eq!(&flat[131072..], &content[131072..]);
    qemu_img(&["check", "-q", overlay.to_str().unwrap()]);
}

#[test]
fn damaged_qcow2_images_are_refused() {
    let dir = temp_dir("damaged");
    let good = dir.path().join("good.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", good.to_str().unwrap(), "16M"]);
    let bytes = std::fs::read(&good).unwrap();
    assert!(open(&options(&good, None, false)).is_ok());
    for cut in [0usize, 50, 104, 512, 4096, 65536, 65536 + 4096] {
        if cut >= bytes.len() {
            continue;
        }
        let path = dir.file(&format!("cut{cut}.qcow2"), &bytes[..cut]);
        let result = open(&options(&path, Some(Format::Qcow2), false));
        let error = result
            .err()
            .unwrap_or_else(|| panic!("a qcow2 cut at {cut} was opened"));
        assert!(
            error.to_string().contains(path.to_str().unwrap()),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..cut], "not modified");
    }
    // A cluster size out of range, an L1 table past the end.
    for (at, value) in [(20usize, 40u32), (36, 0x0fff_ffff)] {
        let mut broken = bytes.clone();
        broken[at..at + 4].copy_from_slice(&value.to_be_bytes());
        let path = dir.file(&format!("field{at}.qcow2"), &broken);
        assert!(
            open(&options(&path, Some(Format::Qcow2), false)).is_err(),
            "field {at}"
        );
    }
}

#[test]
fn backing_chains_are_bounded() {
    let dir = temp_dir("chain");
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", a.to_str().unwrap(), "1M"]);
    overlay_on("a.qcow2", "qcow2", &b);
    assert!(open(&options(&b, None, false)).is_ok());
    // a now names b as its backing file: a loop.
    qemu_img(&[
        "rebase",
        "-u",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        a.to_str().unwrap(),
    ]);
    let error = open(&options(&b, None, true)).err().unwrap();
    assert!(error.to_string().contains("chain"), "{error}");
}

#[test]
fn disk_option_syntax() {
    let o = DiskOptions::parse("path=/x.img,format=qcow2,readonly=on,serial=AB-1,cache=unsafe")
        .unwrap();
    assert_eq!(o.path, PathBuf::from("/x.img"));
    assert_eq!(
        (o.format, o.read_only, o.cache),
        (Some(Format::Qcow2), true, CacheMode::Unsafe)
    );
    assert_eq!(o.serial.as_deref(), Some("AB-1"));
    assert_eq!(
        DiskOptions::parse("/y.raw").unwrap().path,
        PathBuf::from("/y.raw")
    );
    assert_eq!(
        DiskOptions::parse("file=/z").unwrap().path,
        PathBuf::from("/z")
    );
    for bad in [
        "",
        "format=raw",
        "path=",
        "path=/a,format=vmdk",
        "path=/a,readonly=maybe",
        "path=/a,serial=has space",
        "path=/a,serial=123456789012345678901",
        "path=/a,cache=none",
        "path=/a,bogus=1",
        "path=/a,extra",
    ] {
        let error = DiskOptions::parse(bad).err();
        assert!(error.is_some_and(|e| !e.contains('\n')), "{bad:?} accepted");
    }
}
