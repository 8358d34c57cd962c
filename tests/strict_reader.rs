//! The strict image reader against the real squashfs-tools and against hostile images.
//!
//! The differential test mutates three base images (bakery's own Kubernetes image, and two
//! made by the real mksquashfs: one with every table and all data stored uncompressed, so that
//! mutations land on the structures themselves, and one compressed with xattrs) in thousands
//! of seeded ways. Every mutant is inspected by the real binary under a memory and time limit;
//! for every image bakery accepts, what it lists (paths, types, modes, sizes, link targets and
//! the sha256 of every file) must equal what the real `unsquashfs` extracts.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::fixtures::{Upstream, default_cni_version, mirror_args, sha256_hex};
use support::{Server, bakery, run};

/// xorshift64*: deterministic, so a failing mutant reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What one entry is, as either side sees it.
type Listing = BTreeMap<String, String>;

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
    let server = Server::start();
    Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let mut command = bakery(home);
    command.arg("--cache-dir").arg(home.join("cache")).args(mirror_args(&server));
    command.args(["create", "kubernetes", "v1.32.0", "x86-64", "-o"]).arg(home.join("out"));
    run(&mut command).expect_code(0);
    home.join("out/kubernetes-v1.32.0-x86-64.raw")
}

/// The listing in `inspect --json` output.
fn bakery_listing(json: &serde_json::Value) -> Listing {
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
fn extracted_listing(root: &Path) -> Listing {
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

/// Inspects one mutant; when bakery accepts it, compares with unsquashfs.
fn check_mutant(home: &Path, image: &Path, label: &str, tally: &mut Tally) -> Result<(), String> {
    let out = Command::new("prlimit")
        .args(["--as=1073741824", "--cpu=20", "--"])
        .arg("timeout")
        .args(["-s", "KILL", "30"])
        .arg(env!("CARGO_BIN_EXE_bakery"))
        .arg("inspect")
        .arg("--json")
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
            true => Ok(()),
            false => Err(format!("{label}: refused without a message: {stderr}")),
        };
    };
    if code == Some(0) {
        tally.accepted += 1;
    } else {
        tally.flagged += 1;
    }
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
    let ours = bakery_listing(&json);
    let theirs = extracted_listing(&into);
    std::fs::remove_dir_all(&into).unwrap();
    if ours != theirs {
        let differ: Vec<String> = ours
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: bakery {v}, unsquashfs {:?}", theirs.get(k)))
            .chain(
                theirs.iter().filter(|(k, _)| !ours.contains_key(*k)).map(|(k, v)| format!("{k}: only unsquashfs {v}")),
            )
            .take(5)
            .collect();
        return Err(format!("{label}: bakery and unsquashfs disagree: {differ:?}"));
    }
    Ok(())
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
