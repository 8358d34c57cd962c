//! Pack: a planned tree into a reproducible SquashFS image.
//!
//! backhand writes the data (with every core compressing, see `parallel`), bakery writes the
//! tables (see `tables`: backhand cannot write xattrs). Same inputs, same bytes.

pub mod format;
pub mod parallel;
pub mod read;
pub mod tables;
pub mod xattr;

use std::fs::File;
use std::io::{BufWriter, Cursor, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use backhand::{FilesystemWriter, NodeHeader};

use crate::model::{Compression, Sha256};
use crate::pipeline::plan::{Content, Node, Tree};
use format::Codec;
use parallel::Source;

/// The data block size (mksquashfs's default).
pub const BLOCK_SIZE: u32 = 128 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    pub compression: Compression,
    /// Modification time of every entry and of the image.
    pub mtime: u32,
    /// Compression threads.
    pub threads: usize,
}

impl PackOptions {
    pub fn new(compression: Compression, mtime: u32) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { compression, mtime, threads }
    }
}

/// What packing did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    pub bytes: u64,
    pub blocks: parallel::Stats,
}

/// Writes the image of `tree` into `out` (an empty file). `blob` maps cached content to its path.
pub fn pack(
    tree: &Tree,
    blob: &dyn Fn(&Sha256) -> PathBuf,
    options: &PackOptions,
    out: &mut File,
) -> Result<PackStats> {
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
                    let path = blob(sha256);
                    sources.push(Source::Path(path.clone()));
                    writer.push_file_from_path(path, &target, header(mode.0))
                }
                Content::Inline(bytes) => {
                    let bytes: Arc<[u8]> = Arc::from(bytes.as_slice());
                    sources.push(Source::Bytes(bytes.clone()));
                    writer.push_file(Cursor::new(bytes), &target, header(mode.0))
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
    Ok(PackStats { bytes, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImagePath;
    use crate::pipeline::plan::Xattr;
    use crate::recipe::Mode;
    use backhand::{FilesystemReader, InnerNode};
    use std::io::Read;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn file(bytes: Vec<u8>, mode: u16) -> Node {
        Node::File { content: Content::Inline(bytes), mode: Mode(mode), xattrs: vec![] }
    }

    /// Packs a tree with multi-block files, a hole, fragments, a symlink and an xattr, then reads
    /// it back with backhand: contents, modes and times survive, and every data block was
    /// compressed ahead by the workers.
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
        let options = PackOptions { compression: Compression::Gzip, mtime: 1234, threads: 2 };
        let stats = pack(&tree, &|_| unreachable!("no blobs"), &options, &mut out).unwrap();
        assert_eq!(stats.blocks.predicted, 3 + 2, "every data block came from the workers");
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
