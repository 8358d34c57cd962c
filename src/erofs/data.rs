//! File data, written from block 1 in the inodes' order: compressed files as the workers'
//! segments arrive, plain files copied block by block (their last partial block kept for the
//! metadata area when it can be inlined). A file whose compressed form saves no block is
//! rewritten plain in place.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result, bail};

use super::format::{BLOCK_SIZE, COMPACT_INODE_SIZE, EXTENDED_INODE_SIZE};
use super::index::Extent;
use super::parallel::{self, Source, Stats};
use super::{Ino, Kind, compress::Codec, layout};

/// Where an inode's data went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Whole blocks from `start`, and the tail to inline after the inode, if any.
    Plain { start: u32, tail: Option<Vec<u8>> },
    /// Physical clusters from `start`, `blocks` of them in all, covering the file in order.
    Compressed { start: u32, blocks: u32, extents: Vec<Extent> },
    /// Directories and symlinks, whose data the metadata writer places.
    Later,
}

/// The bytes before an inode's data or tail: the inode and its xattrs.
pub fn head_size(ino: &Ino) -> usize {
    let inode = if ino.size <= u32::MAX as u64 && ino.nlink <= u16::MAX as u32 {
        COMPACT_INODE_SIZE
    } else {
        EXTENDED_INODE_SIZE
    };
    inode + ino.xattrs.len()
}

/// Whether the file is compressed (when the image is): more than one block of data.
fn compressible(ino: &Ino, codec: Option<Codec>) -> bool {
    codec.is_some() && ino.size > BLOCK_SIZE as u64 && matches!(ino.kind, Kind::File(_))
}

struct Writer<'a> {
    out: BufWriter<&'a mut File>,
    block: u32,
    done: u64,
    total: u64,
    progress: &'a dyn Fn(u64, u64),
}

impl Writer<'_> {
    fn blocks(&mut self, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(bytes.len() % BLOCK_SIZE, 0);
        self.out.write_all(bytes).context("writing the image")?;
        self.block += (bytes.len() / BLOCK_SIZE) as u32;
        Ok(())
    }

    fn count(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        (self.progress)(self.done, self.total);
    }

    /// Copies a file's whole blocks; returns its start block and the tail to inline.
    fn plain(&mut self, source: &Source, size: u64, head: usize, counted: bool) -> Result<Stored> {
        let start = self.block;
        let mut reader = source.open()?;
        let mut left = size;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            crate::util::cancel::check()?;
            let len = left.min(chunk.len() as u64) as usize;
            reader.read_exact(&mut chunk[..len]).with_context(|| format!("reading {}", source.describe()))?;
            left -= len as u64;
            if counted {
                self.count(len as u64);
            }
            let whole = len / BLOCK_SIZE * BLOCK_SIZE;
            self.blocks(&chunk[..whole])?;
            if whole < len {
                let tail = chunk[whole..len].to_vec();
                if layout::inlines(head, tail.len()) {
                    return Ok(Stored::Plain { start, tail: Some(tail) });
                }
                let mut block = tail;
                block.resize(BLOCK_SIZE, 0);
                self.blocks(&block)?;
            }
        }
        Ok(Stored::Plain { start, tail: None })
    }
}

/// Writes every file's data after block 0 of `out`; `progress` as in [`super::pack`]. Returns
/// where each inode's data went and the next free block.
pub fn write(
    inodes: &[Ino],
    codec: Option<Codec>,
    threads: usize,
    out: &mut File,
    progress: &dyn Fn(u64, u64),
) -> Result<(Vec<Stored>, u32, Stats)> {
    let total = inodes.iter().filter(|i| matches!(i.kind, Kind::File(_))).map(|i| i.size).sum();
    let compressed: Vec<(Source, u64)> = inodes
        .iter()
        .filter(|i| compressible(i, codec))
        .map(|i| match &i.kind {
            Kind::File(source) => (source.clone(), i.size),
            _ => unreachable!("only files are compressible"),
        })
        .collect();
    out.seek(SeekFrom::Start(BLOCK_SIZE as u64))?;
    let mut writer = Writer { out: BufWriter::with_capacity(1 << 20, out), block: 1, done: 0, total, progress };
    let mut write_all = |next: &mut dyn FnMut() -> Result<super::compress::Segment>| -> Result<(Vec<Stored>, u32)> {
        let mut stored = Vec::with_capacity(inodes.len());
        for ino in inodes {
            let Kind::File(source) = &ino.kind else {
                stored.push(Stored::Later);
                continue;
            };
            if !compressible(ino, codec) {
                stored.push(writer.plain(source, ino.size, head_size(ino), true)?);
                continue;
            }
            let start = writer.block;
            let mut extents = Vec::new();
            let mut left = ino.size;
            for _ in 0..parallel::segments_of(ino.size) {
                let segment = next().with_context(|| format!("compressing {}", source.describe()))?;
                let len: u64 = segment.extents.iter().map(|e| e.len as u64).sum();
                if len > left {
                    bail!("{} is longer than its recorded size {}", source.describe(), ino.size);
                }
                left -= len;
                writer.count(len);
                writer.blocks(&segment.data)?;
                extents.extend(segment.extents);
            }
            let blocks = writer.block - start;
            let tail = (ino.size % BLOCK_SIZE as u64) as usize;
            let plain_blocks =
                ino.size / BLOCK_SIZE as u64 + u64::from(tail > 0 && !layout::inlines(head_size(ino), tail));
            if (blocks as u64) < plain_blocks {
                stored.push(Stored::Compressed { start, blocks, extents });
            } else {
                // no block saved: store it as it is, over what was just written
                writer.out.seek(SeekFrom::Start(start as u64 * BLOCK_SIZE as u64))?;
                writer.block = start;
                stored.push(writer.plain(source, ino.size, head_size(ino), false)?);
            }
        }
        writer.out.flush().context("writing the image")?;
        Ok((stored, writer.block))
    };
    let ((stored, next), stats) = match codec {
        Some(codec) => parallel::with_segments(&compressed, codec, threads, write_all)?,
        None => (write_all(&mut || bail!("no segments without compression"))?, Stats::default()),
    };
    Ok((stored, next, stats))
}
