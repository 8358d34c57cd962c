//! Pack: a planned tree into a reproducible EROFS image, written natively (no mkfs.erofs), with
//! every core compressing; and `read`, the strict EROFS reader.
//!
//! `format` has the on-disk structures, `index` the compressed files' lcluster index,
//! `compress` the codecs and the cutting of segments into pclusters, `parallel` the workers,
//! `layout` where inodes go, `data` the writing of file data, `meta` the metadata area.

pub mod compress;
pub mod data;
pub mod format;
pub mod index;
pub mod layout;
pub mod meta;
pub mod microlzma;
pub mod parallel;
pub mod read;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::image::pack::{PackOptions, PackStats};
use crate::model::Sha256;
use crate::model::tree::{Content, Node, Tree};
use compress::Codec;
use format::{S_IFDIR, S_IFLNK, S_IFREG, SuperBlock};
use parallel::Source;

/// One inode to write, in metadata order (the root first, then the tree's order).
pub struct Ino {
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    /// The inline xattr body.
    pub xattrs: Vec<u8>,
    pub kind: Kind,
    /// (name, index) of each entry, for directories; sorted by name bytes.
    pub children: Vec<(Vec<u8>, usize)>,
    pub parent: usize,
}

pub enum Kind {
    Dir,
    Symlink(Vec<u8>),
    File(Source),
}

/// Writes the EROFS image of `tree` into `out` (an empty file); see [`crate::image::pack::pack`].
pub fn pack(
    tree: &Tree,
    blob: &dyn Fn(&Sha256) -> PathBuf,
    options: &PackOptions,
    out: &mut File,
    progress: &dyn Fn(u64, u64),
) -> Result<PackStats> {
    let codec = Codec::of(options.compression)?;
    let inodes = plan(tree, blob)?;
    out.write_all(&[0u8; format::BLOCK_SIZE]).context("writing the image")?;
    let (stored, next, stats) = data::write(&inodes, codec, options.threads, out, progress)?;
    let (meta_blkaddr, blocks, root_nid) = meta::write(&inodes, stored, codec, options.mtime, next, out)?;
    let (feature_incompat, algs, records) = match codec {
        Some(codec) => {
            (format::INCOMPAT_LZ4_0PADDING | format::INCOMPAT_BIG_PCLUSTER, 1u16 << codec.algorithm(), codec.record())
        }
        None => (0, 0, Vec::new()),
    };
    let sb = SuperBlock {
        feature_incompat,
        available_compr_algs: algs,
        root_nid,
        inodes: inodes.len() as u64,
        epoch: options.mtime as u64,
        blocks,
        meta_blkaddr,
        uuid: options.uuid,
    };
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&sb.block(&records)).context("writing the superblock")?;
    let bytes = blocks as u64 * format::BLOCK_SIZE as u64;
    out.set_len(bytes).context("sizing the image")?;
    out.flush()?;
    tracing::debug!("packed {bytes} bytes; {} segments, {} pclusters compressed", stats.segments, stats.pclusters);
    Ok(PackStats { bytes, compressed_ahead: stats.pclusters, inline: 0 })
}

/// The inodes of `tree`: the root, then every entry in the tree's order.
fn plan(tree: &Tree, blob: &dyn Fn(&Sha256) -> PathBuf) -> Result<Vec<Ino>> {
    let dir = |mode: u16, parent| Ino {
        mode: S_IFDIR | mode,
        nlink: 2,
        size: 0,
        xattrs: Vec::new(),
        kind: Kind::Dir,
        children: Vec::new(),
        parent,
    };
    let mut inodes = vec![dir(0o755, 0)];
    let mut index = std::collections::HashMap::new();
    for (path, node) in tree.nodes() {
        let parent = match path.parent() {
            Some(p) => *index.get(p.as_str()).with_context(|| format!("{path} has no parent in the tree"))?,
            None => 0,
        };
        let ino = match node {
            Node::Dir { mode } => dir(mode.0 & 0o7777, parent),
            Node::Symlink { target } => Ino {
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size: target.len() as u64,
                xattrs: Vec::new(),
                kind: Kind::Symlink(target.as_bytes().to_vec()),
                children: Vec::new(),
                parent,
            },
            Node::File { content, mode, xattrs } => {
                let pairs: Vec<_> = xattrs.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
                let source = match content {
                    Content::Blob { sha256, .. } => Source::Path(blob(sha256)),
                    Content::Inline(bytes) => Source::Bytes(Arc::from(bytes.as_slice())),
                };
                Ino {
                    mode: S_IFREG | (mode.0 & 0o7777),
                    nlink: 1,
                    size: content.size(),
                    xattrs: format::xattr_body(&pairs).with_context(|| format!("the xattrs of {path}"))?,
                    kind: Kind::File(source),
                    children: Vec::new(),
                    parent,
                }
            }
        };
        let at = inodes.len();
        if matches!(ino.kind, Kind::Dir) {
            inodes[parent].nlink += 1;
        }
        inodes[parent].children.push((path.file_name().as_bytes().to_vec(), at));
        inodes.push(ino);
        index.insert(path.as_str().to_string(), at);
    }
    for ino in &mut inodes {
        ino.children.sort();
        if matches!(ino.kind, Kind::Dir) {
            ino.size = format::dir_size(dir_entries(&ino.children).into_iter().map(|n| n.len()));
        }
    }
    Ok(inodes)
}

/// A directory's entry names with `.` and `..`, sorted as EROFS sorts them (by bytes).
pub fn dir_entries(children: &[(Vec<u8>, usize)]) -> Vec<&[u8]> {
    let mut names: Vec<&[u8]> = vec![b".", b".."];
    names.extend(children.iter().map(|(n, _)| n.as_slice()));
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pack::PackOptions;
    use crate::model::tree::Xattr;
    use crate::model::{Compression, Format, ImagePath};
    use crate::recipe::Mode;
    use crate::util::testdata::noise;
    use std::io::Read;

    /// Text-like bytes that compress about 3:1.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        let alphabet = b"etaoin shrdlu\n/-_.0123456789";
        noise(len, seed).iter().map(|b| alphabet[*b as usize % alphabet.len()]).collect()
    }

    /// A tree with the shapes that matter: big compressible and incompressible files, zeros,
    /// empty and block-edge sizes, deep directories, long symlinks, a multi-block directory.
    pub fn edge_tree() -> Tree {
        let mut tree = Tree::default();
        let file = |bytes: Vec<u8>, mode: u16| Node::File {
            content: Content::Inline(bytes),
            mode: Mode(mode),
            xattrs: vec![],
        };
        let mut add = |path: &str, node: Node| tree.add(ImagePath::parse(path).unwrap(), node, "test").unwrap();
        add("usr/bin/big", file(text(5 << 20 | 1234, 1), 0o755));
        add("usr/bin/noise", file(noise(300_000, 2), 0o755));
        add("usr/share/zeros", file(vec![0; 6 << 20], 0o644));
        add("usr/share/empty", file(vec![], 0o644));
        for (i, len) in [4095usize, 4096, 4097, 8191, 65_537].into_iter().enumerate() {
            add(&format!("usr/share/edge/{len}"), file(text(len, 10 + i as u64), 0o600));
        }
        add("usr/share/deep/a/b/c/d/e/f/g/h/i/j/k/l/file", file(b"deep\n".to_vec(), 0o644));
        add("usr/share/links/short", Node::Symlink { target: "../empty".into() });
        add("usr/share/links/long", Node::Symlink { target: "x/".repeat(2047) + "y" });
        add("usr/share/links/mid", Node::Symlink { target: "m".repeat(4000) });
        for i in 0..400 {
            add(
                &format!("usr/share/many/entry-with-a-longish-name-{i:04}"),
                file(format!("{i}\n").into_bytes(), 0o644),
            );
        }
        let strict = Xattr { name: "user.extension-release.strict".into(), value: b"false".to_vec() };
        let label = Xattr { name: "security.selinux".into(), value: b"system_u:object_r:usr_t:s0".to_vec() };
        add(
            "usr/lib/extension-release.d/extension-release.edge",
            Node::File {
                content: Content::Inline(b"ID=_any\n".to_vec()),
                mode: Mode(0o644),
                xattrs: vec![strict, label],
            },
        );
        tree
    }

    fn pack_bytes(tree: &Tree, compression: Compression, threads: usize) -> Vec<u8> {
        let options = PackOptions { format: Format::Erofs, compression, mtime: 1_700_000_000, threads, uuid: [7; 16] };
        let mut out = tempfile::tempfile().unwrap();
        pack(tree, &|_| unreachable!("no blobs"), &options, &mut out, &|_, _| {}).unwrap();
        let mut bytes = Vec::new();
        out.seek(SeekFrom::Start(0)).unwrap();
        out.read_to_end(&mut bytes).unwrap();
        if let Some(dir) = std::env::var_os("BAKERY_TEST_EROFS_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join(format!("{compression}-{threads}.erofs")), &bytes).unwrap();
        }
        bytes
    }

    /// The same tree packs to the same bytes with 1, 2 or 8 threads, for every compression.
    #[test]
    fn images_do_not_depend_on_the_thread_count() {
        let tree = edge_tree();
        for compression in Format::Erofs.compressions() {
            let one = pack_bytes(&tree, *compression, 1);
            assert_eq!(one.len() % 4096, 0);
            assert_eq!(&one[1024..1028], &format::SUPER_MAGIC.to_le_bytes());
            for threads in [2, 8] {
                assert!(pack_bytes(&tree, *compression, threads) == one, "{compression} with {threads} threads");
            }
        }
    }
}
