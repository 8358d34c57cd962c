//! `bakery create --format erofs` checked by the real tools: erofs-utils 1.8's `fsck.erofs`
//! extracts exactly the tree, `dump.erofs` shows the UUID and the xattr, the host kernel mounts
//! the image and reads the same files, and two builds are bit-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use support::erofs_tools::ErofsTools;
use support::fixtures::{mirror_args, payload, sha256_hex};
use support::{Run, Server, bakery, run};

const IMAGE: &str = "edge-v1.0.0-x86-64.raw";
const RELEASE: &str = "usr/lib/extension-release.d/extension-release.edge";

/// An entry as found on disk: (kind, mode, bytes or symlink target).
type Found = BTreeMap<String, (char, u32, Vec<u8>)>;

fn noise(len: usize) -> Vec<u8> {
    let mut rng = support::rng::Rng(0x9e37_79b9_7f4a_7c15);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// The archive's entries below `usr/share/edge`: (path, mode, bytes) or (path, 0, target) for
/// symlinks; shapes that stress the format.
fn edge_entries() -> Vec<(String, u32, Vec<u8>, bool)> {
    let mut v = vec![
        ("bin/big".to_string(), 0o755, payload("big", (3 << 20) + 333), false),
        ("bin/noise".into(), 0o755, noise(200_000), false),
        ("share/zeros".into(), 0o644, vec![0; 5 << 20], false),
        ("share/empty".into(), 0o644, vec![], false),
        ("share/deep/a/b/c/d/e/f/g/h/i/file".into(), 0o600, b"deep\n".to_vec(), false),
        ("share/links/long".into(), 0, ("a/".repeat(2047) + "b").into_bytes(), true),
        ("share/links/short".into(), 0, b"../empty".to_vec(), true),
    ];
    for len in [4095usize, 4096, 4097] {
        v.push((format!("share/{len}"), 0o644, payload(&len.to_string(), len), false));
    }
    for i in 0..200 {
        v.push((
            format!("share/many/a-file-with-a-rather-long-name-{i:03}"),
            0o644,
            format!("{i}\n").into_bytes(),
            false,
        ));
    }
    v
}

fn edge_tgz() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, bytes, link) in edge_entries() {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        if link {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, &path, String::from_utf8(bytes).unwrap()).unwrap();
        } else {
            header.set_mode(mode);
            header.set_size(bytes.len() as u64);
            builder.append_data(&mut header, &path, &bytes[..]).unwrap();
        }
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// A home with a bakery.toml naming a local `edge` recipe whose archive the server holds.
struct World {
    dir: tempfile::TempDir,
    server: Server,
}

impl World {
    fn new() -> Self {
        let world = World { dir: tempfile::tempdir().unwrap(), server: Server::start() };
        let tgz = edge_tgz();
        let url = "https://github.com/bakery-test/edge/releases/download/v1.0.0/edge.tar.gz";
        world.server.put("/github.com/bakery-test/edge/releases/download/v1.0.0/edge.tar.gz", tgz.clone());
        let recipe = format!(
            "name: edge\ndescription: format edge cases\nversion: {{ prefix: v }}\nartifacts:\n  - name: edge\n    url: \"{url}\"\n    checksum: {{ sha256: \"{}\" }}\n    extract: {{ to: usr/share/edge }}\n",
            sha256_hex(&tgz)
        );
        std::fs::create_dir_all(world.home().join("extensions/edge")).unwrap();
        std::fs::write(world.home().join("extensions/edge/recipe.yaml"), recipe).unwrap();
        std::fs::write(world.home().join("bakery.toml"), "extensions_dirs = [\"extensions\"]\n").unwrap();
        world
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `bakery create edge v1.0.0 x86-64 --format erofs --compression C --output OUT`, through
    /// `wrap` (`taskset -c 0`) when given.
    fn create(&self, compression: &str, out: &str, wrap: &[&str]) -> PathBuf {
        let plain = bakery(self.home());
        let mut command = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(plain.get_program());
                c.env_clear().envs(plain.get_envs().filter_map(|(k, v)| Some((k, v?)))).current_dir(self.home());
                c
            }
            None => plain,
        };
        command.arg("--cache-dir").arg(self.home().join("cache")).args(mirror_args(&self.server));
        command.args(["create", "edge", "v1.0.0", "x86-64", "--format", "erofs", "--compression", compression]);
        command.arg("--output").arg(self.home().join(out));
        run(&mut command).expect_code(0);
        self.home().join(out).join(IMAGE)
    }
}

/// Every entry below `dir`, by relative path.
fn walk(dir: &Path) -> Found {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Found::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let meta = entry.path().symlink_metadata().unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let value = if meta.file_type().is_symlink() {
            ('l', 0, std::fs::read_link(entry.path()).unwrap().into_os_string().into_encoded_bytes())
        } else if meta.is_dir() {
            ('d', mode, vec![])
        } else {
            ('f', mode, std::fs::read(entry.path()).unwrap())
        };
        found.insert(rel, value);
    }
    found
}

/// What `dir` must hold: the archive's entries, their directories, the release and manifest.
fn assert_tree(dir: &Path, what: &str) {
    let found = walk(dir);
    let mut expected = Found::new();
    for d in ["usr", "usr/share", "usr/share/edge", "usr/lib", "usr/lib/extension-release.d", "usr/lib/bakery"] {
        expected.insert(d.into(), ('d', 0o755, vec![]));
    }
    for (path, mode, bytes, link) in edge_entries() {
        let full = format!("usr/share/edge/{path}");
        let parts: Vec<&str> = full.split('/').collect();
        for n in 3..parts.len() {
            expected.insert(parts[..n].join("/"), ('d', 0o755, vec![]));
        }
        expected.insert(full, if link { ('l', 0, bytes) } else { ('f', mode, bytes) });
    }
    for generated in [RELEASE, "usr/lib/bakery/edge.json"] {
        let got = found.get(generated).unwrap_or_else(|| panic!("{what}: {generated} missing"));
        expected.insert(generated.into(), ('f', 0o644, got.2.clone()));
    }
    let names = |m: &Found| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&found), names(&expected), "{what}: the same entries");
    for (path, want) in &expected {
        let got = &found[path];
        assert!(got.0 == want.0 && got.2 == want.2, "{what}: {path} differs ({} vs {})", got.0, want.0);
        if support::is_root() {
            assert_eq!(got.1, want.1, "{what}: mode of {path}");
        }
    }
    assert!(String::from_utf8_lossy(&found[RELEASE].2).contains("SYSEXT_ID=edge"), "{what}");
    let strict = xattr::get(dir.join(RELEASE), "user.extension-release.strict").unwrap();
    assert_eq!(strict.as_deref(), Some(&b"false"[..]), "{what}: the release file's xattr");
}

/// For each EROFS compression: `fsck.erofs --extract` checks every block and extracts exactly
/// the tree; `dump.erofs` shows a UUID and the release file's xattrs; and the host kernel
/// mounts the image (loop, read-only, in a private mount namespace) with the same files.
#[test]
fn every_compression_is_read_back_by_fsck_dump_and_the_kernel() {
    let test = "every_compression_is_read_back_by_fsck_dump_and_the_kernel";
    let Some(tools) = ErofsTools::find(test) else { return };
    let world = World::new();
    let mut uuids = Vec::new();
    for compression in ["lz4hc", "lz4", "zstd", "lzma", "none"] {
        let image = world.create(compression, compression, &[]);
        let extracted = world.home().join(format!("fsck-{compression}"));
        let mut fsck = tools.command("fsck.erofs");
        fsck.arg(format!("--extract={}", extracted.display())).arg("--xattrs").arg(&image);
        let checked = run(&mut fsck);
        assert!(checked.code == 0 && !checked.stderr.contains("<E>"), "fsck.erofs on {compression}: {checked:?}");
        assert_tree(&extracted, &format!("fsck.erofs --extract of {compression}"));

        let shown = run(tools.command("dump.erofs").arg("-s").arg(&image)).expect_code(0);
        let uuid = shown.stdout.lines().find_map(|l| l.strip_prefix("Filesystem UUID:")).unwrap().trim().to_string();
        assert!(uuid.len() == 36 && uuid != "00000000-0000-0000-0000-000000000000", "{compression}: {uuid}");
        uuids.push(uuid);
        let expected_algs = match compression {
            "lz4hc" | "lz4" => Some("lz4"),
            "none" => None,
            other => Some(other),
        };
        let algs = shown.stdout.lines().find_map(|l| l.strip_prefix("Filesystem compr_algs:")).map(str::trim);
        assert_eq!(algs.filter(|a| !a.is_empty()), expected_algs, "{compression}: {}", shown.stdout);
        let path = format!("--path=/{RELEASE}");
        let release = run(tools.command("dump.erofs").arg(path).arg(&image)).expect_code(0);
        assert!(release.stdout.contains("Xattr size: ") && !release.stdout.contains("Xattr size: 0"), "{release:?}");

        if support::root_or_skip(test) {
            let mounted = world.home().join(format!("mount-{compression}"));
            let copied = world.home().join(format!("copy-{compression}"));
            std::fs::create_dir_all(&mounted).unwrap();
            std::fs::create_dir_all(&copied).unwrap();
            let script = r#"mount -t erofs -o loop,ro "$1" "$2" && cp -a "$2/." "$3/" && umount "$2""#;
            let mut mount = Command::new("unshare");
            mount.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"]);
            mount.arg(&image).arg(&mounted).arg(&copied);
            let done: Run = run(&mut mount);
            assert_eq!(done.code, 0, "the kernel mounts the {compression} image: {done:?}");
            assert_tree(&copied, &format!("the kernel's view of {compression}"));
        }
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 5, "each build's UUID comes from its inputs");
}

/// The same inputs give the same bytes: twice, and again on one core (`taskset -c 0`, so the
/// writer runs one compression thread instead of one per core).
#[test]
fn builds_are_bit_identical_whatever_the_number_of_cores() {
    let world = World::new();
    let first = std::fs::read(world.create("lz4hc", "one", &[])).unwrap();
    let second = std::fs::read(world.create("lz4hc", "two", &[])).unwrap();
    assert!(first == second, "two builds differ");
    let single = std::fs::read(world.create("lz4hc", "single", &["taskset", "-c", "0"])).unwrap();
    assert!(first == single, "a build on one core differs");
    assert_eq!(&first[1024..1028], &0xE0F5_E1E2u32.to_le_bytes(), "an EROFS superblock");
}
