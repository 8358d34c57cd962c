//! EROFS on-disk structures as bakery writes them: the superblock, compact and extended inodes,
//! inline xattrs, directory entries and the superblock checksum. Field layouts follow the
//! kernel's `fs/erofs/erofs_fs.h` (little-endian throughout).

use anyhow::{Result, bail};

pub const BLOCK_SIZE: usize = 4096;
pub const BLOCK_BITS: u8 = 12;
pub const SUPER_OFFSET: usize = 1024;
pub const SUPER_MAGIC: u32 = 0xE0F5_E1E2;
/// Inode slots: a nid is the inode's byte offset from the metadata area divided by 32.
pub const SLOT_SIZE: usize = 32;

pub const COMPAT_SB_CHKSUM: u32 = 0x1;
/// Compressed data is padded with zeros at the front of its physical cluster (Linux 5.4).
pub const INCOMPAT_LZ4_0PADDING: u32 = 0x1;
/// Physical clusters of more than one block, and the compression records after the
/// superblock (the same bit; Linux 5.13).
pub const INCOMPAT_BIG_PCLUSTER: u32 = 0x2;

pub const LAYOUT_FLAT_PLAIN: u16 = 0;
pub const LAYOUT_FLAT_INLINE: u16 = 2;
pub const LAYOUT_COMPRESSED_COMPACT: u16 = 3;

pub const FT_REG_FILE: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_SYMLINK: u8 = 7;

pub const S_IFREG: u16 = 0o100000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFLNK: u16 = 0o120000;

pub const COMPACT_INODE_SIZE: usize = 32;
pub const EXTENDED_INODE_SIZE: usize = 64;
pub const DIRENT_SIZE: usize = 12;

/// The superblock's variable fields (everything else is zero).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuperBlock {
    pub feature_incompat: u32,
    /// Bitmap of the algorithms used (with [`INCOMPAT_BIG_PCLUSTER`]).
    pub available_compr_algs: u16,
    pub root_nid: u16,
    pub inodes: u64,
    /// Seconds every compact inode's time is relative to: the image's time (what erofs-utils
    /// 1.8 and older kernels call `build_time`).
    pub epoch: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub uuid: [u8; 16],
}

impl SuperBlock {
    /// Block 0: the superblock at 1024, then `records` (the compression configurations),
    /// checksummed as the kernel and fsck.erofs check it.
    pub fn block(&self, records: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK_SIZE];
        let sb = &mut block[SUPER_OFFSET..SUPER_OFFSET + 128];
        put32(sb, 0, SUPER_MAGIC);
        put32(sb, 8, COMPAT_SB_CHKSUM);
        sb[12] = BLOCK_BITS;
        put16(sb, 14, self.root_nid);
        put64(sb, 16, self.inodes);
        put64(sb, 24, self.epoch);
        put32(sb, 36, self.blocks);
        put32(sb, 40, self.meta_blkaddr);
        sb[48..64].copy_from_slice(&self.uuid);
        put32(sb, 80, self.feature_incompat);
        put16(sb, 84, self.available_compr_algs);
        block[SUPER_OFFSET + 128..SUPER_OFFSET + 128 + records.len()].copy_from_slice(records);
        let crc = crc32c_raw(!0, &block[SUPER_OFFSET..]);
        put32(&mut block[SUPER_OFFSET..], 4, crc);
        block
    }
}

/// One inode's fixed part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub layout: u16,
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    /// Start block (flat layouts) or compressed block count (compressed layouts).
    pub i_u: u32,
    pub ino: u32,
    /// Inline xattr body size in bytes (0 or 12 + 4n).
    pub xattr_size: usize,
}

impl Inode {
    /// Compact (32 bytes) unless the size or link count does not fit.
    pub fn is_compact(&self) -> bool {
        self.size <= u32::MAX as u64 && self.nlink <= u16::MAX as u32
    }

    /// The on-disk inode. uid, gid and the time relative to the epoch are all zero; an extended
    /// inode carries `mtime` itself.
    pub fn encode(&self, mtime: u64) -> Vec<u8> {
        let icount = if self.xattr_size == 0 { 0 } else { 1 + (self.xattr_size - 12) / 4 } as u16;
        if self.is_compact() {
            let mut b = vec![0u8; COMPACT_INODE_SIZE];
            put16(&mut b, 0, self.layout << 1);
            put16(&mut b, 2, icount);
            put16(&mut b, 4, self.mode);
            put16(&mut b, 6, self.nlink as u16);
            put32(&mut b, 8, self.size as u32);
            put32(&mut b, 16, self.i_u);
            put32(&mut b, 20, self.ino);
            b
        } else {
            let mut b = vec![0u8; EXTENDED_INODE_SIZE];
            put16(&mut b, 0, 1 | (self.layout << 1));
            put16(&mut b, 2, icount);
            put16(&mut b, 4, self.mode);
            put64(&mut b, 8, self.size);
            put32(&mut b, 16, self.i_u);
            put32(&mut b, 20, self.ino);
            put64(&mut b, 32, mtime);
            put32(&mut b, 44, self.nlink);
            b
        }
    }
}

/// The inline xattr body: a 12-byte header, then each entry (name without its prefix, value)
/// padded to 4 bytes, sorted by prefix index and name so the bytes do not depend on input order.
pub fn xattr_body(xattrs: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for (name, value) in xattrs {
        let (index, suffix) = split_xattr_name(name)?;
        if suffix.len() > 255 || value.len() > u16::MAX as usize {
            bail!("xattr {name} is too long for EROFS");
        }
        entries.push((index, suffix.as_bytes(), value.as_slice()));
    }
    entries.sort();
    let mut body = vec![0u8; 12];
    for (index, suffix, value) in entries {
        body.push(suffix.len() as u8);
        body.push(index);
        body.extend_from_slice(&(value.len() as u16).to_le_bytes());
        body.extend_from_slice(suffix);
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    if body.len() > 12 + 4 * (u16::MAX as usize - 1) {
        bail!("xattrs too large for EROFS");
    }
    Ok(body)
}

/// The short name prefixes EROFS knows (`erofs_fs.h` name indexes).
fn split_xattr_name(name: &str) -> Result<(u8, &str)> {
    const PREFIXES: [(&str, u8); 5] = [
        ("system.posix_acl_access", 2),
        ("system.posix_acl_default", 3),
        ("user.", 1),
        ("trusted.", 4),
        ("security.", 6),
    ];
    for (prefix, index) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix)
            && prefix.ends_with('.') != rest.is_empty()
        {
            return Ok((index, rest));
        }
    }
    bail!("xattr {name:?} has no EROFS name prefix (user., trusted., security., system.posix_acl_*)")
}

/// A directory's content: blocks of dirents followed by their names, no entry crossing a
/// block; `entries` sorted by name (bytes), `.` and `..` among them. Returns the bytes, whose
/// length is the directory's size (the last block is not padded).
pub fn dir_blocks(entries: &[(Vec<u8>, u64, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut used = 0;
        while end < entries.len() && used + DIRENT_SIZE + entries[end].0.len() <= BLOCK_SIZE {
            used += DIRENT_SIZE + entries[end].0.len();
            end += 1;
        }
        let base = out.len();
        let mut nameoff = DIRENT_SIZE * (end - start);
        for (name, nid, ftype) in &entries[start..end] {
            out.extend_from_slice(&nid.to_le_bytes());
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(*ftype);
            out.push(0);
            nameoff += name.len();
        }
        for (name, _, _) in &entries[start..end] {
            out.extend_from_slice(name);
        }
        if end < entries.len() {
            out.resize(base + BLOCK_SIZE, 0);
        }
        start = end;
    }
    out
}

/// The size [`dir_blocks`] will return for entries with these name lengths.
pub fn dir_size(name_lengths: impl Iterator<Item = usize>) -> u64 {
    let mut size = 0u64;
    for len in name_lengths {
        let len = (DIRENT_SIZE + len) as u64;
        if size % BLOCK_SIZE as u64 + len > BLOCK_SIZE as u64 {
            size = size.next_multiple_of(BLOCK_SIZE as u64);
        }
        size += len;
    }
    size
}

/// CRC-32C (Castagnoli) without the final inversion, as the kernel's `crc32c()` computes it.
pub fn crc32c_raw(mut crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for b in bytes {
        crc = TABLE[((crc ^ *b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // the standard CRC-32C of "123456789" is 0xe3069283 (inverted at both ends)
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn dirents_fill_blocks_without_crossing_and_name_offsets_point_at_names() {
        let names: Vec<Vec<u8>> = (0..300).map(|i| format!("entry-{i:05}").into_bytes()).collect();
        let entries: Vec<_> = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u64 + 100, FT_REG_FILE)).collect();
        let bytes = dir_blocks(&entries);
        assert_eq!(bytes.len() as u64, dir_size(names.iter().map(|n| n.len())));
        // 12 + 11 bytes each: 178 fit in a block, so two blocks, the second one partial
        assert_eq!(bytes.len(), BLOCK_SIZE + 122 * 23);
        let mut seen = Vec::new();
        for block in bytes.chunks(BLOCK_SIZE) {
            let first = u16::from_le_bytes([block[8], block[9]]) as usize;
            let count = first / DIRENT_SIZE;
            for i in 0..count {
                let d = &block[i * DIRENT_SIZE..];
                let nid = u64::from_le_bytes(d[..8].try_into().unwrap());
                let off = u16::from_le_bytes([d[8], d[9]]) as usize;
                let end = if i + 1 < count {
                    u16::from_le_bytes([block[(i + 1) * 12 + 8], block[(i + 1) * 12 + 9]]) as usize
                } else {
                    block.iter().skip(off).position(|b| *b == 0).map_or(block.len(), |p| off + p)
                };
                seen.push((block[off..end].to_vec(), nid));
            }
        }
        let expected: Vec<_> = entries.iter().map(|(n, nid, _)| (n.clone(), *nid)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn xattrs_use_short_prefixes_and_pad_to_four_bytes() {
        let body = xattr_body(&[("user.extension-release.strict".into(), b"false".to_vec())]).unwrap();
        assert_eq!(body.len(), 12 + 36);
        assert_eq!(&body[12..16], &[24, 1, 5, 0]);
        assert_eq!(&body[16..40], b"extension-release.strict");
        assert_eq!(&body[40..45], b"false");
        let err = xattr_body(&[("other.x".into(), vec![])]).unwrap_err().to_string();
        assert!(err.contains("other.x"), "{err}");
    }
}
