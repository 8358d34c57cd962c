//! Unpacking archives into the cache. Every regular file of the archive becomes a blob; the
//! archive's index (paths, digests, modes, links) is what the plan stage picks entries from.
//! Entries that would escape the tree (`..`, absolute paths) reject the whole archive.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};

use anyhow::{Context, Result};

use super::cache::Cache;
use crate::error::bad_input;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::recipe::ArchiveFormat;

pub use crate::model::archive::{ArchiveEntry, ArchiveIndex, EntryKind};

/// Unpacks the archive blob `archive` into `cache` and returns its index.
pub fn unpack(cache: &Cache, archive: &Sha256, format: ArchiveFormat) -> Result<ArchiveIndex> {
    let file = cache.open_blob(archive)?;
    let reader = BufReader::with_capacity(256 * 1024, file);
    let decoder: Box<dyn Read> = match format {
        ArchiveFormat::Tar => Box::new(reader),
        ArchiveFormat::TarGz => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        ArchiveFormat::TarXz => Box::new(liblzma::read::XzDecoder::new(reader)),
        ArchiveFormat::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(reader).context("starting zstd")?),
    };
    unpack_tar(cache, decoder)
}

fn unpack_tar(cache: &Cache, reader: impl Read) -> Result<ArchiveIndex> {
    let mut archive = tar::Archive::new(reader);
    let mut index = ArchiveIndex::default();
    let mut files: HashMap<String, (Sha256, u64, u16)> = HashMap::new();
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        let raw_path = String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
            bad_input(format!("archive entry {:?} is not UTF-8", String::from_utf8_lossy(e.as_bytes())))
        })?;
        let Some(path) = normalize_entry(&raw_path)? else { continue };
        let header = entry.header();
        let mode = (header.mode().unwrap_or(0o644) & 0o7777) as u16;
        let entry_type = header.entry_type();
        let kind = if entry_type.is_file() || entry_type == tar::EntryType::Continuous {
            let (sha256, size) = store_entry(cache, &mut entry).with_context(|| format!("unpacking {path}"))?;
            files.insert(path.clone(), (sha256, size, mode));
            EntryKind::File { sha256, size, mode }
        } else if entry_type.is_hard_link() {
            let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let target = normalize_entry(&target)?.unwrap_or_default();
            let (sha256, size, _) = *files.get(&target).ok_or_else(|| {
                bad_input(format!("archive entry {path}: hard link to {target:?}, which comes later or not at all"))
            })?;
            EntryKind::File { sha256, size, mode }
        } else if entry_type.is_symlink() {
            let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            if target.is_empty() || target.contains('\0') {
                return Err(bad_input(format!("archive entry {path}: invalid symlink target {target:?}")));
            }
            EntryKind::Symlink { target }
        } else if entry_type.is_dir() {
            EntryKind::Dir
        } else if entry_type.is_pax_global_extensions()
            || entry_type.is_pax_local_extensions()
            || entry_type.is_gnu_longname()
            || entry_type.is_gnu_longlink()
        {
            continue;
        } else {
            EntryKind::Other { what: format!("{entry_type:?}") }
        };
        index.entries.push(ArchiveEntry { path, kind });
    }
    Ok(index)
}

/// Strips `./` and trailing `/`; `None` for the archive root; an error for escaping paths
/// (the one rule, [`ImagePath::parse_relative`]).
pub fn normalize_entry(raw: &str) -> Result<Option<String>> {
    let path = crate::model::ImagePath::parse_relative(raw)
        .map_err(|e| bad_input(format!("archive entry {raw:?} escapes the tree or is not a plain path: {e}")))?;
    Ok(path.map(|p| p.as_str().to_string()))
}

fn store_entry(cache: &Cache, entry: &mut impl Read) -> Result<(Sha256, u64)> {
    let tmp = cache.temp_file()?;
    let mut hasher = Hasher::default();
    let mut size = 0u64;
    {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, tmp.as_file());
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            crate::util::cancel::check()?;
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            size += n as u64;
        }
        out.flush()?;
    }
    let digest = hasher.finish();
    if cache.blob_size(&digest) != Some(size) {
        cache.commit_blob(tmp, &digest)?;
    }
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_entry_type(tar::EntryType::Regular);
            // set_path refuses '..', so write the raw name like a hostile archive would
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_into_blobs_with_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let index =
            unpack_tar(&cache, &tar_with(&[("./bridge", b"elf", 0o755), ("./LICENSE", b"text", 0o644)])[..]).unwrap();
        assert_eq!(index.entries.len(), 2);
        assert_eq!(index.entries[0].path, "bridge");
        match &index.entries[0].kind {
            EntryKind::File { sha256, size, mode } => {
                assert_eq!((*size, *mode), (3, 0o755));
                assert_eq!(std::fs::read(cache.blob_path(sha256)).unwrap(), b"elf");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaping_entries_reject_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        for bad in ["../evil", "/etc/passwd", "a/../../b"] {
            let err = unpack_tar(&cache, &tar_with(&[(bad, b"x", 0o644)])[..]).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            assert!(err.to_string().contains("escapes the tree"), "{err}");
        }
    }
}
