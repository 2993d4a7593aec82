//! Screendumps: a display head's BGRX pixels written as an RGB PNG file.
//! The file appears complete or not at all (written beside, then renamed);
//! the file beside is created new (`O_EXCL`, so never through a link that
//! someone else put there) and private until it is renamed.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ScreendumpError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the PNG: {0}")]
    Encode(#[from] png::EncodingError),
    #[error("the picture is {width}x{height} but has {len} bytes of pixels")]
    BadPicture { width: u32, height: u32, len: usize },
}

/// Writes `width`×`height` BGRX pixels (rows `width * 4` bytes apart) to `path` as PNG.
pub fn write_png(path: &Path, width: u32, height: u32, bgrx: &[u8]) -> Result<(), ScreendumpError> {
    let row = width as usize * 4;
    if width == 0 || height == 0 || bgrx.len() != row * height as usize {
        return Err(ScreendumpError::BadPicture {
            width,
            height,
            len: bgrx.len(),
        });
    }
    let io = |source| ScreendumpError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    // From here on the file beside is ours: removed if anything fails.
    let result = (|| {
        let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Fastest: every row filtered "Up", quick to write and to read back.
        encoder.set_compression(png::Compression::Fastest);
        let mut writer = encoder.write_header()?;
        let mut rgb = Vec::with_capacity(width as usize * 3 * height as usize);
        for px in bgrx.chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        writer.write_image_data(&rgb)?;
        writer.finish()?;
        std::fs::rename(&temporary, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn never_writes_through_a_file_placed_beside() {
        let dir = std::env::temp_dir().join(format!("saffron-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shot.png");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let beside = dir.join(format!("shot.png.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &beside).unwrap();
        assert!(write_png(&path, 1, 1, &[0, 0, 0, 0]).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            std::fs::symlink_metadata(&beside).is_ok(),
            "not ours to remove"
        );
        std::fs::remove_file(&beside).unwrap();
        write_png(&path, 1, 1, &[0, 0, 0, 0]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_inconsistent_pictures() {
        let path = std::env::temp_dir().join("saffron-never-written.png");
        assert!(matches!(
            write_png(&path, 2, 2, &[0; 12]),
            Err(ScreendumpError::BadPicture { .. })
        ));
        assert!(!path.exists());
    }
}
