//! The strict EROFS reader against the real erofs-utils 1.8: trees with what sysext images
//! hold, packed by `mkfs.erofs` with every layout sysext tools use, read by `bakery inspect`
//! exactly as `fsck.erofs --extract` extracts them (paths, modes, link targets, every file's
//! sha256), and as the source tree holds them.

use std::path::{Path, PathBuf};

use crate::strict_reader::{bakery_listing, extracted_listing};
use crate::support;
use support::erofs_tools::ErofsTools;
use support::{bakery, run};

/// What mkfs.erofs writes for sysext images: uncompressed, sysext-bakery's flags (big
/// pclusters, compacted indexes, inline tails, fragments), plain lz4, lzma, zstd,
/// deflate.
/// (label, what `inspect` names the compression, flags).
pub(crate) const FLAG_SETS: [(&str, &str, &[&str]); 7] = [
    ("none", "none", &[]),
    ("sysext-bakery", "lz4", &["-zlz4hc,12", "-C65536", "-Efragments,ztailpacking"]),
    ("lz4", "lz4", &["-zlz4"]),
    ("lz4hc-ztailpacking", "lz4", &["-zlz4hc", "-C16384", "-Eztailpacking"]),
    ("lzma", "lzma", &["-zlzma"]),
    ("zstd", "zstd", &["-zzstd"]),
    ("deflate", "deflate", &["-zdeflate"]),
];

/// A tree with the cases a reader gets wrong: big compressible and incompressible files,
/// zeros, empty files, sizes around a block, deep directories, long symlinks, a directory of
/// several blocks, and the extension-release xattr.
pub(crate) fn tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let put = |path: &str, bytes: &[u8]| {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).take(700_000).collect();
    put("usr/bin/compressible", &text);
    put("usr/bin/incompressible", &support::fixtures::payload("noise", 300_000));
    put("usr/lib/zeros", &vec![0u8; 200_000]);
    put("usr/lib/empty", b"");
    for len in [1, 4095, 4096, 4097, 65_537] {
        put(&format!("usr/lib/sized-{len}"), &support::fixtures::payload(&format!("s{len}"), len));
    }
    let release = "usr/lib/extension-release.d/extension-release.sample";
    put(release, b"ID=_any\nARCHITECTURE=x86-64\n");
    xattr::set(tree.join(release), "user.extension-release.strict", b"false").unwrap();
    let deep = (0..40).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
    put(&format!("usr/share/{deep}/leaf"), b"deep\n");
    for i in 0..250 {
        put(&format!("usr/share/many/an-entry-with-a-long-name-{i:04}"), format!("{i}\n").as_bytes());
    }
    std::fs::create_dir_all(tree.join("opt/empty")).unwrap();
    std::os::unix::fs::symlink("../lib/zeros", tree.join("usr/bin/link")).unwrap();
    let long = format!("/{}", "x".repeat(4094));
    std::os::unix::fs::symlink(&long, tree.join("usr/bin/long-link")).unwrap();
    tree
}

fn inspect(home: &Path, image: &Path) -> serde_json::Value {
    let out = run(bakery(home).arg("inspect").arg("--json").arg(image));
    assert!(matches!(out.code, 0 | 2), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("bakery refused {}: {}", image.display(), out.stderr))
}

#[test]
fn mkfs_erofs_images_read_exactly_like_fsck_extracts_them() {
    let Some(tools) = ErofsTools::find("mkfs_erofs_images_read_exactly_like_fsck_extracts_them") else { return };
    let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
    let tree = tree(dir.path());
    let source = extracted_listing(&tree);
    for (label, compression, flags) in FLAG_SETS {
        let image = dir.path().join(format!("{label}.raw"));
        tools.mkfs(&tree, &image, flags);
        let json = inspect(dir.path(), &image);
        let ours = bakery_listing(&json);
        let into = dir.path().join(format!("{label}.d"));
        let (ok, stderr) = tools.extract(&image, &into);
        assert!(ok, "{label}: fsck.erofs: {stderr}");
        assert_eq!(ours, extracted_listing(&into), "{label}: bakery and fsck.erofs");
        assert_eq!(ours, source, "{label}: bakery and the source tree");
        assert_eq!(json["compression"], compression, "{label}");
        assert_eq!(json["uuid"], "6b1c9e4e-8f2a-4c55-9d3e-0e6f8a1b2c3d", "{label}");
        assert_eq!(json["block_size"], 4096, "{label}");
        let release = json["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str().unwrap().contains("extension-release."));
        assert!(release.is_some(), "{label}: the extension-release is listed");
        assert!(
            json["extension_release"]["relaxed"].as_bool().unwrap_or(false),
            "{label}: the strict=false xattr is read: {}",
            json["extension_release"]
        );
    }
}

/// Where directory contents start (one per directory block), from the directory inodes
/// (compact, as mkfs.erofs writes them here): inline tails after the inode, or blocks.
fn dir_blocks(image: &[u8]) -> Vec<(usize, usize)> {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let mut out = Vec::new();
    for at in (1056..image.len() - 64).step_by(32) {
        let (format, mode) = (u16_at(at), u16_at(at + 4));
        if format >= 8 || mode & 0o170000 != 0o040000 || image[at + 24..at + 28] != [0; 4] {
            continue;
        }
        let size = u32::from_le_bytes(image[at + 8..at + 12].try_into().unwrap()) as usize;
        let blkaddr = u32::from_le_bytes(image[at + 16..at + 20].try_into().unwrap()) as usize;
        let xattrs = match u16_at(at + 2) {
            0 => 0,
            n => 12 + 4 * (n - 1),
        };
        let blocks = if format >> 1 == 2 { size / 4096 } else { size.div_ceil(4096) };
        for b in 0..blocks {
            out.push((blkaddr * 4096 + b * 4096, (size - b * 4096).min(4096)));
        }
        if format >> 1 == 2 && !size.is_multiple_of(4096) {
            out.push((at + 32 + xattrs, size % 4096));
        }
    }
    out
}

/// The directory entry named `name` (in any directory): its offset and nid.
fn dirent(image: &[u8], name: &str) -> (usize, u64) {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    for (block, len) in dir_blocks(image) {
        if block + len > image.len() || len < 24 {
            continue;
        }
        let first = u16_at(block + 8);
        if first < 24 || !first.is_multiple_of(12) || first >= len {
            continue;
        }
        let count = first / 12;
        for i in 0..count {
            let start = block + u16_at(block + 12 * i + 8);
            let end = if i + 1 < count { block + u16_at(block + 12 * i + 20) } else { start + name.len() };
            if image.get(start..end) == Some(name.as_bytes()) {
                let at = block + 12 * i;
                return (at, u64::from_le_bytes(image[at..at + 8].try_into().unwrap()));
            }
        }
    }
    panic!("no directory entry {name:?}")
}

fn inode_at(image: &[u8], nid: u64) -> usize {
    let meta = u32::from_le_bytes(image[1064..1068].try_into().unwrap()) as usize;
    meta * 4096 + nid as usize * 32
}

/// Recomputes the superblock checksum (CRC-32C of the rest of block 0) after a patch.
fn fix_checksum(image: &mut [u8]) {
    image[1028..1032].fill(0);
    let mut crc = !0u32;
    for b in &image[1024..4096] {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ if crc & 1 != 0 { 0x82F6_3B78 } else { 0 };
        }
    }
    image[1028..1032].copy_from_slice(&crc.to_le_bytes());
}

/// Packs `tree` with `flags`, lets `patch` change the image, and returns what
/// `bakery inspect` says on stderr (it must refuse the image).
fn refused(tools: &ErofsTools, dir: &Path, tree: &Path, flags: &[&str], patch: &dyn Fn(&mut Vec<u8>)) -> String {
    let image = dir.join("patched.raw");
    tools.mkfs(tree, &image, flags);
    let mut bytes = std::fs::read(&image).unwrap();
    patch(&mut bytes);
    fix_checksum(&mut bytes);
    std::fs::write(&image, &bytes).unwrap();
    let out = run(bakery(dir).arg("inspect").arg("--json").arg(&image)).expect_code(2);
    assert!(out.stdout.is_empty(), "nothing listed: {}", out.stdout);
    out.stderr
}

/// Hostile images, each refused with a message naming what and where: a directory entry
/// naming an ancestor (a loop), a hard link, unsorted names (hidden from the kernel's binary
/// search), a FIFO, a size far past the image, an index pointing outside it, a pcluster that
/// decodes to another size than its extent, and a 1 GiB extension-release.
#[test]
fn hostile_erofs_images_are_refused() {
    let Some(tools) = ErofsTools::find("hostile_erofs_images_are_refused") else { return };
    let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
    let tree = tree(dir.path());

    let e = refused(&tools, dir.path(), &tree, &[], &|image| {
        let root = u16::from_le_bytes([image[1038], image[1039]]) as u64;
        let (at, _) = dirent(image, "many");
        image[at..at + 8].copy_from_slice(&root.to_le_bytes());
    });
    assert!(e.contains("/usr/share/many (nid "), "{e}");
    assert!(e.contains("its inode is reached a second time (a hard link or a loop)"), "{e}");

    let e = refused(&tools, dir.path(), &tree, &[], &|image| {
        let (at, _) = dirent(image, "an-entry-with-a-long-name-0150");
        let name = u16::from_le_bytes([image[at + 8], image[at + 9]]) as usize;
        let block = at - at % 4096;
        image[block + name + 29] = b'9';
    });
    assert!(e.contains("/usr/share/many (nid "), "{e}");
    assert!(e.contains("the names are not sorted (at \"an-entry-with-a-long-name-0151\")"), "{e}");

    let e = refused(&tools, dir.path(), &tree, &[], &|image| {
        let (_, nid) = dirent(image, "sized-4097");
        let at = inode_at(image, nid);
        image[at + 8..at + 12].copy_from_slice(&(3u32 << 30).to_le_bytes());
    });
    assert!(e.contains("/usr/lib/sized-4097 (nid "), "{e}");
    assert!(e.contains("run past the image's end") || e.contains("outside the image"), "{e}");

    let e = refused(&tools, dir.path(), &tree, &["-zlz4"], &|image| {
        let (_, nid) = dirent(image, "sized-65537");
        let at = inode_at(image, nid);
        let size = u32::from_le_bytes(image[at + 8..at + 12].try_into().unwrap());
        image[at + 8..at + 12].copy_from_slice(&(size - 1).to_le_bytes());
    });
    assert!(e.contains("/usr/lib/sized-65537 (nid "), "{e}");
    assert!(e.contains("the extent at") && e.contains("lz4"), "{e}");

    let e = refused(&tools, dir.path(), &tree, &["-zlz4"], &|image| {
        let (_, nid) = dirent(image, "compressible");
        let at = inode_at(image, nid);
        // The first compacted pack's block address: 4B packs until 32-byte alignment.
        let ebase = (at + 32).next_multiple_of(8) + 8;
        let initial = ((32 - ebase % 32) / 4) & 7;
        let advise = u16::from_le_bytes([image[ebase - 4], image[ebase - 3]]);
        let addr = if initial > 0 || advise & 1 == 0 { ebase + 4 } else { ebase + 28 };
        image[addr..addr + 4].copy_from_slice(&0x00ff_ff00u32.to_le_bytes());
    });
    assert!(e.contains("/usr/bin/compressible (nid "), "{e}");
    assert!(e.contains("lies outside the image"), "{e}");

    let linked = dir.path().join("linked");
    std::fs::create_dir_all(linked.join("usr/bin")).unwrap();
    std::fs::write(linked.join("usr/bin/a"), b"same\n").unwrap();
    std::fs::hard_link(linked.join("usr/bin/a"), linked.join("usr/bin/b")).unwrap();
    let e = refused(&tools, dir.path(), &linked, &[], &|_| {});
    assert!(e.contains("/usr/bin/a (nid ") && e.contains("link count 2: hard links are not allowed"), "{e}");

    let special = dir.path().join("special");
    std::fs::create_dir_all(special.join("usr/bin")).unwrap();
    run(std::process::Command::new("mkfifo").arg(special.join("usr/bin/fifo"))).expect_code(0);
    let e = refused(&tools, dir.path(), &special, &[], &|_| {});
    assert!(e.contains("/usr/bin/fifo (nid ") && e.contains("a FIFO: sysext images hold only"), "{e}");

    // 1 GiB of zeros compresses to a few MiB: the cap is checked before a byte is decoded.
    let release = tree.join("usr/lib/extension-release.d/extension-release.sample");
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().set_len(1 << 30).unwrap();
    let e = refused(&tools, dir.path(), &tree, &["-zlz4hc", "-C65536"], &|_| {});
    assert!(e.contains("1073741824 bytes, more than the 65536"), "{e}");
}
