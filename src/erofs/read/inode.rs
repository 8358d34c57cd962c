//! On-disk inodes (32-byte compact and 64-byte extended) and their xattrs (inline entries and
//! shared ones), parsed from bytes the caller read.

use anyhow::{Result, bail, ensure};

pub(super) const S_IFMT: u16 = 0o170000;
pub(super) const S_IFDIR: u16 = 0o040000;
pub(super) const S_IFREG: u16 = 0o100000;
pub(super) const S_IFLNK: u16 = 0o120000;

pub(super) const FLAT_PLAIN: u8 = 0;
pub(super) const COMPRESSED_FULL: u8 = 1;
pub(super) const FLAT_INLINE: u8 = 2;
pub(super) const COMPRESSED_COMPACT: u8 = 3;

/// One inode as the disk says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Inode {
    pub nid: u64,
    /// Byte offset of the inode in the image.
    pub at: u64,
    pub layout: u8,
    /// 32 or 64.
    pub isize: u64,
    /// Bytes of the xattr body after the inode (0 without xattrs).
    pub xattr_isize: u64,
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// The start block of flat layouts (the raw `i_u` field).
    pub raw_blkaddr: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl Inode {
    /// Parses the inode at `at` from `bytes` (32 bytes, or 64 for an extended inode: when
    /// [`Inode::size_of`] says 64, pass 64).
    pub fn parse(nid: u64, at: u64, bytes: &[u8]) -> Result<Self> {
        let format = u16_at(bytes, 0);
        ensure!(format & !0x0f == 0, "unknown inode format bits {format:#06x}");
        let layout = (format >> 1 & 7) as u8;
        ensure!(
            matches!(layout, FLAT_PLAIN | COMPRESSED_FULL | FLAT_INLINE | COMPRESSED_COMPACT),
            "data layout {layout} is not one bakery reads (flat, inline or compressed)"
        );
        let icount = u16_at(bytes, 2) as u64;
        let xattr_isize = if icount == 0 { 0 } else { 12 + 4 * (icount - 1) };
        ensure!(xattr_isize != 12, "an xattr body of only a header (icount 1)");
        let mode = u16_at(bytes, 4);
        let extended = format & 1 != 0;
        let (isize, nlink, size, uid, gid) = if extended {
            ensure!(bytes.len() >= 64, "an extended inode needs 64 bytes");
            let size = u64::from_le_bytes(bytes[8..16].try_into()?);
            (64, u32_at(bytes, 44), size, u32_at(bytes, 24), u32_at(bytes, 28))
        } else {
            (32, u16_at(bytes, 6) as u32, u32_at(bytes, 8) as u64, u16_at(bytes, 24) as u32, u16_at(bytes, 26) as u32)
        };
        Ok(Self { nid, at, layout, isize, xattr_isize, mode, nlink, size, uid, gid, raw_blkaddr: u32_at(bytes, 16) })
    }

    /// 64 when the format field (the first two bytes) says extended.
    pub fn size_of(first: &[u8]) -> usize {
        if first[0] & 1 != 0 { 64 } else { 32 }
    }

    /// Where the inode's metadata (inode and xattrs) ends: inline data or indexes follow.
    pub fn meta_end(&self) -> u64 {
        self.at + self.isize + self.xattr_isize
    }

    pub fn compressed(&self) -> bool {
        matches!(self.layout, COMPRESSED_FULL | COMPRESSED_COMPACT)
    }
}

/// An xattr body: its name filter, the shared xattr ids, and the inline entries' bytes.
pub(super) struct XattrBody<'a> {
    pub filter: u32,
    pub shared: Vec<u32>,
    pub inline: &'a [u8],
}

/// Splits the xattr body (`xattr_isize` bytes after the inode).
pub(super) fn xattr_body(body: &[u8]) -> Result<XattrBody<'_>> {
    let filter = u32_at(body, 0);
    let count = body[4] as usize;
    ensure!(body[5..12].iter().all(|b| *b == 0), "the xattr header's reserved bytes are not zero");
    let ids_end = 12 + 4 * count;
    ensure!(ids_end <= body.len(), "{count} shared xattr ids do not fit an xattr body of {} bytes", body.len());
    let shared = body[12..ids_end].chunks(4).map(|c| u32_at(c, 0)).collect();
    Ok(XattrBody { filter, shared, inline: &body[ids_end..] })
}

/// One xattr entry at the start of `bytes`: (full name, value, entry size with padding).
pub(super) fn xattr_entry(bytes: &[u8]) -> Result<(String, Vec<u8>, usize)> {
    ensure!(bytes.len() >= 4, "a truncated xattr entry");
    let (name_len, index, value_len) = (bytes[0] as usize, bytes[1], u16_at(bytes, 2) as usize);
    let size = (4 + name_len + value_len).next_multiple_of(4);
    ensure!(size <= bytes.len(), "an xattr entry of {size} bytes runs past its area");
    let prefix = match index {
        1 => "user.",
        2 => "system.posix_acl_access",
        3 => "system.posix_acl_default",
        4 => "trusted.",
        6 => "security.",
        other if other & 0x80 != 0 => bail!("an xattr with a long name prefix ({other:#x})"),
        other => bail!("unknown xattr name index {other}"),
    };
    let name = &bytes[4..4 + name_len];
    ensure!(!name.contains(&0), "an xattr name contains NUL");
    let name = std::str::from_utf8(name).map_err(|_| anyhow::anyhow!("an xattr name is not UTF-8"))?;
    ensure!(index == 2 || index == 3 || !name.is_empty(), "an xattr with an empty name after {prefix}");
    Ok((format!("{prefix}{name}"), bytes[4 + name_len..4 + name_len + value_len].to_vec(), size))
}

/// The name filter bit of an xattr (`index`, name without its prefix): set in the inode's
/// filter means "not present", so the kernel's getxattr would not look.
pub(super) fn filter_bit(index: u8, suffix: &[u8]) -> u32 {
    1 << (xxh32(suffix, 0x25BB_E08F_u32.wrapping_add(index as u32)) & 31)
}

/// The index and suffix of a full xattr name (the inverse of the prefixes above).
pub(super) fn split_name(name: &str) -> (u8, &[u8]) {
    for (index, prefix) in [
        (2u8, "system.posix_acl_access"),
        (3, "system.posix_acl_default"),
        (1, "user."),
        (4, "trusted."),
        (6, "security."),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (index, rest.as_bytes());
        }
    }
    (0, name.as_bytes())
}

/// xxHash32, which the xattr name filter uses.
pub(super) fn xxh32(input: &[u8], seed: u32) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    let round = |acc: u32, lane: u32| acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(13).wrapping_mul(P1);
    let word = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    let mut p = input;
    let mut h = if input.len() >= 16 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        while p.len() >= 16 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, word(&p[i * 4..]));
            }
            p = &p[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u32);
    while p.len() >= 4 {
        h = h.wrapping_add(word(p).wrapping_mul(P3)).rotate_left(17).wrapping_mul(P4);
        p = &p[4..];
    }
    for b in p {
        h = h.wrapping_add((*b as u32).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_extended_inodes() {
        let mut compact = [0u8; 32];
        compact[0..2].copy_from_slice(&((FLAT_INLINE as u16) << 1).to_le_bytes());
        compact[2..4].copy_from_slice(&3u16.to_le_bytes());
        compact[4..6].copy_from_slice(&(S_IFREG | 0o755).to_le_bytes());
        compact[6..8].copy_from_slice(&1u16.to_le_bytes());
        compact[8..12].copy_from_slice(&5000u32.to_le_bytes());
        compact[16..20].copy_from_slice(&9u32.to_le_bytes());
        let inode = Inode::parse(4, 128, &compact).unwrap();
        assert_eq!((inode.layout, inode.isize, inode.xattr_isize, inode.size), (FLAT_INLINE, 32, 20, 5000));
        assert_eq!((inode.mode, inode.nlink, inode.raw_blkaddr, inode.meta_end()), (S_IFREG | 0o755, 1, 9, 180));

        let mut extended = [0u8; 64];
        extended[0..2].copy_from_slice(&(1 | (COMPRESSED_COMPACT as u16) << 1).to_le_bytes());
        extended[4..6].copy_from_slice(&(S_IFDIR | 0o755).to_le_bytes());
        extended[8..16].copy_from_slice(&(5u64 << 32).to_le_bytes());
        extended[24..28].copy_from_slice(&1000u32.to_le_bytes());
        extended[44..48].copy_from_slice(&3u32.to_le_bytes());
        let inode = Inode::parse(0, 0, &extended).unwrap();
        assert_eq!((inode.isize, inode.size, inode.uid, inode.nlink), (64, 5 << 32, 1000, 3));
        assert!(inode.compressed());

        compact[0] = 4 << 1;
        assert!(Inode::parse(0, 0, &compact).unwrap_err().to_string().contains("data layout 4"));
        compact[0] = 0x10;
        assert!(Inode::parse(0, 0, &compact).unwrap_err().to_string().contains("format bits"));
    }

    #[test]
    fn xattr_entries_and_filter() {
        let mut entry = vec![24u8, 1, 5, 0];
        entry.extend_from_slice(b"extension-release.strictfalse");
        entry.resize(36, 0);
        let (name, value, size) = xattr_entry(&entry).unwrap();
        assert_eq!((name.as_str(), value.as_slice(), size), ("user.extension-release.strict", &b"false"[..], 36));
        assert!(xattr_entry(&entry[..30]).is_err());
        entry[1] = 0x81;
        assert!(xattr_entry(&entry).unwrap_err().to_string().contains("long name prefix"));
        // The reference values of xxHash32.
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"Nobody inspects the spammish repetition", 0), 0xE229_3B2F);
        assert_eq!(split_name("user.a"), (1, &b"a"[..]));
    }
}
