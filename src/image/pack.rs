//! One writer interface for either format: the pipeline hands a [`Tree`] and [`PackOptions`]
//! to [`pack`], which writes SquashFS (`squashfs`) or EROFS (`erofs`).

use std::fs::File;
use std::path::PathBuf;

use anyhow::Result;

use crate::model::{Compression, Format, Sha256, Tree};

#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    pub format: Format,
    pub compression: Compression,
    /// Modification time of every entry and of the image.
    pub mtime: u32,
    /// Compression threads.
    pub threads: usize,
    /// The filesystem UUID (EROFS), derived from the build's inputs so it is reproducible.
    pub uuid: [u8; 16],
}

impl PackOptions {
    pub fn new(format: Format, compression: Compression, mtime: u32, uuid: [u8; 16]) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { format, compression, mtime, threads, uuid }
    }
}

/// What packing did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    /// The image's size.
    pub bytes: u64,
    /// Blocks (SquashFS) or physical clusters (EROFS) compressed by the worker threads.
    pub compressed_ahead: u64,
    /// Blocks or clusters the writing thread compressed itself.
    pub inline: u64,
}

/// A version 8 (RFC 9562, custom) UUID from the first bytes of `digest`.
pub fn uuid_of(digest: &Sha256) -> [u8; 16] {
    let mut uuid: [u8; 16] = digest.as_bytes()[..16].try_into().expect("16 bytes");
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// Writes the image of `tree` into `out` (an empty file). `blob` maps cached content to its path.
/// `progress(done, total)` is called on the packing thread each time the writer has read more
/// file content: `done` of the `total` bytes of every file in the tree, never decreasing.
pub fn pack(
    tree: &Tree,
    blob: &dyn Fn(&Sha256) -> PathBuf,
    options: &PackOptions,
    out: &mut File,
    progress: &dyn Fn(u64, u64),
) -> Result<PackStats> {
    options.format.check(options.compression)?;
    match options.format {
        Format::Squashfs => crate::squashfs::pack(tree, blob, options, out, progress),
        Format::Erofs => crate::erofs::pack(tree, blob, options, out, progress),
    }
}
