//! Compressed files' indexes: the map header and the logical-cluster index (full 8-byte
//! entries or compacted 4B/2B packs) decoded into extents.
//!
//! Every lcluster is decoded as the kernel decodes it (`z_erofs_load_*_lcluster`), then the
//! extents are derived front to back from the heads, and both ways the other readers find
//! extents must agree with that: the kernel's lookback (`delta[0]`, from any offset back to
//! its head) and fsck's forward walk (`delta[1]`, from a head to the next). An index where
//! they could disagree, a CBLKCNT anywhere but right after its head, a shared (partial)
//! pcluster or a pcluster over the kernel's sizes is refused.

use anyhow::{Result, bail, ensure};

pub(super) const COMPACTED_2B: u16 = 0x01;
const BIG_PCLUSTER_1: u16 = 0x02;
const BIG_PCLUSTER_2: u16 = 0x04;
pub(super) const INLINE_PCLUSTER: u16 = 0x08;
const INTERLACED_PCLUSTER: u16 = 0x10;
pub(super) const FRAGMENT_PCLUSTER: u16 = 0x20;

const PLAIN: u8 = 0;
const HEAD1: u8 = 1;
const NONHEAD: u8 = 2;
const HEAD2: u8 = 3;
const CBLKCNT: u32 = 1 << 11;
const PARTIAL_REF: u16 = 1 << 15;
const MAX_PCLUSTER: u64 = 1 << 20;
const MAX_DECODED: u64 = 12 << 20;

/// How a pcluster's bytes become the extent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Codec {
    /// Algorithm `n` of the superblock's list (`superblock::LZ4`..).
    Algorithm(u8),
    /// Stored: the extent's bytes at the start of the pcluster.
    Shifted,
    /// Stored, rotated by the extent's offset in its block.
    Interlaced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// `len` bytes at byte offset `at` of the image (whole blocks).
    Blocks { at: u64, len: u64 },
    /// The tail pcluster inline after the index, in the inode's metadata block.
    Inline { at: u64, len: u64 },
    /// Bytes of the packed inode from `offset`.
    Fragment { offset: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extent {
    pub la: u64,
    pub len: u64,
    pub codec: Codec,
    pub source: Source,
}

/// The 8-byte map header after the inode and its xattrs (at an 8-byte boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MapHeader {
    /// The whole file is bytes of the packed inode from this offset.
    WholeFragment(u64),
    Indexed {
        advise: u16,
        algorithms: [u8; 2],
        fragment_offset: u32,
        idata_size: u16,
    },
}

impl MapHeader {
    pub fn parse(bytes: &[u8; 8], compact: bool) -> Result<Self> {
        let raw = u64::from_le_bytes(*bytes);
        if bytes[7] & 0x80 != 0 {
            return Ok(Self::WholeFragment(raw ^ 1 << 63));
        }
        let advise = u16::from_le_bytes([bytes[4], bytes[5]]);
        let known = BIG_PCLUSTER_1 | BIG_PCLUSTER_2 | INLINE_PCLUSTER | INTERLACED_PCLUSTER | FRAGMENT_PCLUSTER;
        // Bit 0 means compacted 2B for compact indexes, extent records (Linux 6.15) for full ones.
        let known = if compact { known | COMPACTED_2B } else { known };
        ensure!(advise & !known == 0, "unknown map header advise bits {:#06x}", advise & !known);
        ensure!(
            advise & (INLINE_PCLUSTER | FRAGMENT_PCLUSTER) != INLINE_PCLUSTER | FRAGMENT_PCLUSTER,
            "the map header asks for both an inline tail and a fragment"
        );
        ensure!(
            !compact || (advise & BIG_PCLUSTER_1 != 0) == (advise & BIG_PCLUSTER_2 != 0),
            "compact indexes with big pclusters for one head type only"
        );
        ensure!(bytes[7] == 0, "logical clusters larger than a block (cluster bits {})", bytes[7]);
        let algorithms = [bytes[6] & 15, bytes[6] >> 4];
        ensure!(algorithms.iter().all(|a| *a < 4), "unknown compression algorithms {:#04x}", bytes[6]);
        let fragment_offset = u32::from_le_bytes(bytes[0..4].try_into()?);
        Ok(Self::Indexed { advise, algorithms, fragment_offset, idata_size: u16::from_le_bytes([bytes[2], bytes[3]]) })
    }
}

/// What decoding an inode's index needs from the image.
pub(super) struct Index<'a> {
    pub blkszbits: u8,
    pub compact: bool,
    pub advise: u16,
    /// Absolute offset of the first index byte (after the map header, and for full indexes
    /// after its 8 reserved bytes): compacted packs are aligned to it.
    pub start: u64,
    pub bytes: &'a [u8],
    pub size: u64,
}

/// One lcluster as the kernel sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lcluster {
    kind: u8,
    clusterofs: u32,
    delta: [u32; 2],
    /// For the CBLKCNT lcluster: the pcluster's blocks.
    blocks: u32,
    pblk: u64,
}

/// Where the index ends, from where it starts: full entries, or compacted packs.
pub(super) fn index_len(compact: bool, advise: u16, start: u64, total: u64) -> u64 {
    if !compact {
        return total * 8;
    }
    let (initial, two_byte) = compact_split(advise, start, total);
    if initial >= total {
        return total.next_multiple_of(2) * 4;
    }
    initial * 4 + two_byte * 2 + (total - initial - two_byte).next_multiple_of(2) * 4
}

/// The kernel's split of compacted indexes: 4B packs until 32-byte alignment, then 2B packs of
/// 16 (with COMPACTED_2B), then 4B packs.
fn compact_split(advise: u16, start: u64, total: u64) -> (u64, u64) {
    let initial = ((32 - start % 32) / 4) & 7;
    let two_byte = if advise & COMPACTED_2B != 0 && initial < total { (total - initial) / 16 * 16 } else { 0 };
    (initial, two_byte)
}

impl Index<'_> {
    fn lcsize(&self) -> u64 {
        1 << self.blkszbits
    }

    fn big(&self) -> bool {
        self.advise & (BIG_PCLUSTER_1 | BIG_PCLUSTER_2) != 0
    }

    fn load(&self, lcn: u64, total: u64) -> Result<Lcluster> {
        if self.compact { self.load_compact(lcn, total) } else { self.load_full(lcn) }
    }

    fn load_full(&self, lcn: u64) -> Result<Lcluster> {
        let at = lcn as usize * 8;
        let di = self.bytes.get(at..at + 8).ok_or_else(|| anyhow::anyhow!("index entry {lcn} is missing"))?;
        let advise = u16::from_le_bytes([di[0], di[1]]);
        ensure!(advise & PARTIAL_REF == 0, "lcluster {lcn} refers to part of a shared pcluster (dedupe)");
        ensure!(advise & !3 == 0, "lcluster {lcn} has unknown advise bits {advise:#06x}");
        let kind = (advise & 3) as u8;
        let mut lc = Lcluster { kind, ..Default::default() };
        if kind == NONHEAD {
            lc.clusterofs = self.lcsize() as u32;
            let d0 = u16::from_le_bytes([di[4], di[5]]) as u32;
            lc.delta = [d0, u16::from_le_bytes([di[6], di[7]]) as u32];
            if d0 & CBLKCNT != 0 {
                ensure!(self.big(), "lcluster {lcn} counts pcluster blocks without big pclusters");
                lc.blocks = d0 & !CBLKCNT;
                lc.delta[0] = 1;
            }
        } else {
            lc.clusterofs = u16::from_le_bytes([di[2], di[3]]) as u32;
            lc.pblk = u32::from_le_bytes(di[4..8].try_into()?) as u64;
        }
        Ok(lc)
    }

    fn load_compact(&self, lcn: u64, total: u64) -> Result<Lcluster> {
        ensure!(lcn < total && self.blkszbits <= 14, "lcluster {lcn} is out of range");
        let (initial, two_byte) = compact_split(self.advise, self.start, total);
        let (mut pos, mut rel, mut shift) = (0u64, lcn, 2u32);
        if rel >= initial {
            pos += initial * 4;
            rel -= initial;
            if rel < two_byte {
                shift = 1;
            } else {
                pos += two_byte * 2;
                rel -= two_byte;
            }
        }
        pos += rel << shift;
        let vcnt: u64 = if shift == 2 {
            2
        } else if self.blkszbits <= 12 {
            16
        } else {
            bail!("2B compacted indexes for large lclusters")
        };
        let pack_len = vcnt << shift;
        // Packs are aligned to their size in the image.
        let abs = self.start + pos;
        let pack_start = (abs - abs % pack_len - self.start) as usize;
        let pack = self
            .bytes
            .get(pack_start..pack_start + pack_len as usize)
            .ok_or_else(|| anyhow::anyhow!("the index pack of lcluster {lcn} is missing"))?;
        let lobits = (self.blkszbits as u32).max(12);
        let encodebits = ((pack_len as u32 - 4) * 8) / vcnt as u32;
        let i = ((abs % pack_len) >> shift) as i64;
        let decode = |i: i64| -> (u32, u8) {
            let bit = encodebits as usize * i as usize;
            let mut word = [0u8; 4];
            let avail = &pack[bit / 8..(bit / 8 + 4).min(pack.len())];
            word[..avail.len()].copy_from_slice(avail);
            let v = u32::from_le_bytes(word) >> (bit & 7);
            (v & ((1 << lobits) - 1), (v >> lobits & 3) as u8)
        };
        let (lo, kind) = decode(i);
        let mut lc = Lcluster { kind, ..Default::default() };
        if kind == NONHEAD {
            lc.clusterofs = self.lcsize() as u32;
            // delta[1], as the kernel's lookahead finds it
            let mut d1 = 0u32;
            let mut j = i;
            loop {
                let (l, t) = decode(j);
                if t != NONHEAD {
                    break;
                }
                d1 += 1;
                j += 1;
                if j >= vcnt as i64 {
                    if l & CBLKCNT == 0 {
                        d1 = d1.wrapping_add(l.wrapping_sub(1));
                    }
                    break;
                }
            }
            lc.delta[1] = d1 & 0xffff;
            if lo & CBLKCNT != 0 {
                ensure!(self.big(), "lcluster {lcn} counts pcluster blocks without big pclusters");
                lc.blocks = lo & !CBLKCNT;
                lc.delta[0] = 1;
            } else if i + 1 != vcnt as i64 {
                lc.delta[0] = lo;
            } else {
                let (prev, t) = decode(i - 1);
                let prev = if t != NONHEAD {
                    0
                } else if prev & CBLKCNT != 0 {
                    1
                } else {
                    prev
                };
                lc.delta[0] = prev + 1;
            }
            return Ok(lc);
        }
        lc.clusterofs = lo;
        let mut nblk: u64;
        let mut j = i;
        if !self.big() {
            nblk = 1;
            while j > 0 {
                j -= 1;
                let (l, t) = decode(j);
                if t == NONHEAD {
                    j -= l as i64;
                }
                if j >= 0 {
                    nblk += 1;
                }
            }
        } else {
            nblk = 0;
            while j > 0 {
                j -= 1;
                let (l, t) = decode(j);
                if t == NONHEAD {
                    if l & CBLKCNT != 0 {
                        j -= 1;
                        nblk += (l & !CBLKCNT) as u64;
                        continue;
                    }
                    ensure!(l > 1, "lcluster {lcn}: a big-pcluster pack with a distance of {l}");
                    j -= l as i64 - 2;
                    continue;
                }
                nblk += 1;
            }
        }
        let base = u32::from_le_bytes(pack[pack.len() - 4..].try_into()?) as u64;
        lc.pblk = base + nblk;
        Ok(lc)
    }
}

/// The extents of a compressed file, front to back, covering `[0, size)` exactly.
/// `inline_at` is where an inline tail pcluster would start (the end of the index).
pub(super) fn extents(index: &Index<'_>, header: &MapHeader, algorithms: u16, inline_at: u64) -> Result<Vec<Extent>> {
    let size = index.size;
    let MapHeader::Indexed { advise, algorithms: algs, fragment_offset, idata_size } = *header else {
        bail!("a whole-file fragment has no index");
    };
    let lcs = index.lcsize();
    let bs = lcs;
    let total = size.div_ceil(lcs);
    let mut lcs_list = Vec::with_capacity(total as usize);
    for lcn in 0..total {
        let lc = index.load(lcn, total)?;
        ensure!(
            lc.kind == NONHEAD || (lc.clusterofs as u64) < lcs,
            "lcluster {lcn} starts at {} in its cluster",
            lc.clusterofs
        );
        ensure!(lc.kind != HEAD2, "lcluster {lcn} is a HEAD2 (a second algorithm), which bakery does not read");
        lcs_list.push(lc);
    }
    let lc = &lcs_list;
    ensure!(lc[0].kind != NONHEAD && lc[0].clusterofs == 0, "lcluster 0 does not start an extent at 0");
    // The kernel's lookback from any lcluster must land on its own head; CBLKCNT only right
    // after a head.
    let mut head = 0u64;
    for lcn in 1..total {
        let l = &lc[lcn as usize];
        if l.kind != NONHEAD {
            head = lcn;
            continue;
        }
        let d0 = l.delta[0] as u64;
        ensure!(d0 >= 1 && lcn >= d0 && lcn - d0 >= head, "lcluster {lcn} looks back {d0}, past its head at {head}");
        ensure!(l.blocks == 0 || lcn == head + 1, "lcluster {lcn} counts pcluster blocks but does not follow its head");
    }
    let heads: Vec<u64> = (0..total).filter(|l| lc[*l as usize].kind != NONHEAD).collect();
    let la_of = |h: u64| h * lcs + lc[h as usize].clusterofs as u64;
    let live: Vec<u64> = heads.iter().copied().filter(|h| la_of(*h) < size).collect();
    let tail = *live.last().expect("lcluster 0 is a head");
    let mut out = Vec::with_capacity(live.len());
    for (n, &h) in live.iter().enumerate() {
        let la = la_of(h);
        let end = live.get(n + 1).map(|next| la_of(*next)).unwrap_or(size);
        let len = end - la;
        let kind = lc[h as usize].kind;
        let codec = match kind {
            PLAIN if advise & INTERLACED_PCLUSTER != 0 => Codec::Interlaced,
            PLAIN => Codec::Shifted,
            _ => {
                let alg = algs[0];
                ensure!(
                    algorithms & 1 << alg != 0,
                    "the extent at {la} uses algorithm {alg}, which the superblock does not list"
                );
                Codec::Algorithm(alg)
            }
        };
        let big = (kind == HEAD1 && advise & BIG_PCLUSTER_1 != 0) || (kind == PLAIN && advise & BIG_PCLUSTER_2 != 0);
        let loads_next = big && (h + 1) * lcs < size;
        let source = if h == tail && advise & INLINE_PCLUSTER != 0 {
            let len = idata_size as u64;
            ensure!(len > 0 && inline_at % bs + len <= bs, "an inline tail pcluster of {len} bytes at {inline_at}");
            ensure!(codec != Codec::Interlaced, "an interlaced inline pcluster");
            Source::Inline { at: inline_at, len }
        } else if h == tail && advise & FRAGMENT_PCLUSTER != 0 {
            ensure!(kind == HEAD1, "the fragment tail at {la} is not a compressed head");
            let high = if index.compact { 0 } else { lc[h as usize].pblk << 32 };
            Source::Fragment { offset: high | fragment_offset as u64 }
        } else {
            let blocks = if !loads_next {
                1
            } else {
                let next = &lc[h as usize + 1];
                if next.kind == NONHEAD {
                    ensure!(
                        next.blocks > 0,
                        "lcluster {} after the head at {h} does not count the pcluster's blocks",
                        h + 1
                    );
                    next.blocks as u64
                } else {
                    1
                }
            };
            let len = blocks * bs;
            ensure!(len <= MAX_PCLUSTER, "the pcluster at {la} is {len} bytes, more than 1 MiB");
            Source::Blocks { at: lc[h as usize].pblk * bs, len }
        };
        ensure!(len <= MAX_DECODED, "the extent at {la} decodes to {len} bytes, more than 12 MiB");
        if let (
            Codec::Shifted | Codec::Interlaced,
            Source::Blocks { len: plen, .. } | Source::Inline { len: plen, .. },
        ) = (codec, source)
        {
            ensure!(len <= plen, "the stored extent at {la} is {len} bytes, longer than its pcluster of {plen}");
            ensure!(codec != Codec::Interlaced || plen <= bs, "an interlaced pcluster larger than a block");
        }
        // fsck's forward walk (delta[1]) from this head must end where the next extent starts.
        let stop = heads.iter().copied().find(|x| *x > h).unwrap_or(total);
        let mut lcn = if loads_next && matches!(source, Source::Blocks { .. }) { h + 1 } else { h };
        let walked = loop {
            if lcn * lcs >= size {
                break size;
            }
            if lcn > stop {
                bail!("the index's forward distance from the extent at {la} skips the next extent");
            }
            let l = &lc[lcn as usize];
            if l.kind == NONHEAD {
                lcn += (l.delta[1] as u64).max(1);
            } else if lcn != h {
                break (lcn * lcs + l.clusterofs as u64).min(size);
            } else {
                lcn += 1;
            }
        };
        ensure!(walked == end, "the index's forward distance from the extent at {la} ends at {walked}, not {end}");
        out.push(Extent { la, len, codec, source });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
