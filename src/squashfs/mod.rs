//! Pack: a planned tree into a reproducible SquashFS image.
//!
//! backhand writes the data (with every core compressing, see `parallel`), bakery writes the
//! tables (see `tables`: backhand cannot write xattrs). Same inputs, same bytes.

pub mod format;
pub mod parallel;
pub mod read;
pub mod tables;
pub mod xattr;

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use backhand::{FilesystemWriter, NodeHeader};

use crate::image::pack::{PackOptions, PackStats};
use crate::model::Sha256;
use crate::model::tree::{Content, Node, Tree};
use format::Codec;
use parallel::Source;

/// The data block size (mksquashfs's default).
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// Writes the image of `tree` into `out` (an empty file). `blob` maps cached content to its path.
/// `progress(done, total)` is called on the packing thread each time the writer has read more
/// file content: `done` of the `total` bytes of every file in the tree, never decreasing.
pub fn pack(
    tree: &Tree,
    blob: &dyn Fn(&Sha256) -> PathBuf,
    options: &PackOptions,
    out: &mut File,
    progress: &dyn Fn(u64, u64),
) -> Result<PackStats> {
    let total: u64 = tree
        .nodes()
        .map(|(_, node)| match node {
            Node::File { content, .. } => content.size(),
            _ => 0,
        })
        .sum();
    let meter = Meter { done: Cell::new(0), total, report: progress };
    let codec = Codec::new(options.compression, BLOCK_SIZE);
    let mut writer = FilesystemWriter::default();
    writer.set_kind(backhand::kind::Kind::new_v4(&parallel::PARALLEL));
    writer.set_block_size(BLOCK_SIZE);
    writer.set_time(options.mtime);
    writer.set_only_root_id();
    writer.set_compressor(codec.fs);
    writer.set_root_mode(0o755);

    let mut sources = Vec::new();
    for (path, node) in tree.nodes() {
        let target = format!("/{}", path.as_str());
        let header = |mode: u16| NodeHeader::new(mode, 0, 0, options.mtime);
        let pushed = match node {
            Node::Dir { mode } => writer.push_dir(&target, header(mode.0)),
            // bakery's tables carry symlinks (see `tables`); backhand's writer asserts on
            // targets over 255 bytes, which the kernel reads fine up to PATH_MAX.
            Node::Symlink { .. } => Ok(()),
            Node::File { content, mode, .. } => match content {
                Content::Blob { sha256, .. } => {
                    let source = Source::Path(blob(sha256));
                    sources.push(source.clone());
                    writer.push_file(Counted { source, open: None, meter: &meter }, &target, header(mode.0))
                }
                Content::Inline(bytes) => {
                    let source = Source::Bytes(Arc::from(bytes.as_slice()));
                    sources.push(source.clone());
                    writer.push_file(Counted { source, open: None, meter: &meter }, &target, header(mode.0))
                }
            },
        };
        pushed.map_err(|e| anyhow!("adding {path} to the image: {e}"))?;
    }

    let (written, blocks) = parallel::with_lookahead(&sources, codec.fs, BLOCK_SIZE, options.threads, || {
        let mut buffered = BufWriter::with_capacity(1 << 20, &mut *out);
        let written = writer.write(&mut buffered).map_err(|e| anyhow!("writing the image: {e}"));
        buffered.flush().context("writing the image")?;
        written
    });
    written?;
    tables::rewrite(out, tree, &codec, options.mtime)?;
    let bytes = out.seek(SeekFrom::End(0))?;
    tracing::debug!("packed {bytes} bytes; {} blocks compressed ahead, {} inline", blocks.predicted, blocks.inline);
    Ok(PackStats { bytes, compressed_ahead: blocks.predicted, inline: blocks.inline })
}

/// File content read so far, reported as it grows.
struct Meter<'a> {
    done: Cell<u64>,
    total: u64,
    report: &'a dyn Fn(u64, u64),
}

/// A file's content for backhand's writer, opened on its first read (so one file descriptor is
/// open at a time, as with `push_file_from_path`) and counted into the [`Meter`].
struct Counted<'a> {
    source: Source,
    open: Option<Box<dyn Read>>,
    meter: &'a Meter<'a>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let reader = match &mut self.open {
            Some(reader) => reader,
            None => self.open.insert(match &self.source {
                Source::Path(path) => Box::new(
                    File::open(path)
                        .map_err(|e| std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?,
                ),
                Source::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
            }),
        };
        let n = reader.read(buf)?;
        if n > 0 {
            let meter = self.meter;
            let done = (meter.done.get() + n as u64).min(meter.total);
            meter.done.set(done);
            (meter.report)(done, meter.total);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImagePath;
    use crate::model::tree::Xattr;
    use crate::recipe::Mode;
    use crate::util::testdata::noise;
    use backhand::{FilesystemReader, InnerNode};
    use std::io::Read;

    fn file(bytes: Vec<u8>, mode: u16) -> Node {
        Node::File { content: Content::Inline(bytes), mode: Mode(mode), xattrs: vec![] }
    }

    /// Packs a tree with multi-block files, a hole, fragments, a symlink and an xattr, then reads
    /// it back with backhand: contents, modes and times survive, every data block was
    /// compressed ahead by the workers, and progress counted every byte of content once.
    #[test]
    fn packed_trees_read_back_and_data_blocks_are_compressed_ahead() {
        let block = BLOCK_SIZE as usize;
        let big = noise(2 * block + 44_000, 1);
        let mut holey = noise(2 * block + 10, 2);
        holey[block..2 * block].fill(0);
        let small = b"[Unit]\nDescription=x\n".to_vec();
        let mut tree = Tree::default();
        let path = |p: &str| ImagePath::parse(p).unwrap();
        tree.add(path("usr/bin/big"), file(big.clone(), 0o755), "test").unwrap();
        tree.add(path("usr/bin/holey"), file(holey.clone(), 0o700), "test").unwrap();
        tree.add(path("usr/lib/small.service"), file(small.clone(), 0o644), "test").unwrap();
        tree.add(path("usr/lib/link"), Node::Symlink { target: "small.service".into() }, "test").unwrap();
        let strict = Xattr { name: "user.extension-release.strict".into(), value: b"false".to_vec() };
        let release =
            Node::File { content: Content::Inline(b"ID=_any\n".to_vec()), mode: Mode(0o644), xattrs: vec![strict] };
        tree.add(path("usr/lib/extension-release.d/extension-release.x"), release, "test").unwrap();

        let mut out = tempfile::tempfile().unwrap();
        let options = PackOptions {
            format: crate::model::Format::Squashfs,
            compression: crate::model::Compression::Gzip,
            mtime: 1234,
            threads: 2,
            uuid: [0; 16],
        };
        let reports = std::cell::RefCell::new(Vec::new());
        let stats =
            pack(&tree, &|_| unreachable!("no blobs"), &options, &mut out, &|d, t| reports.borrow_mut().push((d, t)))
                .unwrap();
        let reports = reports.into_inner();
        let total = (big.len() + holey.len() + small.len() + b"ID=_any\n".len()) as u64;
        assert!(reports.iter().all(|(_, t)| *t == total), "{reports:?}");
        assert!(reports.windows(2).all(|w| w[0].0 < w[1].0), "progress grows at every report: {reports:?}");
        assert_eq!(reports.last(), Some(&(total, total)), "and ends at the total");
        assert_eq!(stats.compressed_ahead, 3 + 2, "every data block came from the workers");
        assert_eq!(stats.bytes % 4096, 0, "padded to 4 KiB");

        out.seek(SeekFrom::Start(0)).unwrap();
        let reader = FilesystemReader::from_reader(std::io::BufReader::new(out)).unwrap();
        let mut seen = Vec::new();
        for node in reader.files() {
            assert_eq!((node.header.uid, node.header.gid, node.header.mtime), (0, 0, 1234), "{:?}", node.fullpath);
            let name = node.fullpath.to_string_lossy().into_owned();
            if let InnerNode::File(data) = &node.inner {
                let mut bytes = Vec::new();
                reader.file(data).reader().read_to_end(&mut bytes).unwrap();
                let expected = match name.as_str() {
                    "/usr/bin/big" => &big,
                    "/usr/bin/holey" => &holey,
                    "/usr/lib/small.service" => &small,
                    _ => continue,
                };
                assert!(bytes == *expected, "{name} differs");
                seen.push((name, node.header.permissions));
            } else if let InnerNode::Symlink(link) = &node.inner {
                assert_eq!(link.link.to_str(), Some("small.service"));
            }
        }
        assert_eq!(
            seen,
            [
                ("/usr/bin/big".to_string(), 0o755),
                ("/usr/bin/holey".to_string(), 0o700),
                ("/usr/lib/small.service".to_string(), 0o644)
            ]
        );
    }
}
