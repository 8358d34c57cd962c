//! What the DDI tests share: the GPT as sfdisk reads it, and key pairs openssl makes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;

/// One partition as sfdisk reports it, in bytes.
#[derive(Debug)]
pub struct Part {
    pub type_uuid: String,
    pub uuid: String,
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The partitions of `image`'s GPT (512-byte sectors), as `sfdisk --json` reads them.
pub fn sfdisk(image: &Path) -> Vec<Part> {
    let out = run(Command::new("sfdisk").arg("--json").arg(image)).expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "gpt", "{}", out.stdout);
    assert_eq!(table["sectorsize"], 512, "{}", out.stdout);
    table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Part {
            type_uuid: p["type"].as_str().unwrap().to_string(),
            uuid: p["uuid"].as_str().unwrap().to_string(),
            name: p["name"].as_str().unwrap_or_default().to_string(),
            offset: p["start"].as_u64().unwrap() * 512,
            size: p["size"].as_u64().unwrap() * 512,
        })
        .collect()
}

/// The byte offsets of a DDI's data, hash tree and signature partitions.
pub fn partition_offsets(image: &Path) -> [u64; 3] {
    let parts = sfdisk(image);
    assert_eq!(parts.len(), 3, "{parts:?}");
    [parts[0].offset, parts[1].offset, parts[2].offset]
}

/// A self-signed RSA key pair from openssl: `dir/NAME.key` and `dir/NAME.pem`, subject `CN=NAME`.
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pem")));
    super::self_signed(&key, &cert, &format!("/CN={name}"));
    (key, cert)
}

/// Changes the byte at `at` to another letter (`A`, or `B` where it was `A`), so text such as
/// base64 stays text where it was.
pub fn change_byte(image: &Path, at: u64) {
    let mut bytes = std::fs::read(image).unwrap();
    let at = at as usize;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(image, bytes).unwrap();
}

/// A self-signed P-256 key pair from openssl: `dir/NAME.key` (PKCS#8, or SEC1 `EC PRIVATE KEY`
/// when `sec1`) and `dir/NAME.pem`, subject `CN=NAME`.
pub fn p256_keypair(dir: &Path, name: &str, sec1: bool) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pem")));
    let mut genkey = Command::new("openssl");
    if sec1 {
        genkey.args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]);
    } else {
        genkey.args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"]);
    }
    run(genkey.arg(&key)).expect_code(0);
    let mut req = Command::new("openssl");
    req.args(["req", "-x509", "-new", "-days", "3650", "-subj", &format!("/CN={name}"), "-key"]);
    run(req.arg(&key).arg("-out").arg(&cert)).expect_code(0);
    (key, cert)
}
