//! `bakery release` and `bakery butane` with signed DDIs: the release indexes them like plain
//! images, publishes the verity certificate as `<ext>.crt` under the GPG-signed `SHA256SUMS`
//! (checked by the real sha256sum and gpgv), refuses a certificate that does not verify them,
//! and the node config installs it as `/etc/verity.d/<ext>.crt` (checked by ignition-validate).
//! Keys and certificates come from the real openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use base64::Engine;
use support::demo::Demo;
use support::fixtures::sha256_hex;
use support::gpg::{EMAIL, Keyring};
use support::ignition::assert_validates;
use support::{Run, bakery, run};

const BASE: &str = "https://example.org/ext";
const IMAGE: &str = "demo-v1.0.0-x86-64.raw";

/// The demo's recipe and upstream (v1.0.0 and v1.0.1), a key and certificate by openssl.
struct World {
    demo: Demo,
}

impl World {
    fn new() -> Self {
        let world = World { demo: Demo::new() };
        world.keypair("key.pem", "cert.pem");
        for version in ["v1.0.0", "v1.0.1"] {
            let script = format!("#!/bin/sh\necho {version} > /run/demo.version\n");
            let path = format!("/demo.example/{version}/demo");
            world.demo.server.put(&format!("{path}.sha256"), sha256_hex(script.as_bytes()));
            world.demo.server.put(&path, script);
        }
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.demo.dir.path().join(name)
    }

    fn dist(&self) -> PathBuf {
        self.path("dist")
    }

    fn keypair(&self, key: &str, cert: &str) {
        support::self_signed(&self.path(key), &self.path(cert), "/CN=bakery test");
    }

    fn command(&self) -> Command {
        let mut command = bakery(self.demo.dir.path());
        command.arg("--cache-dir").arg(self.path("cache"));
        command.arg("--extensions-dir").arg(self.path("extensions"));
        command.args(["--mirror", &self.demo.server.mirror_for("https://demo.example")]);
        command
    }

    /// Builds the DDI of `version`, signed with key.pem, into dist/.
    fn build(&self, version: &str) -> PathBuf {
        let mut command = self.command();
        command.args(["create", "demo", version, "x86-64", "--ddi", "--sign-key"]).arg(self.path("key.pem"));
        command.arg("--sign-cert").arg(self.path("cert.pem")).arg("-o").arg(self.dist());
        run(&mut command).expect_code(0);
        self.dist().join(format!("demo-{version}-x86-64.raw"))
    }

    /// `bakery release DIR ARGS`, signed by `keyring` when there is one.
    fn release(&self, dir: &Path, keyring: Option<&Keyring>, args: &[&str]) -> Run {
        let mut command = self.command();
        command.arg("release").arg(dir).args(["--base-url", BASE]);
        if let Some(keyring) = keyring {
            command.env("GNUPGHOME", keyring.path()).args(["--sign-key", EMAIL]);
        }
        run(command.args(args))
    }

    fn butane(&self, args: &[&str]) -> Run {
        let mut command = self.command();
        command.args(["butane", "demo", "v1.0.0", "x86-64", "--base-url", BASE, "--dir"]).arg(self.dist());
        run(command.args(args))
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode_data_url(url: &str) -> Vec<u8> {
    let encoded = url.strip_prefix("data:,").expect("a data: URL");
    let mut out = Vec::new();
    let mut bytes = encoded.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = [bytes.next().unwrap() as char, bytes.next().unwrap() as char].iter().collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}

/// Flips a byte of the RSA signature value inside the signature partition's JSON (base64 of
/// the same length), so the structure stays valid and only the signature fails.
fn break_signature(image: &Path) {
    let mut bytes = read(image);
    let key = b"\"signature\":\"";
    let start = bytes.windows(key.len()).position(|w| w == key).expect("the signature JSON") + key.len();
    let end = start + bytes[start..].iter().position(|b| *b == b'"').unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = b64.decode(&bytes[start..end]).unwrap();
    let at = der.len() - 10;
    der[at] ^= 0x01;
    let encoded = b64.encode(&der);
    assert_eq!(encoded.len(), end - start);
    bytes[start..end].copy_from_slice(encoded.as_bytes());
    std::fs::write(image, bytes).unwrap();
}

#[test]
fn a_ddi_release_publishes_the_certificate_under_the_signature_and_butane_installs_it() {
    let world = World::new();
    let image = world.build("v1.0.0");
    let dist = world.dist();
    // The same DDI released without a certificate: what the transfer files must still say.
    let plain = world.path("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::copy(&image, plain.join(IMAGE)).unwrap();
    let keyring = Keyring::new();
    world.release(&plain, Some(&keyring), &[]).expect_code(0);

    let cert = world.path("cert.pem");
    let out = world.release(&dist, Some(&keyring), &["--verity-cert", cert.to_str().unwrap()]).expect_code(0);
    assert!(out.stdout.lines().any(|l| l == dist.join("demo.crt").to_str().unwrap()), "{}", out.stdout);
    assert_eq!(read(&dist.join("demo.crt")), read(&cert), "demo.crt is the certificate, byte for byte");

    let sums = String::from_utf8(read(&dist.join("SHA256SUMS"))).unwrap();
    let names: Vec<&str> = sums.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    assert_eq!(names, ["demo-v1.0.0-x86-64.raw", "demo.crt"]);
    support::gpg::assert_release_verifies(&dist, 2);
    // A DDI is indexed like a plain image: the same transfer files and index.
    for name in ["demo.conf", "demo-v1.0.conf", "noop.conf", "index.json"] {
        assert_eq!(read(&dist.join(name)), read(&plain.join(name)), "{name}");
    }
    let transfer = String::from_utf8(read(&dist.join("demo.conf"))).unwrap();
    assert!(transfer.contains("MatchPattern=demo-@v-%a.raw"), "{transfer}");

    // A later run without the flag keeps the certificate listed: nothing changes.
    let again = world.release(&dist, Some(&keyring), &[]).expect_code(0);
    assert_eq!(again.stdout, "", "nothing changed");
    assert_eq!(String::from_utf8(read(&dist.join("SHA256SUMS"))).unwrap(), sums);

    // butane installs it as /etc/verity.d/demo.crt, in the YAML and in the Ignition JSON.
    let json = world.butane(&["--ignition"]).expect_code(0).stdout;
    assert_validates(&json);
    let config: serde_json::Value = serde_json::from_str(&json).unwrap();
    let files = config["storage"]["files"].as_array().unwrap();
    let file = files.iter().find(|f| f["path"] == "/etc/verity.d/demo.crt").expect("the certificate");
    assert_eq!(file["mode"], 0o644);
    assert_eq!(decode_data_url(file["contents"]["source"].as_str().unwrap()), read(&cert));
    let text = world.butane(&[]).expect_code(0).stdout;
    // Butane reads 0644 as octal (YAML 1.1); a YAML 1.2 parser would not, so check the text.
    assert!(text.contains("- path: /etc/verity.d/demo.crt\n      mode: 0644\n"), "{text}");
    let yaml: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let files = yaml["storage"]["files"].as_array().unwrap();
    let file = files.iter().find(|f| f["path"] == "/etc/verity.d/demo.crt").expect("the certificate in the YAML");
    assert_eq!(file["contents"]["inline"].as_str().unwrap().as_bytes(), read(&cert));

    // A certificate changed after the release is not what SHA256SUMS (and its signature) cover.
    let mut changed = read(&dist.join("demo.crt"));
    changed.extend_from_slice(b"\n");
    std::fs::write(dist.join("demo.crt"), changed).unwrap();
    let refused = world.butane(&["--ignition"]).expect_code(2).stderr;
    assert!(refused.contains("demo.crt") && refused.contains("SHA256SUMS"), "{refused}");
}

#[test]
fn a_certificate_that_does_not_verify_the_ddis_is_refused_naming_both_files() {
    let world = World::new();
    let image = world.build("v1.0.0");
    world.keypair("other-key.pem", "other-cert.pem");
    let other = world.path("other-cert.pem");
    // create listed the image; the refused release must leave that line alone and add nothing
    let sums = read(&world.dist().join("SHA256SUMS"));
    let refused = world.release(&world.dist(), None, &["--allow-unsigned", "--verity-cert", other.to_str().unwrap()]);
    let stderr = refused.expect_code(2).stderr;
    assert!(stderr.contains(other.to_str().unwrap()) && stderr.contains(image.to_str().unwrap()), "{stderr}");
    assert_eq!(read(&world.dist().join("SHA256SUMS")), sums);
    for name in ["demo.crt", "demo.conf", "index.json"] {
        assert!(!world.dist().join(name).exists(), "{name} written by a refused release");
    }

    // Not a certificate at all (the private key): named, and nothing is published.
    let key = world.path("key.pem");
    let args = ["--allow-unsigned", "--verity-cert", key.to_str().unwrap()];
    let stderr = world.release(&world.dist(), None, &args).expect_code(2).stderr;
    assert!(stderr.contains(key.to_str().unwrap()), "{stderr}");
    assert!(!world.dist().join("demo.crt").exists());
    // A .crt left in the directory is checked too: one that is not a certificate is named.
    std::fs::write(world.dist().join("junk.crt"), "not a certificate\n").unwrap();
    let stderr = world.release(&world.dist(), None, &["--allow-unsigned"]).expect_code(2).stderr;
    assert!(stderr.contains("junk.crt") && stderr.contains("not a PEM certificate"), "{stderr}");
}

#[test]
fn a_ddi_whose_signature_does_not_verify_is_named_and_skipped() {
    let world = World::new();
    world.build("v1.0.0");
    let broken = world.build("v1.0.1");
    break_signature(&broken);
    let cert = world.path("cert.pem");
    let args = ["--allow-unsigned", "--verity-cert", cert.to_str().unwrap()];
    let out = world.release(&world.dist(), None, &args).expect_code(0);
    assert!(
        out.stderr.contains("demo-v1.0.1-x86-64.raw") && out.stderr.contains("the verity signature is not verified"),
        "{}",
        out.stderr
    );
    let sums = String::from_utf8(read(&world.dist().join("SHA256SUMS"))).unwrap();
    assert!(!sums.contains("demo-v1.0.1") && sums.contains("demo-v1.0.0") && sums.contains("demo.crt"), "{sums}");
    let strict = world.release(&world.dist(), None, &[&args[..], &["--strict"]].concat()).expect_code(2).stderr;
    assert!(strict.contains("demo-v1.0.1-x86-64.raw"), "{strict}");
}
