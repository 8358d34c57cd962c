//! The strict SquashFS reader behind `inspect`, `release` and the node's validation.
//!
//! It reads the format itself (backhand's reader is lenient: it stops listing a directory at an
//! entry it cannot parse, while the kernel goes on) and accepts an image only when everything
//! the kernel could reach is what bakery lists: every table inside `bytes_used` in the order the
//! kernel checks them, every directory header and entry parsed, every inode reached once by the
//! name the kernel resolves (sorted names, entry types that agree with the inodes, no hard links
//! or loops), only directories, regular files and symlinks, and every block of every file
//! decompressed to its stated size and hashed. Work is iterative (no recursion on depth) and
//! bounded: metadata, paths, names, logical sizes and captured files have caps.

pub(crate) mod data;
mod meta;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};

use crate::image::read::Span;
pub use crate::image::read::{Entry, Kind, Limits};
use crate::squashfs::format::{NO_INDEX, SuperBlock};

use data::{Data, FileData};
use meta::{Cursor, Region, read_at};

/// What a verified image holds.
#[derive(Clone, Debug)]
pub struct Verified {
    pub superblock: SuperBlock,
    /// Parents before children, siblings in name order; the root is not listed.
    pub entries: Vec<Entry>,
    /// The bytes of the files `keep` asked for (path → bytes).
    pub kept: BTreeMap<String, Vec<u8>>,
}

/// Verifies the image in `file` (a whole file, or a DDI partition). `keep(path)` returns how many bytes of a file to keep, if any:
/// a file larger than that is an error (small caps for extension-release and the manifest).
pub fn verify_span(file: &Span, limits: &Limits, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
    let len = file.len();
    let sb = SuperBlock::parse(&read_at(file, 0, 96).context("reading the superblock")?)?;
    Reader::new(file, sb, len, limits)?.walk(keep)
}

/// Directory entry types and the basic inode types they name.
const DIR: u16 = 1;
const FILE: u16 = 2;
const SYMLINK: u16 = 3;

struct Reader<'a> {
    sb: SuperBlock,
    limits: &'a Limits,
    inodes: Region,
    dirs: Region,
    ids: Vec<u32>,
    xattr_pairs: Option<(Region, Vec<u8>)>,
    data: Data<'a>,
    /// Logical bytes read so far, and the most allowed.
    logical: (u64, u64),
}

/// An inode to visit: its reference, its path, and what the entry naming it said.
struct Pending {
    reference: u64,
    path: String,
    number: Option<u32>,
    entry_type: u16,
    parent: u32,
}

impl<'a> Reader<'a> {
    fn new(file: &'a Span, sb: SuperBlock, len: u64, limits: &'a Limits) -> Result<Self> {
        let layout = meta::layout(file, &sb, len)?;
        ensure!(
            sb.inode_count > 0 && sb.inode_count <= limits.inodes,
            "inode count {} is not in 1..={}",
            sb.inode_count,
            limits.inodes
        );
        let c = sb.compressor;
        let inodes = Region::read(file, c, layout.inode_table, layout.dir_table, limits.metadata, "inode table")?;
        let dirs = Region::read(file, c, layout.dir_table, layout.dir_end, limits.metadata, "directory table")?;
        let xattr_pairs = match layout.xattrs {
            Some((start, end, ids)) => Some((Region::read(file, c, start, end, limits.metadata, "xattr table")?, ids)),
            None => None,
        };
        // Sparse files cost no space on disk: bound what they may make us hash.
        let logical_cap = sb.bytes_used.saturating_mul(64).max(1 << 30);
        let data = Data {
            file,
            compressor: c,
            block_size: sb.block_size,
            start: layout.data_start,
            end: layout.inode_table,
            fragments: layout.fragments,
            cached: None,
        };
        Ok(Self { sb, limits, inodes, dirs, ids: layout.ids, xattr_pairs, data, logical: (0, logical_cap) })
    }

    fn walk(mut self, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
        let count = self.sb.inode_count;
        let mut seen_numbers = vec![false; count as usize + 1];
        let mut seen_refs = std::collections::HashSet::new();
        let mut entries = Vec::new();
        let mut kept = BTreeMap::new();
        let mut stack = vec![Pending {
            reference: self.sb.root_inode,
            path: String::new(),
            number: None,
            entry_type: DIR,
            parent: 0,
        }];
        while let Some(pending) = stack.pop() {
            let at = if pending.path.is_empty() { "/".to_string() } else { format!("/{}", pending.path) };
            let children = self
                .visit(&pending, &mut seen_numbers, &mut seen_refs, &mut entries, &mut kept, keep)
                .with_context(|| at)?;
            stack.extend(children.into_iter().rev());
        }
        let seen = seen_numbers.iter().filter(|s| **s).count();
        ensure!(seen == count as usize, "the superblock counts {count} inodes, the directories reach {seen}");
        Ok(Verified { superblock: self.sb, entries, kept })
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &mut self,
        pending: &Pending,
        seen_numbers: &mut [bool],
        seen_refs: &mut std::collections::HashSet<u64>,
        entries: &mut Vec<Entry>,
        kept: &mut BTreeMap<String, Vec<u8>>,
        keep: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Vec<Pending>> {
        ensure!(seen_refs.insert(pending.reference), "its inode is reached a second time (a hard link or a loop)");
        let at = self.inodes.resolve(pending.reference >> 16, (pending.reference & 0xffff) as u16, "the entry")?;
        let mut cur = self.inodes.cursor(at);
        let inode_type = cur.u16()?;
        let mode = cur.u16()?;
        let (uid, gid) = (cur.u16()?, cur.u16()?);
        let _mtime = cur.u32()?;
        let number = cur.u32()?;
        ensure!(number >= 1 && number <= self.sb.inode_count, "inode number {number} is out of range");
        if let Some(expected) = pending.number {
            ensure!(number == expected, "the entry names inode {expected}, the inode says {number}");
        }
        ensure!(!std::mem::replace(&mut seen_numbers[number as usize], true), "inode number {number} is used twice");
        ensure!(mode & !0o7777 == 0, "mode {mode:#o} carries file type bits");
        for (what, index) in [("uid", uid), ("gid", gid)] {
            let Some(id) = self.ids.get(index as usize) else { bail!("{what} index {index} is out of range") };
            ensure!(*id == 0, "owned by {what} {id}: sysext images are root-owned");
        }
        let basic = match inode_type {
            1..=7 => inode_type,
            8..=14 => inode_type - 7,
            other => bail!("unknown inode type {other}"),
        };
        ensure!(
            basic == pending.entry_type,
            "the directory entry says type {}, the inode is type {basic}",
            pending.entry_type
        );
        let extended = inode_type > 7;
        let mut xattr = NO_INDEX;
        let mut children = Vec::new();
        let kind = match basic {
            DIR => {
                let (block, nlink, size, offset, parent, index_count);
                if extended {
                    nlink = cur.u32()?;
                    size = cur.u32()?;
                    block = cur.u32()?;
                    parent = cur.u32()?;
                    index_count = cur.u16()?;
                    offset = cur.u16()?;
                    xattr = cur.u32()?;
                } else {
                    block = cur.u32()?;
                    nlink = cur.u32()?;
                    size = cur.u16()? as u32;
                    offset = cur.u16()?;
                    parent = cur.u32()?;
                    index_count = 0;
                }
                if !pending.path.is_empty() {
                    ensure!(
                        parent == pending.parent,
                        "its parent is inode {}, the inode says {parent}",
                        pending.parent
                    );
                }
                let index = self.dir_index(&mut cur, index_count)?;
                children = self.listing(block as u64, offset, size, number, &pending.path, &index)?;
                let subdirs = children.iter().filter(|c| c.entry_type == DIR).count() as u32;
                ensure!(nlink == 2 + subdirs, "link count {nlink}, but it has {subdirs} subdirectories");
                Kind::Dir
            }
            FILE => {
                let (blocks_start, size, fragment, frag_offset);
                if extended {
                    blocks_start = cur.u64()?;
                    size = cur.u64()?;
                    let _sparse = cur.u64()?;
                    let nlink = cur.u32()?;
                    ensure!(nlink == 1, "link count {nlink}: hard links are not allowed");
                    fragment = cur.u32()?;
                    frag_offset = cur.u32()?;
                    xattr = cur.u32()?;
                } else {
                    blocks_start = cur.u32()? as u64;
                    fragment = cur.u32()?;
                    frag_offset = cur.u32()?;
                    size = cur.u32()? as u64;
                }
                let cap = keep(&pending.path);
                if let Some(cap) = cap.filter(|cap| size > *cap as u64) {
                    bail!("{size} bytes, more than the {cap} bakery reads of such a file");
                }
                self.logical.0 = self.logical.0.saturating_add(size);
                ensure!(
                    self.logical.0 <= self.logical.1,
                    "the files add up to more than {} bytes, far more than the image holds",
                    self.logical.1
                );
                let blocks = self.data.block_count(size, fragment);
                let list = cur.take(usize::try_from(blocks.saturating_mul(4)).unwrap_or(usize::MAX))?;
                let block_sizes = list.chunks(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
                let data = FileData { blocks_start, size, fragment, frag_offset, block_sizes };
                let (sha256, bytes) = self.data.read(&data, cap)?;
                if let Some(bytes) = bytes {
                    kept.insert(pending.path.clone(), bytes);
                }
                Kind::File { size, sha256 }
            }
            SYMLINK => {
                let nlink = cur.u32()?;
                ensure!(nlink == 1, "link count {nlink}: hard links are not allowed");
                let len = cur.u32()? as usize;
                ensure!((1..4096).contains(&len), "a symlink target of {len} bytes");
                let target = cur.take(len)?;
                ensure!(!target.contains(&0), "the symlink target contains NUL");
                let target = String::from_utf8(target.to_vec()).context("the symlink target is not UTF-8")?;
                if extended {
                    xattr = cur.u32()?;
                }
                Kind::Symlink { target }
            }
            4 | 5 => bail!("a device node: sysext images hold only directories, files and symlinks"),
            6 => bail!("a FIFO: sysext images hold only directories, files and symlinks"),
            _ => bail!("a socket: sysext images hold only directories, files and symlinks"),
        };
        let xattrs = self.xattrs(xattr)?;
        if pending.path.is_empty() {
            ensure!(xattrs.is_empty(), "the root directory carries xattrs");
        } else {
            entries.push(Entry { path: pending.path.clone(), mode, kind, xattrs });
        }
        Ok(children)
    }

    /// An extended directory's index: (offset into the listing, directory block, first name).
    fn dir_index(&self, cur: &mut Cursor<'_>, count: u16) -> Result<Vec<(u32, u32, Vec<u8>)>> {
        let mut index = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let offset = cur.u32()?;
            let block = cur.u32()?;
            let size = cur.u32()? as usize + 1;
            ensure!(size <= 256, "a directory index name of {size} bytes");
            index.push((offset, block, cur.take(size)?.to_vec()));
        }
        Ok(index)
    }

    /// Parses a directory's listing; it must fill the directory's size exactly.
    fn listing(
        &self,
        block: u64,
        offset: u16,
        size: u32,
        number: u32,
        path: &str,
        index: &[(u32, u32, Vec<u8>)],
    ) -> Result<Vec<Pending>> {
        ensure!(size >= 3, "a directory size of {size}");
        let len = (size - 3) as usize;
        let mut children = Vec::new();
        if len == 0 {
            ensure!(index.is_empty(), "an empty directory with an index");
            return Ok(children);
        }
        let start = self.dirs.resolve(block, offset, "the directory")?;
        let mut cur = self.dirs.cursor(start);
        let mut headers = Vec::new();
        let mut last_name: Option<Vec<u8>> = None;
        while cur.at < start + len {
            let header_at = cur.at - start;
            let count = cur.u32()? as usize + 1;
            ensure!(count <= 256, "a directory header with {count} entries");
            let inode_block = cur.u32()? as u64;
            let base = cur.u32()?;
            for _ in 0..count {
                let inode_offset = cur.u16()?;
                let delta = cur.u16()? as i16;
                let entry_type = cur.u16()?;
                let name_len = cur.u16()? as usize + 1;
                ensure!(name_len <= 256, "a name of {name_len} bytes");
                let name = cur.take(name_len)?;
                let shown = String::from_utf8_lossy(name);
                ensure!((1..=7).contains(&entry_type), "the entry {shown:?} has an invalid type {entry_type}");
                ensure!(
                    name != b"." && name != b".." && !name.iter().any(|b| matches!(b, b'/' | 0 | b'\n')),
                    "the name {shown:?} is not a file name"
                );
                let name = std::str::from_utf8(name).map_err(|_| anyhow::anyhow!("the name {shown:?} is not UTF-8"))?;
                if let Some(last) = &last_name {
                    ensure!(last.as_slice() < name.as_bytes(), "the names are not sorted (at {name:?})");
                }
                if headers.last().map(|h: &(usize, Vec<u8>)| h.0) != Some(header_at) {
                    headers.push((header_at, name.as_bytes().to_vec()));
                }
                last_name = Some(name.as_bytes().to_vec());
                let child_number = (base as i64 + delta as i64).try_into().unwrap_or(0u32);
                let child_path = if path.is_empty() { name.to_string() } else { format!("{path}/{name}") };
                ensure!(child_path.len() < self.limits.path, "a path longer than {} bytes", self.limits.path);
                children.push(Pending {
                    reference: inode_block << 16 | inode_offset as u64,
                    path: child_path,
                    number: Some(child_number),
                    entry_type,
                    parent: number,
                });
            }
        }
        ensure!(cur.at == start + len, "the listing runs {} bytes past the directory's size", cur.at - start - len);
        let mut previous = None;
        for (offset, block, name) in index {
            ensure!(previous < Some(*offset), "the directory index is not in order");
            previous = Some(*offset);
            let header = headers.iter().find(|h| h.0 == *offset as usize);
            let Some((_, first)) = header else { bail!("the directory index points at {offset}, not at a header") };
            ensure!(first == name, "the directory index names {:?} for a header that starts with another name", name);
            ensure!(
                self.dirs.block_of(start + *offset as usize) == *block as u64,
                "the directory index entry at {offset} names the wrong block"
            );
        }
        Ok(children)
    }

    /// The xattrs of set `index`.
    fn xattrs(&self, index: u32) -> Result<Vec<(String, Vec<u8>)>> {
        if index == NO_INDEX {
            return Ok(Vec::new());
        }
        let Some((pairs, ids)) = &self.xattr_pairs else { bail!("xattr set {index}, but the image has no xattrs") };
        let entry = ids
            .get(index as usize * 16..index as usize * 16 + 16)
            .ok_or_else(|| anyhow::anyhow!("xattr set {index} does not exist"))?;
        let reference = u64::from_le_bytes(entry[..8].try_into()?);
        let count = u32::from_le_bytes(entry[8..12].try_into()?);
        ensure!(count <= 64, "{count} xattrs on one file");
        let at = pairs.resolve(reference >> 16, (reference & 0xffff) as u16, "the xattr set")?;
        let mut cur = pairs.cursor(at);
        let mut out = Vec::new();
        for _ in 0..count {
            let kind = cur.u16()?;
            let name_len = cur.u16()? as usize;
            let name = String::from_utf8(cur.take(name_len)?.to_vec()).context("an xattr name is not UTF-8")?;
            let prefix = match kind & 0xff {
                0 => "user.",
                1 => "trusted.",
                2 => "security.",
                other => bail!("xattr type {other} is unknown"),
            };
            let mut value_len = cur.u32()? as usize;
            let value = if kind & 0x100 != 0 {
                ensure!(value_len == 8, "an out-of-line xattr value reference of {value_len} bytes");
                let reference = u64::from_le_bytes(cur.take(8)?.try_into()?);
                let at = pairs.resolve(reference >> 16, (reference & 0xffff) as u16, "the xattr value")?;
                let mut value = pairs.cursor(at);
                value_len = value.u32()? as usize;
                value.take(value_len)?.to_vec()
            } else {
                cur.take(value_len)?.to_vec()
            };
            out.push((format!("{prefix}{name}"), value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pack::PackOptions;
    use crate::model::tree::{Content, Node, Tree};
    use crate::model::{Compression, Format, ImagePath, Sha256};
    use crate::recipe::Mode;
    use crate::squashfs::pack;

    /// bakery's own images read back: modes, link targets (up to PATH_MAX, past SquashFS's
    /// 255-byte names), sizes and digests.
    #[test]
    fn packed_trees_verify() {
        let mut tree = Tree::default();
        let path = |p: &str| ImagePath::parse(p).unwrap();
        let bytes = vec![7u8; 300_000];
        let strict =
            crate::model::tree::Xattr { name: "user.extension-release.strict".into(), value: b"false".to_vec() };
        let selinux = crate::model::tree::Xattr { name: "security.selinux".into(), value: b"x".to_vec() };
        let file =
            Node::File { content: Content::Inline(bytes.clone()), mode: Mode(0o755), xattrs: vec![strict, selinux] };
        tree.add(path("usr/bin/tool"), file, "test").unwrap();
        let long = format!("/usr/{}", "x/".repeat(200));
        tree.add(path("usr/bin/long"), Node::Symlink { target: long.clone() }, "test").unwrap();
        let mut out = tempfile::NamedTempFile::new().unwrap();
        let options = PackOptions {
            format: Format::Squashfs,
            compression: Compression::Zstd,
            mtime: 0,
            threads: 2,
            uuid: [0; 16],
        };
        pack(&tree, &|_| unreachable!("no blobs"), &options, out.as_file_mut(), &|_, _| {}).unwrap();
        let verified = verify_span(&Span::open(out.path()).unwrap(), &Limits::default(), &|_| None).unwrap();
        let listed: Vec<(&str, u16, &Kind)> =
            verified.entries.iter().map(|e| (e.path.as_str(), e.mode, &e.kind)).collect();
        assert_eq!(
            listed,
            [
                ("usr", 0o755, &Kind::Dir),
                ("usr/bin", 0o755, &Kind::Dir),
                ("usr/bin/long", 0o777, &Kind::Symlink { target: long.clone() }),
                ("usr/bin/tool", 0o755, &Kind::File { size: 300_000, sha256: Sha256::of(&bytes) }),
            ]
        );
        let xattrs = &verified.entries[3].xattrs;
        assert_eq!(xattrs.len(), 2);
        assert!(xattrs.contains(&("user.extension-release.strict".to_string(), b"false".to_vec())), "{xattrs:?}");
        assert!(xattrs.contains(&("security.selinux".to_string(), b"x".to_vec())), "{xattrs:?}");
    }
}
