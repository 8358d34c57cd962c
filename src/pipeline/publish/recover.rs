//! What a killed run leaves in an output directory, and how the next run puts it right.
//!
//! Publishing keeps one rule at every instant: each line of `SHA256SUMS` names a present image
//! with that digest (a node that reads the file then fetches the image finds what it was
//! promised). An image may be present but not listed yet; to find those without hashing every
//! image, a run writes `DIR/.bakery-journal` (the names it is about to rename) before renaming
//! and removes it when `SHA256SUMS` lists them. The next run that holds the lock and finds a
//! journal hashes just those files, lists them (or drops the line of one that is gone) and
//! removes the journal; it also removes the temporary files no live run holds.

use std::path::Path;

use anyhow::{Context, Result};

use super::lock::DirLock;
use super::{SUMS_FILE, hash_file, read_sums};
use crate::error::bad_input;
use crate::model::sums::check_name;
use crate::util::{atomic, human_bytes};

pub const JOURNAL_FILE: &str = ".bakery-journal";

/// Records, durably, that `names` are about to be renamed into the locked directory.
pub fn begin(lock: &DirLock, names: &[&str]) -> Result<()> {
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    atomic::write_atomic(&lock.dir().join(JOURNAL_FILE), text.as_bytes())
}

/// Removes the journal once `SHA256SUMS` lists what it names.
pub fn end(lock: &DirLock) -> Result<()> {
    let path = lock.dir().join(JOURNAL_FILE);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    atomic::sync_dir(lock.dir())
}

/// Whether `dir` may hold something to recover: a journal or a temporary file (cheap, unlocked).
pub fn pending(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries
        .flatten()
        .any(|e| e.file_name().to_str().is_some_and(|n| n == JOURNAL_FILE || n.starts_with(atomic::TEMP_PREFIX)))
}

/// Repairs the locked directory after a killed run: removes stale temporary files (never
/// `keep`, this run's own) and settles the journal's files in `SHA256SUMS`.
pub fn recover(lock: &DirLock, keep: Option<&Path>) -> Result<()> {
    let dir = lock.dir();
    for (path, size) in atomic::remove_stale_temps(dir, keep)? {
        tracing::info!("removed {} ({}), left by an interrupted run", path.display(), human_bytes(size));
    }
    let journal = dir.join(JOURNAL_FILE);
    let text = match std::fs::read_to_string(&journal) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
    };
    let mut sums = read_sums(dir)?;
    let before = sums.clone();
    for (index, name) in text.lines().enumerate() {
        check_name(name).map_err(|e| bad_input(format!("{}: line {}: {e}", journal.display(), index + 1)))?;
        let path = dir.join(name);
        if path.is_file() {
            let (digest, _) = hash_file(&path)?;
            sums.insert(name, digest).map_err(bad_input)?;
        } else {
            sums.remove(name);
        }
    }
    if sums != before {
        atomic::write_atomic(&dir.join(SUMS_FILE), sums.render().as_bytes())?;
        tracing::info!("repaired {} after an interrupted run: {}", dir.join(SUMS_FILE).display(), text.trim());
    }
    end(lock)
}

#[cfg(test)]
mod tests {
    use super::super::lock::lock;
    use super::*;
    use crate::model::Sha256;

    #[test]
    fn the_journal_lists_a_renamed_image_and_drops_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let stale = format!(
            "{}  gone.raw\n{}  new.raw\n{}  old.raw\n",
            Sha256::of(b"gone"),
            Sha256::of(b"x"),
            Sha256::of(b"old")
        );
        std::fs::write(dir.path().join(SUMS_FILE), stale).unwrap();
        std::fs::write(dir.path().join("new.raw"), b"new").unwrap();
        std::fs::write(dir.path().join("old.raw"), b"old").unwrap();
        let lock = lock(dir.path()).unwrap();
        begin(&lock, &["new.raw", "gone.raw"]).unwrap();
        assert!(pending(dir.path()));
        recover(&lock, None).unwrap();
        let sums = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        assert_eq!(sums, format!("{}  new.raw\n{}  old.raw\n", Sha256::of(b"new"), Sha256::of(b"old")));
        assert!(!pending(dir.path()));
    }

    #[test]
    fn a_journal_naming_a_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "ok.raw\n../x.raw\n").unwrap();
        let err = recover(&lock(dir.path()).unwrap(), None).unwrap_err();
        assert!(err.to_string().ends_with(".bakery-journal: line 2: \"../x.raw\" is not a plain file name"), "{err}");
    }
}
