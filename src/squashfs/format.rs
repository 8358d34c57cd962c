//! SquashFS 4.0 on-disk structures bakery writes or reads itself: the superblock and
//! metadata blocks (8 KiB units of compressed tables).

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result, bail};
use backhand::FilesystemCompressor;
use backhand::compression::{CompressionAction, CompressionOptions, Compressor, DefaultCompressor, Lz4, Zstd};

use crate::model::Compression;

pub const MAGIC: &[u8; 4] = b"hsqs";
pub const SUPERBLOCK_SIZE: usize = 96;
/// Uncompressed size of a full metadata block.
pub const METADATA_SIZE: usize = 8192;
/// The value of absent tables and references.
pub const NOT_SET: u64 = u64::MAX;
/// The "no fragment" and "no xattr" index.
pub const NO_INDEX: u32 = u32::MAX;

/// Superblock flags bakery changes.
pub mod flags {
    pub const EXPORTABLE: u16 = 0x0080;
    pub const NO_XATTRS: u16 = 0x0200;
}

/// The 96-byte superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperBlock {
    pub inode_count: u32,
    pub mod_time: u32,
    pub block_size: u32,
    pub frag_count: u32,
    pub compressor: u16,
    pub block_log: u16,
    pub flags: u16,
    pub id_count: u16,
    pub version_major: u16,
    pub version_minor: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub dir_table: u64,
    pub frag_table: u64,
    pub export_table: u64,
}

impl SuperBlock {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < SUPERBLOCK_SIZE || &bytes[..4] != MAGIC {
            bail!("not a SquashFS image (no 'hsqs' superblock)");
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let sb = SuperBlock {
            inode_count: u32_at(4),
            mod_time: u32_at(8),
            block_size: u32_at(12),
            frag_count: u32_at(16),
            compressor: u16_at(20),
            block_log: u16_at(22),
            flags: u16_at(24),
            id_count: u16_at(26),
            version_major: u16_at(28),
            version_minor: u16_at(30),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            id_table: u64_at(48),
            xattr_table: u64_at(56),
            inode_table: u64_at(64),
            dir_table: u64_at(72),
            frag_table: u64_at(80),
            export_table: u64_at(88),
        };
        if (sb.version_major, sb.version_minor) != (4, 0) {
            bail!("SquashFS version {}.{} is not supported (4.0 is)", sb.version_major, sb.version_minor);
        }
        Ok(sb)
    }

    /// Reads the superblock at the start of `reader`.
    pub fn read_from(reader: &mut (impl Read + Seek)) -> Result<Self> {
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        reader.seek(SeekFrom::Start(0))?;
        reader.read_exact(&mut bytes).context("reading the superblock")?;
        Self::parse(&bytes)
    }

    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut out = Vec::with_capacity(SUPERBLOCK_SIZE);
        out.extend_from_slice(MAGIC);
        for v in [self.inode_count, self.mod_time, self.block_size, self.frag_count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.compressor, self.block_log, self.flags, self.id_count, self.version_major, self.version_minor] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_table,
            self.inode_table,
            self.dir_table,
            self.frag_table,
            self.export_table,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.try_into().expect("96 bytes")
    }
}

/// Block compression with backhand's codecs and mksquashfs's default levels.
#[derive(Clone, Copy, Debug)]
pub struct Codec {
    pub fs: FilesystemCompressor,
    pub block_size: u32,
}

impl Codec {
    pub fn new(compression: Compression, block_size: u32) -> Self {
        let fs = match compression {
            Compression::Gzip => FilesystemCompressor::new(Compressor::Gzip, None),
            Compression::Zstd => FilesystemCompressor::new(
                Compressor::Zstd,
                Some(CompressionOptions::Zstd(Zstd { compression_level: 15 })),
            ),
            Compression::Xz => FilesystemCompressor::new(Compressor::Xz, None),
            Compression::Lz4 => {
                FilesystemCompressor::new(Compressor::Lz4, Some(CompressionOptions::Lz4(Lz4 { version: 1, flags: 0 })))
            }
            other => unreachable!("Format::check keeps {other} out of SquashFS images"),
        }
        .expect("valid compressor settings");
        Self { fs, block_size }
    }

    pub fn compress(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        DefaultCompressor
            .compress(bytes, self.fs, self.block_size)
            .map_err(|e| anyhow::anyhow!("compressing a block: {e}"))
    }
}

/// Writes a stream of metadata blocks: 8 KiB of input each, compressed when that helps.
pub struct MetadataWriter<'c> {
    codec: &'c Codec,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Offset (in `out`) of every block written.
    pub block_starts: Vec<u32>,
}

impl<'c> MetadataWriter<'c> {
    pub fn new(codec: &'c Codec) -> Self {
        Self { codec, pending: Vec::with_capacity(METADATA_SIZE * 2), out: Vec::new(), block_starts: Vec::new() }
    }

    /// Where the next byte goes: (offset of its block from the table start, offset inside it).
    pub fn position(&self) -> (u32, u16) {
        (self.out.len() as u32, self.pending.len() as u16)
    }

    /// A SquashFS reference (`block << 16 | offset`) to the next byte.
    pub fn reference(&self) -> u64 {
        let (block, offset) = self.position();
        ((block as u64) << 16) | offset as u64
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= METADATA_SIZE {
            self.flush_block(METADATA_SIZE)?;
        }
        Ok(())
    }

    fn flush_block(&mut self, len: usize) -> Result<()> {
        let block: Vec<u8> = self.pending.drain(..len).collect();
        let compressed = self.codec.compress(&block)?;
        self.block_starts.push(self.out.len() as u32);
        if compressed.len() < block.len() {
            self.out.extend_from_slice(&(compressed.len() as u16).to_le_bytes());
            self.out.extend_from_slice(&compressed);
        } else {
            self.out.extend_from_slice(&(block.len() as u16 | 0x8000).to_le_bytes());
            self.out.extend_from_slice(&block);
        }
        Ok(())
    }

    /// The table's bytes, the last partial block included.
    pub fn finish(mut self) -> Result<(Vec<u8>, Vec<u32>)> {
        if !self.pending.is_empty() {
            let len = self.pending.len();
            self.flush_block(len)?;
        }
        Ok((self.out, self.block_starts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trips() {
        let sb = SuperBlock {
            inode_count: 3,
            mod_time: 0,
            block_size: 131072,
            frag_count: 1,
            compressor: 1,
            block_log: 17,
            flags: 0x40,
            id_count: 1,
            version_major: 4,
            version_minor: 0,
            root_inode: 0x20,
            bytes_used: 4096,
            id_table: 100,
            xattr_table: NOT_SET,
            inode_table: 50,
            dir_table: 70,
            frag_table: 90,
            export_table: NOT_SET,
        };
        assert_eq!(SuperBlock::parse(&sb.to_bytes()).unwrap(), sb);
        assert!(SuperBlock::parse(&[0u8; 96]).is_err());
    }

    #[test]
    fn metadata_blocks_split_at_8k_and_read_back() {
        let codec = Codec::new(Compression::Gzip, 131072);
        let mut writer = MetadataWriter::new(&codec);
        writer.write(&vec![7u8; METADATA_SIZE + 100]).unwrap();
        assert_eq!(writer.position().1, 100, "a full block is flushed as soon as it fills");
        let (bytes, starts) = writer.finish().unwrap();
        assert_eq!(starts.len(), 2);
        let block = |at: usize| {
            let header = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let body = &bytes[at + 2..at + 2 + (header & 0x7fff) as usize];
            assert_eq!(header & 0x8000, 0, "7s compress");
            crate::squashfs::read::data::decompress_capped(1, body, METADATA_SIZE).unwrap()
        };
        assert_eq!(block(starts[0] as usize), vec![7u8; METADATA_SIZE]);
        assert_eq!(block(starts[1] as usize), vec![7u8; 100]);
    }
}
