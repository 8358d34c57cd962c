//! The strict EROFS reader behind `inspect`, `release` and the node's validation.
//!
//! It applies the SquashFS verifier's rules to EROFS: an image is accepted only when
//! everything the kernel could reach is what bakery lists. The superblock's incompatible
//! features must all be ones bakery reads (LZ4_0PADDING, COMPR_CFGS/BIG_PCLUSTER,
//! ZTAILPACKING, FRAGMENTS) and its checksum must match when it has one; every inode is
//! reached exactly once from the root (no hard links, no loops; the packed inode only from
//! the superblock), the superblock's inode count agrees, no two inodes' metadata overlap;
//! directory entries are sorted and unique across the whole directory (the kernel
//! binary-searches them: an unsorted name is hidden), `.` and `..` name the directory and its
//! parent, entry types equal the inodes' and link counts are consistent; only directories,
//! regular files and symlinks, root-owned; every byte inside the blocks the superblock counts,
//! every compressed index decoded the way both the kernel and fsck.erofs walk it, and every
//! pcluster decoded to exactly its extent's size and hashed. Work is iterative (no recursion
//! on depth) and bounded: metadata, inodes, paths, logical sizes and kept files have caps.

mod data;
mod decompress;
mod dir;
mod inode;
mod lzma;
mod superblock;
mod zmap;

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, bail, ensure};

use crate::image::read::{Entry, Kind, Limits, Span, Verified};
use crate::model::Format;
use crate::model::digest::Hasher;

use data::{Image, Layout, Packed};
use inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use superblock::{COMPR_CFGS, SuperBlock, XATTR_FILTER, ZERO_PADDING};

/// Verifies the EROFS image in `file` (a whole file, or a DDI partition); see [`crate::image::read::verify`].
pub fn verify_span(file: Span, limits: &Limits, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
    let len = file.len();
    let mut head = vec![0u8; len.min(64 << 10) as usize];
    file.read_exact_at(&mut head, 0).context("reading the superblock")?;
    let sb = SuperBlock::parse(&head)?;
    let bs = sb.block_size();
    let end = sb.blocks as u64 * bs;
    ensure!(end <= len, "the superblock counts {} blocks ({end} bytes), the file has {len} bytes", sb.blocks);
    let image = Image { file, end, block: bs };
    if sb.feature_incompat & COMPR_CFGS != 0 {
        let mut at = sb.end;
        for algorithm in (0..4u8).filter(|a| sb.algorithms & 1 << a != 0) {
            at = at.next_multiple_of(4);
            let size =
                u16::from_le_bytes(image.read(at, 2, "an algorithm configuration")?.try_into().expect("2 bytes"));
            let data = image.read(at + 2, size as u64, "an algorithm configuration")?;
            superblock::check_config(algorithm, &data)?;
            at += 2 + size as u64;
        }
    }
    Reader { image, sb, limits, packed: None, logical: (0, len.saturating_mul(64).max(1 << 30)), metadata: 0 }
        .walk(keep)
}

struct Reader<'a> {
    image: Image,
    sb: SuperBlock,
    limits: &'a Limits,
    packed: Option<Packed>,
    /// Logical bytes read so far, and the most allowed.
    logical: (u64, u64),
    /// Directory, index and xattr bytes read so far.
    metadata: u64,
}

/// An inode to visit: its nid, its path, what the entry naming it said, and its parent.
struct Pending {
    nid: u64,
    path: String,
    entry_type: u8,
    parent: u64,
}

/// Directory entry types.
const FT_REG: u8 = 1;
const FT_DIR: u8 = 2;
const FT_SYMLINK: u8 = 7;

/// Walk state: what was reached and where each inode's metadata lies.
#[derive(Default)]
struct Seen {
    nids: HashSet<u64>,
    /// (start, end, nid) of every inode's metadata.
    regions: Vec<(u64, u64, u64)>,
    compressed: bool,
}

impl Reader<'_> {
    fn walk(mut self, keep: &dyn Fn(&str) -> Option<usize>) -> Result<Verified> {
        let mut seen = Seen::default();
        if self.sb.packed_nid != 0 {
            let nid = self.sb.packed_nid;
            let inode = self.inode(nid, &mut seen).with_context(|| format!("the packed inode (nid {nid})"))?;
            self.open_packed(inode, &mut seen).with_context(|| format!("the packed inode (nid {nid})"))?;
        }
        let mut entries = Vec::new();
        let mut kept = BTreeMap::new();
        let root = self.sb.root_nid;
        let mut stack = vec![Pending { nid: root, path: String::new(), entry_type: FT_DIR, parent: root }];
        while let Some(pending) = stack.pop() {
            let at = if pending.path.is_empty() { "/".to_string() } else { format!("/{}", pending.path) };
            let children = self
                .visit(&pending, &mut seen, &mut entries, &mut kept, keep)
                .with_context(|| format!("{at} (nid {})", pending.nid))?;
            stack.extend(children.into_iter().rev());
        }
        ensure!(
            self.sb.inos == seen.nids.len() as u64,
            "the superblock counts {} inodes, the directories reach {}",
            self.sb.inos,
            seen.nids.len()
        );
        seen.regions.sort_unstable();
        for pair in seen.regions.windows(2) {
            let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
            ensure!(end <= start, "the metadata of inodes {a} and {b} overlap");
        }
        Ok(Verified {
            format: Format::Erofs,
            compression: self.sb.compression(seen.compressed),
            block_size: self.sb.block_size() as u32,
            uuid: Some(self.sb.uuid),
            entries,
            kept,
        })
    }

    /// Reads inode `nid`, which must not have been reached before.
    fn inode(&mut self, nid: u64, seen: &mut Seen) -> Result<Inode> {
        ensure!(seen.nids.insert(nid), "its inode is reached a second time (a hard link or a loop)");
        ensure!(seen.nids.len() as u64 <= self.limits.inodes as u64, "more than {} inodes", self.limits.inodes);
        let at = (self.sb.meta_blkaddr as u64 * self.image.block)
            .checked_add(nid.checked_mul(32).ok_or_else(|| anyhow::anyhow!("nid {nid} is out of range"))?)
            .ok_or_else(|| anyhow::anyhow!("nid {nid} is out of range"))?;
        let first = self.image.read(at, 32, "the inode")?;
        let bytes = if Inode::size_of(&first) == 64 { self.image.read(at, 64, "the inode")? } else { first };
        let inode = Inode::parse(nid, at, &bytes)?;
        ensure!(inode.uid == 0 && inode.gid == 0, "owned by {}:{}: sysext images are root-owned", inode.uid, inode.gid);
        Ok(inode)
    }

    /// The layout of `inode`, its metadata recorded as used.
    fn layout(&mut self, inode: &Inode, seen: &mut Seen) -> Result<Layout> {
        ensure!(
            !inode.compressed() || self.sb.feature_incompat & ZERO_PADDING != 0,
            "a compressed file in an image without LZ4_0PADDING (mkfs.erofs -Elegacy-compress): \
             bakery reads only zero-padded pclusters, which it can check end to end"
        );
        let (layout, end) = data::layout(&self.image, inode, self.sb.algorithms)?;
        ensure!(end <= self.image.end, "its metadata runs past the image's end");
        self.count_metadata(end - inode.at)?;
        seen.regions.push((inode.at, end, inode.nid));
        seen.compressed |= inode.compressed();
        Ok(layout)
    }

    fn count_metadata(&mut self, bytes: u64) -> Result<()> {
        self.metadata = self.metadata.saturating_add(bytes);
        let cap = self.limits.metadata as u64;
        ensure!(self.metadata <= cap, "the metadata is larger than {} MiB", cap >> 20);
        Ok(())
    }

    fn count_logical(&mut self, size: u64) -> Result<()> {
        self.logical.0 = self.logical.0.saturating_add(size);
        ensure!(
            self.logical.0 <= self.logical.1,
            "the files add up to more than {} bytes, far more than the image holds",
            self.logical.1
        );
        Ok(())
    }

    fn open_packed(&mut self, inode: Inode, seen: &mut Seen) -> Result<()> {
        ensure!(inode.mode & S_IFMT == S_IFREG, "the packed inode is not a regular file");
        ensure!(inode.xattr_isize == 0, "the packed inode carries xattrs");
        let layout = self.layout(&inode, seen)?;
        self.count_logical(inode.size)?;
        let mut packed = Packed::new(inode.size, layout)?;
        // Every pcluster of the packed inode decodes, whether a file refers to it or not.
        let layout = packed.layout.clone();
        data::stream(&self.image, &layout, inode.size, None, &mut |_| Ok(()))?;
        packed.layout = layout;
        self.packed = Some(packed);
        Ok(())
    }

    fn visit(
        &mut self,
        pending: &Pending,
        seen: &mut Seen,
        entries: &mut Vec<Entry>,
        kept: &mut BTreeMap<String, Vec<u8>>,
        keep: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Vec<Pending>> {
        let inode = self.inode(pending.nid, seen)?;
        let (kind_type, what) = match inode.mode & S_IFMT {
            S_IFREG => (FT_REG, "a regular file"),
            S_IFDIR => (FT_DIR, "a directory"),
            S_IFLNK => (FT_SYMLINK, "a symlink"),
            0o020000 | 0o060000 => bail!("a device node: sysext images hold only directories, files and symlinks"),
            0o010000 => bail!("a FIFO: sysext images hold only directories, files and symlinks"),
            0o140000 => bail!("a socket: sysext images hold only directories, files and symlinks"),
            other => bail!("unknown file type {other:#o} in mode {:#o}", inode.mode),
        };
        ensure!(
            kind_type == pending.entry_type,
            "the directory entry says type {}, the inode is {what}",
            pending.entry_type
        );
        let xattrs = self.xattrs(&inode)?;
        let layout = self.layout(&inode, seen)?;
        let mut children = Vec::new();
        let kind = match kind_type {
            FT_DIR => {
                ensure!(!inode.compressed(), "a compressed directory");
                ensure!(inode.size > 0 && inode.size <= 64 << 20, "a directory of {} bytes", inode.size);
                self.count_metadata(inode.size)?;
                let bytes = self.bytes(&layout, inode.size)?;
                children = dir::entries(&bytes, self.image.block as usize, inode.nid, pending.parent)?
                    .into_iter()
                    .map(|(name, nid, entry_type)| {
                        let path = if pending.path.is_empty() { name } else { format!("{}/{name}", pending.path) };
                        ensure!(path.len() < self.limits.path, "a path longer than {} bytes", self.limits.path);
                        Ok(Pending { nid, path, entry_type, parent: inode.nid })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let subdirs = children.iter().filter(|c| c.entry_type == FT_DIR).count() as u64;
                ensure!(
                    inode.nlink as u64 == 2 + subdirs,
                    "link count {}, but it has {subdirs} subdirectories",
                    inode.nlink
                );
                Kind::Dir
            }
            FT_REG => {
                ensure!(inode.nlink == 1, "link count {}: hard links are not allowed", inode.nlink);
                let size = inode.size;
                let cap = keep(&pending.path);
                if let Some(cap) = cap.filter(|cap| size > *cap as u64) {
                    bail!("{size} bytes, more than the {cap} bakery reads of such a file");
                }
                self.count_logical(size)?;
                let mut hasher = Hasher::default();
                let mut bytes = cap.map(|_| Vec::with_capacity(size as usize));
                data::stream(&self.image, &layout, size, self.packed.as_mut(), &mut |chunk| {
                    hasher.update(chunk);
                    if let Some(bytes) = &mut bytes {
                        bytes.extend_from_slice(chunk);
                    }
                    Ok(())
                })?;
                if let Some(bytes) = bytes {
                    kept.insert(pending.path.clone(), bytes);
                }
                Kind::File { size, sha256: hasher.finish() }
            }
            _ => {
                ensure!(inode.nlink == 1, "link count {}: hard links are not allowed", inode.nlink);
                ensure!((1..4096).contains(&inode.size), "a symlink target of {} bytes", inode.size);
                let target = self.bytes(&layout, inode.size)?;
                ensure!(!target.contains(&0), "the symlink target contains NUL");
                let target = String::from_utf8(target).context("the symlink target is not UTF-8")?;
                Kind::Symlink { target }
            }
        };
        if pending.path.is_empty() {
            ensure!(xattrs.is_empty(), "the root directory carries xattrs");
        } else {
            entries.push(Entry { path: pending.path.clone(), mode: inode.mode & 0o7777, kind, xattrs });
        }
        Ok(children)
    }

    /// All bytes of a small inode (a directory or a symlink).
    fn bytes(&mut self, layout: &Layout, size: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(size as usize);
        data::stream(&self.image, layout, size, self.packed.as_mut(), &mut |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// The inode's xattrs, shared ones first, as (full name, value).
    fn xattrs(&mut self, inode: &Inode) -> Result<Vec<(String, Vec<u8>)>> {
        if inode.xattr_isize == 0 {
            return Ok(Vec::new());
        }
        let at = inode.at + inode.isize;
        let raw = self.image.read(at, inode.xattr_isize, "the xattr body")?;
        let body = inode::xattr_body(&raw)?;
        let mut out = Vec::new();
        for id in &body.shared {
            let at = self.sb.xattr_blkaddr as u64 * self.image.block + *id as u64 * 4;
            let head = self.image.read(at, 4, "a shared xattr")?;
            let len = (4 + head[0] as u64 + u16::from_le_bytes([head[2], head[3]]) as u64).next_multiple_of(4);
            self.count_metadata(len)?;
            let (name, value, _) = inode::xattr_entry(&self.image.read(at, len, "a shared xattr")?)
                .with_context(|| format!("shared xattr {id}"))?;
            out.push((name, value));
        }
        let mut rest = body.inline;
        while !rest.is_empty() {
            let (name, value, size) = inode::xattr_entry(rest)?;
            out.push((name, value));
            rest = &rest[size..];
        }
        let mut names = HashSet::new();
        for (name, _) in &out {
            ensure!(names.insert(name.as_str()), "the xattr {name} is set twice");
            if self.sb.feature_compat & XATTR_FILTER != 0 {
                let (index, suffix) = inode::split_name(name);
                ensure!(body.filter & inode::filter_bit(index, suffix) == 0, "the xattr name filter hides {name}");
            }
        }
        Ok(out)
    }
}
