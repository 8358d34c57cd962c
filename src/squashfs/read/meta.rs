//! The metadata side of the strict reader: metadata blocks read as whole regions, lookup tables
//! (ids, fragments, export, xattr ids) with the kernel's bounds checks, and the table chain from
//! `bytes_used` down to the inode table.

use anyhow::{Result, bail, ensure};

use super::data::decompress_capped;
use crate::image::read::Span;
use crate::squashfs::format::{METADATA_SIZE, NOT_SET, SuperBlock};

/// Reads `len` bytes at `at`, failing when they are not all there.
pub(super) fn read_at(file: &Span, at: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).map_err(|e| anyhow::anyhow!("reading {len} bytes at offset {at}: {e}"))?;
    Ok(buf)
}

/// A run of consecutive metadata blocks, decompressed: what the inode and directory tables are.
pub(super) struct Region {
    /// Decompressed bytes of every block, in order.
    pub data: Vec<u8>,
    /// (offset of the block's header from the region start, offset of its bytes in `data`).
    pub blocks: Vec<(u64, usize)>,
}

impl Region {
    /// Reads the blocks in `[start, end)`, which they must fill exactly.
    pub fn read(file: &Span, compressor: u16, start: u64, end: u64, cap: usize, what: &str) -> Result<Self> {
        ensure!(start <= end, "the {what} starts at {start}, after its end {end}");
        let raw = read_at(file, start, usize::try_from(end - start)?)?;
        let mut region = Region { data: Vec::new(), blocks: Vec::new() };
        let mut at = 0usize;
        while at < raw.len() {
            let (bytes, next) = metadata_block(&raw, at, compressor)
                .map_err(|e| anyhow::anyhow!("the {what}: block at offset {}: {e}", start + at as u64))?;
            // Like unsquashfs: every block of a table but the last is a full one.
            ensure!(
                region.data.len().is_multiple_of(METADATA_SIZE),
                "the {what}: the block before offset {} is not a full 8 KiB",
                start + at as u64
            );
            region.blocks.push((at as u64, region.data.len()));
            region.data.extend_from_slice(&bytes);
            ensure!(region.data.len() <= cap, "the {what} is larger than {} MiB uncompressed", cap >> 20);
            at = next;
        }
        Ok(region)
    }

    /// The offset in `data` of a reference (`block << 16 | offset`).
    pub fn resolve(&self, block: u64, offset: u16, what: &str) -> Result<usize> {
        let Ok(i) = self.blocks.binary_search_by_key(&block, |b| b.0) else {
            bail!("{what} points at {block}, which is not the start of a metadata block");
        };
        let start = self.blocks[i].1;
        let end = self.blocks.get(i + 1).map(|b| b.1).unwrap_or(self.data.len());
        ensure!((offset as usize) < end - start, "{what} points past the end of its metadata block");
        Ok(start + offset as usize)
    }

    /// The metadata block (offset from the region start) that holds byte `at` of `data`.
    pub fn block_of(&self, at: usize) -> u64 {
        let i = self.blocks.partition_point(|b| b.1 <= at);
        self.blocks[i.saturating_sub(1)].0
    }

    pub fn cursor(&self, at: usize) -> Cursor<'_> {
        Cursor { data: &self.data, at }
    }
}

/// Reads little-endian fields from decompressed metadata, failing at its end.
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pub at: usize,
}

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.data.len());
        let Some(end) = end else { bail!("truncated metadata (wanted {n} bytes at {})", self.at) };
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
}

/// The metadata block whose header is at `raw[at..]`: its bytes and where the next starts.
fn metadata_block(raw: &[u8], at: usize, compressor: u16) -> Result<(Vec<u8>, usize)> {
    let header = raw.get(at..at + 2).ok_or_else(|| anyhow::anyhow!("truncated block header"))?;
    let header = u16::from_le_bytes([header[0], header[1]]);
    let size = (header & 0x7fff) as usize;
    ensure!(size > 0 && size <= METADATA_SIZE, "size {size} is not in 1..=8192");
    let body = raw.get(at + 2..at + 2 + size).ok_or_else(|| anyhow::anyhow!("runs past its table"))?;
    let bytes = if header & 0x8000 != 0 { body.to_vec() } else { decompress_capped(compressor, body, METADATA_SIZE)? };
    ensure!(!bytes.is_empty(), "decompresses to nothing");
    Ok((bytes, at + 2 + size))
}

/// A lookup table: `count` entries of `entry_size` bytes in metadata blocks, indexed by the
/// array of block positions at `start`, which must end by `limit`. The blocks must end at
/// `blocks_end` (the index, or the xattr table's header before it), one after the other, as the
/// writers put them. Returns the entries and where the first block starts (the limit for the
/// table below it).
#[allow(clippy::too_many_arguments)]
pub(super) fn lookup_table(
    file: &Span,
    compressor: u16,
    start: u64,
    blocks_end: u64,
    limit: u64,
    count: u64,
    entry_size: u64,
    what: &str,
) -> Result<(Vec<u8>, u64)> {
    ensure!(count > 0, "the {what} has no entries");
    let bytes = count * entry_size;
    let index_len = bytes.div_ceil(METADATA_SIZE as u64) * 8;
    ensure!(
        start.checked_add(index_len).is_some_and(|end| end <= limit),
        "the {what} index ({index_len} bytes at {start}) runs past {limit}"
    );
    ensure!(bytes <= 64 << 20, "the {what} claims {count} entries");
    let index = read_at(file, start, index_len as usize)?;
    let blocks: Vec<u64> = index.chunks(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let first = blocks[0];
    ensure!(first < blocks_end, "the {what} index points at {first}, not below the index at {start}");
    let region = Region::read(file, compressor, first, blocks_end, bytes as usize + METADATA_SIZE, what)?;
    let positions: Vec<u64> = region.blocks.iter().map(|b| first + b.0).collect();
    ensure!(positions == blocks, "the {what} index does not match its blocks");
    ensure!(region.data.len() as u64 == bytes, "the {what} holds {} bytes, not {bytes}", region.data.len());
    Ok((region.data, first))
}

/// Where every table is, checked in the order the kernel checks them at mount, plus what the
/// writers guarantee: each table ends where the next begins and the last ends at `bytes_used`.
pub(super) struct Layout {
    pub data_start: u64,
    pub inode_table: u64,
    pub dir_table: u64,
    pub dir_end: u64,
    pub ids: Vec<u32>,
    pub fragments: Vec<(u64, u32)>,
    /// (where the key/value pairs start, their end, the id entries).
    pub xattrs: Option<(u64, u64, Vec<u8>)>,
}

pub(super) fn layout(file: &Span, sb: &SuperBlock, file_len: u64) -> Result<Layout> {
    ensure!(
        sb.bytes_used > 96 && sb.bytes_used <= file_len,
        "bytes_used {} is not inside the file ({file_len} bytes)",
        sb.bytes_used
    );
    ensure!(
        sb.block_size.is_power_of_two()
            && (4096..=1 << 20).contains(&sb.block_size)
            && 1u32.checked_shl(sb.block_log as u32) == Some(sb.block_size),
        "block size {} (log {}) is not a power of two from 4 KiB to 1 MiB",
        sb.block_size,
        sb.block_log
    );
    let c = sb.compressor;
    ensure!(matches!(c, 1 | 4 | 5 | 6), "compressor {c} is not one bakery reads (gzip, xz, lz4, zstd)");
    // 0x0004 (a check byte after every metadata block header, SquashFS 3) is ignored by the
    // kernel but honoured by unsquashfs: the two would read different tables.
    ensure!(sb.flags & 0xf004 == 0, "unsupported superblock flags {:#06x}", sb.flags);
    ensure!(
        sb.flags & 0x0200 == 0 || sb.xattr_table == NOT_SET,
        "the superblock says no xattrs but points at an xattr table"
    );
    ensure!(
        (sb.flags & 0x0080 != 0) == (sb.export_table != NOT_SET),
        "the exportable flag and the export table disagree"
    );
    ensure!(sb.flags & 0x0010 == 0 || sb.frag_count == 0, "the superblock says no fragments but counts some");
    let mut next = sb.bytes_used;
    let mut xattrs = None;
    let mut table_end = sb.bytes_used;
    if sb.xattr_table != NOT_SET {
        let header = read_at(file, sb.xattr_table, 16)?;
        let kv_start = u64::from_le_bytes(header[..8].try_into()?);
        let count = u32::from_le_bytes(header[8..12].try_into()?) as u64;
        let index_end = sb.xattr_table + 16 + (count * 16).div_ceil(METADATA_SIZE as u64) * 8;
        ensure!(index_end == table_end, "the xattr table does not end at bytes_used");
        let (entries, first) =
            lookup_table(file, c, sb.xattr_table + 16, sb.xattr_table, sb.bytes_used, count, 16, "xattr id table")?;
        ensure!(kv_start < first, "the xattr pairs start at {kv_start}, not below their ids at {first}");
        xattrs = Some((kv_start, first, entries));
        next = kv_start;
        table_end = kv_start;
    }
    let id_count = sb.id_count as u64;
    let id_index_end = sb.id_table.saturating_add((id_count * 4).div_ceil(METADATA_SIZE as u64) * 8);
    ensure!(id_index_end == table_end, "the id table does not end where the next table begins");
    let (id_bytes, first) = lookup_table(file, c, sb.id_table, sb.id_table, next, id_count, 4, "id table")?;
    let ids = id_bytes.chunks(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    next = first;
    if sb.export_table != NOT_SET {
        let count = sb.inode_count as u64;
        let end = sb.export_table.saturating_add((count * 8).div_ceil(METADATA_SIZE as u64) * 8);
        ensure!(end == next, "the export table does not end where the id table begins");
        let (_, first) = lookup_table(file, c, sb.export_table, sb.export_table, next, count, 8, "export table")?;
        next = first;
    }
    let mut fragments = Vec::new();
    if sb.frag_count > 0 {
        let count = sb.frag_count as u64;
        let end = sb.frag_table.saturating_add((count * 16).div_ceil(METADATA_SIZE as u64) * 8);
        ensure!(end == next, "the fragment table does not end where the next table begins");
        let (bytes, first) = lookup_table(file, c, sb.frag_table, sb.frag_table, next, count, 16, "fragment table")?;
        for entry in bytes.chunks(16) {
            let start = u64::from_le_bytes(entry[..8].try_into()?);
            let size = u32::from_le_bytes(entry[8..12].try_into()?);
            fragments.push((start, size));
        }
        next = first;
    }
    ensure!(sb.dir_table < next, "the directory table starts at {}, not below {next}", sb.dir_table);
    ensure!(sb.inode_table < sb.dir_table, "the inode table does not start below the directory table");
    let mut data_start = 96;
    if sb.flags & 0x0400 != 0 {
        // Compressor options: one uncompressed metadata block after the superblock.
        let header = read_at(file, 96, 2)?;
        let header = u16::from_le_bytes([header[0], header[1]]);
        // Their size for gzip, xz, lz4 (8 bytes) and zstd (4).
        let size = if c == 6 { 4 } else { 8 };
        ensure!(header == 0x8000 | size, "corrupt compressor options (header {header:#06x})");
        data_start += 2 + (header & 0x7fff) as u64;
    }
    ensure!(sb.inode_table >= data_start, "the inode table starts inside the superblock");
    Ok(Layout {
        data_start,
        inode_table: sb.inode_table,
        dir_table: sb.dir_table,
        dir_end: next,
        ids,
        fragments,
        xattrs,
    })
}
