//! The download cache: content-addressed blobs (`blobs/sha256/ab/abcd…`), the checksum files
//! they were verified against, the index of each unpacked archive, and the inputs of each image
//! built (keyed by the image's sha256, so `create` knows an existing image is up to date). A blob enters the cache
//! only after its digest was checked, by rename, so the cache never holds partial files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

use crate::model::Sha256;
use crate::model::archive::ArchiveIndex;

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["blobs/sha256", "checksums", "archives", "images", "tmp"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating cache directory {}", root.join(sub).display()))?;
        }
        let cache = Self { root: root.to_path_buf() };
        cache.remove_stale_temp_files();
        Ok(cache)
    }

    /// Removes temporary files a killed run left behind (older than a day, so a concurrent
    /// run's files are safe).
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            let stale =
                entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The default location: `$XDG_CACHE_HOME/bakery`, else `~/.cache/bakery`.
    pub fn default_root() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = xdg
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("bakery"))
    }

    pub fn blob_path(&self, digest: &Sha256) -> PathBuf {
        let hex = digest.to_string();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    /// The size of a cached blob, if present.
    pub fn blob_size(&self, digest: &Sha256) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// A temporary file inside the cache, on the same file system as the blobs.
    pub fn temp_file(&self) -> Result<NamedTempFile> {
        NamedTempFile::new_in(self.root.join("tmp")).context("creating a temporary file in the cache")
    }

    /// Moves a verified temporary file into the blob store (read-only).
    pub fn commit_blob(&self, tmp: NamedTempFile, digest: &Sha256) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        tmp.as_file().sync_all().context("syncing a download")?;
        let mut permissions = tmp.as_file().metadata()?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o444);
        tmp.as_file().set_permissions(permissions)?;
        tmp.persist(&dest).map_err(|e| e.error).with_context(|| format!("storing {}", dest.display()))?;
        Ok(dest)
    }

    fn keyed(&self, dir: &str, key: &str) -> PathBuf {
        self.root.join(dir).join(Sha256::of(key.as_bytes()).to_string())
    }

    /// The checksum file fetched earlier from `url`, if any.
    pub fn checksum_file(&self, url: &str) -> Option<Vec<u8>> {
        fs::read(self.keyed("checksums", url)).ok()
    }

    pub fn store_checksum_file(&self, url: &str, bytes: &[u8]) -> Result<()> {
        self.store_small(&self.keyed("checksums", url), bytes)
    }

    /// The index of an archive unpacked earlier.
    pub fn archive_index(&self, archive: &Sha256) -> Option<ArchiveIndex> {
        let bytes = fs::read(self.root.join("archives").join(format!("{archive}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn store_archive_index(&self, archive: &Sha256, index: &ArchiveIndex) -> Result<()> {
        let json = serde_json::to_vec(index).expect("an archive index serialises");
        self.store_small(&self.root.join("archives").join(format!("{archive}.json")), &json)
    }

    /// The inputs recorded for the image with digest `image` (JSON), if any.
    pub fn image_inputs(&self, image: &Sha256) -> Option<Vec<u8>> {
        fs::read(self.root.join("images").join(format!("{image}.json"))).ok()
    }

    pub fn store_image_inputs(&self, image: &Sha256, json: &[u8]) -> Result<()> {
        self.store_small(&self.root.join("images").join(format!("{image}.json")), json)
    }

    fn store_small(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_file()?;
        let mut writer = BufWriter::new(tmp.as_file());
        writer.write_all(bytes)?;
        writer.flush()?;
        drop(writer);
        tmp.as_file().sync_all()?;
        tmp.persist(dest).map_err(|e| e.error).with_context(|| format!("storing {}", dest.display()))?;
        Ok(())
    }

    /// Opens a cached blob for reading.
    pub fn open_blob(&self, digest: &Sha256) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).with_context(|| format!("opening cached {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn blobs_enter_by_digest_and_are_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Sha256::of(b"payload");
        assert_eq!(cache.blob_size(&digest), None);
        let mut tmp = cache.temp_file().unwrap();
        tmp.write_all(b"payload").unwrap();
        let path = cache.commit_blob(tmp, &digest).unwrap();
        assert_eq!(cache.blob_size(&digest), Some(7));
        assert!(fs::metadata(path).unwrap().permissions().readonly());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn checksum_files_are_keyed_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.store_checksum_file("https://a/x.sha256", b"abc").unwrap();
        assert_eq!(cache.checksum_file("https://a/x.sha256").unwrap(), b"abc");
        assert_eq!(cache.checksum_file("https://b/x.sha256"), None);
    }
}
