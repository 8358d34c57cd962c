//! Atomic publication of files: write a temporary file in the target directory, fsync it,
//! rename it over the target, fsync the directory. Readers see the old file or the new one,
//! never a partial one, and a crash leaves at most a stray temporary file. Files get their mode
//! from the umask like any Unix tool's (0644 under 022), not tempfile's private 0600, so a web
//! server running as its own user can serve what bakery publishes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// A temporary file next to `dest`, removed on drop unless [`persist`]ed: mode 0666 less the
/// umask.
pub fn temp_beside(dest: &Path) -> Result<NamedTempFile> {
    temp_beside_mode(dest, 0o666)
}

/// [`temp_beside`] created with `mode` less the umask: a private file (records, secrets) is never
/// readable by others, not even while it is written.
pub fn temp_beside_mode(dest: &Path, mode: u32) -> Result<NamedTempFile> {
    let dir = parent_dir(dest);
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// fsyncs `tmp` and renames it to `dest`, then fsyncs the directory.
pub fn persist(tmp: NamedTempFile, dest: &Path) -> Result<()> {
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(dest).map_err(|e| e.error).with_context(|| format!("renaming into {}", dest.display()))?;
    sync_dir(parent_dir(dest))
}

/// Writes `bytes` to `dest` atomically, mode 0666 less the umask.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(dest, bytes, 0o666)
}

/// Writes `bytes` to `dest` atomically, created with `mode` less the umask.
pub fn write_atomic_mode(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp = temp_beside_mode(dest, mode)?;
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

    #[test]
    fn files_get_their_mode_from_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let umask = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Umask:").map(|u| u32::from_str_radix(u.trim(), 8).unwrap()))
            .unwrap();
        write_atomic(&dir.path().join("public"), b"x").unwrap();
        write_atomic_mode(&dir.path().join("private"), b"x", 0o600).unwrap();
        let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("public"), 0o666 & !umask, "umask {umask:o}");
        assert_eq!(mode("private"), 0o600 & !umask);
    }
}
