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
