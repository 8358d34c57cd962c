//! Fixed-output compression into physical clusters of up to 64 KiB, and the cutting of one
//! segment of a file into extents: as much input as fits in a full pcluster (lz4/lz4hc
//! destSize, MicroLZMA, or a search on the input length for zstd, as erofs-utils does), or
//! blocks stored as they are where compression does not save a block.

use anyhow::{Context, Result, bail};

use super::format::{BLOCK_SIZE, put16, put32};
use super::index::Extent;
use super::microlzma;
use crate::model::Compression;

/// The largest physical cluster (sysext-bakery's `-C65536`).
pub const PCLUSTER_SIZE: usize = 64 * 1024;
/// The most input one pcluster may hold: bounds the kernel's decompressed extent (12 MiB at
/// most) and the work of one zstd search.
pub const MAX_EXTENT_INPUT: usize = 1 << 20;

const LZ4HC_LEVEL: i32 = 12;
const ZSTD_LEVEL: i32 = 15;
/// zstd's window: erofs-utils' default, 8 pclusters (must stay ≤ 1 MiB for the kernel).
const ZSTD_WINDOW_LOG: u32 = 19;
const LZMA_PRESET: u32 = 6;
/// MicroLZMA's dictionary: erofs-utils' default, 4 pclusters.
const LZMA_DICT_SIZE: u32 = 4 * PCLUSTER_SIZE as u32;

/// The on-disk algorithm numbers.
const ALG_LZ4: u8 = 0;
const ALG_LZMA: u8 = 1;
const ALG_ZSTD: u8 = 3;

/// A compression algorithm for data, with bakery's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Lz4,
    Lz4hc,
    Zstd,
    Lzma,
}

impl Codec {
    /// `None` for uncompressed images.
    pub fn of(compression: Compression) -> Result<Option<Codec>> {
        Ok(Some(match compression {
            Compression::Lz4 => Codec::Lz4,
            Compression::Lz4hc => Codec::Lz4hc,
            Compression::Zstd => Codec::Zstd,
            Compression::Lzma => Codec::Lzma,
            Compression::None => return Ok(None),
            other => bail!("EROFS cannot be compressed with {other}"),
        }))
    }

    /// The algorithm number in the map header.
    pub fn algorithm(self) -> u8 {
        match self {
            Codec::Lz4 | Codec::Lz4hc => ALG_LZ4,
            Codec::Lzma => ALG_LZMA,
            Codec::Zstd => ALG_ZSTD,
        }
    }

    /// The compression configuration record written after the superblock (a length, then
    /// the algorithm's configuration).
    pub fn record(self) -> Vec<u8> {
        match self {
            Codec::Lz4 | Codec::Lz4hc => {
                let mut r = vec![0u8; 16];
                put16(&mut r, 0, 14);
                put16(&mut r, 2, u16::MAX); // max_distance: LZ4's full 64 KiB window
                put16(&mut r, 4, (PCLUSTER_SIZE / BLOCK_SIZE) as u16); // max_pclusterblks
                r
            }
            Codec::Lzma => {
                let mut r = vec![0u8; 16];
                put16(&mut r, 0, 14);
                put32(&mut r, 2, LZMA_DICT_SIZE);
                r
            }
            Codec::Zstd => {
                let mut r = vec![0u8; 8];
                put16(&mut r, 0, 6);
                r[3] = (ZSTD_WINDOW_LOG - 10) as u8;
                r
            }
        }
    }
}

/// One worker's compressor (zstd and lzma keep state between calls).
pub struct Compressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    lzma: Option<microlzma::Encoder>,
    scratch: Vec<u8>,
    /// Input bytes per output byte of the last zstd pcluster: where the next search starts.
    zstd_ratio: Option<f64>,
}

impl Compressor {
    pub fn new(codec: Codec) -> Result<Self> {
        let zstd = match codec {
            Codec::Zstd => {
                let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).context("creating a zstd compressor")?;
                c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(ZSTD_WINDOW_LOG))
                    .context("setting the zstd window")?;
                Some(c)
            }
            _ => None,
        };
        let lzma = match codec {
            Codec::Lzma => Some(microlzma::Encoder::new(LZMA_PRESET, LZMA_DICT_SIZE)?),
            _ => None,
        };
        Ok(Compressor { codec, zstd, lzma, scratch: vec![0u8; PCLUSTER_SIZE + 64], zstd_ratio: None })
    }

    /// Compresses the longest prefix of `input` that fits in `out`: (input used, output size).
    /// `(0, 0)` when nothing fits.
    pub fn fill(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize)> {
        match self.codec {
            Codec::Lz4 => Ok(lzzzz::lz4::compress_fill(input, out).unwrap_or((0, 0))),
            Codec::Lz4hc => Ok(lzzzz::lz4_hc::compress_fill(input, out, LZ4HC_LEVEL).unwrap_or((0, 0))),
            Codec::Lzma => self.lzma.as_mut().expect("lzma encoder").compress_fill(input, out),
            Codec::Zstd => self.zstd_fill(input, out),
        }
    }

    /// zstd has no fixed-output mode: search the input length whose frame fits, as erofs-utils'
    /// `compressor_libzstd.c` does, but start from the ratio the previous pcluster had (a
    /// binary's neighbouring 200 KiB compress alike) and stop once the frame is within
    /// [`ZSTD_SLACK`] bytes of full: each try compresses ~200 KiB at level 15, and the exact
    /// fill erofs-utils insists on costs many tries for the last few bytes.
    fn zstd_fill(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize)> {
        let zstd = self.zstd.as_mut().expect("zstd compressor");
        let cap = out.len();
        let scratch = &mut self.scratch[..cap + 32];
        let (mut fits, mut fits_size) = (0usize, 0usize);
        let mut too_big = input.len() + 1;
        // aim a little under full, so the first try usually fits
        let mut m = match self.zstd_ratio {
            Some(ratio) => (cap as f64 * ratio * 0.99) as usize,
            None => cap * 4,
        };
        loop {
            m = m.max(fits + 1).min(too_big - 1);
            match zstd.compress_to_buffer(&input[..m], &mut *scratch) {
                Ok(size) if size > 0 && size <= cap => {
                    out[..size].copy_from_slice(&scratch[..size]);
                    (fits, fits_size) = (m, size);
                    if too_big <= fits + 1 || size + ZSTD_SLACK >= cap {
                        break;
                    }
                    // where the ratio seen says the frame fills, a little under
                    m = (m as f64 * (cap - ZSTD_SLACK / 2) as f64 / size as f64) as usize;
                }
                _ => {
                    too_big = m;
                    if too_big <= fits + 1 {
                        break;
                    }
                    m = (fits + too_big) / 2;
                }
            }
        }
        if fits_size > 0 {
            self.zstd_ratio = Some(fits as f64 / fits_size as f64);
        }
        Ok((fits, fits_size))
    }
}

/// How far short of a full pcluster a zstd frame may stop: at most 0.4 % of the pcluster.
const ZSTD_SLACK: usize = 256;

/// One segment of a file, compressed: its extents and their physical blocks, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub extents: Vec<Extent>,
    /// The blocks, `extents`' block counts together, each pcluster's compressed bytes at its
    /// end (zeros first: LZ4_0PADDING), raw blocks zero-padded at the end.
    pub data: Vec<u8>,
}

/// Cuts `input` (a segment starting at a 4 KiB-aligned offset of the file) into extents.
pub fn compress_segment(compressor: &mut Compressor, input: &[u8]) -> Result<Segment> {
    // Which worker compressed what before must not matter: the bytes depend on the segment alone.
    compressor.zstd_ratio = None;
    let mut segment = Segment::default();
    let mut out = vec![0u8; PCLUSTER_SIZE];
    let mut pos = 0;
    while pos < input.len() {
        crate::util::cancel::check()?;
        let rest = input.len() - pos;
        if rest <= BLOCK_SIZE {
            push_raw(&mut segment, &input[pos..]);
            break;
        }
        let window = &input[pos..pos + rest.min(MAX_EXTENT_INPUT)];
        let (used, size) = compressor.fill(window, &mut out)?;
        let blocks = size.div_ceil(BLOCK_SIZE);
        if used > 0 && size > 0 && blocks * BLOCK_SIZE < used {
            segment.extents.push(Extent { len: used as u32, blocks: blocks as u32, raw: false });
            segment.data.resize(segment.data.len() + blocks * BLOCK_SIZE - size, 0);
            segment.data.extend_from_slice(&out[..size]);
            pos += used;
        } else {
            // no block saved: store what one pcluster would have covered as it is
            let end = pos + used.clamp(BLOCK_SIZE, PCLUSTER_SIZE).min(rest);
            while pos < end {
                let len = BLOCK_SIZE.min(input.len() - pos);
                push_raw(&mut segment, &input[pos..pos + len]);
                pos += len;
            }
        }
    }
    Ok(segment)
}

fn push_raw(segment: &mut Segment, bytes: &[u8]) {
    segment.extents.push(Extent { len: bytes.len() as u32, blocks: 1, raw: true });
    segment.data.extend_from_slice(bytes);
    segment.data.resize(segment.data.len().next_multiple_of(BLOCK_SIZE), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testdata::noise;

    fn text(len: usize) -> Vec<u8> {
        let words = ["kubelet ", "containerd ", "socket ", "\n", "ExecStart=/usr/bin/", "cni ", "0x", "42 "];
        let mut state = 7u64;
        let mut out = Vec::new();
        while out.len() < len {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            out.extend_from_slice(words[(state >> 60) as usize % words.len()].as_bytes());
        }
        out.truncate(len);
        out
    }

    /// Each codec's extents cover the segment exactly, pclusters are at most 64 KiB and save a
    /// block, incompressible data is stored raw, and the compressed bytes decompress back.
    #[test]
    fn segments_cut_into_full_pclusters_and_raw_blocks() {
        let mut input = text(700_000);
        input.extend(noise(100_000, 3));
        input.extend(std::iter::repeat_n(0u8, 2_000_000));
        input.extend(text(5_000));
        for codec in [Codec::Lz4, Codec::Lz4hc, Codec::Zstd, Codec::Lzma] {
            let mut c = Compressor::new(codec).unwrap();
            let seg = compress_segment(&mut c, &input).unwrap();
            let total: usize = seg.extents.iter().map(|e| e.len as usize).sum();
            assert_eq!(total, input.len(), "{codec:?}");
            let blocks: usize = seg.extents.iter().map(|e| e.blocks as usize).sum();
            assert_eq!(seg.data.len(), blocks * BLOCK_SIZE);
            let mut pos = 0;
            let mut at = 0;
            for e in &seg.extents {
                let bytes = &seg.data[at..at + e.blocks as usize * BLOCK_SIZE];
                assert!(bytes.len() <= PCLUSTER_SIZE);
                if e.raw {
                    assert_eq!(&bytes[..e.len as usize], &input[pos..pos + e.len as usize]);
                } else {
                    assert!((e.blocks as usize) * BLOCK_SIZE < e.len as usize, "{codec:?} saves a block");
                    let start = bytes.iter().position(|b| *b != 0).unwrap();
                    if matches!(codec, Codec::Lz4 | Codec::Lz4hc) {
                        let mut back = vec![0u8; e.len as usize];
                        lzzzz::lz4::decompress(&bytes[start..], &mut back).unwrap();
                        assert!(back == input[pos..pos + e.len as usize], "{codec:?} round trip");
                    } else if codec == Codec::Zstd {
                        let back = zstd::bulk::decompress(&bytes[start..], e.len as usize).unwrap();
                        assert!(back == input[pos..pos + e.len as usize], "zstd round trip");
                    }
                }
                pos += e.len as usize;
                at += e.blocks as usize * BLOCK_SIZE;
            }
            let noisy = compress_segment(&mut c, &noise(300_000, 9)).unwrap();
            assert!(noisy.extents.iter().all(|e| e.raw), "{codec:?}: noise is stored as it is");
            assert_eq!(noisy.data.len(), 300_000usize.next_multiple_of(BLOCK_SIZE));
            let again = compress_segment(&mut c, &input).unwrap();
            assert!(again == seg, "{codec:?} is deterministic");
        }
    }
}
