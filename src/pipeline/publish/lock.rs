//! The output directory's lock, `DIR/.bakery-lock`: every run that changes `SHA256SUMS` (or
//! the images it lists) holds it from reading to renaming, so two writers take turns instead of
//! losing each other's lines. It is an flock on a file of its own rather than on the directory:
//! the kernel drops it with a killed process as well, and unlike a directory (which can only be
//! opened read-only) a file also locks on NFS, where flock is emulated by write locks. The file
//! stays, empty: removing a lock file lets a waiter lock an unlinked inode while a newcomer
//! locks a new one. Release tooling skips dot files, and so does systemd-sysupdate (it reads
//! only what `SHA256SUMS` lists).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const LOCK_FILE: &str = ".bakery-lock";

/// Held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Locks `dir`, waiting (and saying so) while another run holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = crate::util::open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!("waiting for another bakery run to finish with {}", dir.display());
            file.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    Ok(DirLock { _file: file, dir: dir.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || lock(&path).map(|_| ()));
        drop(first);
        waiter.join().unwrap().unwrap();
        other.try_lock().unwrap();
    }
}
