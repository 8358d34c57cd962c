//! The superblock: where everything is, which features the image needs (unknown incompatible
//! ones are refused, and so are known ones bakery does not read), its checksum, and the
//! per-algorithm configurations that follow it.

use anyhow::{Result, ensure};

use crate::image::read::EROFS_MAGIC;

/// Incompatible features bakery reads: LZ4_0PADDING, COMPR_CFGS / BIG_PCLUSTER (one bit),
/// ZTAILPACKING, FRAGMENTS / DEDUPE (one bit; shared pclusters are refused per index).
pub(super) const ZERO_PADDING: u32 = 0x01;
pub(super) const COMPR_CFGS: u32 = 0x02;
pub(super) const ZTAILPACKING: u32 = 0x10;
pub(super) const FRAGMENTS: u32 = 0x20;
const ACCEPTED_INCOMPAT: u32 = ZERO_PADDING | COMPR_CFGS | ZTAILPACKING | FRAGMENTS;
/// Known incompatible features bakery refuses, by name.
const REFUSED_INCOMPAT: [(u32, &str); 5] = [
    (0x04, "chunk-based files"),
    (0x08, "a device table or a second compression algorithm (COMPR_HEAD2)"),
    (0x40, "long xattr name prefixes"),
    (0x80, "48-bit block addresses"),
    (0x100, "a metabox"),
];
/// Compatible features: the superblock checksum (checked), mtime (ignored), and the xattr name
/// filter (checked: the kernel's getxattr trusts it).
pub(super) const SB_CHKSUM: u32 = 0x01;
pub(super) const XATTR_FILTER: u32 = 0x04;
const ACCEPTED_COMPAT: u32 = SB_CHKSUM | 0x02 | XATTR_FILTER;

pub(super) const LZ4: u8 = 0;
pub(super) const LZMA: u8 = 1;
pub(super) const DEFLATE: u8 = 2;
pub(super) const ZSTD: u8 = 3;
pub(super) const ALGORITHMS: [&str; 4] = ["lz4", "lzma", "deflate", "zstd"];

/// The superblock fields the reader uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SuperBlock {
    pub blkszbits: u8,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub root_nid: u64,
    pub inos: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub xattr_blkaddr: u32,
    pub uuid: [u8; 16],
    /// Bit `n` set: algorithm `n` (`LZ4`..`ZSTD`) may appear in the image.
    pub algorithms: u16,
    pub packed_nid: u64,
    /// Where the superblock ends (the algorithm configurations follow it).
    pub end: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl SuperBlock {
    /// Parses the superblock from `head`, the image's first block (at least 4 KiB when the
    /// image has them: the checksum covers the rest of block 0).
    pub fn parse(head: &[u8]) -> Result<Self> {
        ensure!(head.len() >= 1024 + 128, "the image is {} bytes, too short for a superblock", head.len());
        let sb = &head[1024..];
        ensure!(u32_at(sb, 0) == EROFS_MAGIC, "no EROFS magic at offset 1024");
        let blkszbits = sb[12];
        ensure!((9..=16).contains(&blkszbits), "block size 2^{blkszbits} is not one from 512 bytes to 64 KiB");
        let block = 1usize << blkszbits;
        ensure!(block >= 4096, "block size {block} is smaller than the 4 KiB the kernel needs (its page size)");
        let feature_compat = u32_at(sb, 8);
        let feature_incompat = u32_at(sb, 80);
        for (bit, what) in REFUSED_INCOMPAT {
            ensure!(
                feature_incompat & bit == 0,
                "the image uses {what} (incompatible feature {bit:#x}), which bakery does not read"
            );
        }
        ensure!(
            feature_incompat & !ACCEPTED_INCOMPAT == 0,
            "unknown incompatible features {:#x}",
            feature_incompat & !ACCEPTED_INCOMPAT
        );
        ensure!(
            feature_compat & !ACCEPTED_COMPAT == 0,
            "unknown compatible features {:#x} (bakery reads sb_csum, mtime, xattr_filter)",
            feature_compat & !ACCEPTED_COMPAT
        );
        let extslots = sb[13] as usize;
        let sb_size = 128 + extslots * 16;
        ensure!(sb_size <= block - 1024, "{extslots} superblock extension slots do not fit the first block");
        ensure!(head.len() >= 1024 + sb_size, "the image ends inside the superblock");
        if feature_compat & SB_CHKSUM != 0 {
            ensure!(head.len() >= block, "the image ends inside its first block");
            let stored = u32_at(sb, 4);
            let mut bytes = head[1024..block].to_vec();
            bytes[4..8].fill(0);
            let computed = crc32c(!0, &bytes);
            ensure!(stored == computed, "superblock checksum {stored:#010x}, computed {computed:#010x}");
        }
        let algorithms = if feature_incompat & COMPR_CFGS != 0 { u16_at(sb, 84) } else { 1 << LZ4 };
        ensure!(algorithms & !0xf == 0, "unknown compression algorithms {:#x}", algorithms & !0xf);
        ensure!(u16_at(sb, 86) == 0, "extra devices: bakery reads single-device images");
        ensure!(sb[91] == 0, "long xattr name prefixes are counted without their feature");
        let packed_nid = u64_at(sb, 96);
        ensure!(packed_nid == 0 || feature_incompat & FRAGMENTS != 0, "a packed inode without the fragments feature");
        Ok(Self {
            blkszbits,
            feature_compat,
            feature_incompat,
            root_nid: u16_at(sb, 14) as u64,
            inos: u64_at(sb, 16),
            blocks: u32_at(sb, 36),
            meta_blkaddr: u32_at(sb, 40),
            xattr_blkaddr: u32_at(sb, 44),
            uuid: sb[48..64].try_into().expect("16 bytes"),
            algorithms,
            packed_nid,
            end: (1024 + sb_size) as u64,
        })
    }

    pub fn block_size(&self) -> u64 {
        1 << self.blkszbits
    }

    /// The names of the algorithms the superblock allows, `none` when no inode is compressed.
    pub fn compression(&self, any_compressed: bool) -> String {
        if self.feature_incompat & COMPR_CFGS == 0 && !any_compressed {
            return "none".into();
        }
        let names: Vec<&str> = (0..4).filter(|a| self.algorithms & 1 << a != 0).map(|a| ALGORITHMS[a]).collect();
        if names.is_empty() { "none".into() } else { names.join("+") }
    }
}

/// Checks one algorithm's configuration record (`len` bytes of `data`) as the kernel does.
pub(super) fn check_config(algorithm: u8, data: &[u8]) -> Result<()> {
    let name = ALGORITHMS[algorithm as usize];
    let expected = if matches!(algorithm, LZ4 | LZMA) { 14 } else { 6 };
    ensure!(data.len() == expected, "the {name} configuration is {} bytes, not {expected}", data.len());
    match algorithm {
        LZMA => {
            let dict = u32_at(data, 0);
            ensure!(dict <= 8 << 20, "the lzma dictionary of {dict} bytes is larger than 8 MiB");
            ensure!(u16_at(data, 4) == 0, "unknown lzma format {}", u16_at(data, 4));
        }
        DEFLATE => ensure!((8..=15).contains(&data[0]), "deflate window bits {} are not 8..=15", data[0]),
        ZSTD => {
            ensure!(data[0] == 0, "unknown zstd format {}", data[0]);
            ensure!(data[1] <= 20, "a zstd window of 2^{} bytes is larger than 1 MiB", data[1] as u32 + 10);
        }
        _ => {}
    }
    Ok(())
}

/// CRC-32C (Castagnoli), reflected, without the final inversion, as EROFS computes it.
pub(super) fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ if crc & 1 != 0 { 0x82F6_3B78 } else { 0 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(incompat: u32, compat: u32) -> Vec<u8> {
        let mut head = vec![0u8; 4096];
        let sb = &mut head[1024..];
        sb[0..4].copy_from_slice(&EROFS_MAGIC.to_le_bytes());
        sb[8..12].copy_from_slice(&compat.to_le_bytes());
        sb[12] = 12;
        sb[14..16].copy_from_slice(&36u16.to_le_bytes());
        sb[16..24].copy_from_slice(&5u64.to_le_bytes());
        sb[48..64].copy_from_slice(&[7; 16]);
        sb[80..84].copy_from_slice(&incompat.to_le_bytes());
        sb[84..86].copy_from_slice(&0b1001u16.to_le_bytes());
        if compat & SB_CHKSUM != 0 {
            let crc = crc32c(!0, &head[1024..]);
            head[1028..1032].copy_from_slice(&crc.to_le_bytes());
        }
        head
    }

    #[test]
    fn fields_features_and_checksum() {
        let sb = SuperBlock::parse(&image(ZERO_PADDING | COMPR_CFGS, SB_CHKSUM)).unwrap();
        assert_eq!((sb.blkszbits, sb.root_nid, sb.inos, sb.uuid), (12, 36, 5, [7; 16]));
        assert_eq!(sb.compression(true), "lz4+zstd");
        let mut bad = image(0, SB_CHKSUM);
        bad[1024 + 100] ^= 1;
        let e = SuperBlock::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("superblock checksum"), "{e}");
        let e = SuperBlock::parse(&image(0x04, 0)).unwrap_err().to_string();
        assert!(e.contains("chunk-based files"), "{e}");
        let e = SuperBlock::parse(&image(0x200, 0)).unwrap_err().to_string();
        assert!(e.contains("unknown incompatible features 0x200"), "{e}");
        assert_eq!(SuperBlock::parse(&image(0, 0)).unwrap().compression(false), "none");
    }

    #[test]
    fn crc32c_matches_the_reference_vector() {
        // RFC 3720's check value for "123456789" is 0xe3069283 with the final inversion.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
    }
}
