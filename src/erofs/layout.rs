//! Where each inode goes in the metadata area. The image is laid out data first: block 0 holds
//! the superblock, file data follows from block 1, then directory and long-symlink blocks,
//! then the metadata area (inodes, xattrs, compressed indexes, inline tails), whose first
//! block is the superblock's `meta_blkaddr`. Nids count 32-byte slots from there; slot 0 is
//! left empty so no inode has nid 0.

use super::format::{BLOCK_SIZE, SLOT_SIZE};
use super::index::compact_size;

/// What follows an inode's fixed part and xattrs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: data (if any) is in whole blocks.
    None,
    /// The last `n` bytes of the data, which must not cross a block (FLAT_INLINE).
    Inline(usize),
    /// The map header and compact index of `n` lclusters (COMPRESSED_COMPACT).
    Index(usize),
}

/// One inode's shape: `head` bytes (inode and xattrs), then its tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub head: usize,
    pub tail: Tail,
}

/// Whether a tail of `tail` bytes can be inlined after a head of `head` bytes: it must share
/// a block with the head.
pub fn inlines(head: usize, tail: usize) -> bool {
    tail > 0 && head + tail <= BLOCK_SIZE
}

/// Where the 8-byte map header of an inode placed at `pos` with `head` bytes goes.
pub fn map_header_at(pos: u64, head: usize) -> u64 {
    (pos + head as u64).next_multiple_of(8)
}

/// The metadata-area offset of each inode, in order, and the area's length. Inodes start on
/// 32-byte slots; a head never crosses a block, nor does a head with its inline tail (they
/// move to the next block instead).
pub fn place(shapes: &[Shape]) -> (Vec<u64>, u64) {
    let block = BLOCK_SIZE as u64;
    let mut pos = SLOT_SIZE as u64;
    let mut at = Vec::with_capacity(shapes.len());
    for shape in shapes {
        let together = match shape.tail {
            Tail::Inline(n) => shape.head + n,
            _ => shape.head,
        } as u64;
        if pos % block + together > block {
            pos = pos.next_multiple_of(block);
        }
        at.push(pos);
        pos += match shape.tail {
            Tail::None => shape.head as u64,
            Tail::Inline(n) => (shape.head + n) as u64,
            Tail::Index(n) => {
                let header = map_header_at(pos, shape.head);
                header + 8 + compact_size(n, header + 8) as u64 - pos
            }
        };
        pos = pos.next_multiple_of(SLOT_SIZE as u64);
    }
    (at, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_take_slots_and_inline_tails_never_cross_a_block() {
        let shapes = [
            Shape { head: 32, tail: Tail::Inline(100) },
            Shape { head: 80, tail: Tail::Inline(3000) },
            Shape { head: 32, tail: Tail::Inline(2000) },
            Shape { head: 32, tail: Tail::Index(1000) },
            Shape { head: 32, tail: Tail::None },
            Shape { head: 64, tail: Tail::Inline(4032) },
        ];
        let (at, end) = place(&shapes);
        assert_eq!(at[0], 32, "nid 0 stays empty");
        assert_eq!(at[1], 32 + 160, "132 bytes round up to 160");
        assert_eq!(at[2], 4096, "2032 bytes do not fit after 3272");
        // the index: header at 4096+2032+32 → 6160 (8-aligned), 8 bytes, then 2-byte packs
        assert_eq!(at[3], 4096 + 2048);
        let index_end = 6144 + 32 + 8 + compact_size(1000, 6144 + 40) as u64;
        assert_eq!(at[4], index_end.next_multiple_of(32));
        assert_eq!(at[5], 3 * 4096, "a full block of head and tail starts a block");
        assert_eq!(end, 4 * 4096);
        for (pos, shape) in at.iter().zip(shapes) {
            assert_eq!(pos % 32, 0);
            if let Tail::Inline(n) = shape.tail {
                assert!(pos % 4096 + (shape.head + n) as u64 <= 4096);
            }
        }
        assert!(inlines(32, 4064) && !inlines(32, 4065) && !inlines(32, 0));
    }
}
