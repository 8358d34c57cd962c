//! The data side of the strict reader: every block and fragment of a file decompressed (never
//! past its stated size) and hashed.

use crate::image::read::Span;

use anyhow::{Result, bail, ensure};

use super::meta::read_at;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::squashfs::format::NO_INDEX;

/// Decompresses one block, failing when it would grow past `cap` bytes or when the compressed
/// stream does not end exactly at the end of the block (trailing bytes, a truncated stream or a
/// bad checksum). xz gets a memory limit: its header chooses the dictionary size.
pub(crate) fn decompress_capped(compressor: u16, bytes: &[u8], cap: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(cap + 1);
    match compressor {
        1 => {
            let mut zlib = flate2::Decompress::new(true);
            let status = zlib
                .decompress_vec(bytes, &mut out, flate2::FlushDecompress::Finish)
                .map_err(|e| anyhow::anyhow!("corrupt gzip block: {e}"))?;
            ensure!(status == flate2::Status::StreamEnd, "a gzip block does not end, or grows past {cap} bytes");
            ensure!(zlib.total_in() as usize == bytes.len(), "a gzip block has trailing bytes");
        }
        4 => {
            let mut xz = liblzma::stream::Stream::new_stream_decoder(64 << 20, 0)
                .map_err(|e| anyhow::anyhow!("xz decoder: {e}"))?;
            let status = xz
                .process_vec(bytes, &mut out, liblzma::stream::Action::Finish)
                .map_err(|e| anyhow::anyhow!("corrupt xz block: {e}"))?;
            ensure!(
                status == liblzma::stream::Status::StreamEnd,
                "an xz block does not end, or grows past {cap} bytes"
            );
            ensure!(xz.total_in() as usize == bytes.len(), "an xz block has trailing bytes");
        }
        6 => {
            out = zstd::bulk::decompress(bytes, cap).map_err(|e| anyhow::anyhow!("corrupt zstd block: {e}"))?;
        }
        5 => {
            out.resize(cap, 0);
            let n = lz4_flex::block::decompress_into(bytes, &mut out)
                .map_err(|e| anyhow::anyhow!("corrupt lz4 block: {e}"))?;
            out.truncate(n);
        }
        other => bail!("compressor {other} is not supported"),
    }
    ensure!(out.len() <= cap, "a block decompresses to more than {cap} bytes");
    Ok(out)
}

/// Where a regular file's bytes are, as its inode says.
pub(super) struct FileData {
    pub blocks_start: u64,
    pub size: u64,
    pub fragment: u32,
    pub frag_offset: u32,
    pub block_sizes: Vec<u32>,
}

/// What reading file data needs from the image.
pub(super) struct Data<'a> {
    pub file: &'a Span,
    pub compressor: u16,
    pub block_size: u32,
    /// Data blocks and fragments lie in `[start, end)`.
    pub start: u64,
    pub end: u64,
    pub fragments: Vec<(u64, u32)>,
    /// The last fragment block read: files sharing one are usually neighbours.
    pub cached: Option<(u32, Vec<u8>)>,
}

const UNCOMPRESSED: u32 = 1 << 24;

impl Data<'_> {
    /// The number of block sizes a file of `size` bytes lists.
    pub fn block_count(&self, size: u64, fragment: u32) -> u64 {
        let bs = self.block_size as u64;
        if fragment == NO_INDEX { size.div_ceil(bs) } else { size / bs }
    }

    /// Reads and hashes every byte of `file`, keeping them when `keep` allows that many.
    pub fn read(&mut self, file: &FileData, keep: Option<usize>) -> Result<(Sha256, Option<Vec<u8>>)> {
        let bs = self.block_size as u64;
        let mut hasher = Hasher::default();
        let mut kept = keep.filter(|cap| file.size <= *cap as u64).map(|_| Vec::new());
        let mut at = file.blocks_start;
        let mut remaining = file.size;
        for (i, word) in file.block_sizes.iter().enumerate() {
            let expected = remaining.min(bs) as usize;
            let on_disk = (word & !UNCOMPRESSED) as u64;
            let block = if on_disk == 0 {
                vec![0u8; expected]
            } else {
                ensure!(word & !(UNCOMPRESSED | 0x00ff_ffff) == 0, "block {i} has a corrupt size word {word:#x}");
                ensure!(on_disk <= bs, "block {i} is {on_disk} bytes on disk, more than a block");
                ensure!(
                    at >= self.start && at.checked_add(on_disk).is_some_and(|end| end <= self.end),
                    "block {i} at {at} lies outside the data area"
                );
                let raw = read_at(self.file, at, on_disk as usize)?;
                at += on_disk;
                if word & UNCOMPRESSED != 0 {
                    raw
                } else {
                    decompress_capped(self.compressor, &raw, bs as usize)
                        .map_err(|e| anyhow::anyhow!("block {i}: {e}"))?
                }
            };
            ensure!(block.len() == expected, "block {i} holds {} bytes, not {expected}", block.len());
            hasher.update(&block);
            if let Some(kept) = &mut kept {
                kept.extend_from_slice(&block);
            }
            remaining -= expected as u64;
        }
        if file.fragment != NO_INDEX {
            ensure!(remaining > 0 && remaining < bs, "the file's tail of {remaining} bytes is not a fragment's");
            let fragment = self.fragment(file.fragment)?;
            let start = file.frag_offset as usize;
            let tail = start
                .checked_add(remaining as usize)
                .and_then(|end| fragment.get(start..end))
                .ok_or_else(|| anyhow::anyhow!("the tail at offset {start} runs past fragment {}", file.fragment))?;
            hasher.update(tail);
            if let Some(kept) = &mut kept {
                kept.extend_from_slice(tail);
            }
            remaining = 0;
        }
        ensure!(remaining == 0, "the blocks hold {} bytes less than the file's size", remaining);
        Ok((hasher.finish(), kept))
    }

    fn fragment(&mut self, index: u32) -> Result<&[u8]> {
        if self.cached.as_ref().map(|c| c.0) != Some(index) {
            let Some(&(start, word)) = self.fragments.get(index as usize) else {
                bail!("fragment {index} does not exist ({} fragments)", self.fragments.len());
            };
            let on_disk = (word & !UNCOMPRESSED) as u64;
            ensure!(
                word & !(UNCOMPRESSED | 0x00ff_ffff) == 0 && on_disk > 0 && on_disk <= self.block_size as u64,
                "fragment {index} has a corrupt size word {word:#x}"
            );
            ensure!(
                start >= self.start && start.checked_add(on_disk).is_some_and(|end| end <= self.end),
                "fragment {index} at {start} lies outside the data area"
            );
            let raw = read_at(self.file, start, on_disk as usize)?;
            let bytes = if word & UNCOMPRESSED != 0 {
                raw
            } else {
                decompress_capped(self.compressor, &raw, self.block_size as usize)
                    .map_err(|e| anyhow::anyhow!("fragment {index}: {e}"))?
            };
            self.cached = Some((index, bytes));
        }
        Ok(&self.cached.as_ref().expect("just cached").1)
    }
}
