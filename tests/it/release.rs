//! `bakery release`, `create --sysupdate` and `bakery butane`: a release directory that
//! systemd-sysupdate can consume, checked with the real sha256sum, gpg and gpgv; transfer files,
//! Butane and Ignition compared with golden files; Ignition parsed by the ignition-config crate
//! and checked by the real `ignition-validate`.
//! Debian 12 has no systemd-sysupdate, so a test plays its part over HTTP with bakery's
//! `sysupdate::update` (read the transfer file, fetch SHA256SUMS and its signature, pick the
//! newest match in systemd's version order, download, verify, place, link).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use base64::Engine;
use support::fixtures::{Upstream, default_cni_version, mirror_args};
use support::golden::assert_golden;
use support::gpg::{EMAIL, Keyring};
use support::ignition::assert_validates;
use support::upstreams;
use support::{Run, Server, bakery, dir_names, run};

const BASE: &str = "https://example.org/ext";

/// A home with a dist/ directory and the upstream server it was built from.
struct World {
    home: tempfile::TempDir,
    server: Server,
}

impl World {
    /// Builds Kubernetes v1.31.7, v1.32.0, v1.32.3 (x86-64), v1.32.3 (arm64) and cni-plugins
    /// v1.9.1 into dist/.
    fn with_images() -> Self {
        let world = World { home: tempfile::tempdir().unwrap(), server: Server::start() };
        for (version, goarch) in
            [("v1.31.7", "amd64"), ("v1.32.0", "amd64"), ("v1.32.3", "amd64"), ("v1.32.3", "arm64")]
        {
            Upstream::kubernetes(&world.server, version, goarch, &default_cni_version());
            world.create(&["kubernetes", version, goarch]).expect_code(0);
        }
        upstreams::cni_plugins(&world.server, "v1.9.1", "amd64", "usr/libexec/cni");
        world.create(&["cni-plugins", "v1.9.1", "x86-64"]).expect_code(0);
        world
    }

    fn dist(&self) -> PathBuf {
        self.home.path().join("dist")
    }

    fn create(&self, args: &[&str]) -> Run {
        let mut command = bakery(self.home.path());
        command.arg("--cache-dir").arg(self.home.path().join("cache")).args(mirror_args(&self.server));
        run(command.arg("create").args(args).arg("-o").arg(self.dist()))
    }

    /// `bakery release dist ARGS` with `keyring` as GNUPGHOME.
    fn release(&self, keyring: Option<&Keyring>, args: &[&str]) -> Run {
        let mut command = bakery(self.home.path());
        if let Some(keyring) = keyring {
            command.env("GNUPGHOME", keyring.path());
        }
        run(command.arg("release").arg(self.dist()).args(args))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_signed_release_verifies_with_sha256sum_and_gpgv() {
    let world = World::with_images();
    let keyring = Keyring::new();
    world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
    let dist = world.dist();

    support::gpg::assert_release_verifies(&dist, 5);

    let index: serde_json::Value = serde_json::from_str(&read(&dist.join("index.json"))).unwrap();
    let entry = &index["extensions"]["kubernetes"]["v1.32.3"]["arm64"];
    assert_eq!(entry["file"], "kubernetes-v1.32.3-arm64.raw");
    assert_eq!(entry["size"], std::fs::metadata(dist.join("kubernetes-v1.32.3-arm64.raw")).unwrap().len());
    assert_eq!(entry["manifest"]["restart_units"], serde_json::json!(["kubelet.service"]));
    let sums = read(&dist.join("SHA256SUMS"));
    let line = sums.lines().find(|l| l.ends_with("kubernetes-v1.32.3-arm64.raw")).unwrap();
    assert_eq!(entry["sha256"], line.split_whitespace().next().unwrap());
    assert_eq!(index["extensions"]["cni-plugins"]["v1.9.1"]["x86-64"]["file"], "cni-plugins-v1.9.1-x86-64.raw");

    for name in [
        "kubernetes.conf",
        "kubernetes-v1.31.conf",
        "kubernetes-v1.32.conf",
        "cni-plugins.conf",
        "cni-plugins-v1.9.conf",
        "noop.conf",
    ] {
        let text = read(&dist.join(name));
        assert_golden(&format!("release/{name}"), &text);
        let transfer = bakery::sysupdate::transfer::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name != "noop.conf" {
            assert!(transfer.verify, "{name}: a signed release says Verify=yes");
            assert_eq!(transfer.source.get("Path"), Some(BASE));
        }
    }
    let mut names = dir_names(&dist);
    names.retain(|n| !n.ends_with(".raw"));
    assert_eq!(
        names,
        [
            ".bakery-lock",
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "cni-plugins-v1.9.conf",
            "cni-plugins.conf",
            "import-pubring.gpg",
            "index.json",
            "kubernetes-v1.31.conf",
            "kubernetes-v1.32.conf",
            "kubernetes.conf",
            "noop.conf"
        ]
    );
}

#[test]
fn rerunning_changes_only_what_a_new_image_adds() {
    let world = World::with_images();
    let keyring = Keyring::new();
    let args = ["--base-url", BASE, "--sign-key", EMAIL];
    world.release(Some(&keyring), &args).expect_code(0);
    let signature = std::fs::read(world.dist().join("SHA256SUMS.gpg")).unwrap();
    let again = world.release(Some(&keyring), &args).expect_code(0);
    assert_eq!(again.stdout, "", "nothing changed, nothing written");
    assert!(std::fs::read(world.dist().join("SHA256SUMS.gpg")).unwrap() == signature, "the signature is kept");

    Upstream::kubernetes(&world.server, "v1.32.4", "amd64", &default_cni_version());
    world.create(&["kubernetes", "v1.32.4", "x86-64"]).expect_code(0);
    let added = world.release(Some(&keyring), &args).expect_code(0);
    let dist = world.dist().display().to_string();
    let written: Vec<String> = added.stdout.lines().map(|l| l.trim_start_matches(&dist).to_string()).collect();
    // create already merged the image's line into SHA256SUMS; the release re-signs it.
    assert_eq!(written, ["/index.json", "/SHA256SUMS.gpg"]);
    assert!(read(&world.dist().join("SHA256SUMS")).contains("kubernetes-v1.32.4-x86-64.raw"));
    let dist = world.dist();
    // the new signature covers the new SHA256SUMS
    crate::support::gpg::assert_signature_verifies(&dist);

    // An image copied in by other means: SHA256SUMS changes too, and its signature is written last.
    std::fs::copy(dist.join("kubernetes-v1.32.4-x86-64.raw"), dist.join("kubernetes-v1.32.4-x86-64.raw.bak")).unwrap();
    std::fs::remove_file(dist.join("kubernetes-v1.32.4-x86-64.raw")).unwrap();
    world.release(Some(&keyring), &args).expect_code(0);
    std::fs::rename(dist.join("kubernetes-v1.32.4-x86-64.raw.bak"), dist.join("kubernetes-v1.32.4-x86-64.raw"))
        .unwrap();
    let copied = world.release(Some(&keyring), &args).expect_code(0);
    let written: Vec<String> =
        copied.stdout.lines().map(|l| l.trim_start_matches(&dist.display().to_string()).to_string()).collect();
    assert_eq!(written, ["/index.json", "/SHA256SUMS", "/SHA256SUMS.gpg"], "the signature last");
}

#[test]
fn the_transfer_suffix_switches_all_files_and_never_leaves_both() {
    let world = World::with_images();
    world.release(None, &["--base-url", BASE, "--allow-unsigned"]).expect_code(0);
    let released = world.release(None, &["--base-url", BASE, "--allow-unsigned", "--transfer-suffix", "transfer"]);
    released.expect_code(0);
    let names = dir_names(&world.dist());
    assert!(names.iter().any(|n| n == "kubernetes-v1.32.transfer") && names.iter().any(|n| n == "noop.transfer"));
    assert!(!names.iter().any(|n| n.ends_with(".conf")), "{names:?}");
}

#[test]
fn unsigned_releases_need_consent_and_say_verify_no() {
    let world = World::with_images();
    let refused = world.release(None, &["--base-url", BASE]).expect_code(2);
    assert!(refused.stderr.contains("--sign-key") && refused.stderr.contains("--allow-unsigned"), "{}", refused.stderr);
    assert!(!world.dist().join("index.json").exists(), "nothing written");
    let unsigned = world.release(None, &["--base-url", BASE, "--allow-unsigned"]).expect_code(0);
    assert!(unsigned.stderr.contains("warning: publishing without a signature"), "{}", unsigned.stderr);
    let transfer = bakery::sysupdate::transfer::parse(&read(&world.dist().join("kubernetes.conf"))).unwrap();
    assert!(!transfer.verify);
    assert!(!world.dist().join("SHA256SUMS.gpg").exists());
}

#[test]
fn foreign_mismatched_and_prerelease_images_are_named_and_skipped_or_fatal() {
    let world = World::with_images();
    let dist = world.dist();
    std::fs::write(dist.join("notes.raw"), vec![b'x'; 8192]).unwrap();
    std::fs::copy(dist.join("kubernetes-v1.32.0-x86-64.raw"), dist.join("kubernetes-v9.9.9-x86-64.raw")).unwrap();
    Upstream::kubernetes(&world.server, "v1.33.0-rc.1", "amd64", &default_cni_version());
    world.create(&["kubernetes", "v1.33.0-rc.1", "x86-64"]).expect_code(0);
    let sums_before = read(&dist.join("SHA256SUMS"));

    let strict = world.release(None, &["--base-url", BASE, "--allow-unsigned", "--strict"]).expect_code(2);
    for needle in [
        "notes.raw: ",
        "neither a SquashFS nor an EROFS image",
        "kubernetes-v9.9.9-x86-64.raw: ",
        "SYSEXT_VERSION_ID=v1.32.0, but the image is named for v9.9.9",
        "kubernetes-v1.33.0-rc.1-x86-64.raw: v1.33.0-rc.1 is a pre-release",
    ] {
        assert!(strict.stderr.contains(needle), "missing {needle:?}:\n{}", strict.stderr);
    }
    // each invalid image once, in the one error line, not also as a warning
    assert_eq!(strict.stderr.matches("notes.raw: ").count(), 1, "{}", strict.stderr);
    assert!(!strict.stderr.contains("skipping"), "{}", strict.stderr);
    assert_eq!(strict.stderr.matches("error:").count(), 1, "{}", strict.stderr);
    assert_eq!(read(&dist.join("SHA256SUMS")), sums_before, "--strict failures write nothing");
    assert!(!dist.join("index.json").exists());

    let lenient = world.release(None, &["--base-url", BASE, "--allow-unsigned", "--json"]).expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&lenient.stdout).unwrap();
    let skipped: Vec<&str> =
        report["skipped"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["kubernetes-v1.33.0-rc.1-x86-64.raw", "kubernetes-v9.9.9-x86-64.raw", "notes.raw"]);
    let sums = read(&dist.join("SHA256SUMS"));
    assert!(!sums.contains("notes.raw") && !sums.contains("v9.9.9") && !sums.contains("rc.1"), "{sums}");
    assert!(lenient.stderr.contains("warning: skipping notes.raw"), "{}", lenient.stderr);
}

#[test]
fn bad_release_arguments_are_refused_before_anything_is_written() {
    let world = World::with_images();
    let keyring = Keyring::new();
    let missing =
        world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", "nobody@example.org"]).expect_code(2);
    assert!(missing.stderr.contains("no secret key \"nobody@example.org\""), "{}", missing.stderr);
    let relative = world.release(None, &["--base-url", "example.org/ext", "--allow-unsigned"]).expect_code(2);
    assert!(
        relative.stderr.contains("--base-url \"example.org/ext\" is not an absolute http(s) URL"),
        "{}",
        relative.stderr
    );
    assert!(!world.dist().join("index.json").exists());
}

#[test]
fn create_sysupdate_writes_the_transfer_files_of_one_image() {
    let world = World { home: tempfile::tempdir().unwrap(), server: Server::start() };
    Upstream::kubernetes(&world.server, "v1.32.0", "amd64", &default_cni_version());
    let done = world.create(&["kubernetes", "v1.32.0", "x86-64", "--sysupdate", "--base-url", BASE]).expect_code(0);
    assert!(done.stdout.contains("kubernetes-v1.32.conf"), "{}", done.stdout);
    let mut names = dir_names(&world.dist());
    names.retain(|n| n.ends_with(".conf"));
    assert_eq!(names, ["kubernetes-v1.32.conf", "kubernetes.conf", "noop.conf"]);
    assert_eq!(read(&world.dist().join("kubernetes-v1.32.conf")), {
        // the same file a release of that image gets
        let keyring = Keyring::new();
        world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
        read(&world.dist().join("kubernetes-v1.32.conf"))
    });
    let refused = run(bakery(world.home.path()).args(["create", "kubernetes", "v1.32.0", "x86-64", "--sysupdate"]));
    assert!(refused.expect_code(2).stderr.contains("--base-url"));
}

fn butane(world: &World, args: &[&str]) -> Run {
    let mut command = bakery(world.home.path());
    run(command
        .args(["butane", "kubernetes", "v1.32.3", "x86-64", "--base-url", BASE, "--with", "cni-plugins=1.9.1", "--dir"])
        .arg(world.dist())
        .args(args))
}

#[test]
fn butane_and_ignition_provision_the_images_with_their_hashes() {
    let world = World::with_images();
    let keyring = Keyring::new();
    world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
    let yaml = butane(&world, &[]).expect_code(0).stdout;
    let json = butane(&world, &["--ignition"]).expect_code(0).stdout;
    // The release's public key goes in as a data URL; the throwaway key differs on every run.
    let key = std::fs::read(world.dist().join("import-pubring.gpg")).unwrap();
    let key_url = format!("data:;base64,{}", base64::engine::general_purpose::STANDARD.encode(&key));
    assert!(yaml.contains(&key_url) && json.contains(&key_url), "the key is in both");
    assert_golden("butane/kubernetes-cni.bu", &yaml.replace(&key_url, "data:;base64,KEY"));
    assert_golden("butane/kubernetes-cni.ign", &json.replace(&key_url, "data:;base64,KEY"));

    let (config, warnings) = ignition_config::Config::parse_str(&json).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(matches!(config, ignition_config::Config::V3_3(_)));
    assert_validates(&json);
    let newer = butane(&world, &["--ignition", "--butane-version", "1.1.0"]).expect_code(0).stdout;
    assert!(matches!(ignition_config::Config::parse_str(&newer).unwrap().0, ignition_config::Config::V3_4(_)));
    assert_validates(&newer);

    // The Butane YAML says what the Ignition JSON says.
    let yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sums = read(&world.dist().join("SHA256SUMS"));
    let digest =
        sums.lines().find(|l| l.ends_with("kubernetes-v1.32.3-x86-64.raw")).unwrap().split_whitespace().next().unwrap();
    assert_eq!(yaml["storage"]["files"][0]["contents"]["verification"]["hash"], format!("sha256-{digest}"));
    assert_eq!(json["storage"]["files"][0]["contents"]["verification"]["hash"], format!("sha256-{digest}"));
    let files = json["storage"]["files"].as_array().unwrap();
    assert_eq!(yaml["storage"]["files"].as_array().unwrap().len(), files.len());
    for (y, j) in yaml["storage"]["files"].as_array().unwrap().iter().zip(files) {
        assert_eq!(y["path"], j["path"]);
        match y["contents"]["inline"].as_str() {
            Some(inline) => assert_eq!(decode_data_url(j["contents"]["source"].as_str().unwrap()), inline),
            None => assert_eq!(y["contents"]["source"], j["contents"]["source"]),
        }
    }
    assert_eq!(yaml["storage"]["links"], json["storage"]["links"]);
    // Verify=yes: systemd-pull checks SHA256SUMS.gpg with /etc/systemd/import-pubring.gpg, and no other name.
    let keyring = files.iter().find(|f| f["path"] == "/etc/systemd/import-pubring.gpg").expect("the keyring");
    assert_eq!(keyring["mode"], 0o644);
    let source = keyring["contents"]["source"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(source.strip_prefix("data:;base64,").unwrap());
    assert!(decoded.unwrap() == key, "the keyring is the release's import-pubring.gpg");
    // A fresh systemd 257 node lacks /etc/extensions, and sysupdate cannot create its CurrentSymlink there.
    let directories: Vec<(&str, u64)> = json["storage"]["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["path"].as_str().unwrap(), d["mode"].as_u64().unwrap()))
        .collect();
    assert!(directories.contains(&("/etc/extensions", 0o755)), "{directories:?}");
    let yaml_directories: Vec<&str> =
        yaml["storage"]["directories"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(yaml_directories, directories.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    assert_eq!(yaml["systemd"], json["systemd"]);

    // The units are the ones shipped in units/, byte for byte.
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    let refresh =
        json["systemd"]["units"].as_array().unwrap().iter().find(|u| u["name"] == "bakery-refresh.service").unwrap();
    assert_eq!(refresh["contents"], read(&units.join("bakery-refresh.service")));
    let sysupdate =
        json["systemd"]["units"].as_array().unwrap().iter().find(|u| u["name"] == "systemd-sysupdate.service").unwrap();
    let dropin =
        sysupdate["dropins"].as_array().unwrap().iter().find(|d| d["name"] == "10-bakery-refresh.conf").unwrap();
    assert_eq!(dropin["contents"], read(&units.join("systemd-sysupdate.service.d/10-bakery-refresh.conf")));
}

/// `--bakery-url` with `--bakery-sha256` adds bakery itself as /opt/bin/bakery, where the
/// installed bakery-refresh.service looks first, downloaded by Ignition and checked by its sha256.
#[test]
fn butane_installs_bakery_itself_checked_by_its_sha256() {
    let world = World::with_images();
    let keyring = Keyring::new();
    world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
    let digest = "5d41402abc4b2a76b9719d911017c592ae1a33c4e7f5e08b8c1a55b69ad2a3f8";
    let with = ["--bakery-url", "https://example.org/bin/bakery", "--bakery-sha256", digest];
    let json = butane(&world, &[&with[..], &["--ignition"]].concat()).expect_code(0).stdout;
    let (config, warnings) = ignition_config::Config::parse_str(&json).unwrap();
    assert!(warnings.is_empty() && matches!(config, ignition_config::Config::V3_3(_)), "{warnings:?}");
    assert_validates(&json);
    let yaml = butane(&world, &with).expect_code(0).stdout;
    let yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Butane (go-yaml) reads `mode: 0755` as octal, YAML 1.2 here as the digits 755; Ignition has 493
    for (doc, mode) in [(&yaml, 755.0), (&json, 493.0)] {
        let files = doc["storage"]["files"].as_array().unwrap();
        let bakery = files.iter().find(|f| f["path"] == "/opt/bin/bakery").unwrap_or_else(|| panic!("{files:?}"));
        assert_eq!(bakery["mode"].as_f64(), Some(mode));
        assert_eq!(bakery["contents"]["source"], "https://example.org/bin/bakery");
        assert_eq!(bakery["contents"]["verification"]["hash"], format!("sha256-{digest}"));
    }
    let refresh = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("units/bakery-refresh.service"));
    assert!(refresh.contains("for b in /opt/bin/bakery "), "the unit looks in /opt/bin first");
    // without it, no such file
    let plain = butane(&world, &["--ignition"]).expect_code(0).stdout;
    assert_validates(&plain);
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert!(!plain["storage"]["files"].as_array().unwrap().iter().any(|f| f["path"] == "/opt/bin/bakery"));

    let unverified = butane(&world, &["--bakery-url", "https://example.org/bin/bakery"]).expect_code(2);
    assert!(unverified.stderr.contains("--bakery-sha256"), "{}", unverified.stderr);
    let bad_digest = butane(&world, &["--bakery-url", "https://example.org/bin/bakery", "--bakery-sha256", "abc"]);
    let bad_digest = bad_digest.expect_code(2).stderr;
    assert!(bad_digest.contains("abc"), "{bad_digest}");
    let directory = butane(&world, &["--bakery-url", "https://example.org/bin/", "--bakery-sha256", digest]);
    let directory = directory.expect_code(2).stderr;
    assert!(directory.contains("--bakery-url"), "{directory}");
}

#[test]
fn butane_refuses_what_it_cannot_verify_or_locate() {
    let world = World::with_images();
    let mut command = bakery(world.home.path());
    command.args(["butane", "kubernetes", "v1.32.3", "x86-64", "--base-url", "/srv/ext", "--dir"]).arg(world.dist());
    let relative = run(&mut command).expect_code(2);
    assert!(relative.stderr.contains("not an absolute http(s) URL"), "{}", relative.stderr);

    // Verify=yes with nothing to verify: every update on the node would fail.
    let unsigned = butane(&world, &[]).expect_code(2).stderr;
    for needle in ["SHA256SUMS.gpg", "import-pubring.gpg", "bakery release", "--sign-key KEY", "--allow-unsigned"] {
        assert!(unsigned.contains(needle), "missing {needle:?}: {unsigned}");
    }
    let consented = butane(&world, &["--allow-unsigned", "--ignition"]).expect_code(0);
    assert_validates(&consented.stdout);
    assert!(consented.stdout.contains("Verify%3Dno") && !consented.stdout.contains("import-pubring"));

    // A signature the published key does not verify.
    let keyring = Keyring::new();
    world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
    let dist = world.dist();
    let key = std::fs::read(dist.join("import-pubring.gpg")).unwrap();
    let other = Keyring::new();
    let exported = Command::new("gpg").env("GNUPGHOME", other.path()).args(["--export", EMAIL]).output().unwrap();
    assert!(exported.status.success() && !exported.stdout.is_empty());
    std::fs::write(dist.join("import-pubring.gpg"), &exported.stdout).unwrap();
    let mismatch = butane(&world, &[]).expect_code(2).stderr;
    assert!(mismatch.contains("does not verify") && mismatch.contains("every update"), "{mismatch}");
    std::fs::remove_file(dist.join("import-pubring.gpg")).unwrap();
    let no_key = butane(&world, &[]).expect_code(2).stderr;
    assert!(no_key.contains("no import-pubring.gpg") && !no_key.contains("no SHA256SUMS.gpg"), "{no_key}");
    std::fs::write(dist.join("import-pubring.gpg"), key).unwrap();
    butane(&world, &[]).expect_code(0);

    let mut command = bakery(world.home.path());
    command.args(["butane", "kubernetes", "v1.30.0", "x86-64", "--base-url", BASE, "--dir"]).arg(world.dist());
    let unknown = run(&mut command).expect_code(2);
    assert!(unknown.stderr.contains("no sha256 for kubernetes-v1.30.0-x86-64.raw"), "{}", unknown.stderr);
}

fn decode_data_url(url: &str) -> String {
    let encoded = url.strip_prefix("data:,").unwrap();
    let bytes = encoded.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&encoded[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Plays systemd-sysupdate against the served release: newest patch of the pinned minor,
/// verified with the exported key, placed and linked; then a tampered SHA256SUMS is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_updates_from_the_served_release_like_systemd_sysupdate() {
    let world = tokio::task::spawn_blocking(|| {
        let world = World::with_images();
        let keyring = Keyring::new();
        world.release(Some(&keyring), &["--base-url", BASE, "--sign-key", EMAIL]).expect_code(0);
        drop(keyring);
        world
    })
    .await
    .unwrap();
    world.server.serve_dir("/ext", &world.dist());
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/systemd")).unwrap();
    std::fs::copy(world.dist().join("import-pubring.gpg"), root.path().join("etc/systemd/import-pubring.gpg")).unwrap();
    let http = bakery::pipeline::http::Http::new(Default::default()).unwrap();
    let mirrors = bakery::model::Mirrors::new([format!("{BASE}={}/ext", world.server.url()).parse().unwrap()]);
    let node = bakery::sysupdate::update::Node {
        http: &http,
        mirrors: &mirrors,
        root: root.path(),
        arch: bakery::model::Arch::X86_64,
        keyring: None,
    };
    let transfer = bakery::sysupdate::transfer::parse(&read(&world.dist().join("kubernetes-v1.31.conf"))).unwrap();
    let outcome = bakery::sysupdate::update::update(&node, &transfer).await.unwrap().unwrap();
    assert_eq!(outcome.version, "7");
    let placed = root.path().join("opt/extensions/kubernetes/kubernetes-v1.31.7-x86-64.raw");
    assert!(
        std::fs::read(&placed).unwrap() == std::fs::read(world.dist().join("kubernetes-v1.31.7-x86-64.raw")).unwrap()
    );
    let link = std::fs::read_link(root.path().join("etc/extensions/kubernetes.raw")).unwrap();
    // relative, as systemd-sysupdate writes it
    assert_eq!(link, Path::new("../../opt/extensions/kubernetes/kubernetes-v1.31.7-x86-64.raw"));

    let transfer = bakery::sysupdate::transfer::parse(&read(&world.dist().join("kubernetes-v1.32.conf"))).unwrap();
    let outcome = bakery::sysupdate::update::update(&node, &transfer).await.unwrap().unwrap();
    assert_eq!((outcome.version.as_str(), outcome.downloaded), ("3", true), "v1.32.3 is the newest v1.32 for x86-64");
    let again = bakery::sysupdate::update::update(&node, &transfer).await.unwrap().unwrap();
    assert!(!again.downloaded, "an image already in place is not downloaded again");
    let link = std::fs::read_link(root.path().join("etc/extensions/kubernetes.raw")).unwrap();
    assert_eq!(link, Path::new("../../opt/extensions/kubernetes/kubernetes-v1.32.3-x86-64.raw"));

    let sums = read(&world.dist().join("SHA256SUMS")).replace("kubernetes-v1.32.0", "kubernetes-v1.32.9");
    world.server.put("/ext/SHA256SUMS", sums);
    let err = bakery::sysupdate::update::update(&node, &transfer).await.unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
}

#[test]
fn a_directory_without_a_valid_image_exits_2_and_signs_nothing() {
    let home = tempfile::tempdir().unwrap();
    let keyring = Keyring::new();
    let dist = home.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    for (files, needle) in [(&[][..], "(no *.raw files)"), (&["notes.raw"][..], "notes.raw: ")] {
        for file in files {
            std::fs::write(dist.join(file), vec![b'x'; 8192]).unwrap();
        }
        for strict in [false, true] {
            let mut command = bakery(home.path());
            command.env("GNUPGHOME", keyring.path()).arg("release").arg(&dist).args(["--sign-key", EMAIL]);
            command.args(["--base-url", BASE]).args(strict.then_some("--strict"));
            let failed = run(&mut command).expect_code(2);
            assert!(failed.stderr.contains("nothing to release") || strict, "{}", failed.stderr);
            assert_eq!(failed.stderr.matches(needle).count(), 1, "named once: {}", failed.stderr);
            assert_eq!(failed.stderr.matches("error:").count(), 1, "{}", failed.stderr);
            let mut written = dir_names(&dist);
            written.retain(|n| !files.contains(&n.as_str()) && !n.starts_with('.'));
            assert!(written.is_empty(), "wrote {written:?}");
        }
    }
}
