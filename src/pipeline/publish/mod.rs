//! Publish: moves a finished image into the output directory and merges its line into
//! `SHA256SUMS`, both by rename, under the directory's lock (`lock`). Every line is true at
//! every instant: a replaced image's old line goes first, the image is renamed, then its new
//! line is added; a journal names the image meanwhile, so the next run lists an image a killed
//! run renamed but did not list (`recover`).

pub mod lock;
pub mod recover;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

use crate::error::bad_input;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::model::sums::{Sha256Sums, check_name};
use crate::util::{atomic, failpoint};
pub use lock::{DirLock, lock};

pub const SUMS_FILE: &str = "SHA256SUMS";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub image: PathBuf,
    pub sha256: Sha256,
    pub size: u64,
    pub sums: PathBuf,
}

/// The digest of a file, read in large chunks.
pub fn hash_file(path: &Path) -> Result<(Sha256, u64)> {
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0;
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((hasher.finish(), size));
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
}

/// Reads `dir/SHA256SUMS` (empty when absent).
pub fn read_sums(dir: &Path) -> Result<Sha256Sums> {
    let path = dir.join(SUMS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Sha256Sums::parse(&text).map_err(|e| bad_input(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sha256Sums::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Before any download for a build into `dir`: refuses a path that is not a directory, or that
/// bakery cannot write into (or, when it is missing, create: it is created only once the image
/// is built, so a failed build leaves nothing), then [`prepare`]s an existing one.
pub fn prepare_output(dir: &Path) -> Result<()> {
    let reason = crate::util::io_reason;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            probe_write(dir)
                .map_err(|e| bad_input(format!("output {}: cannot write into it: {}", dir.display(), reason(&e))))?;
            prepare(dir)
        }
        Ok(_) => Err(bad_input(format!("output {}: not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let existing = dir
                .ancestors()
                .skip(1)
                .map(|a| if a.as_os_str().is_empty() { Path::new(".") } else { a })
                .find(|a| a.exists())
                .unwrap_or(Path::new("/"));
            probe_write(existing).map_err(|e| {
                bad_input(format!(
                    "output {}: cannot create it in {}: {}",
                    dir.display(),
                    existing.display(),
                    reason(&e)
                ))
            })
        }
        Err(e) => Err(bad_input(format!("output {}: {}", dir.display(), reason(&e)))),
    }
}

/// Whether a file can be made in `dir`: a probe file, not the mode bits, since root writes
/// through modes but not into a read-only mount.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    tempfile::Builder::new().prefix(".bakery-write-test").tempfile_in(dir).map(drop)
}

/// Before a build into `dir`: refuses a `SHA256SUMS` that would be refused after the build,
/// and repairs what a killed run left (taking the lock only when something may be left).
pub fn prepare(dir: &Path) -> Result<()> {
    read_sums(dir)?;
    if recover::pending(dir) {
        recover::recover(&lock(dir)?, None)?;
    }
    Ok(())
}

/// Publishes the image in `tmp` (a temporary file in `dir`) as `dir/name`; an existing image
/// is replaced only when `force`.
pub fn publish(dir: &Path, name: &str, tmp: NamedTempFile, force: bool) -> Result<Published> {
    let (sha256, size) = hash_file(tmp.path())?;
    let lock = lock(dir)?;
    failpoint::pause("publish:locked");
    recover::recover(&lock, Some(tmp.path()))?;
    let image = dir.join(name);
    if image.exists() && !force {
        return Err(bad_input(format!("{} already exists (use --force to replace it)", image.display())));
    }
    let mut sums = read_sums(dir)?;
    check_name(name).map_err(|e| bad_input(format!("image name {e}")))?;
    let replaced = sums.remove(name).is_some_and(|old| old != sha256);
    recover::begin(&lock, &[name])?;
    failpoint::pause("publish:journal-written");
    let renamed = rename_and_list(dir, name, tmp, sha256, sums, replaced);
    if let Err(error) = renamed {
        // SHA256SUMS stays true; the journal is settled now or by the next run
        if let Err(e) = recover::recover(&lock, None) {
            tracing::warn!("could not repair {}: {}", dir.display(), crate::error::describe(&e));
        }
        return Err(error);
    }
    recover::end(&lock)?;
    Ok(Published { image, sha256, size, sums: dir.join(SUMS_FILE) })
}

/// The journaled steps: drop a replaced image's line (`sums` is without it), rename, list the
/// image.
fn rename_and_list(
    dir: &Path,
    name: &str,
    tmp: NamedTempFile,
    sha256: Sha256,
    mut sums: Sha256Sums,
    replaced: bool,
) -> Result<()> {
    let sums_path = dir.join(SUMS_FILE);
    if replaced {
        atomic::write_atomic(&sums_path, sums.render().as_bytes())?;
        failpoint::pause("publish:old-line-removed");
    }
    atomic::persist(tmp, &dir.join(name))?;
    failpoint::pause("publish:image-renamed");
    sums.insert(name, sha256).map_err(|e| bad_input(format!("image name {e}")))?;
    atomic::write_atomic(&sums_path, sums.render().as_bytes())?;
    failpoint::pause("publish:sums-written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn publishes_image_and_merges_sums() {
        let dir = tempfile::tempdir().unwrap();
        let other = "0000000000000000000000000000000000000000000000000000000000000001";
        std::fs::write(dir.path().join(SUMS_FILE), format!("{other}  zzz.raw\n")).unwrap();
        let mut tmp = atomic::temp_beside(&dir.path().join("a.raw")).unwrap();
        tmp.write_all(b"image").unwrap();
        let published = publish(dir.path(), "a.raw", tmp, false).unwrap();
        assert_eq!(published.sha256, Sha256::of(b"image"));
        let sums = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        assert_eq!(sums, format!("{}  a.raw\n{other}  zzz.raw\n", Sha256::of(b"image")));
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [".bakery-lock", "SHA256SUMS", "a.raw"]);
    }

    #[test]
    fn a_malformed_sums_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUMS_FILE), "garbage\n").unwrap();
        let tmp = atomic::temp_beside(&dir.path().join("a.raw")).unwrap();
        let err = publish(dir.path(), "a.raw", tmp, false).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("SHA256SUMS: line 1"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap(), "garbage\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| n == "SHA256SUMS" || n == ".bakery-lock"), "{names:?}");
    }
}
