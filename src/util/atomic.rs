//! Atomic publication of files: write a temporary file in the target directory, fsync it,
//! rename it over the target, fsync the directory. Readers see the old file or the new one,
//! never a partial one, and a crash leaves at most a stray temporary file.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// A temporary file next to `dest`, removed on drop unless [`persist`]ed.
pub fn temp_beside(dest: &Path) -> Result<NamedTempFile> {
    let dir = parent_dir(dest);
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// fsyncs `tmp` and renames it to `dest`, then fsyncs the directory.
pub fn persist(tmp: NamedTempFile, dest: &Path) -> Result<()> {
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(dest).map_err(|e| e.error).with_context(|| format!("renaming into {}", dest.display()))?;
    sync_dir(parent_dir(dest))
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_beside(dest)?;
    tmp.write_all(bytes).with_context(|| format!("writing {}", tmp.path().display()))?;
    persist(tmp, dest)
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("SHA256SUMS");
        write_atomic(&dest, b"one\n").unwrap();
        write_atomic(&dest, b"two\n").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("SHA256SUMS")]);
    }
}
