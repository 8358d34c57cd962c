//! `bakery create --ddi`: the signed dm-verity DDI, checked by the real tools that nodes and
//! admins use: sfdisk (the GPT), veritysetup (the hash tree), openssl (the PKCS#7 signature),
//! unsquashfs (the filesystem in the root partition) and systemd-dissect (systemd 257).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use support::container::Systemd;
use support::ddi::{Part, sfdisk};
use support::demo::Demo;
use support::fixtures::sha256_hex;
use support::{bakery, list_image, run};

const VERSION: &str = "v1.0.0";
const IMAGE: &str = "demo-v1.0.0-x86-64.raw";
/// x86-64 root, root-verity and root-verity-sig (UAPI.2).
const TYPES: [&str; 3] = [
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    "41092B05-9FC8-4523-994F-2DEF0408B176",
];

/// The demo's recipe and upstream, and a key and certificate made by the real openssl.
struct World {
    demo: Demo,
}

impl World {
    fn new() -> Self {
        let world = World { demo: Demo::new() };
        world.keypair("key.pem", "cert.pem");
        let script = "#!/bin/sh\necho ddi > /run/demo.version\n";
        let path = format!("/demo.example/{VERSION}/demo");
        world.demo.server.put(&format!("{path}.sha256"), sha256_hex(script.as_bytes()));
        world.demo.server.put(&path, script);
        world
    }

    fn dir(&self) -> &Path {
        self.demo.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn keypair(&self, key: &str, cert: &str) {
        support::self_signed(&self.path(key), &self.path(cert), "/CN=bakery test");
    }

    /// `bakery create demo v1.0.0 x86-64 ARGS -o OUT`
    fn create(&self, out: &str, args: &[&str]) -> support::Run {
        let mut command = bakery(self.dir());
        command.arg("--cache-dir").arg(self.path("cache"));
        command.arg("--extensions-dir").arg(self.path("extensions"));
        command.args(["--mirror", &self.demo.server.mirror_for("https://demo.example")]);
        command.args(["create", "demo", VERSION, "x86-64"]).args(args).arg("-o").arg(self.path(out));
        run(&mut command)
    }

    /// Builds the signed DDI into `out` and returns its path.
    fn build(&self, out: &str, extra: &[&str]) -> PathBuf {
        let (key, cert) = (self.path("key.pem"), self.path("cert.pem"));
        let mut args = vec!["--ddi", "--sign-key", key.to_str().unwrap(), "--sign-cert", cert.to_str().unwrap()];
        args.extend(extra);
        self.create(out, &args).expect_code(0);
        self.path(out).join(IMAGE)
    }
}

fn slice(image: &Path, part: &Part) -> Vec<u8> {
    let bytes = std::fs::read(image).unwrap();
    bytes[part.offset as usize..(part.offset + part.size) as usize].to_vec()
}

/// The signature partition's JSON (NULs stripped).
fn signature_json(image: &Path, part: &Part) -> serde_json::Value {
    let bytes = slice(image, part);
    assert_eq!(bytes.len() % 4096, 0);
    let end = bytes.iter().position(|b| *b == 0).unwrap();
    assert!(bytes[end..].iter().all(|b| *b == 0), "NUL padding only after the JSON");
    serde_json::from_slice(&bytes[..end]).unwrap()
}

fn uuid_of_hex(hex: &str) -> String {
    let h = hex.to_uppercase();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn veritysetup_verify(dir: &Path, data: &[u8], hash: &[u8], root_hash: &str) -> support::Run {
    std::fs::write(dir.join("data.img"), data).unwrap();
    std::fs::write(dir.join("hash.img"), hash).unwrap();
    run(Command::new("veritysetup").arg("verify").arg(dir.join("data.img")).arg(dir.join("hash.img")).arg(root_hash))
}

fn openssl_verify(dir: &Path, signature: &[u8], content: &str, cert: &Path) -> support::Run {
    std::fs::write(dir.join("sig.p7s"), signature).unwrap();
    std::fs::write(dir.join("content"), content).unwrap();
    let mut cms = Command::new("openssl");
    cms.args(["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-out", "/dev/null"]);
    cms.arg("-in").arg(dir.join("sig.p7s")).arg("-content").arg(dir.join("content")).arg("-CAfile").arg(cert);
    run(&mut cms)
}

fn veritysetup_or_skip(test: &str) -> bool {
    let found = Command::new("veritysetup").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        support::skip(test, "needs veritysetup (apt-get install cryptsetup-bin)");
    }
    found
}

#[test]
fn a_ddi_has_three_partitions_that_sfdisk_veritysetup_openssl_and_unsquashfs_accept() {
    if !veritysetup_or_skip("a_ddi_has_three_partitions_that_sfdisk_veritysetup_openssl_and_unsquashfs_accept") {
        return;
    }
    let world = World::new();
    let image = world.build("out", &[]);
    let parts = sfdisk(&image);
    assert_eq!(parts.len(), 3, "{parts:?}");
    let types: Vec<&str> = parts.iter().map(|p| p.type_uuid.as_str()).collect();
    assert_eq!(types, TYPES);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig"]);
    assert_eq!(parts[0].offset, 1 << 20);
    assert!(parts.iter().all(|p| p.offset % 4096 == 0 && p.size % 4096 == 0), "{parts:?}");

    let json = signature_json(&image, &parts[2]);
    let root_hash = json["rootHash"].as_str().unwrap().to_string();
    assert_eq!(root_hash.len(), 64);
    assert_eq!(parts[0].uuid, uuid_of_hex(&root_hash[..32]), "data partition UUID: first 128 bits");
    assert_eq!(parts[1].uuid, uuid_of_hex(&root_hash[32..]), "verity partition UUID: last 128 bits");

    let (data, hash) = (slice(&image, &parts[0]), slice(&image, &parts[1]));
    veritysetup_verify(world.dir(), &data, &hash, &root_hash).expect_code(0);

    let cert = world.path("cert.pem");
    let signature = base64_decode(json["signature"].as_str().unwrap());
    let verified = openssl_verify(world.dir(), &signature, &root_hash, &cert).expect_code(0);
    assert!(verified.stderr.contains("Verification successful"), "{verified:?}");
    // the kernel's format: no signed attributes (openssl prints none)
    let mut print = Command::new("openssl");
    print.args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"]).arg(world.dir().join("sig.p7s"));
    let printed = run(&mut print).expect_code(0).stdout;
    assert!(printed.contains("signedAttrs:\n") && printed.contains("<ABSENT>"), "{printed}");
    let mut der = Command::new("openssl");
    der.args(["x509", "-outform", "DER", "-in"]).arg(&cert);
    let der = der.output().unwrap().stdout;
    assert_eq!(json["certificateFingerprint"].as_str().unwrap(), sha256_hex(&der));

    // the root partition is the filesystem: unsquashfs reads it
    let fs = world.path("root.squashfs");
    std::fs::write(&fs, &data).unwrap();
    let listed: Vec<String> = list_image(&fs).into_iter().map(|e| e.path).collect();
    assert!(listed.iter().any(|p| p == "/usr/bin/demo"), "{listed:?}");
    assert!(listed.iter().any(|p| p == "/usr/lib/extension-release.d/extension-release.demo"), "{listed:?}");

    // the same inputs and key give the same bytes
    let again = world.build("again", &[]);
    assert!(std::fs::read(&image).unwrap() == std::fs::read(&again).unwrap(), "two builds differ");
    let sums = std::fs::read_to_string(world.path("out/SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("{}  {IMAGE}", sha256_hex(&std::fs::read(&image).unwrap()))), "{sums}");
}

/// A P-256 key signs as well (PKCS#8 from `openssl genpkey` or SEC1 from `openssl ecparam`):
/// ECDSA with sha256, which `openssl cms -verify` and `bakery inspect` accept and a changed byte
/// of the signature fails; RFC 6979 nonces keep two builds bit-identical.
#[test]
fn a_p256_key_signs_ddis_that_openssl_verifies_and_builds_reproduce() {
    for sec1 in [false, true] {
        let world = World::new();
        let (key, cert) = support::ddi::p256_keypair(world.dir(), "ec", sec1);
        let args = ["--ddi", "--sign-key", key.to_str().unwrap(), "--sign-cert", cert.to_str().unwrap()];
        world.create("out", &args).expect_code(0);
        world.create("again", &args).expect_code(0);
        let (image, again) = (world.path("out").join(IMAGE), world.path("again").join(IMAGE));
        assert!(std::fs::read(&image).unwrap() == std::fs::read(&again).unwrap(), "sec1 {sec1}: two builds differ");

        let parts = sfdisk(&image);
        let json = signature_json(&image, &parts[2]);
        let root_hash = json["rootHash"].as_str().unwrap();
        let signature = base64_decode(json["signature"].as_str().unwrap());
        openssl_verify(world.dir(), &signature, root_hash, &cert).expect_code(0);
        let mut print = Command::new("openssl");
        print.args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"]).arg(world.dir().join("sig.p7s"));
        let printed = run(&mut print).expect_code(0).stdout;
        assert!(printed.contains("ecdsa-with-SHA256"), "{printed}");
        let mut changed = signature.clone();
        let last = changed.len() - 5; // inside the ECDSA signature value, the DER's last bytes
        changed[last] ^= 0x01;
        let refused = openssl_verify(world.dir(), &changed, root_hash, &cert);
        assert_ne!(refused.code, 0, "a changed signature byte: {refused:?}");

        let mut inspect = bakery(world.dir());
        let out = run(inspect.args(["inspect", "--json", "--verity-cert"]).arg(&cert).arg(&image)).expect_code(0);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["ddi"]["signature"]["signer"]["subject"], "CN=ec", "{json:#}");
    }
    // a key on another curve is refused by name before anything downloads
    let world = World::new();
    let key = world.path("p384.key");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out"])
        .arg(&key))
    .expect_code(0);
    let cert = world.path("cert.pem");
    let out =
        world.create("out", &["--ddi", "--sign-key", key.to_str().unwrap(), "--sign-cert", cert.to_str().unwrap()]);
    let out = out.expect_code(2);
    assert!(out.stderr.contains(key.to_str().unwrap()) && out.stderr.contains("P-256"), "{}", out.stderr);
    assert_eq!(world.demo.server.total_hits(), 0);
}

#[test]
fn a_flipped_byte_in_the_data_the_hash_tree_or_the_signature_is_refused() {
    if !veritysetup_or_skip("a_flipped_byte_in_the_data_the_hash_tree_or_the_signature_is_refused") {
        return;
    }
    let world = World::new();
    let image = world.build("out", &["--format", "erofs"]);
    let parts = sfdisk(&image);
    let json = signature_json(&image, &parts[2]);
    let root_hash = json["rootHash"].as_str().unwrap();
    let (data, hash) = (slice(&image, &parts[0]), slice(&image, &parts[1]));
    veritysetup_verify(world.dir(), &data, &hash, root_hash).expect_code(0);

    let flip = |bytes: &[u8], at: usize| {
        let mut out = bytes.to_vec();
        out[at] ^= 0x01;
        out
    };
    let refused = veritysetup_verify(world.dir(), &flip(&data, data.len() / 2), &hash, root_hash);
    assert_ne!(refused.code, 0, "a flipped data byte: {refused:?}");
    // past the superblock: the hash tree itself
    let refused = veritysetup_verify(world.dir(), &data, &flip(&hash, 4096 + 5), root_hash);
    assert_ne!(refused.code, 0, "a flipped hash tree byte: {refused:?}");
    let mut other = root_hash.to_string();
    other.replace_range(..1, if other.starts_with('0') { "1" } else { "0" });
    let refused = veritysetup_verify(world.dir(), &data, &hash, &other);
    assert_ne!(refused.code, 0, "another root hash: {refused:?}");

    let cert = world.path("cert.pem");
    let signature = base64_decode(json["signature"].as_str().unwrap());
    openssl_verify(world.dir(), &signature, root_hash, &cert).expect_code(0);
    // the RSA signature value is the DER's last bytes
    let refused = openssl_verify(world.dir(), &flip(&signature, signature.len() - 10), root_hash, &cert);
    assert_ne!(refused.code, 0, "a flipped signature byte: {refused:?}");
    let refused = openssl_verify(world.dir(), &signature, &other, &cert);
    assert_ne!(refused.code, 0, "another root hash: {refused:?}");
    world.keypair("other-key.pem", "other-cert.pem");
    let refused = openssl_verify(world.dir(), &signature, root_hash, &world.path("other-cert.pem"));
    assert_ne!(refused.code, 0, "another certificate: {refused:?}");
}

#[test]
fn ddi_needs_a_readable_key_and_the_certificate_of_that_key() {
    let world = World::new();
    let (key, cert) = (world.path("key.pem"), world.path("cert.pem"));
    let (key, cert) = (key.to_str().unwrap(), cert.to_str().unwrap());
    let out = world.create("out", &["--ddi", "--sign-cert", cert]).expect_code(2);
    assert!(out.stderr.contains("--sign-key"), "{}", out.stderr);
    let out = world.create("out", &["--sign-key", key, "--sign-cert", cert]).expect_code(2);
    assert!(out.stderr.contains("--ddi"), "{}", out.stderr);
    let missing = world.path("missing.pem");
    let out = world.create("out", &["--ddi", "--sign-key", missing.to_str().unwrap(), "--sign-cert", cert]);
    let out = out.expect_code(2);
    assert!(out.stderr.contains(missing.to_str().unwrap()), "{}", out.stderr);
    // a certificate is not a key
    let out = world.create("out", &["--ddi", "--sign-key", cert, "--sign-cert", cert]).expect_code(2);
    assert!(out.stderr.contains(cert) && out.stderr.contains("CERTIFICATE"), "{}", out.stderr);
    world.keypair("other-key.pem", "other-cert.pem");
    let other = world.path("other-cert.pem");
    let out = world.create("out", &["--ddi", "--sign-key", key, "--sign-cert", other.to_str().unwrap()]);
    let out = out.expect_code(2);
    assert!(out.stderr.contains(key) && out.stderr.contains(other.to_str().unwrap()), "{}", out.stderr);
    assert!(!world.path("out").join(IMAGE).exists(), "nothing written");
    // --dry-run checks the pair too, and names the signer in the plan
    let out = world.create("out", &["--ddi", "--sign-key", key, "--sign-cert", other.to_str().unwrap(), "--dry-run"]);
    assert!(out.expect_code(2).stderr.contains("the certificate is for another key"));
    let plan = world.create("out", &["--ddi", "--sign-key", key, "--sign-cert", cert, "--dry-run"]).expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let der = Command::new("openssl").args(["x509", "-outform", "DER", "-in", cert]).output().unwrap().stdout;
    assert_eq!(plan["ddi"]["certificate_fingerprint"], sha256_hex(&der), "{plan:#}");
    assert_eq!(plan["ddi"]["subject"], "CN=bakery test", "{plan:#}");
    assert_eq!(plan["ddi"]["sign_cert"], cert, "{plan:#}");
    assert_eq!(world.demo.server.total_hits(), 0, "a dry run downloads nothing");

    // bakery.toml: [create] ddi, sign_key and sign_cert, relative to the file
    std::fs::write(
        world.path("bakery.toml"),
        "[create]\nddi = true\nsign_key = \"key.pem\"\nsign_cert = \"cert.pem\"\n",
    )
    .unwrap();
    world.create("out", &[]).expect_code(0);
    let parts = sfdisk(&world.path("out").join(IMAGE));
    assert_eq!(parts.len(), 3, "{parts:?}");
}

/// `systemd-dissect ARGS` of systemd 257 (the trixie test root) on `image`. Not in the booted test
/// node: its private /dev has no devtmpfs, so the loop device's partition nodes (`loop1p1`)
/// never appear. Instead the trixie root is entered with chroot in a private mount namespace
/// with the host's /dev, /proc and /sys bound in (nothing is written to the cached root).
fn dissect_257(image: &Path, args: &str) -> support::Run {
    let root = std::env::var(support::container::TRIXIE_ROOT_VAR).unwrap();
    let dir = image.parent().unwrap().display().to_string();
    let name = image.file_name().unwrap().to_str().unwrap();
    let script = format!(
        "set -e; R={root}; mount --bind $R $R; mount --rbind /dev $R/dev; mount -t proc proc $R/proc; mount --rbind /sys $R/sys; \
         mount -t tmpfs tmpfs $R/mnt; mkdir $R/mnt/ddi; mount --bind {dir} $R/mnt/ddi; \
         exec chroot $R systemd-dissect {args} /mnt/ddi/{name}"
    );
    run(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]))
}

#[test]
fn systemd_dissect_257_lists_the_partitions_and_the_verity_signature() {
    let test = "systemd_dissect_257_lists_the_partitions_and_the_verity_signature";
    if !Systemd::V257.available(test) {
        return;
    }
    let world = World::new();
    let image = world.build("out", &[]);
    let out = dissect_257(&image, "--json=short").expect_code(0);
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let mounts = json["mounts"].as_array().unwrap_or_else(|| panic!("{json:#}"));
    let designators: Vec<&str> = mounts.iter().filter_map(|m| m["designator"].as_str()).collect();
    for wanted in ["root", "root-verity", "root-verity-sig"] {
        assert!(designators.contains(&wanted), "{wanted} in {json:#}");
    }
    let parts = sfdisk(&image);
    let root = mounts.iter().find(|m| m["designator"] == "root").unwrap();
    assert_eq!(root["fstype"], "squashfs", "{json:#}");
    assert_eq!(root["partition_uuid"].as_str().unwrap_or_default().to_uppercase(), parts[0].uuid, "{json:#}");
    // systemd found the signature partition and pairs it with the data (checking it needs
    // device-mapper, which the test machines lack)
    assert_eq!(root["verity"], "signed", "{json:#}");
    assert_eq!(json["useSystemExtension"], true, "{json:#}");
    let release = json["sysextRelease"].to_string();
    assert!(release.contains("SYSEXT_ID=demo") && release.contains("SYSEXT_VERSION_ID=v1.0.0"), "{json:#}");
}
