//! Publish: moves a finished image into the output directory and merges its line into
//! `SHA256SUMS`, both by rename. A failure leaves no image, no temporary file and the old
//! `SHA256SUMS`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

use crate::error::bad_input;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::model::sums::Sha256Sums;
use crate::util::atomic;

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

/// Publishes the image in `tmp` (a temporary file in `dir`) as `dir/name`.
pub fn publish(dir: &Path, name: &str, tmp: NamedTempFile) -> Result<Published> {
    let (sha256, size) = hash_file(tmp.path())?;
    let mut sums = read_sums(dir)?;
    sums.insert(name, sha256).map_err(|e| bad_input(format!("image name {e}")))?;
    let sums_path = dir.join(SUMS_FILE);
    let mut sums_tmp = atomic::temp_beside(&sums_path)?;
    std::io::Write::write_all(&mut sums_tmp, sums.render().as_bytes()).context("writing SHA256SUMS")?;
    sums_tmp.as_file().sync_all().context("syncing SHA256SUMS")?;

    let image = dir.join(name);
    atomic::persist(tmp, &image)?;
    if let Err(e) = atomic::persist(sums_tmp, &sums_path) {
        let _ = std::fs::remove_file(&image);
        return Err(e);
    }
    Ok(Published { image, sha256, size, sums: sums_path })
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
        let published = publish(dir.path(), "a.raw", tmp).unwrap();
        assert_eq!(published.sha256, Sha256::of(b"image"));
        let sums = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        assert_eq!(sums, format!("{}  a.raw\n{other}  zzz.raw\n", Sha256::of(b"image")));
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["SHA256SUMS", "a.raw"]);
    }

    #[test]
    fn a_malformed_sums_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUMS_FILE), "garbage\n").unwrap();
        let tmp = atomic::temp_beside(&dir.path().join("a.raw")).unwrap();
        let err = publish(dir.path(), "a.raw", tmp).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("SHA256SUMS: line 1"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap(), "garbage\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
