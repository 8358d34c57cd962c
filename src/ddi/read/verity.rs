//! The dm-verity hash partition: veritysetup's superblock (what `veritysetup format` and
//! systemd-repart write, and what `veritysetup verify` and systemd's dissect code load), then the
//! hash tree of format 1, recomputed here from the data partition and compared byte for byte.

use anyhow::{Result, ensure};
use sha2::{Digest, Sha256};

use crate::image::read::Span;

/// What the superblock says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub uuid: String,
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"verity\0\0";
/// Most bytes of hash tree checked in memory (a 4 GiB data partition has 32 MiB of hashes).
const MAX_TREE: u64 = 256 << 20;

/// Parses the 512-byte superblock at the start of the hash partition.
pub fn superblock(hash: &Span) -> Result<Params> {
    let sb = hash.read_vec(0, 512)?;
    ensure!(&sb[..8] == MAGIC, "the hash partition has no veritysetup superblock (\"verity\" magic)");
    let u32_at = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().expect("4 bytes"));
    ensure!(u32_at(8) == 1, "verity superblock version {}, expected 1", u32_at(8));
    ensure!(u32_at(12) == 1, "verity hash type {}, expected 1 (the format the kernel and systemd use)", u32_at(12));
    let algorithm: String =
        sb[32..64].iter().take_while(|b| **b != 0).map(|b| *b as char).collect::<String>().to_ascii_lowercase();
    ensure!(algorithm == "sha256", "verity hash algorithm {algorithm:?}, only sha256 is accepted");
    let (data_block_size, hash_block_size) = (u32_at(64), u32_at(68));
    for (what, size) in [("data", data_block_size), ("hash", hash_block_size)] {
        ensure!(
            size.is_power_of_two() && (512..=65536).contains(&size),
            "verity {what} block size {size} is not a power of two in 512..=65536"
        );
    }
    let data_blocks = u64::from_le_bytes(sb[72..80].try_into().expect("8 bytes"));
    let salt_size = u16::from_le_bytes([sb[80], sb[81]]) as usize;
    ensure!(salt_size <= 256, "verity salt size {salt_size}, more than 256");
    Ok(Params {
        uuid: crate::ddi::read::gpt::guid_be(&sb[16..32]),
        algorithm,
        data_block_size,
        hash_block_size,
        data_blocks,
        salt: sb[88..88 + salt_size].to_vec(),
    })
}

/// Recomputes the hash tree of `data` (its first `data_blocks` blocks) and compares it with the
/// one in `hash` after the superblock. Returns the root hash.
pub fn check(params: &Params, data: &Span, hash: &Span) -> Result<[u8; 32]> {
    let (dbs, hbs) = (params.data_block_size as u64, params.hash_block_size as u64);
    ensure!(params.data_blocks > 0, "the verity superblock counts no data blocks");
    let data_len = params.data_blocks.saturating_mul(dbs);
    ensure!(
        data_len <= data.len(),
        "the verity superblock covers {} blocks of {dbs} bytes ({data_len} bytes), the data partition has {} bytes",
        params.data_blocks,
        data.len()
    );
    let salted = |bytes: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&params.salt);
        h.update(bytes);
        h.finalize().into()
    };
    // Level 0 hashes the data blocks; each level above hashes the blocks of the one below, until
    // one block remains. On disk the levels are stored top first, after the superblock's block.
    let per_block = (hbs / 32) as usize;
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let mut digests: Vec<[u8; 32]> = Vec::with_capacity(params.data_blocks.min(1 << 24) as usize);
    let chunk_blocks = ((1u64 << 20) / dbs).max(1);
    let mut block = 0u64;
    while block < params.data_blocks {
        let n = chunk_blocks.min(params.data_blocks - block);
        let buf = data.read_vec(block * dbs, (n * dbs) as usize)?;
        digests.extend(buf.chunks_exact(dbs as usize).map(salted));
        block += n;
    }
    let mut tree_size = 0u64;
    // One data block: its digest is the root hash and there is no tree (veritysetup's zero levels).
    while digests.len() > 1 {
        let mut level = Vec::with_capacity(digests.len().div_ceil(per_block) * hbs as usize);
        for group in digests.chunks(per_block) {
            let start = level.len();
            for d in group {
                level.extend_from_slice(d);
            }
            level.resize(start + hbs as usize, 0);
        }
        tree_size += level.len() as u64;
        ensure!(tree_size <= MAX_TREE, "the hash tree would exceed {MAX_TREE} bytes");
        digests = level.chunks_exact(hbs as usize).map(salted).collect();
        levels.push(level);
    }
    let root = digests[0];
    let start = 512u64.next_multiple_of(hbs);
    ensure!(
        hash.read_vec(512, (start - 512) as usize)?.iter().all(|b| *b == 0),
        "the hash partition has bytes other than zero between the superblock and the hash tree"
    );
    let mut at = start;
    for (i, level) in levels.iter().enumerate().rev() {
        let stored = hash.read_vec(at, level.len()).map_err(|e| {
            anyhow::anyhow!("the hash partition ({} bytes) is too small for the hash tree: {e}", hash.len())
        })?;
        if &stored != level {
            let first = stored.iter().zip(level).position(|(a, b)| a != b).unwrap_or(0) as u64;
            anyhow::bail!(
                "the hash tree does not match the data: level {i} differs at byte {} of the hash partition",
                at + first
            );
        }
        at += level.len() as u64;
    }
    let mut rest = at;
    while rest < hash.len() {
        let n = (hash.len() - rest).min(1 << 20);
        ensure!(
            hash.read_vec(rest, n as usize)?.iter().all(|b| *b == 0),
            "the hash partition has bytes other than zero after the hash tree (from byte {at})"
        );
        rest += n;
    }
    Ok(root)
}
