//! `/run/bakery/lock`: one node run at a time. The lock is an flock, so a killed run releases
//! it with its process; the file holds the holder's pid for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow};

pub const FILE: &str = "run/bakery/lock";

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock under `root`, failing at once (naming the holder) when another run has it.
pub fn acquire(root: &Path) -> Result<Lock> {
    acquire_file(root, FILE)
}

/// Takes the lock `file` (relative to `root`), like [`acquire`].
pub fn acquire_file(root: &Path, file: &str) -> Result<Lock> {
    let path = super::root::resolve_in_new_dir(root, file)?;
    let mut file = crate::util::open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            return Err(anyhow!("another bakery node run{who} holds {}; try again when it is done", path.display()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(Lock { _file: file })
}

/// Takes the lock `file` (relative to `root`), waiting while another process holds it: for the
/// short load-change-save of a file.
pub fn wait_file(root: &Path, file: &str) -> Result<Lock> {
    let path = super::root::resolve_in_new_dir(root, file)?;
    let file = crate::util::open_lock_file(&path)?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let root = tempfile::tempdir().unwrap();
        let first = acquire(root.path()).unwrap();
        let err = acquire(root.path()).unwrap_err().to_string();
        assert!(err.contains("another bakery node run") && err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        acquire(root.path()).unwrap();
    }
}
