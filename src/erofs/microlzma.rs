//! MicroLZMA, the LZMA form EROFS stores (Linux 5.16+): liblzma's `lzma_microlzma_encoder`
//! compresses as much input as fits in a fixed output size, which no safe crate exposes. The
//! only unsafe code in bakery, kept to this file: a stream owned by [`Encoder`], used with
//! buffers borrowed for the duration of one call.
#![allow(unsafe_code)]

use anyhow::{Result, bail};
use liblzma_sys as sys;

/// A MicroLZMA encoder with fixed options (preset and dictionary size), reused across calls.
pub struct Encoder {
    options: sys::lzma_options_lzma,
    stream: sys::lzma_stream,
}

// SAFETY: the stream's internal state is heap memory owned by this value only, touched only
// through `&mut self`; liblzma keeps no thread-local or global state for an encoder.
unsafe impl Send for Encoder {}

impl Encoder {
    pub fn new(preset: u32, dict_size: u32) -> Result<Self> {
        // SAFETY: both are plain C structs for which all-zero bytes are valid: LZMA_STREAM_INIT
        // is all zeros, and the options are filled in by lzma_lzma_preset before any use.
        let (mut options, stream) =
            unsafe { (std::mem::zeroed::<sys::lzma_options_lzma>(), std::mem::zeroed::<sys::lzma_stream>()) };
        // SAFETY: `options` is a valid, writable lzma_options_lzma.
        if unsafe { sys::lzma_lzma_preset(&mut options, preset) } != 0 {
            bail!("lzma preset {preset} is not supported by liblzma");
        }
        options.dict_size = dict_size;
        Ok(Encoder { options, stream })
    }

    /// Compresses the longest prefix of `input` whose MicroLZMA form fits in `out` (all of
    /// it). Returns (input bytes consumed, output bytes written).
    pub fn compress_fill(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize)> {
        // SAFETY: `stream` is either fresh (zeroed) or was initialised by a previous call;
        // lzma_microlzma_encoder (re)initialises it, reusing its allocations, and reads
        // `options`, which outlives the call.
        let ret = unsafe { sys::lzma_microlzma_encoder(&mut self.stream, &self.options) };
        if ret != sys::LZMA_OK {
            bail!("initialising the MicroLZMA encoder failed (liblzma error {ret})");
        }
        self.stream.next_in = input.as_ptr();
        self.stream.avail_in = input.len();
        self.stream.next_out = out.as_mut_ptr();
        self.stream.avail_out = out.len();
        // SAFETY: next_in/avail_in and next_out/avail_out describe `input` and `out`, both
        // borrowed for this whole call; liblzma reads and writes only within them, and the
        // pointers are cleared below before the borrows end.
        let ret = unsafe { sys::lzma_code(&mut self.stream, sys::LZMA_FINISH) };
        let done = (self.stream.total_in as usize, self.stream.total_out as usize);
        self.stream.next_in = std::ptr::null();
        self.stream.avail_in = 0;
        self.stream.next_out = std::ptr::null_mut();
        self.stream.avail_out = 0;
        if ret != sys::LZMA_STREAM_END {
            bail!("MicroLZMA compression failed (liblzma error {ret})");
        }
        Ok(done)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: lzma_end accepts a zeroed or initialised stream and frees what it holds; the
        // stream is not used afterwards.
        unsafe { sys::lzma_end(&mut self.stream) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_filled_from_a_prefix_and_starts_with_the_inverted_properties() {
        let mut state = 1u64;
        let input: Vec<u8> = (0..400_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state & 0x0f) as u8
            })
            .collect();
        let mut encoder = Encoder::new(6, 256 * 1024).unwrap();
        let mut out = vec![0u8; 8192];
        let (read, wrote) = encoder.compress_fill(&input, &mut out).unwrap();
        assert!(read > 0 && read < input.len(), "{read}");
        assert!(wrote <= 8192 && wrote > 8000, "{wrote}");
        // lc=3, lp=0, pb=2: (2 * 5 + 0) * 9 + 3 = 93, stored inverted
        assert_eq!(out[0], !93u8);
        // and again: the encoder is reusable and deterministic
        let mut again = vec![0u8; 8192];
        assert_eq!(encoder.compress_fill(&input, &mut again).unwrap(), (read, wrote));
        assert_eq!(out, again);
    }
}
