//! The dm-verity hash tree of a data partition (veritysetup format 1: sha256, 4096-byte data
//! and hash blocks, salt prepended to every hashed block), with the 512-byte superblock that
//! `veritysetup format` writes and systemd's `crypt_load(CRYPT_VERITY)` reads: the hash area
//! starts one hash block after it, its top level first.

use std::io::Read;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK: usize = 4096;
/// Digests per hash block.
const PER_BLOCK: usize = BLOCK / 32;

/// A computed hash tree: the root hash and the hash partition's bytes (superblock included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    pub root_hash: [u8; 32],
    pub hash_area: Vec<u8>,
}

impl HashTree {
    /// Sets the superblock's UUID (cryptsetup shows it; nothing checks it).
    pub fn set_uuid(&mut self, uuid: [u8; 16]) {
        self.hash_area[16..32].copy_from_slice(&uuid);
    }
}

/// Hashes `data_blocks` blocks of 4096 bytes read from `data` with `salt` and lays out the
/// hash partition.
pub fn hash_tree(data: &mut dyn Read, data_blocks: u64, salt: &[u8; 32]) -> Result<HashTree> {
    ensure!(data_blocks > 0, "a verity data partition needs at least one block");
    let hash = |block: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(block);
        h.finalize().into()
    };
    // Level 0 from the data, read once; each further level from the one below until one block
    // is left, whose hash is the root.
    let mut digests = Vec::with_capacity(data_blocks as usize);
    let mut block = vec![0u8; BLOCK];
    for index in 0..data_blocks {
        data.read_exact(&mut block).with_context(|| format!("reading data block {index} of {data_blocks}"))?;
        digests.push(hash(&block));
    }
    let mut levels: Vec<Vec<u8>> = Vec::new();
    while digests.len() > 1 {
        let level = pack_level(&digests);
        digests = level.chunks(BLOCK).map(hash).collect();
        levels.push(level);
    }
    let root_hash = digests[0];
    let mut hash_area = superblock(data_blocks, salt);
    hash_area.resize(BLOCK, 0);
    for level in levels.iter().rev() {
        hash_area.extend_from_slice(level);
    }
    Ok(HashTree { root_hash, hash_area })
}

/// Digests packed into hash blocks, the last one zero-padded.
fn pack_level(digests: &[[u8; 32]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(PER_BLOCK);
    let mut out = Vec::with_capacity(blocks * BLOCK);
    for digest in digests {
        out.extend_from_slice(digest);
    }
    out.resize(blocks * BLOCK, 0);
    out
}

/// cryptsetup's `struct verity_sb` (512 bytes, little-endian).
fn superblock(data_blocks: u64, salt: &[u8; 32]) -> Vec<u8> {
    let mut sb = Vec::with_capacity(512);
    sb.extend_from_slice(b"verity\0\0");
    sb.extend_from_slice(&1u32.to_le_bytes()); // superblock version
    sb.extend_from_slice(&1u32.to_le_bytes()); // hash type: format 1
    sb.extend_from_slice(&[0; 16]); // uuid, set by HashTree::set_uuid
    let mut algorithm = [0u8; 32];
    algorithm[..6].copy_from_slice(b"sha256");
    sb.extend_from_slice(&algorithm);
    sb.extend_from_slice(&(BLOCK as u32).to_le_bytes()); // data block size
    sb.extend_from_slice(&(BLOCK as u32).to_le_bytes()); // hash block size
    sb.extend_from_slice(&data_blocks.to_le_bytes());
    sb.extend_from_slice(&(salt.len() as u16).to_le_bytes());
    sb.extend_from_slice(&[0; 6]);
    let mut salt_field = [0u8; 256];
    salt_field[..salt.len()].copy_from_slice(salt);
    sb.extend_from_slice(&salt_field);
    sb.resize(512, 0);
    sb
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(blocks: usize) -> HashTree {
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i % 251) as u8).collect();
        hash_tree(&mut data.as_slice(), blocks as u64, &[7; 32]).unwrap()
    }

    #[test]
    fn one_block_hashes_to_the_salted_block_and_has_no_levels() {
        let t = tree(1);
        let data: Vec<u8> = (0..BLOCK).map(|i| (i % 251) as u8).collect();
        let expect: [u8; 32] = Sha256::new().chain_update([7; 32]).chain_update(&data).finalize().into();
        assert_eq!(t.root_hash, expect);
        assert_eq!(t.hash_area.len(), BLOCK);
    }

    #[test]
    fn levels_grow_by_128_and_the_top_level_comes_first() {
        assert_eq!(tree(128).hash_area.len(), 2 * BLOCK);
        let t = tree(129);
        // superblock, one top block, two leaf blocks
        assert_eq!(t.hash_area.len(), 4 * BLOCK);
        let top = &t.hash_area[BLOCK..2 * BLOCK];
        let root: [u8; 32] = Sha256::new().chain_update([7; 32]).chain_update(top).finalize().into();
        assert_eq!(t.root_hash, root);
        assert_eq!(&t.hash_area[..8], b"verity\0\0");
    }

    #[test]
    fn short_data_is_an_error() {
        assert!(hash_tree(&mut [0u8; 100].as_slice(), 1, &[0; 32]).is_err());
    }
}
