//! `bakery butane`: a Flatcar node config that provisions images from a release: the image
//! downloaded with its sha256 checked, linked into `/etc/extensions`, systemd-sysupdate set up to
//! follow patch releases (with the release's public key when it verifies signatures), and the
//! node refresh run after each update. One model renders both the Butane YAML (template
//! `butane/flatcar.bu`) and the Ignition JSON Butane would produce.

pub mod ignition;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::{bad_input, describe};
use crate::model::{Arch, ExtName, ExtVersion, Sha256};
use crate::pipeline::publish::{self, SUMS_FILE};
use crate::pipeline::render::Renderer;
use crate::release::{PUBLIC_KEY_FILE, SIGNATURE_FILE, transfers};
use crate::sysupdate::pattern::{extension_pattern, minor_pattern, minor_prefix};
use crate::sysupdate::transfer::{Suffix, TransferSpec};

/// Butane's flatcar variant versions and the Ignition spec each translates to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ButaneVersion {
    #[default]
    V1_0_0,
    V1_1_0,
}

impl ButaneVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ButaneVersion::V1_0_0 => "1.0.0",
            ButaneVersion::V1_1_0 => "1.1.0",
        }
    }

    pub fn ignition(self) -> &'static str {
        match self {
            ButaneVersion::V1_0_0 => "3.3.0",
            ButaneVersion::V1_1_0 => "3.4.0",
        }
    }
}

impl std::str::FromStr for ButaneVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.0.0" => Ok(ButaneVersion::V1_0_0),
            "1.1.0" => Ok(ButaneVersion::V1_1_0),
            other => Err(format!("butane flatcar version {other:?} is not supported: 1.0.0 or 1.1.0")),
        }
    }
}

/// What to provision.
#[derive(Clone, Debug)]
pub struct Request {
    /// The extensions and versions, all for `arch`.
    pub images: Vec<(ExtName, ExtVersion)>,
    pub arch: Arch,
    /// Where the release is served.
    pub base_url: String,
    pub butane_version: ButaneVersion,
    /// Where the images' SHA256SUMS (or the images) are, with its signature and public key.
    pub dir: PathBuf,
    /// Transfer files say Verify=yes: the release must be signed, and its key is installed.
    pub verify: bool,
    pub suffix: Suffix,
    /// bakery itself for `/opt/bin/bakery`: a URL and the binary's sha256.
    pub bakery: Option<(String, Sha256)>,
}

/// A file written with inline contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub path: String,
    pub contents: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeExtension {
    pub name: String,
    pub version: String,
    /// `/opt/extensions/<ext>`
    pub dir: String,
    /// The image on the node.
    pub path: String,
    pub url: String,
    pub sha256: String,
    /// `/etc/extensions/<ext>.raw`
    pub link: String,
    /// The transfer following this version's patch releases.
    pub transfer: InlineFile,
}

/// A binary file written from a `data:;base64,` URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataFile {
    pub path: String,
    pub mode: u32,
    pub source: String,
}

/// A file downloaded to the node and checked against its sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub path: String,
    pub mode: u32,
    pub url: String,
    pub sha256: String,
}

/// Everything the node config holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    pub generator: String,
    pub butane_version: String,
    pub ignition_version: String,
    pub arch: Arch,
    pub base_url: String,
    /// Directories created with mode 0755: `/etc/extensions` (a fresh systemd 257 node lacks it,
    /// and systemd-sysupdate cannot create its `CurrentSymlink` there) and each image's.
    pub directories: Vec<String>,
    pub extensions: Vec<NodeExtension>,
    pub noop: InlineFile,
    /// The release's public key as `/etc/systemd/import-pubring.gpg`, when transfers verify.
    pub keyring: Option<DataFile>,
    /// bakery installed as `/opt/bin/bakery`, where `bakery-refresh.service` looks first.
    pub bakery: Option<RemoteFile>,
    /// Each extension's verity certificate from the release (`<ext>.crt`) as
    /// `/etc/verity.d/<ext>.crt`, where systemd and bakery's node look for it.
    pub certificates: Vec<InlineFile>,
    pub units: Vec<UnitConfig>,
}

/// A systemd unit the config installs, enables or extends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitConfig {
    pub name: String,
    pub enabled: Option<bool>,
    pub contents: Option<String>,
    pub dropins: Vec<InlineFile>,
}

/// Builds the node config; each image's sha256 comes from `dir/SHA256SUMS` or the image itself.
/// With `verify`, the release must be signed and its public key is installed on the node.
pub fn plan(request: &Request) -> Result<NodeConfig> {
    let base_url = crate::release::base_url(&request.base_url)?;
    let keyring = if request.verify {
        let source = ignition::base64_data_url(&release_key(&request.dir)?);
        // systemd-pull (systemd-sysupdate) looks for the keys under this name only
        Some(DataFile { path: format!("/{}", crate::sysupdate::update::KEYRING), mode: 0o644, source })
    } else {
        None
    };
    let sums = publish::read_sums(&request.dir)?;
    let ext = request.suffix.extension();
    let mut extensions = Vec::new();
    for (name, version) in &request.images {
        let image = format!("{name}-{version}-{}.raw", request.arch);
        let sha256 = match sums.get(&image) {
            Some(digest) => digest.to_string(),
            None => digest_of(&request.dir, &image)?,
        };
        let pattern = match minor_prefix(version.as_str()) {
            Some(minor) => minor_pattern(name.as_str(), &minor),
            None => extension_pattern(name.as_str()),
        };
        let spec = TransferSpec {
            name: name.to_string(),
            base_url: base_url.clone(),
            description: format!("{name}: releases matching {pattern}"),
            pattern,
            verify: request.verify,
            instances_max: 3,
        };
        let dir = format!("/opt/extensions/{name}");
        extensions.push(NodeExtension {
            path: format!("{dir}/{image}"),
            url: format!("{base_url}/{image}"),
            sha256,
            link: format!("/etc/extensions/{name}.raw"),
            transfer: InlineFile { path: format!("/etc/sysupdate.{name}.d/{name}.{ext}"), contents: spec.render()? },
            name: name.to_string(),
            version: version.to_string(),
            dir,
        });
    }
    let bakery = match &request.bakery {
        Some((url, sha256)) => Some(RemoteFile {
            path: "/opt/bin/bakery".into(),
            mode: 0o755,
            url: binary_url(url)?,
            sha256: sha256.to_string(),
        }),
        None => None,
    };
    let mut certificates = Vec::new();
    for (name, _) in &request.images {
        if let Some(pem) = release_cert(&request.dir, name.as_str(), &sums, request.verify)? {
            certificates.push(InlineFile { path: format!("/etc/verity.d/{name}.crt"), contents: pem });
        }
    }
    let (noop_name, noop) = transfers::noop(request.suffix);
    Ok(NodeConfig {
        generator: crate::pipeline::create::GENERATOR.to_string(),
        butane_version: request.butane_version.as_str().to_string(),
        ignition_version: request.butane_version.ignition().to_string(),
        arch: request.arch,
        base_url,
        directories: std::iter::once("/etc/extensions".to_string())
            .chain(extensions.iter().map(|e| e.dir.clone()))
            .collect(),
        units: units(&extensions),
        extensions,
        noop: InlineFile { path: format!("/etc/sysupdate.d/{noop_name}"), contents: noop },
        keyring,
        bakery,
        certificates,
    })
}

/// The verity certificate `bakery release` published for `name` (`dir/<name>.crt`), if any. It
/// must be a PEM certificate and, when `SHA256SUMS` lists it (a signed release always does),
/// match its line: the node would otherwise trust a key the release never signed for.
fn release_cert(dir: &Path, name: &str, sums: &crate::model::sums::Sha256Sums, verify: bool) -> Result<Option<String>> {
    let file = format!("{name}.crt");
    let path = dir.join(&file);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    crate::ddi::read::sig::load_pem(&path).map_err(|e| bad_input(format!("{e:#}")))?;
    let digest = Sha256::of(&bytes);
    match sums.get(&file) {
        Some(listed) if *listed == digest => {}
        Some(listed) => {
            return Err(bad_input(format!(
                "{} has sha256 {digest}, but {SUMS_FILE} lists {listed}: re-run `bakery release {}`",
                path.display(),
                dir.display()
            )));
        }
        None if verify => {
            return Err(bad_input(format!(
                "{} is not listed in {SUMS_FILE}, so its signature does not cover it: re-run `bakery release {}`",
                path.display(),
                dir.display()
            )));
        }
        None => {}
    }
    let pem = String::from_utf8(bytes).map_err(|_| bad_input(format!("{} is not PEM text", path.display())))?;
    Ok(Some(pem))
}

/// The public key of the signed release in `dir`, refused when the release is unsigned, and, where
/// gpgv or gpg is installed, when `SHA256SUMS.gpg` does not verify with it: on the node, every
/// update would then fail.
fn release_key(dir: &Path) -> Result<Vec<u8>> {
    let missing: Vec<String> = [SIGNATURE_FILE, PUBLIC_KEY_FILE]
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| format!("no {f}"))
        .collect();
    if !missing.is_empty() {
        return Err(bad_input(format!(
            "transfer files say Verify=yes, but {} has {}: sign the release (`bakery release {} --sign-key KEY` writes both), or pass --allow-unsigned for Verify=no",
            dir.display(),
            missing.join(" and "),
            dir.display()
        )));
    }
    let key_path = dir.join(PUBLIC_KEY_FILE);
    let key = std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    if key.is_empty() {
        return Err(bad_input(format!("{} is empty: re-run `bakery release --sign-key KEY`", key_path.display())));
    }
    if ["gpgv", "gpg"].iter().any(|p| crate::util::find_program(p).is_some()) {
        crate::util::gpg::verify_detached(&key_path, &dir.join(SUMS_FILE), &dir.join(SIGNATURE_FILE)).map_err(|e| {
            bad_input(format!(
                "{}: every update on the node would fail; re-sign with `bakery release {} --sign-key KEY`",
                describe(&e),
                dir.display()
            ))
        })?;
    } else {
        tracing::warn!(
            "neither gpgv nor gpg is installed: not checking that {SIGNATURE_FILE} verifies with {PUBLIC_KEY_FILE}"
        );
    }
    Ok(key)
}

/// The URL Ignition downloads bakery from: https, or http (the sha256 still protects it).
fn binary_url(url: &str) -> Result<String> {
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).and_then(|r| r.split('/').next());
    if host.is_none_or(str::is_empty) || url.ends_with('/') || url.chars().any(char::is_whitespace) {
        return Err(bad_input(format!(
            "--bakery-url {url:?} is not the http(s) URL of a file, e.g. https://example.org/bin/bakery"
        )));
    }
    Ok(url.to_string())
}

fn digest_of(dir: &Path, image: &str) -> Result<String> {
    let path = dir.join(image);
    if !path.is_file() {
        return Err(bad_input(format!(
            "no sha256 for {image}: {} has no SHA256SUMS line for it and no such image (build it there or pass --dir)",
            dir.display()
        )));
    }
    Ok(publish::hash_file(&path)?.0.to_string())
}

/// The shipped `units/` (bakery-refresh.service, the systemd-sysupdate.service drop-in that starts
/// it), the timer enabled, and a drop-in that updates each extension's sysupdate component.
fn units(extensions: &[NodeExtension]) -> Vec<UnitConfig> {
    let mut components = String::from("# Update each extension's component (/etc/sysupdate.<ext>.d).\n[Service]\n");
    for e in extensions {
        components.push_str(&format!("ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {} update\n", e.name));
    }
    let refresh_dropin = "10-bakery-refresh.conf";
    vec![
        UnitConfig {
            name: "bakery-refresh.service".into(),
            enabled: None,
            contents: Some(crate::assets::unit("bakery-refresh.service").to_string()),
            dropins: vec![],
        },
        UnitConfig { name: "systemd-sysupdate.timer".into(), enabled: Some(true), contents: None, dropins: vec![] },
        UnitConfig {
            name: "systemd-sysupdate.service".into(),
            enabled: None,
            contents: None,
            dropins: vec![
                InlineFile {
                    path: refresh_dropin.into(),
                    contents: crate::assets::unit(&format!("systemd-sysupdate.service.d/{refresh_dropin}")).to_string(),
                },
                InlineFile { path: "20-bakery-components.conf".into(), contents: components },
            ],
        },
    ]
}

/// The Butane YAML.
pub fn to_butane(config: &NodeConfig) -> Result<String> {
    Renderer::default().render("butane/flatcar.bu", crate::assets::butane("flatcar.bu"), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn butane_versions_map_to_ignition_specs() {
        assert_eq!("1.0.0".parse::<ButaneVersion>().unwrap().ignition(), "3.3.0");
        assert_eq!("1.1.0".parse::<ButaneVersion>().unwrap().ignition(), "3.4.0");
        assert!("2.0.0".parse::<ButaneVersion>().is_err());
    }
}
