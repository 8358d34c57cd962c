//! Writes an image's inode, directory, fragment, id and xattr tables.
//!
//! backhand writes the data blocks (and fragments) well but cannot write xattrs. So after it is
//! done, bakery reads back where each file's data went, drops backhand's tables and writes its
//! own after the data: the same layout mksquashfs uses (post-order inodes, directory runs,
//! tables in the order the kernel checks them), plus the xattrs, with every inode's mode,
//! owner and time taken from the planned tree.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};

use anyhow::{Context, Result, anyhow, bail};
use backhand::{FilesystemReader, InnerNode};

use super::format::{Codec, MetadataWriter, NO_INDEX, NOT_SET, SuperBlock, flags};
use super::xattr::XattrTable;
use crate::model::tree::{Node, Tree};

const BASIC_DIR: u16 = 1;
const BASIC_FILE: u16 = 2;
const BASIC_SYMLINK: u16 = 3;
const EXT_DIR: u16 = 8;
const EXT_FILE: u16 = 9;
const EXT_SYMLINK: u16 = 10;

/// Where backhand put a file's data.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    blocks_start: u64,
    file_size: u64,
    sparse: u64,
    frag_index: u32,
    block_offset: u32,
    block_sizes: Vec<u32>,
}

enum Kind {
    Dir,
    File(Placement),
    Symlink(Vec<u8>),
}

struct Inode {
    name: Vec<u8>,
    kind: Kind,
    mode: u16,
    xattr: u32,
    children: Vec<usize>,
}

/// Replaces the tables of the image in `file` (just written by backhand from `tree`) with
/// bakery's, adding `tree`'s xattrs. Every entry gets uid/gid 0 and `mtime`.
pub fn rewrite(file: &mut File, tree: &Tree, codec: &Codec, mtime: u32) -> Result<()> {
    file.flush()?;
    let mut superblock = SuperBlock::read_from(file)?;
    file.seek(SeekFrom::Start(0))?; // the clone below shares this file offset
    let reader = FilesystemReader::from_reader(BufReader::new(file.try_clone()?))
        .map_err(|e| anyhow!("reading back the image backhand wrote: {e}"))?;
    let mut placements: HashMap<String, Placement> = HashMap::new();
    for node in reader.files() {
        if let InnerNode::File(data) = &node.inner {
            let path = node.fullpath.to_str().ok_or_else(|| anyhow!("non-UTF-8 path in the image"))?;
            let block_sizes =
                data.block_sizes().iter().map(|b| b.size() | if b.uncompressed() { 1 << 24 } else { 0 }).collect();
            placements.insert(
                path.trim_start_matches('/').to_string(),
                Placement {
                    blocks_start: data.blocks_start(),
                    file_size: data.file_len() as u64,
                    sparse: data.sparse(),
                    frag_index: data.frag_index() as u32,
                    block_offset: data.block_offset(),
                    block_sizes,
                },
            );
        }
    }
    let fragments = reader.fragments.clone().unwrap_or_default();
    drop(reader);

    // The inodes, root first, then the tree's entries in order (parents before children).
    let mut xattrs = XattrTable::default();
    let mut inodes =
        vec![Inode { name: Vec::new(), kind: Kind::Dir, mode: 0o755, xattr: NO_INDEX, children: Vec::new() }];
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (path, node) in tree.nodes() {
        let (kind, mode, xattr) = match node {
            Node::Dir { mode } => (Kind::Dir, mode.0, NO_INDEX),
            Node::Symlink { target } => (Kind::Symlink(target.as_bytes().to_vec()), 0o777, NO_INDEX),
            Node::File { mode, xattrs: attrs, .. } => {
                let placement =
                    placements.remove(path.as_str()).ok_or_else(|| anyhow!("backhand did not write {path}"))?;
                let xattr = if attrs.is_empty() {
                    NO_INDEX
                } else {
                    xattrs.add(attrs.iter().map(|x| (x.name.clone(), x.value.clone())).collect())?
                };
                (Kind::File(placement), mode.0, xattr)
            }
        };
        let name = path.file_name().as_bytes().to_vec();
        if name.len() > 256 {
            bail!("{path}: names longer than 256 bytes do not fit SquashFS");
        }
        let parent = path.parent().map(|p| index_of[p.as_str()]).unwrap_or(0);
        let index = inodes.len();
        inodes[parent].children.push(index);
        inodes.push(Inode { name, kind, mode, xattr, children: Vec::new() });
        index_of.insert(path.as_str(), index);
    }
    if let Some(stray) = placements.keys().next() {
        bail!("backhand wrote {stray}, which is not in the plan");
    }

    let base = superblock.inode_table;
    let mut emitter = Emitter {
        inodes: &inodes,
        inode_table: MetadataWriter::new(codec),
        dir_table: MetadataWriter::new(codec),
        count: inodes.len() as u32,
        mtime,
    };
    let root = emitter.emit(0, inodes.len() as u32 + 1)?;
    let (inode_bytes, _) = emitter.inode_table.finish()?;
    let (dir_bytes, _) = emitter.dir_table.finish()?;

    let mut out = inode_bytes;
    superblock.dir_table = base + out.len() as u64;
    out.extend_from_slice(&dir_bytes);
    let fragment_entries: Vec<u8> = fragments
        .iter()
        .flat_map(|f| {
            let size = f.size.size() | if f.size.uncompressed() { 1 << 24 } else { 0 };
            [f.start.to_le_bytes().to_vec(), size.to_le_bytes().to_vec(), 0u32.to_le_bytes().to_vec()].concat()
        })
        .collect();
    superblock.frag_table = write_lookup_table(codec, base, &mut out, &fragment_entries)?;
    superblock.frag_count = fragments.len() as u32;
    superblock.id_table = write_lookup_table(codec, base, &mut out, &0u32.to_le_bytes())?;
    superblock.id_count = 1;
    if xattrs.is_empty() {
        superblock.xattr_table = NOT_SET;
        superblock.flags |= flags::NO_XATTRS;
    } else {
        superblock.xattr_table = xattrs.write(codec, base, &mut out)?;
        superblock.flags &= !flags::NO_XATTRS;
    }
    superblock.flags &= !flags::EXPORTABLE;
    superblock.export_table = NOT_SET;
    superblock.root_inode = root;
    superblock.inode_count = inodes.len() as u32;
    superblock.mod_time = mtime;
    superblock.bytes_used = base + out.len() as u64;

    // Like mksquashfs: pad to a multiple of 4 KiB so loop devices see whole sectors.
    let padded = superblock.bytes_used.div_ceil(4096) * 4096;
    out.resize((padded - base) as usize, 0);
    file.set_len(base).context("truncating backhand's tables")?;
    file.seek(SeekFrom::Start(base))?;
    file.write_all(&out).context("writing the image tables")?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&superblock.to_bytes()).context("writing the superblock")?;
    file.flush()?;
    Ok(())
}

/// Writes `entries` as metadata blocks followed by the index of those blocks; returns the
/// index's absolute offset (what the superblock points at).
fn write_lookup_table(codec: &Codec, base: u64, out: &mut Vec<u8>, entries: &[u8]) -> Result<u64> {
    let start = base + out.len() as u64;
    let mut writer = MetadataWriter::new(codec);
    writer.write(entries)?;
    let (bytes, blocks) = writer.finish()?;
    out.extend_from_slice(&bytes);
    let index = base + out.len() as u64;
    for block in blocks {
        out.extend_from_slice(&(start + block as u64).to_le_bytes());
    }
    Ok(index)
}

struct Emitter<'a> {
    inodes: &'a [Inode],
    inode_table: MetadataWriter<'a>,
    dir_table: MetadataWriter<'a>,
    count: u32,
    mtime: u32,
}

impl Emitter<'_> {
    /// Writes inode `index` after its children (post-order, as the kernel's `..` handling and
    /// mksquashfs expect) and returns its reference. Inode numbers are `index + 1`.
    fn emit(&mut self, index: usize, parent_number: u32) -> Result<u64> {
        let inode = &self.inodes[index];
        let number = index as u32 + 1;
        let mut bytes = Vec::with_capacity(64);
        match &inode.kind {
            Kind::Dir => {
                let mut entries = Vec::with_capacity(inode.children.len());
                for &child in &inode.children {
                    let reference = self.emit(child, number)?;
                    entries.push((child, reference));
                }
                let (dir_block, dir_offset) = self.dir_table.position();
                let listing = self.listing(&entries);
                self.dir_table.write(&listing)?;
                let file_size = listing.len() as u32 + 3;
                let subdirs =
                    inode.children.iter().filter(|c| matches!(self.inodes[**c].kind, Kind::Dir)).count() as u32;
                if inode.xattr == NO_INDEX && file_size <= u16::MAX as u32 {
                    self.header(&mut bytes, BASIC_DIR, inode.mode, number);
                    put32(&mut bytes, dir_block);
                    put32(&mut bytes, 2 + subdirs);
                    bytes.extend_from_slice(&(file_size as u16).to_le_bytes());
                    bytes.extend_from_slice(&dir_offset.to_le_bytes());
                    put32(&mut bytes, parent_number);
                } else {
                    self.header(&mut bytes, EXT_DIR, inode.mode, number);
                    put32(&mut bytes, 2 + subdirs);
                    put32(&mut bytes, file_size);
                    put32(&mut bytes, dir_block);
                    put32(&mut bytes, parent_number);
                    bytes.extend_from_slice(&0u16.to_le_bytes()); // no directory index
                    bytes.extend_from_slice(&dir_offset.to_le_bytes());
                    put32(&mut bytes, inode.xattr);
                }
            }
            Kind::File(p) => {
                let basic = inode.xattr == NO_INDEX
                    && p.sparse == 0
                    && p.file_size <= u32::MAX as u64
                    && p.blocks_start <= u32::MAX as u64;
                if basic {
                    self.header(&mut bytes, BASIC_FILE, inode.mode, number);
                    put32(&mut bytes, p.blocks_start as u32);
                    put32(&mut bytes, p.frag_index);
                    put32(&mut bytes, p.block_offset);
                    put32(&mut bytes, p.file_size as u32);
                } else {
                    self.header(&mut bytes, EXT_FILE, inode.mode, number);
                    bytes.extend_from_slice(&p.blocks_start.to_le_bytes());
                    bytes.extend_from_slice(&p.file_size.to_le_bytes());
                    bytes.extend_from_slice(&p.sparse.to_le_bytes());
                    put32(&mut bytes, 1);
                    put32(&mut bytes, p.frag_index);
                    put32(&mut bytes, p.block_offset);
                    put32(&mut bytes, inode.xattr);
                }
                for size in &p.block_sizes {
                    put32(&mut bytes, *size);
                }
            }
            Kind::Symlink(target) => {
                let kind = if inode.xattr == NO_INDEX { BASIC_SYMLINK } else { EXT_SYMLINK };
                self.header(&mut bytes, kind, inode.mode, number);
                put32(&mut bytes, 1);
                put32(&mut bytes, target.len() as u32);
                bytes.extend_from_slice(target);
                if kind == EXT_SYMLINK {
                    put32(&mut bytes, inode.xattr);
                }
            }
        }
        let reference = self.inode_table.reference();
        self.inode_table.write(&bytes)?;
        Ok(reference)
    }

    fn header(&self, out: &mut Vec<u8>, kind: u16, mode: u16, number: u32) {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&mode.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // uid index: root
        out.extend_from_slice(&0u16.to_le_bytes()); // gid index: root
        put32(out, self.mtime);
        put32(out, number);
        debug_assert!(number <= self.count);
    }

    /// A directory's listing: runs of at most 256 entries whose inodes share a metadata block.
    fn listing(&self, entries: &[(usize, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let block = (entries[i].1 >> 16) as u32;
            let base = entries[i].0 as u32 + 1;
            let mut j = i;
            while j < entries.len()
                && j - i < 256
                && (entries[j].1 >> 16) as u32 == block
                && (entries[j].0 as i64 + 1 - base as i64).abs() <= i16::MAX as i64
            {
                j += 1;
            }
            put32(&mut out, (j - i - 1) as u32);
            put32(&mut out, block);
            put32(&mut out, base);
            for &(child, reference) in &entries[i..j] {
                let inode = &self.inodes[child];
                let kind = match inode.kind {
                    Kind::Dir => BASIC_DIR,
                    Kind::File(_) => BASIC_FILE,
                    Kind::Symlink(_) => BASIC_SYMLINK,
                };
                out.extend_from_slice(&((reference & 0xffff) as u16).to_le_bytes());
                out.extend_from_slice(&((child as i64 + 1 - base as i64) as i16).to_le_bytes());
                out.extend_from_slice(&kind.to_le_bytes());
                out.extend_from_slice(&(inode.name.len() as u16 - 1).to_le_bytes());
                out.extend_from_slice(&inode.name);
            }
            i = j;
        }
        out
    }
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}
