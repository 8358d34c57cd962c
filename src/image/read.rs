//! One strict reader per format behind one entry point: [`verify`] tells SquashFS from EROFS by
//! the superblock's magic and returns the same listing for either, for `inspect`, `release` and
//! the node's validation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use crate::model::{Format, Sha256};

/// Caps on what reading one image may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Uncompressed size of the inode table, and of the directory table.
    pub metadata: usize,
    pub inodes: u32,
    /// Bytes of a path below the root (PATH_MAX).
    pub path: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { metadata: 64 << 20, inodes: 1 << 20, path: 4096 }
    }
}

/// One entry of a verified image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Below the root, without a leading `/` (`usr/bin/kubelet`).
    pub path: String,
    pub mode: u16,
    pub kind: Kind,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, sha256: Sha256 },
    Symlink { target: String },
}

/// What a verified image holds, whatever its format.
#[derive(Clone, Debug)]
pub struct Verified {
    pub format: Format,
    /// The data compression as bakery names it (`gzip`, `lz4hc`), or `compressor N` when the
    /// format's number has no name here.
    pub compression: String,
    /// The data block size (SquashFS) or the filesystem block size (EROFS).
    pub block_size: u32,
    /// The filesystem UUID (EROFS); SquashFS has none.
    pub uuid: Option<[u8; 16]>,
    /// Parents before children, siblings in name order; the root is not listed.
    pub entries: Vec<Entry>,
    /// The bytes of the files `keep` asked for (path → bytes).
    pub kept: BTreeMap<String, Vec<u8>>,
}

/// A read-only window on a file: the whole file, or one partition of a disk image. Reads outside
/// `[0, len)` fail, so a reader given a partition cannot see its neighbours.
#[derive(Debug)]
pub struct Span {
    file: File,
    offset: u64,
    len: u64,
}

impl Span {
    /// The whole file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        Ok(Self { file, offset: 0, len })
    }

    /// The window `[offset, offset + len)` of this one.
    pub fn sub(&self, offset: u64, len: u64) -> Result<Self> {
        ensure!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{len} bytes at offset {offset} run past the end ({} bytes)",
            self.len
        );
        Ok(Self { file: self.file.try_clone()?, offset: self.offset + offset, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `at`, failing when any of it lies past the end.
    pub fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        if at.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes at offset {at} run past the end ({} bytes)", buf.len(), self.len),
            ));
        }
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, self.offset + at)
    }

    /// `len` bytes from `at`.
    pub fn read_vec(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }
}

/// SquashFS's magic at offset 0, EROFS's at offset 1024 (little-endian).
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
pub const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
pub const EROFS_SUPER_OFFSET: usize = 1024;

/// Whether the file at `path` is a disk image with a GPT (a DDI) rather than a bare filesystem.
pub fn is_gpt(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(520);
    File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(520)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(head.get(512..520) == Some(b"EFI PART"))
}

/// The format of the bare filesystem image at `path`, from its magic (a DDI is neither).
pub fn sniff(path: &Path) -> Result<Format> {
    let span = Span::open(path)?;
    sniff_bytes(&span.read_vec(0, span.len().min(EROFS_SUPER_OFFSET as u64 + 4) as usize)?)
}

fn sniff_bytes(head: &[u8]) -> Result<Format> {
    if head.starts_with(SQUASHFS_MAGIC) {
        return Ok(Format::Squashfs);
    }
    if let Some(magic) = head.get(EROFS_SUPER_OFFSET..EROFS_SUPER_OFFSET + 4)
        && u32::from_le_bytes(magic.try_into().expect("4 bytes")) == EROFS_MAGIC
    {
        return Ok(Format::Erofs);
    }
    bail!("neither a SquashFS nor an EROFS image (no superblock magic at offset 0 or 1024)")
}

/// Verifies the image at `path` with its format's strict reader. `keep(path)` returns how many
/// bytes of a file to keep, if any: a file larger than that is an error.
pub fn verify(path: &Path, limits: &Limits, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
    verify_span(Span::open(path)?, limits, keep)
}

/// [`verify`] for the filesystem in `span` (a whole file, or a DDI's verified root partition).
pub fn verify_span(span: Span, limits: &Limits, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
    let head = span.read_vec(0, span.len().min(EROFS_SUPER_OFFSET as u64 + 4) as usize)?;
    match sniff_bytes(&head)? {
        Format::Squashfs => {
            let verified = crate::squashfs::read::verify_span(&span, limits, keep)?;
            let sb = verified.superblock;
            let compression = SQUASHFS_COMPRESSORS
                .iter()
                .find(|(id, _)| *id == sb.compressor)
                .map(|(_, name)| name.to_string())
                .unwrap_or_else(|| format!("compressor {}", sb.compressor));
            Ok(Verified {
                format: Format::Squashfs,
                compression,
                block_size: sb.block_size,
                uuid: None,
                entries: verified.entries,
                kept: verified.kept,
            })
        }
        Format::Erofs => crate::erofs::read::verify_span(span, limits, keep),
    }
}

const SQUASHFS_COMPRESSORS: [(u16, &str); 4] = [(1, "gzip"), (4, "xz"), (5, "lz4"), (6, "zstd")];
