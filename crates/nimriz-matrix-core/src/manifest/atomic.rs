//! Replace a file so that readers (and a crash) only ever see the old or the new content.
//!
//! Temp file in the same folder (rename is only atomic within one file system), write,
//! fsync the file, rename over the target, fsync the folder (so the rename itself survives
//! a power loss). A crash leaves at most a stray `.NAME.tmp-*` file beside the target.

use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix of temp files for `target`: `.{file name}.tmp-`.
pub(crate) fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Atomically replace `target` with what `write` produces. On any error the target is
/// untouched and the temp file is removed. A [stream] target is written into
/// directly instead (it cannot be replaced, and has no old content to keep).
///
/// [stream]: crate::guard::is_stream
pub fn write_atomic(
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    if crate::guard::is_stream(target) {
        let file = OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(|e| Error::io("open", target, e))?;
        let mut out = BufWriter::new(file);
        return write(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("write", target, e));
    }
    // Replace what a symlink points at, not the link itself.
    let resolved;
    let target = match fs::symlink_metadata(target) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved =
                fs::canonicalize(target).map_err(|e| Error::io("follow the link", target, e))?;
            resolved.as_path()
        }
        _ => target,
    };
    let dir = parent_dir(target);
    let tmp = dir.join(format!(
        "{}{}-{}",
        temp_prefix(target),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    let result = fill_and_sync(file, target, write)
        .and_then(|()| fs::rename(&tmp, target))
        .map_err(|e| Error::io("write", target, e));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&dir).map_err(|e| Error::io("sync the folder", &dir, e))
}

fn fill_and_sync(
    file: File,
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    // Keep the permissions a user may have set on the file we replace.
    if let Ok(meta) = fs::metadata(target) {
        file.set_permissions(meta.permissions())?;
    }
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// `len` bytes of `file` from offset `at` (positioned read: no shared cursor is moved).
pub(crate) fn read_at(file: &File, at: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, at)?;
    #[cfg(windows)]
    {
        let mut done = 0usize;
        while done < buf.len() {
            let n =
                std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at + done as u64)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            done += n;
        }
    }
    Ok(buf)
}

/// The folder holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Make a rename/create/remove in `dir` durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a folder as a file; NTFS journals the rename itself.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Remove temp files a crashed writer left beside `target`. Only call while holding the
/// manifest lock, so no live writer's temp file is removed.
pub(crate) fn remove_stale_temps(target: &Path) {
    let prefix = temp_prefix(target);
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.json");
        fs::write(&target, "old").unwrap();
        write_atomic(&target, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_old_content_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.json");
        fs::write(&target, "old").unwrap();
        let err = write_atomic(&target, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::LOCAL);
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A named pipe is written into, and is still a pipe afterwards (the rename of a temp
    /// file over it would have left a plain file, and the reader waiting forever).
    #[cfg(unix)]
    #[test]
    fn a_fifo_target_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let got = fs::read(&fifo).unwrap();
                tx.send(got).unwrap();
            })
        };
        let wrote = write_atomic(&fifo, |w| w.write_all(b"through the pipe"));
        // Bounded: if the pipe was replaced, the reader never returns (it is left behind).
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        wrote.unwrap();
        assert_eq!(got.expect("the reader got the bytes"), b"through the pipe");
        reader.join().unwrap();
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_target_keeps_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, |w| w.write_all(b"new")).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn stale_temps_are_removed_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.json");
        fs::write(dir.path().join(".m.json.tmp-1-abc"), "x").unwrap();
        fs::write(dir.path().join("other.json"), "x").unwrap();
        remove_stale_temps(&target);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["other.json".to_string()]);
    }
}
