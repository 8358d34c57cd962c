//! The logical cluster index of a compressed file (the kernel's `zmap.c` reads it): one entry
//! per 4 KiB of the file, HEAD where an extent starts (with its offset in the lcluster and its
//! physical block), NONHEAD elsewhere (the first one after a head carrying the physical
//! cluster's block count, CBLKCNT), encoded in the compact 2-byte/4-byte form.

use super::format::BLOCK_SIZE;

const LCLUSTER: u32 = BLOCK_SIZE as u32;
/// Set in a NONHEAD entry's low bits when they hold the compressed block count.
const D0_CBLKCNT: u16 = 1 << 11;

const TYPE_PLAIN: u16 = 0;
const TYPE_HEAD1: u16 = 1;
const TYPE_NONHEAD: u16 = 2;

/// One extent of a file: `len` bytes of the file stored in `blocks` physical blocks, either
/// compressed or (`raw`) as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub len: u32,
    pub blocks: u32,
    pub raw: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lcluster {
    Head { raw: bool, clusterofs: u16, blocks: u32 },
    NonHead { delta0: u16, delta1: u16, cblkcnt: Option<u16> },
}

/// The entries for `extents` (in file order, together the whole file). Every extent but the
/// last reaches the end of the lcluster it starts in (one head per lcluster).
pub fn lclusters(extents: &[Extent]) -> Vec<Lcluster> {
    let mut out = Vec::new();
    let mut clusterofs = 0u32;
    for (i, e) in extents.iter().enumerate() {
        assert!(e.len > 0, "empty extent");
        let mut d1 = (clusterofs + e.len) / LCLUSTER;
        let head = Lcluster::Head { raw: e.raw, clusterofs: clusterofs as u16, blocks: e.blocks };
        if d1 == 0 {
            assert_eq!(i + 1, extents.len(), "only the last extent may end inside its lcluster");
            assert_eq!(e.blocks, 1);
            out.push(head);
            clusterofs = 0;
            continue;
        }
        let mut count = e.len;
        let mut d0 = 0u32;
        loop {
            out.push(match d0 {
                0 => head,
                1 => Lcluster::NonHead { delta0: 1, delta1: d1 as u16, cblkcnt: Some(e.blocks as u16) },
                _ => {
                    Lcluster::NonHead { delta0: d0.min(D0_CBLKCNT as u32 - 1) as u16, delta1: d1 as u16, cblkcnt: None }
                }
            });
            count -= LCLUSTER - clusterofs;
            clusterofs = 0;
            d0 += 1;
            d1 -= 1;
            if count < LCLUSTER {
                break;
            }
        }
        assert!(d0 >= 2 || e.blocks == 1, "a pcluster of {} blocks needs a CBLKCNT lcluster", e.blocks);
        clusterofs = count;
    }
    if clusterofs != 0 {
        // the end of the file: a head past EOF, so the bytes before it look back
        out.push(Lcluster::Head { raw: true, clusterofs: clusterofs as u16, blocks: 0 });
    }
    out
}

/// The compact index for `entries` of a file whose data starts at block `pstart`, to be placed
/// at byte offset `ebase` of the image (right after the 8-byte map header): 4-byte packs until
/// 32-byte alignment, 2-byte packs of 16, 4-byte packs for the rest.
pub fn encode_compact(entries: &[Lcluster], pstart: u32, ebase: u64) -> Vec<u8> {
    let n = entries.len();
    let (initial, two) = compact_split(n, ebase);
    // the physical block counted so far: a pcluster counts at its CBLKCNT entry, or at its
    // head when it spans one lcluster (what the decoder adds when it walks back in a pack)
    let mut counted = pstart;
    let mut out = Vec::with_capacity(compact_size(n, ebase));
    let mut i = 0;
    while i < n {
        let (vcnt, bits) = if i >= initial && i < initial + two { (16, 14) } else { (2, 16) };
        let base = counted;
        let mut packed = vec![0u8; vcnt * bits / 8 + 4];
        for slot in 0..vcnt {
            let Some(entry) = entries.get(i + slot) else { break };
            let next_is_cblkcnt = matches!(entries.get(i + slot + 1), Some(Lcluster::NonHead { cblkcnt: Some(_), .. }));
            let (kind, lo) = match *entry {
                Lcluster::Head { raw, clusterofs, blocks } => {
                    if !next_is_cblkcnt {
                        counted += blocks.max(1);
                    }
                    (if raw { TYPE_PLAIN } else { TYPE_HEAD1 }, clusterofs)
                }
                Lcluster::NonHead { cblkcnt: Some(blocks), .. } => {
                    counted += blocks as u32;
                    (TYPE_NONHEAD, D0_CBLKCNT | blocks)
                }
                Lcluster::NonHead { delta1, .. } if slot + 1 == vcnt => (TYPE_NONHEAD, delta1.min(D0_CBLKCNT - 1)),
                Lcluster::NonHead { delta0, .. } => (TYPE_NONHEAD, delta0),
            };
            let v = ((kind << 12) | lo) as u32;
            let pos = slot * bits;
            let word = u32::from_le_bytes(packed[pos / 8..pos / 8 + 4].try_into().expect("4 bytes")) | (v << (pos % 8));
            packed[pos / 8..pos / 8 + 4].copy_from_slice(&word.to_le_bytes());
        }
        let len = packed.len();
        packed[len - 4..].copy_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&packed);
        i += vcnt;
    }
    out
}

/// How many leading entries are 4-byte and how many after them are 2-byte.
fn compact_split(n: usize, ebase: u64) -> (usize, usize) {
    let initial = (((32 - ebase % 32) / 4) & 7) as usize;
    let two = if initial < n { (n - initial) / 16 * 16 } else { 0 };
    (initial.min(n), two)
}

/// The byte size of [`encode_compact`]'s output.
pub fn compact_size(n: usize, ebase: u64) -> usize {
    let (initial, two) = compact_split(n, ebase);
    let rest = n - initial - two;
    initial * 4 + two * 2 + rest.next_multiple_of(2) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's compact lookup (`z_erofs_load_compact_lcluster`), written from its
    /// description: the type and low bits of entry `lcn`, and for a head its physical block.
    fn decode(bytes: &[u8], n: usize, ebase: u64, lcn: usize) -> (u16, u16, Option<u32>) {
        let (initial, two) = compact_split(n, ebase);
        let (pos, shift) = if lcn < initial {
            (lcn * 4, 2)
        } else if lcn - initial < two {
            (initial * 4 + (lcn - initial) * 2, 1)
        } else {
            (initial * 4 + two * 2 + (lcn - initial - two) * 4, 2)
        };
        let (vcnt, bits) = if shift == 1 { (16usize, 14usize) } else { (2, 16) };
        let packlen = vcnt << shift;
        let abs = ebase as usize + pos;
        let start = abs - abs % packlen - ebase as usize;
        let pack = &bytes[start..start + packlen];
        let i = (abs % packlen) >> shift;
        let get = |j: usize| {
            let p = j * bits;
            let v = u32::from_le_bytes(pack[p / 8..p / 8 + 4].try_into().unwrap()) >> (p % 8);
            (((v >> 12) & 3) as u16, (v & 0xfff) as u16)
        };
        let (kind, lo) = get(i);
        if kind == TYPE_NONHEAD {
            return (kind, lo, None);
        }
        let mut nblk = 0u32;
        let mut j = i as isize;
        while j > 0 {
            j -= 1;
            let (k, l) = get(j as usize);
            if k == TYPE_NONHEAD {
                if l & D0_CBLKCNT != 0 {
                    j -= 1;
                    nblk += (l & !D0_CBLKCNT) as u32;
                    continue;
                }
                assert!(l > 1, "big pclusters never have a plain delta0 of 1");
                j -= l as isize - 2;
                continue;
            }
            nblk += 1;
        }
        let base = u32::from_le_bytes(pack[packlen - 4..].try_into().unwrap());
        (kind, lo, Some(base + nblk))
    }

    fn extents() -> Vec<Extent> {
        let mut v = vec![
            Extent { len: 200_000, blocks: 16, raw: false },
            Extent { len: 4096, blocks: 1, raw: true },
            Extent { len: 9000, blocks: 1, raw: false },
            Extent { len: 70_001, blocks: 9, raw: false },
        ];
        for k in 0..40 {
            v.push(Extent { len: 4096 + k, blocks: 1, raw: true });
        }
        v.push(Extent { len: 5000, blocks: 1, raw: false });
        v.push(Extent { len: 100, blocks: 1, raw: true });
        v
    }

    /// Every extent's head decodes to its offset and physical block, wherever the index starts
    /// relative to the 32-byte boundary, and every other lcluster is a NONHEAD.
    #[test]
    fn compact_indexes_decode_to_each_extents_start_and_block() {
        let extents = extents();
        let size: u64 = extents.iter().map(|e| e.len as u64).sum();
        let entries = lclusters(&extents);
        assert_eq!(entries.len() as u64, size.div_ceil(4096));
        for ebase in [1000u64, 1008, 1016, 1024] {
            let bytes = encode_compact(&entries, 500, ebase);
            assert_eq!(bytes.len(), compact_size(entries.len(), ebase));
            let (mut offset, mut block) = (0u64, 500u32);
            let mut heads = std::collections::BTreeMap::new();
            for e in &extents {
                heads.insert(offset / 4096, ((offset % 4096) as u16, block, e.raw));
                offset += e.len as u64;
                block += e.blocks;
            }
            for lcn in 0..entries.len() {
                let (kind, lo, pblk) = decode(&bytes, entries.len(), ebase, lcn);
                match heads.get(&(lcn as u64)) {
                    Some((ofs, blk, raw)) => {
                        assert_eq!(kind, if *raw { TYPE_PLAIN } else { TYPE_HEAD1 }, "lcn {lcn} at {ebase}");
                        assert_eq!((lo, pblk), (*ofs, Some(*blk)), "lcn {lcn} at {ebase}");
                    }
                    None if lcn + 1 == entries.len() && !size.is_multiple_of(4096) && kind != TYPE_NONHEAD => {
                        assert_eq!(lo as u64, size % 4096, "the EOF head");
                    }
                    None => assert_eq!(kind, TYPE_NONHEAD, "lcn {lcn} at {ebase}"),
                }
            }
        }
    }

    #[test]
    fn the_first_nonhead_of_a_big_pcluster_holds_its_block_count() {
        let entries = lclusters(&[Extent { len: 3 * 4096 + 10, blocks: 2, raw: false }]);
        assert_eq!(
            entries,
            [
                Lcluster::Head { raw: false, clusterofs: 0, blocks: 2 },
                Lcluster::NonHead { delta0: 1, delta1: 2, cblkcnt: Some(2) },
                Lcluster::NonHead { delta0: 2, delta1: 1, cblkcnt: None },
                Lcluster::Head { raw: true, clusterofs: 10, blocks: 0 },
            ]
        );
    }
}
