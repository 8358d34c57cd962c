//! `bakery create` end to end: the built binary downloads from a real HTTP server on
//! 127.0.0.1 (through `--mirror`), and the image is checked by the real `unsquashfs` and merged
//! by the real `systemd-sysext`.

use std::path::{Path, PathBuf};

use crate::support;
use support::fixtures::{CNI_PLUGINS, Upstream, default_cni_version, kubernetes_markers, mirror_args, sha256_hex};
use support::{Run, Server, bakery, dir_names, extract, fake_root, list_image, root_or_skip, run, sysext_merged};

const VERSION: &str = "v1.32.0";
const IMAGE: &str = "kubernetes-v1.32.0-x86-64.raw";

/// One test's world: a temp dir (home, cache, output) and a server.
struct World {
    dir: tempfile::TempDir,
    server: Server,
}

impl World {
    fn new() -> Self {
        World { dir: tempfile::tempdir().unwrap(), server: Server::start() }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn image(&self) -> PathBuf {
        self.out().join(IMAGE)
    }

    /// `bakery --cache-dir … --mirror … create ARGS --output out`
    fn create(&self, args: &[&str]) -> Run {
        let mut command = bakery(self.home());
        command.arg("--cache-dir").arg(self.dir.path().join("cache")).args(mirror_args(&self.server));
        command.arg("create").args(args).arg("--output").arg(self.out());
        run(&mut command)
    }

    fn kubernetes(&self) -> Upstream {
        Upstream::kubernetes(&self.server, VERSION, "amd64", &default_cni_version())
    }
}

#[test]
fn unsquashfs_lists_exactly_the_planned_entries_owned_by_root() {
    let world = World::new();
    let upstream = world.kubernetes();
    let done = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    assert_eq!(done.stdout, format!("{}\n{}\n", world.image().display(), world.out().join("SHA256SUMS").display()));

    let listed = list_image(&world.image());
    let mut expected: Vec<(&str, String)> = vec![
        ("drwxr-xr-x", "/".into()),
        ("drwxr-xr-x", "/usr".into()),
        ("drwxr-xr-x", "/usr/bin".into()),
        ("-rwxr-xr-x", "/usr/bin/kubeadm".into()),
        ("-rwxr-xr-x", "/usr/bin/kubectl".into()),
        ("-rwxr-xr-x", "/usr/bin/kubelet".into()),
        ("drwxr-xr-x", "/usr/lib".into()),
        ("drwxr-xr-x", "/usr/lib/bakery".into()),
        ("-rw-r--r--", "/usr/lib/bakery/kubernetes.json".into()),
        ("drwxr-xr-x", "/usr/lib/extension-release.d".into()),
        ("-rw-r--r--", "/usr/lib/extension-release.d/extension-release.kubernetes".into()),
        ("drwxr-xr-x", "/usr/lib/systemd".into()),
        ("drwxr-xr-x", "/usr/lib/systemd/system".into()),
        ("-rw-r--r--", "/usr/lib/systemd/system/kubelet.service".into()),
        ("drwxr-xr-x", "/usr/lib/systemd/system/kubelet.service.d".into()),
        ("-rw-r--r--", "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf".into()),
        ("drwxr-xr-x", "/usr/lib/systemd/system/multi-user.target.d".into()),
        ("-rw-r--r--", "/usr/lib/systemd/system/multi-user.target.d/10-kubelet.conf".into()),
        ("drwxr-xr-x", "/usr/local".into()),
        ("drwxr-xr-x", "/usr/local/bin".into()),
        ("drwxr-xr-x", "/usr/local/bin/cni".into()),
    ];
    let mut plugins: Vec<&str> = CNI_PLUGINS.to_vec();
    plugins.sort();
    expected.extend(plugins.iter().map(|p| ("-rwxr-xr-x", format!("/usr/local/bin/cni/{p}"))));
    let got: Vec<(&str, String)> = listed.iter().map(|l| (l.perms.as_str(), l.path.clone())).collect();
    assert_eq!(got, expected);
    for entry in &listed {
        assert_eq!(entry.owner, "root/root", "{entry:?}");
        assert_eq!(entry.date, "1970-01-01 00:00", "mtime comes from SOURCE_DATE_EPOCH (default 0): {entry:?}");
        if let Some(bytes) = upstream.installed.get(entry.path.trim_start_matches('/')) {
            assert_eq!(entry.size, bytes.len().to_string(), "{entry:?}");
        }
    }
}

#[test]
fn extracted_files_match_what_was_served_and_metadata_is_right() {
    let world = World::new();
    let upstream = world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let tree = world.dir.path().join("tree");
    extract(&world.image(), &tree);
    for (path, served) in &upstream.installed {
        assert!(std::fs::read(tree.join(path)).unwrap() == *served, "{path} differs from what was served");
    }
    assert!(!tree.join("usr/local/bin/cni/LICENSE").exists() && !tree.join("usr/local/bin/cni/README.md").exists());

    let release = tree.join("usr/lib/extension-release.d/extension-release.kubernetes");
    assert_eq!(
        std::fs::read_to_string(&release).unwrap(),
        "ID=_any\nARCHITECTURE=x86-64\nSYSEXT_ID=kubernetes\nSYSEXT_VERSION_ID=v1.32.0\nEXTENSION_RELOAD_MANAGER=1\n"
    );
    let strict = xattr::get(&release, "user.extension-release.strict").unwrap();
    assert_eq!(strict.as_deref(), Some(&b"false"[..]), "the xattr that lets the versioned file name merge");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("usr/lib/bakery/kubernetes.json")).unwrap()).unwrap();
    assert_eq!(manifest["extension"], "kubernetes");
    assert_eq!(manifest["version"], VERSION);
    assert_eq!(manifest["arch"], "x86-64");
    assert_eq!(manifest["options"]["cni_version"], default_cni_version());
    assert_eq!(manifest["restart_units"], serde_json::json!(["kubelet.service"]));
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let kubelet = artifacts.iter().find(|a| a["name"] == "kubelet").unwrap();
    assert_eq!(kubelet["url"], "https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubelet", "upstream, not the mirror");
    assert_eq!(kubelet["sha256"], sha256_hex(&upstream.installed["usr/bin/kubelet"]));
    let cni = artifacts.iter().find(|a| a["name"] == "cni-plugins").unwrap();
    assert_eq!(cni["installs"].as_array().unwrap().len(), CNI_PLUGINS.len());

    let unit = std::fs::read_to_string(tree.join("usr/lib/systemd/system/kubelet.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/kubelet\n") && unit.contains("kubelet v1.32.0"), "{unit}");
    let dropin =
        std::fs::read_to_string(tree.join("usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf")).unwrap();
    assert!(dropin.contains("/usr/local/bin/cni/. /opt/cni/bin/"), "{dropin}");
    // Both optional, and Flatcar's file is read after Debian's, so its values win on Flatcar.
    let files: Vec<&str> = dropin.lines().filter_map(|l| l.strip_prefix("EnvironmentFile=")).collect();
    assert_eq!(files, ["-/var/lib/kubelet/kubeadm-flags.env", "-/etc/default/kubelet", "-/etc/sysconfig/kubelet"]);
    let upholds =
        std::fs::read_to_string(tree.join("usr/lib/systemd/system/multi-user.target.d/10-kubelet.conf")).unwrap();
    assert_eq!(upholds, "[Unit]\nUpholds=kubelet.service\n");

    let sums = std::fs::read_to_string(world.out().join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  {IMAGE}\n", sha256_hex(&std::fs::read(world.image()).unwrap())));
}

#[test]
fn systemd_sysext_merges_the_image_as_plain_and_versioned_name() {
    if !root_or_skip("systemd_sysext_merges_the_image_as_plain_and_versioned_name") {
        return;
    }
    let world = World::new();
    let upstream = world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    for name in ["kubernetes.raw", IMAGE] {
        let dir = tempfile::tempdir().unwrap();
        let root = fake_root(dir.path(), "ID=debian\nVERSION_ID=12\n");
        std::fs::copy(world.image(), root.join("var/lib/extensions").join(name)).unwrap();
        let merged = sysext_merged(
            &root,
            "cat \"$ROOT/usr/.systemd-sysext/extensions\"; cat \"$ROOT/usr/bin/kubelet\" | sha256sum; \
             test -f \"$ROOT/usr/lib/systemd/system/kubelet.service\" && echo unit-present",
        );
        let merged = merged.expect_code(0);
        let stem = name.trim_end_matches(".raw");
        assert!(merged.stdout.lines().next() == Some(stem), "merged extensions: {merged:?}");
        assert!(merged.stdout.contains(&sha256_hex(&upstream.installed["usr/bin/kubelet"])), "{merged:?}");
        assert!(merged.stdout.contains("unit-present"), "{merged:?}");
    }
}

#[test]
fn two_builds_are_bit_identical_and_the_second_downloads_nothing() {
    let world = World::new();
    let upstream = world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let first = std::fs::read(world.image()).unwrap();
    for path in upstream.artifact_paths() {
        assert_eq!(world.server.hits(&path), 1, "{path}");
    }
    let before = world.server.total_hits();
    let second = world.create(&["kubernetes", VERSION, "x86-64", "--force"]).expect_code(0);
    assert_eq!(world.server.total_hits(), before, "the second build made requests: {:?}", world.server.requested());
    assert!(second.stderr.contains("all from cache"), "{}", second.stderr);
    assert!(std::fs::read(world.image()).unwrap() == first, "rebuilding changed the image");

    // A fresh cache downloads again and still produces the same bytes.
    let other = World::new();
    Upstream::kubernetes(&other.server, VERSION, "amd64", &default_cni_version());
    other.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    assert!(std::fs::read(other.image()).unwrap() == first, "a fresh build differs");
}

#[test]
fn source_date_epoch_sets_every_mtime() {
    let world = World::new();
    world.kubernetes();
    let mut command = bakery(world.home());
    command.env("SOURCE_DATE_EPOCH", "86400").arg("--cache-dir").arg(world.dir.path().join("cache"));
    command.args(mirror_args(&world.server)).args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.out());
    run(&mut command).expect_code(0);
    for entry in list_image(&world.image()) {
        assert_eq!(entry.date, "1970-01-02 00:00", "{entry:?}");
    }
}

/// A failed build leaves the output directory exactly as it was.
fn assert_output_untouched(world: &World, sums_before: &str) {
    assert_eq!(dir_names(&world.out()), ["SHA256SUMS"], "no image and no temporary file");
    assert_eq!(std::fs::read_to_string(world.out().join("SHA256SUMS")).unwrap(), sums_before);
}

fn existing_sums(world: &World) -> String {
    std::fs::create_dir_all(world.out()).unwrap();
    let sums = format!("{}  other-v1-x86-64.raw\n", "ab".repeat(32));
    std::fs::write(world.out().join("SHA256SUMS"), &sums).unwrap();
    sums
}

#[test]
fn a_wrong_checksum_fails_naming_url_and_both_digests() {
    let world = World::new();
    let upstream = world.kubernetes();
    let sums = existing_sums(&world);
    let kubelet = &upstream.paths["kubelet"];
    let wrong = sha256_hex(b"something else");
    world.server.put(&format!("{kubelet}.sha256"), format!("{wrong}\n"));
    let failed = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(1);
    let actual = sha256_hex(&upstream.installed["usr/bin/kubelet"]);
    assert!(failed.stderr.contains(&format!("{}{kubelet}", world.server.url())), "{}", failed.stderr);
    assert!(failed.stderr.contains(&format!("expected sha256 {wrong}, got {actual}")), "{}", failed.stderr);
    assert_output_untouched(&world, &sums);
    let blobs = world.dir.path().join("cache/blobs/sha256").join(&actual[..2]).join(&actual);
    assert!(!blobs.exists(), "an unverified download entered the cache");
    assert_eq!(dir_names(&world.dir.path().join("cache/tmp")), Vec::<String>::new());
}

#[test]
fn a_missing_artifact_fails_naming_the_url() {
    let world = World::new();
    let upstream = world.kubernetes();
    // the version exists upstream (its minor's marker names a later patch): one artifact is gone
    kubernetes_markers(&world.server, &["v1.32.3"], "v1.33.0-rc.1");
    let sums = existing_sums(&world);
    world.server.remove(&upstream.paths["kubeadm"]);
    let failed = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(1);
    let url = format!("{}{}", world.server.url(), upstream.paths["kubeadm"]);
    assert!(failed.stderr.contains(&url) && failed.stderr.contains("404"), "{}", failed.stderr);
    assert_eq!(world.server.hits(&upstream.paths["kubeadm"]), 1, "a 404 is not retried");
    assert_output_untouched(&world, &sums);
}

#[test]
fn connection_resets_are_retried_until_the_download_succeeds() {
    let world = World::new();
    let upstream = world.kubernetes();
    let kubelet = &upstream.paths["kubelet"];
    world.server.reset_next(kubelet, 2);
    let done = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    assert_eq!(world.server.hits(kubelet), 3, "two resets, then success");
    assert!(done.stderr.contains("retrying"), "{}", done.stderr);
    let tree = world.dir.path().join("tree");
    extract(&world.image(), &tree);
    assert!(std::fs::read(tree.join("usr/bin/kubelet")).unwrap() == upstream.installed["usr/bin/kubelet"]);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let world = World::new();
    let upstream = world.kubernetes();
    let kubectl = &upstream.paths["kubectl"];
    world.server.fail_with(kubectl, 503);
    let failed = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(1);
    assert_eq!(world.server.hits(kubectl), 4, "bounded: four attempts");
    assert!(failed.stderr.contains("503") && failed.stderr.contains("giving up after 4 attempts"), "{}", failed.stderr);
    assert!(!world.image().exists());
}

#[test]
fn arm64_uses_arm64_urls_and_architecture() {
    let world = World::new();
    let upstream = Upstream::kubernetes(&world.server, VERSION, "arm64", &default_cni_version());
    world.create(&["kubernetes", VERSION, "aarch64"]).expect_code(0);
    let image = world.out().join("kubernetes-v1.32.0-arm64.raw");
    assert!(image.exists());
    let requested = world.server.requested();
    assert!(requested.iter().all(|p| p.contains("arm64")), "{requested:?}");
    for path in upstream.artifact_paths() {
        assert_eq!(world.server.hits(&path), 1);
    }
    let tree = world.dir.path().join("tree");
    extract(&image, &tree);
    let release =
        std::fs::read_to_string(tree.join("usr/lib/extension-release.d/extension-release.kubernetes")).unwrap();
    assert!(release.contains("ARCHITECTURE=arm64\n"), "{release}");
    assert!(std::fs::read(tree.join("usr/bin/kubelet")).unwrap() == upstream.installed["usr/bin/kubelet"]);
}

#[test]
fn os_option_writes_id_and_sysext_level_and_merges_on_that_os() {
    let world = World::new();
    world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64", "--os", "flatcar"]).expect_code(0);
    let tree = world.dir.path().join("tree");
    extract(&world.image(), &tree);
    let release =
        std::fs::read_to_string(tree.join("usr/lib/extension-release.d/extension-release.kubernetes")).unwrap();
    assert!(release.starts_with("ID=flatcar\nSYSEXT_LEVEL=1.0\n"), "{release}");
    if !root_or_skip("os_option_writes_id_and_sysext_level_and_merges_on_that_os (merge part)") {
        return;
    }
    for (os_release, merges) in [("ID=flatcar\nSYSEXT_LEVEL=1.0\n", true), ("ID=debian\nVERSION_ID=12\n", false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = fake_root(dir.path(), os_release);
        std::fs::copy(world.image(), root.join("var/lib/extensions/kubernetes.raw")).unwrap();
        let merged = sysext_merged(&root, "test -f \"$ROOT/usr/bin/kubelet\" && echo merged || echo not-merged");
        let expected = if merges { "merged" } else { "not-merged" };
        assert!(merged.stdout.contains(expected), "{os_release}: {merged:?}");
    }
}

#[test]
fn every_compression_gives_an_image_unsquashfs_reads() {
    let world = World::new();
    let upstream = world.kubernetes();
    for (compression, reported) in [("zstd", "zstd"), ("xz", "xz"), ("lz4", "lz4"), ("gzip", "gzip")] {
        world.create(&["kubernetes", VERSION, "x86-64", "--compression", compression, "--force"]).expect_code(0);
        let stats = run(support::unsquashfs().arg("-s").arg(world.image())).expect_code(0);
        assert!(stats.stdout.contains(&format!("Compression {reported}")), "{compression}: {}", stats.stdout);
        let tree = world.dir.path().join(format!("tree-{compression}"));
        extract(&world.image(), &tree);
        for (path, served) in &upstream.installed {
            assert!(std::fs::read(tree.join(path)).unwrap() == *served, "{compression}: {path}");
        }
    }
}

/// `--format` and `[create] format`: an EROFS image by the same name, its compression checked
/// against the format before anything is downloaded, and a format change needs --force.
#[test]
fn the_format_comes_from_the_flag_or_the_config_and_compressions_are_checked_against_it() {
    let world = World::new();
    world.kubernetes();
    let wrong = world.create(&["kubernetes", VERSION, "x86-64", "--compression", "lz4hc"]).expect_code(2);
    assert!(
        wrong.stderr.contains("squashfs images cannot be compressed with lz4hc: valid are gzip, zstd, xz, lz4"),
        "{}",
        wrong.stderr
    );
    let wrong = world.create(&["kubernetes", VERSION, "x86-64", "--format", "erofs", "--compression", "xz"]);
    let wrong = wrong.expect_code(2);
    assert!(wrong.stderr.contains("valid are lz4hc, lz4, zstd, lzma, none"), "{}", wrong.stderr);
    assert_eq!(world.server.total_hits(), 0, "nothing was downloaded for a bad combination");

    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let inspect = |world: &World| {
        let out = run(bakery(world.home()).args(["inspect", "--json"]).arg(world.image())).expect_code(0);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(inspect(&world)["format"], "squashfs");
    let kept = world.create(&["kubernetes", VERSION, "x86-64", "--format", "erofs"]).expect_code(2);
    assert!(kept.stderr.contains("format squashfs → erofs"), "{}", kept.stderr);

    let config = world.home().join("bakery.toml");
    std::fs::write(&config, "[create]\nformat = \"erofs\"\n").unwrap();
    world.create(&["kubernetes", VERSION, "x86-64", "--force"]).expect_code(0);
    let erofs = inspect(&world);
    assert_eq!((&erofs["format"], &erofs["compression"]), (&"erofs".into(), &"lz4".into()), "{erofs}");
    assert_eq!(erofs["uuid"].as_str().map(str::len), Some(36), "{erofs}");
    let again = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    assert!(again.stderr.contains("is up to date"), "{}", again.stderr);

    std::fs::write(&config, "[create]\nformat = \"erofs\"\ncompression = \"gzip\"\n").unwrap();
    let wrong = world.create(&["kubernetes", VERSION, "x86-64", "--force"]).expect_code(2);
    assert!(
        wrong.stderr.contains("bakery.toml: [create] compression: erofs images cannot be compressed with gzip"),
        "{}",
        wrong.stderr
    );
    std::fs::write(&config, "[create]\nformat = \"ext4\"\n").unwrap();
    let wrong = world.create(&["kubernetes", VERSION, "x86-64", "--force"]).expect_code(2);
    assert!(
        wrong.stderr.contains("[create] format: unknown format \"ext4\": valid are squashfs, erofs"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn an_image_built_from_the_same_inputs_is_up_to_date_without_any_request() {
    use std::os::unix::fs::MetadataExt;
    let world = World::new();
    let upstream = world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let (before, image) = (world.server.total_hits(), std::fs::metadata(world.image()).unwrap());
    let sums = std::fs::read_to_string(world.out().join("SHA256SUMS")).unwrap();
    let started = std::time::Instant::now();
    let again = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let elapsed = started.elapsed();
    assert!(again.stderr.contains(&format!("{IMAGE} is up to date")), "{}", again.stderr);
    assert!(!again.stderr.contains("building"), "{}", again.stderr);
    let printed: Vec<PathBuf> = again.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(printed, [world.image(), world.out().join("SHA256SUMS")], "the same stdout as a build");
    assert_eq!(world.server.total_hits(), before, "requests: {:?}", world.server.requested());
    let after = std::fs::metadata(world.image()).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec()), (image.ino(), image.mtime_nsec()), "the image was rewritten");
    assert_kept(&world, &sums);
    eprintln!("up to date in {:.3} s (debug build, whole process)", elapsed.as_secs_f64());

    // Checksum files gone from the cache: only they are fetched, then cached again.
    let checksums = world.home().join("cache/checksums");
    std::fs::remove_dir_all(&checksums).unwrap();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    for path in upstream.artifact_paths() {
        assert_eq!(world.server.hits(&path), 1, "{path} was downloaded again");
        assert_eq!(world.server.hits(&format!("{path}.sha256")), 2, "{path}.sha256");
    }
    assert_eq!(world.server.total_hits() - before, 4, "one checksum file per artifact");
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    assert_eq!(world.server.total_hits() - before, 4, "the checksums were cached again");
}

#[test]
fn an_image_built_from_other_inputs_is_kept_without_force() {
    let world = World::new();
    world.kubernetes();
    world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(0);
    let before = world.server.total_hits();
    let sums = std::fs::read_to_string(world.out().join("SHA256SUMS")).unwrap();
    let failed = world.create(&["kubernetes", VERSION, "x86-64", "--compression", "zstd"]).expect_code(2);
    assert!(failed.stderr.contains("already exists and was built from other inputs"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("compression gzip → zstd") && failed.stderr.contains("--force"),
        "{}",
        failed.stderr
    );
    let mut command = bakery(world.home());
    command.env("SOURCE_DATE_EPOCH", "7").arg("--cache-dir").arg(world.home().join("cache"));
    command.args(mirror_args(&world.server)).args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.out());
    let failed = run(&mut command).expect_code(2);
    assert!(failed.stderr.contains("mtime 0 → 7"), "{}", failed.stderr);
    assert_eq!(world.server.total_hits(), before);
    assert_kept(&world, &sums);

    // another cache has no record of how the image was built
    let mut command = bakery(world.home());
    command.arg("--cache-dir").arg(world.home().join("other-cache")).args(mirror_args(&world.server));
    command.args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.out());
    let failed = run(&mut command).expect_code(2);
    assert!(failed.stderr.contains("the cache has no record of its inputs"), "{}", failed.stderr);
    assert_eq!(world.server.total_hits(), before);

    // an image that is not the one SHA256SUMS lists is not up to date
    let mut bytes = std::fs::read(world.image()).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(world.image(), bytes).unwrap();
    let failed = world.create(&["kubernetes", VERSION, "x86-64"]).expect_code(2);
    assert!(failed.stderr.contains("SHA256SUMS does not list it with its digest"), "{}", failed.stderr);
    world.create(&["kubernetes", VERSION, "x86-64", "--force"]).expect_code(0);
    assert_kept(&world, &sums);
}

/// The output directory still holds the image and the same SHA256SUMS, nothing else.
fn assert_kept(world: &World, sums: &str) {
    assert_eq!(dir_names(&world.out()), [".bakery-lock", "SHA256SUMS", IMAGE]);
    assert_eq!(std::fs::read_to_string(world.out().join("SHA256SUMS")).unwrap(), sums);
}

#[test]
fn dry_run_prints_the_resolved_plan_and_downloads_nothing() {
    let world = World::new();
    let plan =
        world.create(&["kubernetes", "1.32.0", "amd64", "--dry-run", "--set", "cni_version=v1.5.1"]).expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["image"], IMAGE);
    assert_eq!(plan["options"]["cni_version"], "v1.5.1");
    let cni = plan["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == "cni-plugins").unwrap().clone();
    assert_eq!(
        cni["url"],
        "https://github.com/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-amd64-v1.5.1.tgz"
    );
    assert_eq!(
        cni["fetch_url"],
        format!(
            "{}/github.com/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-amd64-v1.5.1.tgz",
            world.server.url()
        )
    );
    assert_eq!(world.server.total_hits(), 0);
    assert!(!world.out().exists());
}

#[test]
fn cni_version_flag_selects_the_cni_release() {
    let world = World::new();
    let upstream = Upstream::kubernetes(&world.server, VERSION, "amd64", "v1.5.1");
    world.create(&["kubernetes", VERSION, "x86-64", "--cni-version", "v1.5.1"]).expect_code(0);
    assert_eq!(world.server.hits(&upstream.paths["cni-plugins"]), 1);
    let tree = world.dir.path().join("tree");
    extract(&world.image(), &tree);
    let manifest = std::fs::read_to_string(tree.join("usr/lib/bakery/kubernetes.json")).unwrap();
    assert!(manifest.contains("\"cni_version\": \"v1.5.1\""), "{manifest}");
}

#[test]
fn mirrors_come_from_the_environment_and_the_config_file() {
    let world = World::new();
    world.kubernetes();
    // BAKERY_MIRRORS
    let mut command = bakery(world.home());
    let mirrors =
        format!("{},{}", world.server.mirror_for("https://dl.k8s.io"), world.server.mirror_for("https://github.com"));
    command.env("BAKERY_MIRRORS", mirrors).env("BAKERY_CACHE_DIR", world.dir.path().join("cache-env"));
    command.args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.dir.path().join("env"));
    run(&mut command).expect_code(0);
    assert!(world.dir.path().join("cache-env/blobs/sha256").exists(), "BAKERY_CACHE_DIR is used");
    // ./bakery.toml in the working directory, with a relative cache and output
    let config = format!(
        "cache_dir = \"cache-toml\"\n[mirrors]\n\"https://dl.k8s.io\" = \"{0}/dl.k8s.io\"\n\"https://github.com\" = \"{0}/github.com\"\n[create]\noutput = \"dist\"\n",
        world.server.url()
    );
    std::fs::write(world.home().join("bakery.toml"), config).unwrap();
    run(bakery(world.home()).args(["create", "kubernetes", VERSION, "x86-64"])).expect_code(0);
    assert!(world.home().join("dist").join(IMAGE).exists());
    assert!(world.home().join("cache-toml/blobs/sha256").exists());
}

#[test]
fn sigterm_stops_the_build_and_leaves_nothing_behind() {
    let world = World::new();
    let upstream = world.kubernetes();
    let sums = existing_sums(&world);
    let kubelet = upstream.paths["kubelet"].clone();
    world.server.hold(&kubelet);
    let mut command = bakery(world.home());
    command.arg("--cache-dir").arg(world.dir.path().join("cache")).args(mirror_args(&world.server));
    command.args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.out());
    command.stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    assert!(world.server.wait_for_hits(&kubelet, 1, std::time::Duration::from_secs(30)), "kubelet was never requested");
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    world.server.release(&kubelet);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_output_untouched(&world, &sums);
    assert_eq!(dir_names(&world.dir.path().join("cache/tmp")), Vec::<String>::new(), "no partial download left");
}

/// The `packing:` lines of `stderr` as (line, percent).
fn packing_lines(stderr: &str) -> Vec<(String, u64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("packing: "))
        .map(|l| {
            let percent = l.rsplit(", ").next().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse().ok());
            (l.to_string(), percent.unwrap_or_else(|| panic!("no percentage in {l:?}")))
        })
        .collect()
}

/// Off a terminal, packing reports plain lines on stderr (here at every step): growing, the
/// last at 100%, and stdout is what it always is. At the default interval a pack this short
/// prints none, and `--quiet` prints none at any interval.
#[test]
fn packing_progress_is_plain_lines_on_stderr_off_a_terminal() {
    let world = World::new();
    world.kubernetes();
    let create = |env: Option<&str>, extra: &[&str]| {
        let mut command = bakery(world.home());
        if let Some(ms) = env {
            command.env("BAKERY_PROGRESS_INTERVAL_MS", ms);
        }
        command.args(extra).arg("--cache-dir").arg(world.dir.path().join("cache")).args(mirror_args(&world.server));
        command.args(["create", "kubernetes", VERSION, "x86-64", "--force", "--output"]).arg(world.out());
        run(&mut command).expect_code(0)
    };
    let every_step = create(Some("0"), &[]);
    let lines = packing_lines(&every_step.stderr);
    assert!(lines.len() > 5, "{}", every_step.stderr);
    assert!(lines.windows(2).all(|w| w[0].1 <= w[1].1), "percentages never go back: {lines:?}");
    let (last, percent) = lines.last().unwrap();
    assert_eq!(*percent, 100, "{lines:?}");
    let sizes: Vec<&str> = last.trim_start_matches("packing: ").split(", ").next().unwrap().split('/').collect();
    assert_eq!(sizes[0], sizes[1], "all bytes packed: {last}");
    let printed = format!("{}\n{}\n", world.image().display(), world.out().join("SHA256SUMS").display());
    assert_eq!(every_step.stdout, printed, "progress never reaches stdout");

    let default = create(None, &[]);
    assert_eq!(packing_lines(&default.stderr), Vec::new(), "{}", default.stderr);
    assert_eq!(default.stdout, printed);
    let quiet = create(Some("0"), &["--quiet"]);
    assert_eq!(quiet.stderr, "");
    assert_eq!(quiet.stdout, printed);
    let mut bad = bakery(world.home());
    bad.env("BAKERY_PROGRESS_INTERVAL_MS", "soon").args(["create", "kubernetes", VERSION, "x86-64"]);
    let bad = run(&mut bad).expect_code(2);
    assert!(bad.stderr.contains("BAKERY_PROGRESS_INTERVAL_MS=\"soon\""), "{}", bad.stderr);
}

/// SIGTERM while packing: once the build has let go of its temporary image, the packing thread
/// (paused at a failpoint just before it reports progress) prints no progress any more (the bar
/// of a terminal is cleared at that moment), and the run ends with 130 leaving nothing behind.
#[test]
fn an_interrupted_pack_prints_no_progress_after_the_interruption() {
    use std::io::{BufRead, Read, Write};
    let world = World::new();
    world.kubernetes();
    let sums = existing_sums(&world);
    let fifo = world.home().join("resume");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut command = bakery(world.home());
    command.env("BAKERY_PROGRESS_INTERVAL_MS", "0").env("BAKERY_FAILPOINT", "create:packing");
    command.env("BAKERY_FAILPOINT_RESUME", &fifo);
    command.arg("--cache-dir").arg(world.dir.path().join("cache")).args(mirror_args(&world.server));
    command.args(["create", "kubernetes", VERSION, "x86-64", "-o"]).arg(world.out());
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut before = String::new();
    while !before.contains("failpoint create:packing reached") {
        assert!(stderr.read_line(&mut before).unwrap() > 0, "bakery ended before packing: {before}");
    }
    assert_eq!(packing_lines(&before), Vec::new(), "paused before its first report: {before}");
    let temp = || dir_names(&world.out()).into_iter().filter(|n| n.contains(IMAGE)).count();
    assert_eq!(temp(), 1, "the temporary image exists while packing");

    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    // The temporary image is removed when the build's future is dropped, right after its
    // progress display: wait for that, then let the packing thread go on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while temp() > 0 {
        assert!(std::time::Instant::now() < deadline, "the interrupted build kept its temporary image");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut resume = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    resume.write_all(b"go\n").unwrap();
    let mut after = String::new();
    stderr.read_to_string(&mut after).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let code = child.wait().unwrap().code();
    drop(resume);
    assert_eq!(code, Some(130), "{before}{after}");
    assert_eq!(packing_lines(&after), Vec::new(), "progress after the interruption: {after}");
    assert!(after.contains("interrupted by SIGTERM"), "{after}");
    assert_eq!(stdout, "");
    assert_output_untouched(&world, &sums);
}
