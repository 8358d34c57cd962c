//! One pcluster's bytes to its extent's: every codec decodes the whole pcluster to exactly the
//! extent's length (no partial decoding, no trailing bytes), as fsck.erofs does for a full
//! extent. LZ4, MicroLZMA, DEFLATE and Zstandard streams start after the zero padding that
//! aligns their end to the pcluster's.

use anyhow::{Result, bail, ensure};

use super::superblock::{DEFLATE, LZ4, LZMA, ZSTD};
use super::zmap::Codec;

/// Decodes `raw` (the pcluster) into the `len` bytes of the extent that starts at `la`.
pub(super) fn decode(codec: Codec, raw: &[u8], len: usize, la: u64, block: usize) -> Result<Vec<u8>> {
    match codec {
        Codec::Shifted => {
            ensure!(len <= raw.len(), "a stored pcluster of {} bytes for {len}", raw.len());
            Ok(raw[..len].to_vec())
        }
        Codec::Interlaced => {
            ensure!(len <= block && raw.len() == block, "an interlaced pcluster of {} bytes for {len}", raw.len());
            let skip = (la % block as u64) as usize;
            let right = (block - skip).min(len);
            let mut out = Vec::with_capacity(len);
            out.extend_from_slice(&raw[skip..skip + right]);
            out.extend_from_slice(&raw[..len - right]);
            Ok(out)
        }
        Codec::Algorithm(alg) => {
            let margin = raw.iter().take_while(|b| **b == 0).count();
            ensure!(margin < raw.len(), "a compressed pcluster of only zeros");
            let input = &raw[margin..];
            let out = match alg {
                LZ4 => {
                    let mut out = vec![0u8; len];
                    let n = lz4_flex::block::decompress_into(input, &mut out)
                        .map_err(|e| anyhow::anyhow!("corrupt lz4 pcluster: {e}"))?;
                    ensure!(n == len, "an lz4 pcluster decodes to {n} bytes, not {len}");
                    out
                }
                ZSTD => {
                    let declared = zstd::zstd_safe::get_frame_content_size(input)
                        .map_err(|_| anyhow::anyhow!("a corrupt zstd frame header"))?;
                    ensure!(declared == Some(len as u64), "a zstd frame declares {declared:?} bytes, not {len}");
                    let out = zstd::bulk::decompress(input, len)
                        .map_err(|e| anyhow::anyhow!("corrupt zstd pcluster: {e}"))?;
                    ensure!(out.len() == len, "a zstd pcluster decodes to {} bytes, not {len}", out.len());
                    out
                }
                LZMA => super::lzma::decode(input, len)?,
                DEFLATE => {
                    let mut inflate = flate2::Decompress::new(false);
                    let mut out = Vec::with_capacity(len);
                    let status = inflate
                        .decompress_vec(input, &mut out, flate2::FlushDecompress::Finish)
                        .map_err(|e| anyhow::anyhow!("corrupt deflate pcluster: {e}"))?;
                    ensure!(out.len() == len, "a deflate pcluster decodes to {} bytes, not {len}", out.len());
                    ensure!(
                        status == flate2::Status::StreamEnd && inflate.total_in() as usize == input.len(),
                        "a deflate pcluster does not end with its last block"
                    );
                    out
                }
                other => bail!("unknown compression algorithm {other}"),
            };
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_after_zero_padding_decodes_to_exactly_the_extent() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let packed = lz4_flex::block::compress(&bytes);
        let mut raw = vec![0u8; 4096 - packed.len() % 4096];
        raw.extend_from_slice(&packed);
        assert_eq!(decode(Codec::Algorithm(LZ4), &raw, 10_000, 0, 4096).unwrap(), bytes);
        let short = decode(Codec::Algorithm(LZ4), &raw, 9_999, 0, 4096).unwrap_err().to_string();
        assert!(short.contains("corrupt lz4"), "{short}");
        let long = decode(Codec::Algorithm(LZ4), &raw, 10_001, 0, 4096).unwrap_err().to_string();
        assert!(long.contains("not 10001"), "{long}");
    }

    #[test]
    fn zstd_needs_its_declared_size() {
        let bytes = vec![5u8; 70_000];
        let frame = zstd::bulk::compress(&bytes, 3).unwrap();
        assert_eq!(decode(Codec::Algorithm(ZSTD), &frame, 70_000, 0, 4096).unwrap(), bytes);
        assert!(decode(Codec::Algorithm(ZSTD), &frame, 69_999, 0, 4096).is_err());
    }

    #[test]
    fn stored_pclusters() {
        let block: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        assert_eq!(decode(Codec::Shifted, &block, 10, 0, 4096).unwrap(), &block[..10]);
        let rotated = decode(Codec::Interlaced, &block, 4096, 4096 + 100, 4096).unwrap();
        assert_eq!(&rotated[..3996], &block[100..]);
        assert_eq!(&rotated[3996..], &block[..100]);
        assert!(decode(Codec::Shifted, &block, 4097, 0, 4096).is_err());
    }
}
