//! MicroLZMA, EROFS's LZMA framing, through liblzma's own decoder (`lzma_microlzma_decoder`):
//! the liblzma crate has no safe binding for it, and a raw LZMA1 decoder cannot check that the
//! stream ends exactly where the pcluster does. The one place bakery calls C by hand.
#![allow(unsafe_code)]

use anyhow::{Result, ensure};
use liblzma_sys as sys;

/// The kernel's largest MicroLZMA dictionary (8 × the largest pcluster).
const DICT_SIZE: u32 = 8 << 20;

/// Frees the decoder's state however decoding ends.
struct Stream(sys::lzma_stream);

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by lzma_microlzma_decoder (or is all zeros, which
        // lzma_end accepts) and is not used after this.
        unsafe { sys::lzma_end(&mut self.0) }
    }
}

/// Decodes a MicroLZMA stream that must fill `input` exactly and yield exactly `len` bytes.
pub(super) fn decode(input: &[u8], len: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    // SAFETY: an all-zero lzma_stream is LZMA_STREAM_INIT (null pointers, zero counters).
    let mut stream = Stream(unsafe { std::mem::zeroed() });
    // SAFETY: the stream is a valid, unused lzma_stream; the sizes are plain values.
    let ret = unsafe { sys::lzma_microlzma_decoder(&mut stream.0, input.len() as u64, len as u64, 1, DICT_SIZE) };
    ensure!(ret == sys::LZMA_OK, "the MicroLZMA decoder failed to start ({ret})");
    stream.0.next_in = input.as_ptr();
    stream.0.avail_in = input.len();
    stream.0.next_out = out.as_mut_ptr();
    stream.0.avail_out = len;
    // SAFETY: next_in/avail_in describe `input` and next_out/avail_out describe `out`, both
    // alive and unaliased for this call; liblzma writes at most avail_out bytes.
    let ret = unsafe { sys::lzma_code(&mut stream.0, sys::LZMA_FINISH) };
    ensure!(ret == sys::LZMA_STREAM_END, "corrupt lzma pcluster (liblzma error {ret})");
    ensure!(stream.0.avail_out == 0 && stream.0.avail_in == 0, "an lzma pcluster does not decode to {len} bytes");
    Ok(out)
}
