//! Small helpers shared by every stage: atomic file writes, terminal detection and finding
//! programs on `PATH`.

pub mod atomic;
pub mod cancel;
pub mod failpoint;
pub mod gpg;
pub mod prometheus;
#[cfg(test)]
pub mod testdata;
pub mod time;

use std::io::IsTerminal;
use std::path::PathBuf;

/// Whether progress bars make sense: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Human-readable byte count (`12.3 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Why a file system call failed, in words and without the `(os error N)` tail.
pub fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "it does not exist".to_string(),
        ErrorKind::NotADirectory => "a parent is not a directory".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::ReadOnlyFilesystem => "read-only file system".to_string(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error ") {
                Some(at) => text[..at].to_string(),
                None => text,
            }
        }
    }
}

/// The first executable file called `program` in a directory of `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Opens (creating it) a file to flock: never truncated, so a holder's pid written in it stays.
pub fn open_lock_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_reasons_are_words() {
        let reason = |code| super::io_reason(&std::io::Error::from_raw_os_error(code));
        assert_eq!(reason(30), "read-only file system");
        assert_eq!(reason(13), "permission denied");
        assert_eq!(reason(20), "a parent is not a directory");
        assert_eq!(reason(28), "No space left on device");
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(super::find_program("sh").is_some_and(|p| p.is_absolute() || p.exists()));
        assert_eq!(super::find_program("no-such-program-bakery"), None);
    }

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
