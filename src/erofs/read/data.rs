//! The data side: where an inode's bytes are (flat blocks and an inline tail, or compressed
//! extents, or a fragment of the packed inode), every byte inside the image, and every
//! pcluster decoded in full.

use anyhow::{Result, bail, ensure};

use super::decompress;
use super::inode::{COMPRESSED_COMPACT, FLAT_INLINE, FLAT_PLAIN, Inode};
use super::zmap::{self, Extent, Index, MapHeader, Source};
use crate::image::read::Span;

/// The image file, readable only below `end` (the blocks the superblock counts).
pub(super) struct Image {
    pub file: Span,
    pub end: u64,
    pub block: u64,
}

impl Image {
    pub fn read(&self, at: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        ensure!(
            at.checked_add(len).is_some_and(|end| end <= self.end),
            "{what} ({len} bytes at offset {at}) lies outside the image ({} bytes)",
            self.end
        );
        let mut buf = vec![0u8; usize::try_from(len)?];
        self.file.read_exact_at(&mut buf, at).map_err(|e| anyhow::anyhow!("reading {what} at offset {at}: {e}"))?;
        Ok(buf)
    }
}

/// Where an inode's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// `blocks` bytes from `at` (whole blocks but the last), then `tail` bytes at `tail_at`.
    Flat {
        at: u64,
        blocks: u64,
        tail_at: u64,
        tail: u64,
    },
    Compressed(Vec<Extent>),
    /// The whole file is the packed inode's bytes from this offset.
    Fragment(u64),
}

/// The layout of `inode` and where its metadata (inode, xattrs, index, inline data) ends.
pub(super) fn layout(image: &Image, inode: &Inode, algorithms: u16) -> Result<(Layout, u64)> {
    let bs = image.block;
    let size = inode.size;
    let meta_end = inode.meta_end();
    if !inode.compressed() {
        let blocks = size.div_ceil(bs);
        let (full, tail) = match inode.layout {
            FLAT_PLAIN => (blocks, 0),
            FLAT_INLINE if size > 0 => (blocks - 1, size - (blocks - 1) * bs),
            FLAT_INLINE => (0, 0),
            other => bail!("data layout {other}"),
        };
        let at = inode.raw_blkaddr as u64 * bs;
        if full > 0 {
            ensure!(at + full * bs <= image.end, "its data blocks at {at} run past the image's end");
        }
        ensure!(meta_end % bs + tail <= bs, "its inline tail of {tail} bytes crosses a block boundary");
        let blocks_len = if inode.layout == FLAT_PLAIN { size } else { full * bs };
        return Ok((Layout::Flat { at, blocks: blocks_len, tail_at: meta_end, tail }, meta_end + tail));
    }
    if size == 0 {
        return Ok((Layout::Compressed(Vec::new()), meta_end));
    }
    let compact = inode.layout == COMPRESSED_COMPACT;
    let header_at = meta_end.next_multiple_of(8);
    let raw: [u8; 8] = image.read(header_at, 8, "the map header")?.try_into().expect("8 bytes");
    let header = MapHeader::parse(&raw, compact)?;
    let MapHeader::Indexed { advise, .. } = header else {
        let MapHeader::WholeFragment(offset) = header else { unreachable!("matched above") };
        return Ok((Layout::Fragment(offset), header_at + 8));
    };
    let start = header_at + if compact { 8 } else { 16 };
    let total = size.div_ceil(bs);
    let len = zmap::index_len(compact, advise, start, total);
    ensure!(len <= 64 << 20, "an index of {len} bytes");
    let bytes = image.read(start, len, "the compressed index")?;
    let index = Index { blkszbits: bs.trailing_zeros() as u8, compact, advise, start, bytes: &bytes, size };
    let extents = zmap::extents(&index, &header, algorithms, start + len)?;
    let end = match extents.last().map(|e| e.source) {
        Some(Source::Inline { at, len }) => at + len,
        _ => start + len,
    };
    Ok((Layout::Compressed(extents), end))
}

/// The packed inode, whose bytes the fragments are: read in extents, the last one cached.
pub(super) struct Packed {
    pub size: u64,
    pub layout: Layout,
    cached: Option<(usize, Vec<u8>)>,
}

impl Packed {
    pub fn new(size: u64, layout: Layout) -> Result<Self> {
        ensure!(!matches!(layout, Layout::Fragment(_)), "the packed inode is itself a fragment");
        if let Layout::Compressed(extents) = &layout {
            ensure!(
                extents.iter().all(|e| !matches!(e.source, Source::Fragment { .. })),
                "the packed inode has a fragment tail"
            );
        }
        Ok(Self { size, layout, cached: None })
    }

    /// Passes `len` bytes from `offset` to `sink`.
    fn read(&mut self, image: &Image, offset: u64, len: u64, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        ensure!(
            offset.checked_add(len).is_some_and(|end| end <= self.size),
            "a fragment of {len} bytes at {offset} runs past the packed inode's {} bytes",
            self.size
        );
        match &self.layout {
            Layout::Flat { .. } => flat(image, &self.layout, offset, len, sink),
            Layout::Compressed(extents) => {
                let (mut at, end) = (offset, offset + len);
                while at < end {
                    let i = extents.partition_point(|e| e.la <= at) - 1;
                    if self.cached.as_ref().map(|c| c.0) != Some(i) {
                        self.cached = Some((i, decode(image, &extents[i], None)?));
                    }
                    let (e, bytes) = (&extents[i], &self.cached.as_ref().expect("cached").1);
                    let from = (at - e.la) as usize;
                    let to = ((end - e.la) as usize).min(bytes.len());
                    sink(&bytes[from..to])?;
                    at = e.la + to as u64;
                }
                Ok(())
            }
            Layout::Fragment(_) => unreachable!("refused in new"),
        }
    }
}

/// Passes `len` bytes of a flat layout from `offset` to `sink`, a MiB at a time.
fn flat(
    image: &Image,
    layout: &Layout,
    offset: u64,
    len: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let Layout::Flat { at, blocks, tail_at, tail: _ } = *layout else { unreachable!("a flat layout") };
    let (mut pos, end) = (offset, offset + len);
    while pos < end {
        let (from, n) = if pos < blocks {
            (at + pos, (blocks - pos).min(end - pos).min(1 << 20))
        } else {
            (tail_at + pos - blocks, end - pos)
        };
        sink(&image.read(from, n, "file data")?)?;
        pos += n;
    }
    Ok(())
}

/// Decodes one extent; fragments come from `packed`.
fn decode(image: &Image, extent: &Extent, packed: Option<&mut Packed>) -> Result<Vec<u8>> {
    let raw = match extent.source {
        Source::Blocks { at, len } | Source::Inline { at, len } => image.read(at, len, "a pcluster")?,
        Source::Fragment { offset } => {
            let Some(packed) = packed else { bail!("a fragment inside the packed inode") };
            let mut out = Vec::with_capacity(extent.len as usize);
            packed.read(image, offset, extent.len, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })?;
            return Ok(out);
        }
    };
    decompress::decode(extent.codec, &raw, extent.len as usize, extent.la, image.block as usize)
        .map_err(|e| anyhow::anyhow!("the extent at {} ({:?}): {e}", extent.la, extent.source))
}

/// Passes every byte of a file (`size` bytes in `layout`) to `sink`, in order.
pub(super) fn stream(
    image: &Image,
    layout: &Layout,
    size: u64,
    mut packed: Option<&mut Packed>,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match layout {
        Layout::Flat { .. } => flat(image, layout, 0, size, sink),
        Layout::Fragment(offset) => {
            let Some(packed) = packed else { bail!("a whole-file fragment, but the image has no packed inode") };
            packed.read(image, *offset, size, sink)
        }
        Layout::Compressed(extents) => {
            for extent in extents {
                if matches!(extent.source, Source::Fragment { .. }) && packed.is_none() {
                    bail!("a fragment tail, but the image has no packed inode");
                }
                sink(&decode(image, extent, packed.as_deref_mut())?)?;
            }
            Ok(())
        }
    }
}
