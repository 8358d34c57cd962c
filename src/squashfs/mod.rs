//! Pack: a planned tree into a reproducible SquashFS image.
//!
//! backhand writes the data (with every core compressing, see `parallel`), bakery writes the
//! tables (see `tables`: backhand cannot write xattrs). Same inputs, same bytes.

pub mod format;
pub mod parallel;
pub mod tables;
pub mod xattr;

use std::fs::File;
use std::io::{BufWriter, Cursor, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use backhand::{FilesystemWriter, NodeHeader};

use crate::model::{Compression, Sha256};
use crate::pipeline::plan::{Content, Node, Tree};
use format::Codec;
use parallel::Source;

/// The data block size (mksquashfs's default).
pub const BLOCK_SIZE: u32 = 128 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    pub compression: Compression,
    /// Modification time of every entry and of the image.
    pub mtime: u32,
    /// Compression threads.
    pub threads: usize,
}

impl PackOptions {
    pub fn new(compression: Compression, mtime: u32) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { compression, mtime, threads }
    }
}

/// What packing did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    pub bytes: u64,
    pub blocks: parallel::Stats,
}

/// Writes the image of `tree` into `out` (an empty file). `blob` maps cached content to its path.
pub fn pack(
    tree: &Tree,
    blob: &dyn Fn(&Sha256) -> PathBuf,
    options: &PackOptions,
    out: &mut File,
) -> Result<PackStats> {
    let codec = Codec::new(options.compression, BLOCK_SIZE);
    let mut writer = FilesystemWriter::default();
    writer.set_kind(backhand::kind::Kind::new_v4(&parallel::PARALLEL));
    writer.set_block_size(BLOCK_SIZE);
    writer.set_time(options.mtime);
    writer.set_only_root_id();
    writer.set_compressor(codec.fs);
    writer.set_root_mode(0o755);

    let mut sources = Vec::new();
    for (path, node) in tree.nodes() {
        let target = format!("/{}", path.as_str());
        let header = |mode: u16| NodeHeader::new(mode, 0, 0, options.mtime);
        let pushed = match node {
            Node::Dir { mode } => writer.push_dir(&target, header(mode.0)),
            Node::Symlink { target: link } => writer.push_symlink(link, &target, header(0o777)),
            Node::File { content, mode, .. } => match content {
                Content::Blob { sha256, .. } => {
                    let path = blob(sha256);
                    sources.push(Source::Path(path.clone()));
                    writer.push_file_from_path(path, &target, header(mode.0))
                }
                Content::Inline(bytes) => {
                    let bytes: Arc<[u8]> = Arc::from(bytes.as_slice());
                    sources.push(Source::Bytes(bytes.clone()));
                    writer.push_file(Cursor::new(bytes), &target, header(mode.0))
                }
            },
        };
        pushed.map_err(|e| anyhow!("adding {path} to the image: {e}"))?;
    }

    let (written, blocks) = parallel::with_lookahead(&sources, codec.fs, BLOCK_SIZE, options.threads, || {
        let mut buffered = BufWriter::with_capacity(1 << 20, &mut *out);
        let written = writer.write(&mut buffered).map_err(|e| anyhow!("writing the image: {e}"));
        buffered.flush().context("writing the image")?;
        written
    });
    written?;
    tables::rewrite(out, tree, &codec, options.mtime)?;
    let bytes = out.seek(SeekFrom::End(0))?;
    tracing::debug!("packed {bytes} bytes; {} blocks compressed ahead, {} inline", blocks.predicted, blocks.inline);
    Ok(PackStats { bytes, blocks })
}
