//! The metadata area, written after the data: directory and long-symlink blocks first (their
//! content needs the nids, which need every inode's shape), then every inode with its xattrs
//! and its inline tail or compressed index.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use anyhow::{Context, Result, bail};

use super::compress::Codec;
use super::data::{Stored, head_size};
use super::format::{self, BLOCK_SIZE, FT_DIR, FT_REG_FILE, FT_SYMLINK, Inode, SLOT_SIZE};
use super::index;
use super::layout::{self, Shape, Tail};
use super::{Ino, Kind, dir_entries};

/// Advice in every compressed inode's map header: compact 2-byte indexes, big pclusters.
const ADVISE_COMPACTED_2B_BIG_PCLUSTER: u16 = 0x1 | 0x2 | 0x4;

/// Writes directory and symlink blocks from block `next`, then the metadata area. Returns
/// (meta_blkaddr, the image's blocks, the root's nid).
pub fn write(
    inodes: &[Ino],
    mut stored: Vec<Stored>,
    codec: Option<Codec>,
    mtime: u32,
    next: u32,
    out: &mut File,
) -> Result<(u32, u32, u16)> {
    // blocks for directories and symlinks whose data does not inline
    let mut block = next;
    for (ino, stored) in inodes.iter().zip(stored.iter_mut()) {
        if matches!(ino.kind, Kind::File(_)) {
            continue;
        }
        let tail = (ino.size % BLOCK_SIZE as u64) as usize;
        let inline = layout::inlines(head_size(ino), tail);
        let start = block;
        block += (ino.size / BLOCK_SIZE as u64 + u64::from(tail > 0 && !inline)) as u32;
        *stored = Stored::Plain { start, tail: inline.then(Vec::new) };
    }
    let meta_blkaddr = block;
    let shapes: Vec<Shape> = inodes
        .iter()
        .zip(&stored)
        .map(|(ino, stored)| Shape {
            head: head_size(ino),
            tail: match stored {
                Stored::Plain { tail: Some(_), .. } => Tail::Inline((ino.size % BLOCK_SIZE as u64) as usize),
                Stored::Compressed { .. } => Tail::Index(ino.size.div_ceil(BLOCK_SIZE as u64) as usize),
                _ => Tail::None,
            },
        })
        .collect();
    let (at, len) = layout::place(&shapes);
    let nid = |i: usize| at[i] / SLOT_SIZE as u64;
    let root_nid = u16::try_from(nid(0)).context("the root inode is too far into the metadata")?;

    // directory and symlink content: whole blocks out now, inline tails kept
    let mut data = std::io::BufWriter::new(&mut *out);
    data.seek(SeekFrom::Start(next as u64 * BLOCK_SIZE as u64))?;
    for (i, ino) in inodes.iter().enumerate() {
        let bytes = match &ino.kind {
            Kind::File(_) => continue,
            Kind::Symlink(target) => target.clone(),
            Kind::Dir => dir_content(inodes, i, &nid),
        };
        if bytes.len() as u64 != ino.size {
            bail!("internal error: inode {i} has {} bytes of content, not {}", bytes.len(), ino.size);
        }
        let Stored::Plain { tail, .. } = &mut stored[i] else { unreachable!("placed above") };
        let whole = match tail {
            Some(t) => {
                let whole = bytes.len() / BLOCK_SIZE * BLOCK_SIZE;
                *t = bytes[whole..].to_vec();
                whole
            }
            None => bytes.len(),
        };
        let mut blocks = bytes[..whole].to_vec();
        blocks.resize(whole.next_multiple_of(BLOCK_SIZE), 0);
        data.write_all(&blocks).context("writing the image")?;
    }
    data.flush().context("writing the image")?;
    drop(data);

    let mut meta = vec![0u8; (len as usize).next_multiple_of(BLOCK_SIZE)];
    let meta_base = meta_blkaddr as u64 * BLOCK_SIZE as u64;
    for (i, (ino, stored)) in inodes.iter().zip(&stored).enumerate() {
        let pos = at[i] as usize;
        let (layout, i_u) = match stored {
            Stored::Plain { start, tail } => {
                let blocks =
                    ino.size / BLOCK_SIZE as u64 + u64::from(tail.is_none() && ino.size % BLOCK_SIZE as u64 > 0);
                let layout = if tail.is_some() { format::LAYOUT_FLAT_INLINE } else { format::LAYOUT_FLAT_PLAIN };
                (layout, if blocks > 0 { *start } else { 0 })
            }
            Stored::Compressed { blocks, .. } => (format::LAYOUT_COMPRESSED_COMPACT, *blocks),
            Stored::Later => unreachable!("placed above"),
        };
        let inode = Inode {
            layout,
            mode: ino.mode,
            nlink: ino.nlink,
            size: ino.size,
            i_u,
            ino: i as u32 + 1,
            xattr_size: ino.xattrs.len(),
        };
        let encoded = inode.encode(mtime as u64);
        meta[pos..pos + encoded.len()].copy_from_slice(&encoded);
        let mut end = pos + encoded.len();
        meta[end..end + ino.xattrs.len()].copy_from_slice(&ino.xattrs);
        end += ino.xattrs.len();
        match stored {
            Stored::Plain { tail: Some(tail), .. } => meta[end..end + tail.len()].copy_from_slice(tail),
            Stored::Compressed { start, extents, .. } => {
                let codec = codec.expect("compressed inodes only with a codec");
                let header = layout::map_header_at(pos as u64, end - pos) as usize;
                format::put16(&mut meta, header + 4, ADVISE_COMPACTED_2B_BIG_PCLUSTER);
                meta[header + 6] = codec.algorithm();
                let entries = index::lclusters(extents);
                let encoded = index::encode_compact(&entries, *start, meta_base + header as u64 + 8);
                meta[header + 8..header + 8 + encoded.len()].copy_from_slice(&encoded);
            }
            _ => {}
        }
    }
    out.seek(SeekFrom::Start(meta_base))?;
    out.write_all(&meta).context("writing the image")?;
    Ok((meta_blkaddr, meta_blkaddr + (meta.len() / BLOCK_SIZE) as u32, root_nid))
}

/// Directory `i`'s blocks: `.`, `..` and its children, sorted by name.
fn dir_content(inodes: &[Ino], i: usize, nid: &dyn Fn(usize) -> u64) -> Vec<u8> {
    let ino = &inodes[i];
    let entries: Vec<(Vec<u8>, u64, u8)> = dir_entries(&ino.children)
        .into_iter()
        .map(|name| {
            let target = match name {
                b"." => i,
                b".." => ino.parent,
                _ => {
                    let found = ino.children.binary_search_by(|(n, _)| n.as_slice().cmp(name));
                    ino.children[found.expect("a child")].1
                }
            };
            let ftype = match inodes[target].kind {
                Kind::Dir => FT_DIR,
                Kind::File(_) => FT_REG_FILE,
                Kind::Symlink(_) => FT_SYMLINK,
            };
            (name.to_vec(), nid(target), ftype)
        })
        .collect();
    format::dir_blocks(&entries)
}
