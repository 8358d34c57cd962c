//! The strict image reader against the real squashfs-tools and against hostile images.
//!
//! The differential test mutates three base images (bakery's own Kubernetes image, and two
//! made by the real mksquashfs: one with every table and all data stored uncompressed, so that
//! mutations land on the structures themselves, and one compressed with xattrs) in thousands
//! of seeded ways. Every mutant is inspected by the real binary under a memory and time limit;
//! for every image bakery accepts, what it lists (paths, types, modes, sizes, link targets and
//! the sha256 of every file) must equal what the real `unsquashfs` extracts.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use support::fixtures::{Upstream, default_cni_version, mirror_args, sha256_hex};
use support::rng::Rng;
use support::{Server, bakery, run};

/// What one entry is, as either side sees it.
pub(crate) type Listing = BTreeMap<String, String>;

fn mksquashfs(tree: &Path, image: &Path, options: &[&str]) {
    let status = Command::new("mksquashfs")
        .arg(tree)
        .arg(image)
        .args(["-all-root", "-noappend", "-quiet", "-no-progress", "-b", "4096"])
        .args(options)
        .status()
        .expect("mksquashfs (squashfs-tools) is installed");
    assert!(status.success(), "mksquashfs {options:?}");
}

/// A tree with what the format has to offer: multi-block files, tails in fragments, a hole,
/// symlinks, an empty directory, a directory large enough for a directory index, an xattr.
fn sample_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let put = |path: &str, bytes: &[u8]| {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    put("usr/bin/multi", &support::fixtures::payload("multi", 3 * 4096 + 700));
    put("usr/bin/small", b"#!/bin/sh\necho small\n");
    let mut holey = support::fixtures::payload("holey", 3 * 4096);
    holey[4096..8192].fill(0);
    put("usr/lib/holey", &holey);
    let release = "usr/lib/extension-release.d/extension-release.sample";
    put(release, b"ID=_any\nARCHITECTURE=x86-64\n");
    xattr::set(tree.join(release), "user.extension-release.strict", b"false").unwrap();
    for i in 0..300 {
        put(&format!("usr/share/many/entry-with-a-longish-name-{i:04}"), format!("{i}\n").as_bytes());
    }
    std::fs::create_dir_all(tree.join("usr/share/empty")).unwrap();
    std::os::unix::fs::symlink("multi", tree.join("usr/bin/link")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/small", tree.join("usr/bin/absolute")).unwrap();
    tree
}

fn build_kubernetes(home: &Path) -> PathBuf {
    build_kubernetes_as(home, "squashfs")
}

fn build_kubernetes_as(home: &Path, format: &str) -> PathBuf {
    let server = Server::start();
    Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let mut command = bakery(home);
    command.arg("--cache-dir").arg(home.join("cache")).args(mirror_args(&server));
    command.args(["create", "kubernetes", "v1.32.0", "x86-64", "--format", format, "-o"]).arg(home.join("out"));
    run(&mut command).expect_code(0);
    home.join("out/kubernetes-v1.32.0-x86-64.raw")
}

/// The listing in `inspect --json` output.
pub(crate) fn bakery_listing(json: &serde_json::Value) -> Listing {
    let mut out = Listing::new();
    for file in json["files"].as_array().expect("files") {
        let path = file["path"].as_str().unwrap().trim_end_matches('/').to_string();
        let line = match file["type"].as_str().unwrap() {
            "dir" => format!("d {:o}", file["mode"].as_u64().unwrap()),
            "file" => format!(
                "f {:o} {} {}",
                file["mode"].as_u64().unwrap(),
                file["size"],
                file["sha256"].as_str().unwrap_or("?")
            ),
            "symlink" => format!("l {}", file["target"].as_str().unwrap()),
            other => panic!("unknown type {other}"),
        };
        out.insert(path, line);
    }
    out
}

/// What `unsquashfs -d` extracted, walked without following links.
pub(crate) fn extracted_listing(root: &Path) -> Listing {
    let mut out = Listing::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let shown = format!("/{}", path.strip_prefix(root).unwrap().to_string_lossy());
            let mode = meta.permissions().mode() & 0o7777;
            let line = if meta.file_type().is_symlink() {
                format!("l {}", std::fs::read_link(&path).unwrap().to_string_lossy())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("d {mode:o}")
            } else if meta.is_file() {
                format!("f {mode:o} {} {}", meta.size(), sha256_hex(&std::fs::read(&path).unwrap()))
            } else {
                format!("special {:o}", meta.mode())
            };
            out.insert(shown, line);
        }
    }
    out
}

/// Byte ranges of the superblock fields (offset, width).
const FIELDS: [(usize, usize); 18] = [
    (4, 4),
    (8, 4),
    (12, 4),
    (16, 4),
    (20, 2),
    (22, 2),
    (24, 2),
    (26, 2),
    (28, 2),
    (30, 2),
    (32, 8),
    (40, 8),
    (48, 8),
    (56, 8),
    (64, 8),
    (72, 8),
    (80, 8),
    (88, 8),
];

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Offsets of every name in `names` inside `image` (useful where tables are uncompressed).
fn name_offsets(image: &[u8], names: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    for name in names {
        let needle = name.as_bytes();
        out.extend(image.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i));
    }
    out
}

fn mutate(base: &[u8], names: &[usize], rng: &mut Rng) -> Vec<u8> {
    let mut image = base.to_vec();
    let bytes_used = (read_u64(base, 40) as usize).min(base.len());
    let inode_table = (read_u64(base, 64) as usize).min(bytes_used);
    match rng.below(8) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes_used);
                image[at] ^= 1 << rng.below(8);
            }
        }
        1 => {
            for _ in 0..1 + rng.below(3) {
                let at = inode_table + rng.below(bytes_used - inode_table);
                image[at] ^= 1 << rng.below(8);
            }
        }
        2 => image.truncate(rng.below(base.len())),
        3 => {
            let (at, width) = FIELDS[rng.below(FIELDS.len())];
            let old = image[at..at + width].iter().rev().fold(0u64, |v, b| v << 8 | *b as u64);
            let value = match rng.below(6) {
                0 => 0,
                1 => u64::MAX,
                2 => old.wrapping_add(1 + rng.below(64) as u64),
                3 => old.wrapping_sub(1 + rng.below(64) as u64),
                4 => read_u64(base, FIELDS[10 + rng.below(8)].0),
                _ => rng.next(),
            };
            image[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        4 if !names.is_empty() => {
            // The type field of a directory entry sits 4 bytes before its name.
            let at = names[rng.below(names.len())] - 4;
            image[at] = rng.below(16) as u8;
            image[at + 1] = 0;
        }
        5 if !names.is_empty() => {
            let at = names[rng.below(names.len())] + rng.below(4);
            image[at] = [b'/', 0, b'.', b'\n', 0xff, b'a', b'~'][rng.below(7)];
        }
        6 if !names.is_empty() => {
            // The name size, entry offsets and header fields before a name.
            let at = names[rng.below(names.len())] - 1 - rng.below(20);
            image[at] = rng.next() as u8;
        }
        _ => {
            let at = inode_table + rng.below(bytes_used - inode_table);
            let width = [1usize, 2, 4][rng.below(3)].min(bytes_used - at);
            for b in &mut image[at..at + width] {
                *b = rng.next() as u8;
            }
        }
    }
    image
}

/// Mutants tried; read and accepted (exit 0); read but with error findings (a digest that
/// differs from the manifest, say: compared with unsquashfs too); refused by the reader.
#[derive(Default)]
struct Tally {
    tried: usize,
    accepted: usize,
    flagged: usize,
    refused: usize,
}

/// `bakery inspect --json image` under a memory, CPU and time limit, counted into `tally`: the
/// listing when bakery read the image (accepted, or read with error findings), `None` when it
/// refused it with a message; an error for a crash, a hang or a refusal without a message.
fn inspect_bounded(
    home: &Path,
    image: &Path,
    label: &str,
    tally: &mut Tally,
) -> Result<Option<serde_json::Value>, String> {
    let out = Command::new("prlimit")
        .args(["--as=1073741824", "--cpu=20", "--"])
        .arg("timeout")
        .args(["-s", "KILL", "30"])
        .arg(env!("CARGO_BIN_EXE_bakery"))
        .args(["inspect", "--json"])
        .arg(image)
        .env("HOME", home)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !matches!(code, Some(0) | Some(2)) || stderr.contains("panicked") {
        return Err(format!("{label}: bakery inspect exited {code:?}: {stderr}"));
    }
    tally.tried += 1;
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        tally.refused += 1;
        return match stderr.contains("error:") {
            true => Ok(None),
            false => Err(format!("{label}: refused without a message: {stderr}")),
        };
    };
    if code == Some(0) {
        tally.accepted += 1;
    } else {
        tally.flagged += 1;
    }
    Ok(Some(json))
}

/// Whether bakery's listing equals what `tool` extracted into `into`; the first differences if not.
fn same_listing(json: &serde_json::Value, into: &Path, label: &str, tool: &str) -> Result<(), String> {
    let ours = bakery_listing(json);
    let theirs = extracted_listing(into);
    if ours == theirs {
        return Ok(());
    }
    let differ: Vec<String> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: bakery {v}, {tool} {:?}", theirs.get(k)))
        .chain(theirs.iter().filter(|(k, _)| !ours.contains_key(*k)).map(|(k, v)| format!("{k}: only {tool} {v}")))
        .take(5)
        .collect();
    Err(format!("{label}: bakery and {tool} disagree: {differ:?}"))
}

/// Inspects one mutant; when bakery accepts it, compares with unsquashfs.
fn check_mutant(home: &Path, image: &Path, label: &str, tally: &mut Tally) -> Result<(), String> {
    let Some(json) = inspect_bounded(home, image, label, tally)? else { return Ok(()) };
    let into = image.with_extension("d");
    let unsquashfs = Command::new("timeout")
        .args(["-s", "KILL", "30", "unsquashfs", "-n", "-d"])
        .arg(&into)
        .arg(image)
        .output()
        .unwrap();
    if !unsquashfs.status.success() {
        let _ = std::fs::remove_dir_all(&into);
        return Err(format!(
            "{label}: bakery read it, unsquashfs fails: {}",
            String::from_utf8_lossy(&unsquashfs.stderr)
        ));
    }
    let same = same_listing(&json, &into, label, "unsquashfs");
    std::fs::remove_dir_all(&into).unwrap();
    same
}

#[test]
fn mutated_images_bakery_accepts_read_exactly_like_unsquashfs() {
    // Mutants are written and extracted on tmpfs: thousands of small files.
    let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
    let tree = sample_tree(dir.path());
    let plain = dir.path().join("plain.raw");
    mksquashfs(&tree, &plain, &["-noI", "-noD", "-noF", "-noX"]);
    let packed = dir.path().join("packed.raw");
    mksquashfs(&tree, &packed, &["-comp", "gzip"]);
    let kubernetes = build_kubernetes(dir.path());
    let names = ["multi", "small", "holey", "link", "absolute", "many", "empty", "entry-with-a-longish-name-0150"];

    let bases = [("plain", plain, 900), ("packed", packed, 600), ("kubernetes", kubernetes, 500)];
    for (label, base_path, _) in &bases {
        // The unmutated bases are accepted and agree with unsquashfs.
        let mut tally = Tally::default();
        check_mutant(dir.path(), base_path, &format!("{label} base"), &mut tally).unwrap();
        assert_eq!(tally.accepted, 1, "{label}: the base image is accepted");
    }
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for (label, base_path, count) in bases {
        let base = std::fs::read(&base_path).unwrap();
        let offsets = if label == "plain" { name_offsets(&base, &names) } else { Vec::new() };
        let mut tally = Tally::default();
        for seed in 1..=count as u64 {
            // BAKERY_TEST_MUTANT=plain-659 writes just that mutant to /tmp, to reproduce a failure.
            if let Ok(only) = std::env::var("BAKERY_TEST_MUTANT") {
                if only == format!("{label}-{seed}") {
                    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ label.len() as u64);
                    std::fs::write(format!("/tmp/{only}.raw"), mutate(&base, &offsets, &mut rng)).unwrap();
                    std::fs::copy(&base_path, format!("/tmp/{label}-base.raw")).unwrap();
                }
                continue;
            }
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ label.len() as u64);
            let image = dir.path().join(format!("{label}-{seed}.raw"));
            std::fs::write(&image, mutate(&base, &offsets, &mut rng)).unwrap();
            if let Err(failure) = check_mutant(dir.path(), &image, &format!("{label} seed {seed}"), &mut tally) {
                failures.push(failure);
            }
            std::fs::remove_file(&image).unwrap();
        }
        eprintln!(
            "{label}: {} mutants, {} accepted, {} read with error findings, {} refused",
            tally.tried, tally.accepted, tally.flagged, tally.refused
        );
        // Flips in file data of the uncompressed image change only bytes: some must be accepted
        // (and were compared above), or the test would prove nothing.
        if label == "plain" {
            assert!(tally.accepted > 10, "{label}: only {} mutants accepted", tally.accepted);
        }
        total.tried += tally.tried;
        total.accepted += tally.accepted;
        total.flagged += tally.flagged;
        total.refused += tally.refused;
    }
    eprintln!(
        "all: {} mutants, {} accepted, {} read with error findings, {} refused",
        total.tried, total.accepted, total.flagged, total.refused
    );
    assert!(
        failures.is_empty(),
        "{} mutants failed, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(8)]
    );
    assert!(total.tried >= 2000);
}

/// A hand-made image (every table uncompressed) of nested directories `a/a/a/...`, `depth`
/// deep; with `loop_back`, the innermost directory holds an entry naming the root again.
fn nested_image(depth: usize, loop_back: bool) -> Vec<u8> {
    const STRIDE: usize = 8194; // an uncompressed 8 KiB metadata block and its header
    let count = depth + 1;
    let reference = |pos: usize| ((pos / 8192 * STRIDE) as u64) << 16 | (pos % 8192) as u64;
    let blocks = |stream: &[u8]| -> Vec<u8> {
        stream
            .chunks(8192)
            .flat_map(|c| [(0x8000 | c.len() as u16).to_le_bytes().to_vec(), c.to_vec()].concat())
            .collect()
    };
    let entry_len = 12 + 8 + 1;
    let mut dirs = Vec::new();
    let mut inodes = Vec::new();
    for level in 0..count {
        let child = if level < depth {
            Some(level + 1)
        } else if loop_back {
            Some(0)
        } else {
            None
        };
        let listing_at = dirs.len();
        if let Some(child) = child {
            let child_ref = reference(child * 32);
            dirs.extend_from_slice(&0u32.to_le_bytes());
            dirs.extend_from_slice(&((child_ref >> 16) as u32).to_le_bytes());
            dirs.extend_from_slice(&(child as u32 + 1).to_le_bytes());
            dirs.extend_from_slice(&((child_ref & 0xffff) as u16).to_le_bytes());
            dirs.extend_from_slice(&0i16.to_le_bytes());
            dirs.extend_from_slice(&1u16.to_le_bytes());
            dirs.extend_from_slice(&0u16.to_le_bytes());
            dirs.push(b'a');
        }
        let listing = reference(listing_at);
        let parent = if level == 0 { count as u32 + 1 } else { level as u32 };
        for v in [1u16, 0o755, 0, 0] {
            inodes.extend_from_slice(&v.to_le_bytes());
        }
        inodes.extend_from_slice(&0u32.to_le_bytes());
        inodes.extend_from_slice(&(level as u32 + 1).to_le_bytes());
        inodes.extend_from_slice(&((listing >> 16) as u32).to_le_bytes());
        inodes.extend_from_slice(&(2 + child.is_some() as u32).to_le_bytes());
        inodes.extend_from_slice(&(if child.is_some() { entry_len as u16 + 3 } else { 3 }).to_le_bytes());
        inodes.extend_from_slice(&((listing & 0xffff) as u16).to_le_bytes());
        inodes.extend_from_slice(&parent.to_le_bytes());
    }
    let inode_blocks = blocks(&inodes);
    let dir_blocks = blocks(&dirs);
    let inode_table = 96u64;
    let dir_table = inode_table + inode_blocks.len() as u64;
    let id_block = dir_table + dir_blocks.len() as u64;
    let id_index = id_block + 6;
    let bytes_used = id_index + 8;
    let mut image = vec![0u8; 96];
    image.extend_from_slice(&inode_blocks);
    image.extend_from_slice(&dir_blocks);
    image.extend_from_slice(&0x8004u16.to_le_bytes());
    image.extend_from_slice(&0u32.to_le_bytes());
    image.extend_from_slice(&id_block.to_le_bytes());
    let mut sb = Vec::new();
    sb.extend_from_slice(b"hsqs");
    for v in [count as u32, 0, 131072, 0] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u16, 17, 0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0200, 1, 4, 0] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    for v in [reference(0), bytes_used, id_index, u64::MAX, inode_table, dir_table, u64::MAX, u64::MAX] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    image[..96].copy_from_slice(&sb);
    image.resize(bytes_used.div_ceil(4096) as usize * 4096, 0);
    image
}

fn inspect_json(home: &Path, image: &Path) -> support::Run {
    run(bakery(home).arg("inspect").arg("--json").arg(image))
}

/// The kernel and unsquashfs read a directory 14,000 deep; backhand's recursive reader
/// overflowed its stack (abort). bakery refuses it, past PATH_MAX, with a message.
#[test]
fn a_directory_14000_deep_is_refused_without_overflowing_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let shallow = dir.path().join("shallow.raw");
    std::fs::write(&shallow, nested_image(40, false)).unwrap();
    let listed = run(support::unsquashfs().arg("-l").arg(&shallow)).expect_code(0);
    assert_eq!(listed.stdout.matches("/a").count(), 40 * 41 / 2, "unsquashfs reads the hand-made image");
    let read = inspect_json(dir.path(), &shallow);
    let json: serde_json::Value = serde_json::from_str(&read.stdout).expect("bakery reads it too");
    assert_eq!(json["files"].as_array().unwrap().len(), 40);

    let deep = dir.path().join("deep.raw");
    std::fs::write(&deep, nested_image(14_000, false)).unwrap();
    let refused = inspect_json(dir.path(), &deep).expect_code(2);
    assert!(refused.stderr.contains("a path longer than 4096 bytes"), "{}", refused.stderr);
}

/// A directory entry that names an inode already reached (here the root: a loop) is refused,
/// as is any hard link: every inode is reached exactly once.
#[test]
fn a_directory_loop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("loop.raw");
    std::fs::write(&image, nested_image(3, true)).unwrap();
    let refused = inspect_json(dir.path(), &image).expect_code(2);
    assert!(refused.stderr.contains("/a/a/a/a: its inode is reached a second time"), "{}", refused.stderr);
}

/// An entry whose type field is invalid made backhand stop listing the directory while the
/// kernel merged the entries after it; now the image is refused, naming the entry.
#[test]
fn an_entry_with_an_invalid_type_is_refused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let plain = dir.path().join("plain.raw");
    mksquashfs(&tree, &plain, &["-noI", "-noD", "-noF", "-noX"]);
    let mut bytes = std::fs::read(&plain).unwrap();
    let at = name_offsets(&bytes, &["holey"])[0] - 4;
    bytes[at] = 0;
    std::fs::write(&plain, &bytes).unwrap();
    let listed = run(support::unsquashfs().arg("-l").arg(&plain));
    assert!(listed.stdout.contains("/usr/lib/extension-release.d"), "unsquashfs still lists what follows");
    let refused = inspect_json(dir.path(), &plain).expect_code(2);
    assert!(refused.stderr.contains("the entry \"holey\" has an invalid type 0"), "{}", refused.stderr);
}

/// Device nodes, FIFOs and sockets passed as empty files and worked after a merge.
#[test]
fn device_nodes_fifos_and_sockets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    for (name, pseudo, message) in [
        ("char", "usr/bin/tty c 666 root root 5 0", "a device node"),
        ("block", "usr/bin/disk b 600 root root 8 0", "a device node"),
        ("fifo", "", "a FIFO"),
        ("socket", "", "a socket"),
    ] {
        let image = dir.path().join(format!("{name}.raw"));
        let special = tree.join("usr/bin/special");
        let _ = std::fs::remove_file(&special);
        if name == "fifo" {
            run(Command::new("mkfifo").arg(&special)).expect_code(0);
        } else if name == "socket" {
            drop(std::os::unix::net::UnixListener::bind(&special).unwrap());
        }
        let pseudo: &[&str] = if pseudo.is_empty() { &[] } else { &["-p", pseudo] };
        mksquashfs(&tree, &image, pseudo);
        let refused = inspect_json(dir.path(), &image).expect_code(2);
        assert!(refused.stderr.contains(message), "{name}: {}", refused.stderr);
        assert!(refused.stdout.is_empty(), "{name}: nothing listed");
    }
}

/// Images the kernel cannot mount passed, and then broke every later refresh.
#[test]
fn unmountable_superblocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let good = dir.path().join("good.raw");
    mksquashfs(&tree, &good, &[]);
    let base = std::fs::read(&good).unwrap();
    for (name, offset, value, message) in [
        ("bytes_used", 40, 0u64, "bytes_used 0 is not inside the file"),
        ("export_table", 88, 0, "the export table"),
        ("id_table", 48, 1 << 40, "the id table"),
        ("inode_table", 64, 1 << 40, "the inode table"),
    ] {
        let mut bytes = base.clone();
        bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        let image = dir.path().join(format!("{name}.raw"));
        std::fs::write(&image, bytes).unwrap();
        let refused = inspect_json(dir.path(), &image).expect_code(2);
        assert!(refused.stderr.contains(message), "{name}: {}", refused.stderr);
    }
}

/// File data was never read: a corrupt data block passed. Now every block is decompressed to
/// its size and every file's digest compared with the manifest's.
#[test]
fn a_corrupt_data_block_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_kubernetes(dir.path());
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[200_000] ^= 0x40;
    std::fs::write(&image, bytes).unwrap();
    let refused = inspect_json(dir.path(), &image).expect_code(2);
    assert!(refused.stderr.contains("not a valid sysext image: /usr/"), "{}", refused.stderr);
    assert!(refused.stderr.contains("block"), "{}", refused.stderr);
}

/// setuid files the manifest does not name, and xattrs the kernel or overlayfs act on
/// (`trusted.overlay.opaque` hides the host's directory, `security.capability` grants
/// privileges) are errors.
#[test]
fn setuid_files_and_privileged_xattrs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    std::fs::set_permissions(tree.join("usr/bin/small"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    xattr::set(tree.join("usr/share/empty"), "trusted.overlay.opaque", b"y").unwrap();
    // VFS_CAP_REVISION_2, effective, CAP_NET_ADMIN permitted.
    let capability = [[1, 0, 0, 2], [0, 0x10, 0, 0], [0; 4], [0; 4], [0; 4]].concat();
    xattr::set(tree.join("usr/bin/multi"), "security.capability", &capability).unwrap();
    let image = dir.path().join("sample.raw");
    mksquashfs(&tree, &image, &[]);
    let flagged = inspect_json(dir.path(), &image).expect_code(2);
    let json: serde_json::Value = serde_json::from_str(&flagged.stdout).unwrap();
    let errors: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| format!("{}: {}", f["path"].as_str().unwrap_or(""), f["message"].as_str().unwrap()))
        .collect();
    assert!(errors.iter().any(|e| e.starts_with("/usr/bin/small: mode 4755 is setuid")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("/usr/share/empty: xattr trusted.overlay.opaque")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("/usr/bin/multi: xattr security.capability")), "{errors:?}");
}

/// A 1 GB sparse extension-release file was read whole into memory; now its size is checked
/// against a 64 KiB cap before a byte is read.
#[test]
fn an_oversized_extension_release_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let release = tree.join("usr/lib/extension-release.d/extension-release.sample");
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().set_len(1 << 30).unwrap();
    let image = dir.path().join("sample.raw");
    mksquashfs(&tree, &image, &[]);
    let refused = inspect_json(dir.path(), &image).expect_code(2);
    assert!(refused.stderr.contains("1073741824 bytes, more than the 65536"), "{}", refused.stderr);
}

/// `release --strict` accepted an image with a hidden entry; it goes through the same reader.
#[test]
fn release_strict_refuses_an_image_with_a_hidden_entry() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let out = dir.path().join("release");
    std::fs::create_dir(&out).unwrap();
    let image = out.join("sample-v1-x86-64.raw");
    mksquashfs(&tree, &image, &["-noI", "-noD", "-noF", "-noX"]);
    run(bakery(dir.path()).args(["release", "--strict", "--allow-unsigned"]).arg(&out)).expect_code(0);

    let mut bytes = std::fs::read(&image).unwrap();
    let at = name_offsets(&bytes, &["holey"])[0] - 4;
    bytes[at] = 9;
    std::fs::write(&image, &bytes).unwrap();
    let refused = run(bakery(dir.path()).args(["release", "--strict", "--allow-unsigned"]).arg(&out)).expect_code(2);
    assert!(refused.stderr.contains("sample-v1-x86-64.raw"), "{}", refused.stderr);
    assert!(refused.stderr.contains("the entry \"holey\" has an invalid type 9"), "{}", refused.stderr);
}

/// Where the structures of an EROFS image are, found by their shape (the sample images are
/// small and made by mkfs.erofs): inode slots, directory blocks, compressed inodes' indexes.
struct ErofsTargets {
    inodes: Vec<usize>,
    dir_blocks: Vec<usize>,
    indexes: Vec<usize>,
}

fn erofs_targets(image: &[u8]) -> ErofsTargets {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]);
    let mut targets = ErofsTargets { inodes: Vec::new(), dir_blocks: Vec::new(), indexes: Vec::new() };
    for at in (0..image.len().saturating_sub(64)).step_by(32) {
        let (format, mode, nlink) = (u16_at(at), u16_at(at + 4), u16_at(at + 6));
        let kind = mode & 0o170000;
        if format < 8
            && matches!(kind, 0o040000 | 0o100000 | 0o120000)
            && (1..1000).contains(&nlink)
            && image[at + 24..at + 28] == [0; 4]
        {
            targets.inodes.push(at);
            if matches!(format >> 1 & 7, 1 | 3) {
                let xattrs = match u16_at(at + 2) {
                    0 => 0,
                    n => 12 + 4 * (n as usize - 1),
                };
                targets.indexes.push((at + 32 + xattrs).next_multiple_of(8));
            }
        }
    }
    for block in (0..image.len()).step_by(4096) {
        let first = u16_at(block + 8) as usize;
        if first >= 24 && first.is_multiple_of(12) && first < 4096 && image[block + first] == b'.' {
            targets.dir_blocks.push(block);
        }
    }
    targets
}

/// Superblock fields (offset from 1024, width).
const EROFS_FIELDS: [(usize, usize); 12] =
    [(8, 4), (12, 1), (13, 1), (14, 2), (16, 8), (36, 4), (40, 4), (44, 4), (80, 4), (84, 2), (90, 1), (96, 8)];

fn set_le(image: &mut [u8], at: usize, width: usize, value: u64) {
    if at + width <= image.len() {
        image[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

fn get_le(image: &[u8], at: usize, width: usize) -> u64 {
    image.get(at..at + width).map(|b| b.iter().rev().fold(0u64, |v, b| v << 8 | *b as u64)).unwrap_or(0)
}

fn nearby(old: u64, rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => 0,
        1 => u64::MAX,
        2 => old.wrapping_add(1 + rng.below(40) as u64),
        3 => old.wrapping_sub(1 + rng.below(40) as u64),
        _ => rng.next(),
    }
}

fn mutate_erofs(base: &[u8], t: &ErofsTargets, rng: &mut Rng) -> Vec<u8> {
    let mut image = base.to_vec();
    let pick = |list: &[usize], rng: &mut Rng| list[rng.below(list.len())];
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(image.len());
                image[at] ^= 1 << rng.below(8);
            }
        }
        1 => image.truncate(rng.below(base.len())),
        2 => {
            let (at, width) = EROFS_FIELDS[rng.below(EROFS_FIELDS.len())];
            let value = nearby(get_le(&image, 1024 + at, width), rng);
            set_le(&mut image, 1024 + at, width, value);
            // Most of the time without the checksum, which would catch every change.
            if rng.below(4) != 0 {
                image[1032] &= !1;
            }
        }
        3 if !t.inodes.is_empty() => {
            let inode = pick(&t.inodes, rng);
            let (at, width) = [(0, 2), (2, 2), (4, 2), (6, 2), (8, 4), (16, 4), (20, 4), (24, 2)][rng.below(8)];
            let value = nearby(get_le(&image, inode + at, width), rng);
            set_le(&mut image, inode + at, width, value);
        }
        4 if !t.dir_blocks.is_empty() => {
            let block = pick(&t.dir_blocks, rng);
            let count = get_le(&image, block + 8, 2) as usize / 12;
            let entry = block + 12 * rng.below(count.max(1));
            let (at, width) = [(0, 8), (0, 1), (8, 2), (10, 1)][rng.below(4)];
            let value =
                if rng.below(2) == 0 { nearby(get_le(&image, entry + at, width), rng) } else { rng.below(8) as u64 };
            set_le(&mut image, entry + at, width, value);
        }
        5 if !t.indexes.is_empty() => {
            let at = pick(&t.indexes, rng) + rng.below(96);
            if at < image.len() {
                image[at] = if rng.below(2) == 0 { rng.next() as u8 } else { image[at] ^ 1 << rng.below(8) };
            }
        }
        _ => {
            let at = rng.below(image.len() - 4);
            for b in &mut image[at..at + [1, 2, 4][rng.below(3)]] {
                *b = rng.next() as u8;
            }
        }
    }
    image
}

/// Inspects one EROFS mutant; when bakery reads it, the real fsck.erofs must extract the same.
fn check_erofs_mutant(
    tools: &support::erofs_tools::ErofsTools,
    home: &Path,
    image: &Path,
    label: &str,
    tally: &mut Tally,
) -> Result<(), String> {
    let Some(json) = inspect_bounded(home, image, label, tally)? else { return Ok(()) };
    let into = image.with_extension("d");
    let (ok, fsck) = tools.extract(image, &into);
    let same = if ok {
        same_listing(&json, &into, label, "fsck.erofs")
    } else {
        Err(format!("{label}: bakery read it, fsck.erofs fails: {fsck}"))
    };
    let _ = std::fs::remove_dir_all(&into);
    same
}

/// The differential test for EROFS: three mkfs.erofs bases (sysext-bakery's lz4hc flags with
/// fragments and inline tails, uncompressed, lzma) and bakery's own kubernetes image (its
/// writer's lz4hc layout: data first, compacted indexes, inline tails), mutated in seeded
/// ways; every mutant bakery reads, the real `fsck.erofs --extract` (memory and time limited)
/// must extract alike.
#[test]
fn mutated_erofs_images_bakery_accepts_read_exactly_like_fsck_erofs() {
    let test = "mutated_erofs_images_bakery_accepts_read_exactly_like_fsck_erofs";
    let Some(tools) = support::erofs_tools::ErofsTools::find(test) else { return };
    let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
    let tree = sample_tree(dir.path());
    let flags: [(&str, &[&str], u64); 3] = [
        ("lz4hc-fragments", &["-zlz4hc,12", "-C65536", "-Efragments,ztailpacking"], 550),
        ("plain", &[], 550),
        ("lzma", &["-zlzma"], 400),
    ];
    let mut bases = Vec::new();
    for (label, options, count) in flags {
        let base_path = dir.path().join(format!("{label}.raw"));
        tools.mkfs(&tree, &base_path, options);
        bases.push((label, base_path, count));
    }
    let home = dir.path().join("bakery");
    std::fs::create_dir(&home).unwrap();
    bases.push(("bakery-kubernetes", build_kubernetes_as(&home, "erofs"), 500));
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for (label, base_path, count) in bases {
        let mut tally = Tally::default();
        check_erofs_mutant(&tools, dir.path(), &base_path, &format!("{label} base"), &mut tally).unwrap();
        assert_eq!(tally.accepted + tally.flagged, 1, "{label}: the base image is read");
        let base = std::fs::read(&base_path).unwrap();
        let targets = erofs_targets(&base);
        // bakery keeps small directories inline: its image may have no directory block
        assert!(!targets.inodes.is_empty(), "{label}: inodes found");
        assert!(label.starts_with("bakery") || !targets.dir_blocks.is_empty(), "{label}: directory blocks found");
        let mut tally = Tally::default();
        for seed in 1..=count {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ label.len() as u64);
            let mutant = mutate_erofs(&base, &targets, &mut rng);
            // BAKERY_TEST_MUTANT=erofs-plain-17 keeps just that mutant in /tmp, to reproduce it.
            if std::env::var("BAKERY_TEST_MUTANT").is_ok_and(|m| m == format!("erofs-{label}-{seed}")) {
                std::fs::write(format!("/tmp/erofs-{label}-{seed}.raw"), &mutant).unwrap();
            }
            let image = dir.path().join(format!("{label}-{seed}.raw"));
            std::fs::write(&image, mutant).unwrap();
            if let Err(failure) =
                check_erofs_mutant(&tools, dir.path(), &image, &format!("{label} seed {seed}"), &mut tally)
            {
                failures.push(failure);
            }
            std::fs::remove_file(&image).unwrap();
        }
        eprintln!(
            "erofs {label}: {} mutants, {} accepted, {} read with error findings, {} refused",
            tally.tried, tally.accepted, tally.flagged, tally.refused
        );
        total.tried += tally.tried;
        total.accepted += tally.accepted + tally.flagged;
        total.refused += tally.refused;
    }
    eprintln!(
        "erofs all: {} mutants, {} read, {} refused, {} disagreements",
        total.tried,
        total.accepted,
        total.refused,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mutants failed, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(8)]
    );
    assert!(total.accepted > 50, "only {} mutants were read: the test would prove little", total.accepted);
}
