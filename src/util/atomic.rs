//! Atomic publication of files: write a temporary file in the target directory, fsync it,
//! rename it over the target, fsync the directory. Readers see the old file or the new one,
//! never a partial one, and a crash leaves at most a stray temporary file. Files get their mode
//! from the umask like any Unix tool's (0644 under 022), not tempfile's private 0600, so a web
//! server running as its own user can serve what bakery publishes.
//!
//! Temporary files are named `.bakery-tmp-<name>.XXXXXX`, and their writer holds an flock on
//! each for as long as it has it open. The kernel drops that lock when the writer dies, however
//! it dies, so [`remove_stale_temps`] can tell a killed run's leftovers (unlocked) from a
//! concurrent run's live file (locked), across processes, pid namespaces and NFS clients alike.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    let name: String = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file").chars().take(128).collect();
    for _ in 0..8 {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{name}."))
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.as_file().lock().with_context(|| format!("locking {}", tmp.path().display()))?;
        // A cleaner may have taken it for stale between its creation and the lock.
        if same_file(tmp.path(), tmp.as_file()) {
            return Ok(tmp);
        }
    }
    Err(anyhow::anyhow!("creating a temporary file in {}: each one vanished before it was locked", dir.display()))
}

/// How every temporary file bakery writes is named.
pub const TEMP_PREFIX: &str = ".bakery-tmp-";

/// Removes the temporary files in `dir` that no live process holds (a killed run's), except
/// `keep`; returns the paths removed and their sizes. A file is removed only while this
/// process holds its lock, so a writer, which locks its file before using it and then checks
/// that the name is still its file, can never lose it.
pub fn remove_stale_temps(dir: &Path, keep: Option<&Path>) -> Result<Vec<(PathBuf, u64)>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let is_temp = entry.file_name().to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if !is_temp || keep == Some(path.as_path()) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // (a name swapped for a symlink after the check above fails `same_file` below)
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else { continue };
        if file.try_lock().is_err() || !same_file(&path, &file) {
            continue;
        }
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push((path, size)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing the stale {}", path.display())),
        }
    }
    Ok(removed)
}

/// Whether `path` names the open `file`.
fn same_file(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
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
    fn stale_temporary_files_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let live = temp_beside(&dir.path().join("a.raw")).unwrap();
        let kept = temp_beside(&dir.path().join("b.raw")).unwrap();
        let stale = dir.path().join(".bakery-tmp-c.raw.abcdef");
        std::fs::write(&stale, b"left by a killed run").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(".bakery-tmp-link")).unwrap();
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        let removed = remove_stale_temps(dir.path(), Some(kept.path())).unwrap();
        assert_eq!(removed, vec![(stale.clone(), 20)]);
        assert!(live.path().exists() && kept.path().exists() && dir.path().join("other").exists());
        assert!(std::fs::symlink_metadata(dir.path().join(".bakery-tmp-link")).is_ok());
        let name = live.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(".bakery-tmp-a.raw."), "{name}");
        // once its writer is gone, the file is stale
        let path = live.path().to_path_buf();
        let (file, temp_path) = live.into_parts();
        drop(file);
        temp_path.keep().unwrap();
        assert_eq!(remove_stale_temps(dir.path(), Some(kept.path())).unwrap(), vec![(path, 0)]);
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
