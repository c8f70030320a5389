//! `M.lock`: one build per manifest at a time.
//!
//! The lock is an OS advisory lock (fs4 `try_lock`, i.e. `flock` on Unix) on the lock file,
//! not the file's existence: the OS drops it when the holder exits, even by `kill -9`, so a
//! lock file left behind never blocks anyone. The file is never deleted (deleting lock files
//! races with a third process opening the old one); its text only says who holds it now.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
}

impl Lock {
    /// Take the lock now or fail with `Error::Lock` naming the holder.
    pub fn acquire(path: &Path, manifest: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open the lock file", path, e))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Lock(held_message(manifest, path, holder.trim())));
            }
            Err(fs4::TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        let holder = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            hostname(),
            super::model::now_rfc3339()
        );
        // Holder info is for messages only; failing to write it must not fail the build.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()));
        Ok(Lock { file })
    }

    /// Clear the holder text and release the lock.
    pub fn release(self) {
        let _ = self.file.set_len(0);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

fn held_message(manifest: &Path, lock: &Path, holder: &str) -> String {
    let who = if holder.is_empty() {
        "another process (it has not written its details yet)".to_string()
    } else {
        holder.to_string()
    };
    format!(
        "the manifest {} is in use by another build: {} is locked by {who}. \
         Wait for that build to finish or stop it; the lock is released automatically \
         when that process exits, so there is no need to delete the lock file",
        manifest.display(),
        lock.display()
    )
}

/// This machine's name, for lock messages. No extra crate: Linux exposes it in /proc.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "an unknown host".to_string())
}
