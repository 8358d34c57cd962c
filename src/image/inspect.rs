//! `bakery inspect IMAGE`: extension-release, manifest, files and validation findings of a
//! SquashFS or EROFS sysext image, read with the strict reader of its format (`image::read`), plus the policy checks
//! that need the manifest: setuid files, xattrs, and every file's digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ddi::read as ddi;
use crate::error::bad_input;
use crate::image::read::{self, Limits};
use crate::model::Format;
use crate::model::extension_release::{self, STRICT_XATTR};
use crate::model::{Arch, ImagePath, Manifest};
use crate::pipeline::validate::{self, Entry, EntryKind, Expect, Finding, ImageView, ReleaseFile, Severity};

/// Where bakery's manifests live in an image.
const MANIFEST_DIR: &str = "usr/lib/bakery/";

/// What a versioned file name (`<ext>-<version>-<arch>.raw`) says the image is, when it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub extension: String,
    pub version: String,
    pub arch: Arch,
}

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub image: String,
    /// Set when the file name is `<ext>-<version>-<arch>.raw` for the image's extension-release.
    pub identity: Option<Identity>,
    pub size: u64,
    pub format: Format,
    pub compression: String,
    pub block_size: u32,
    /// The filesystem UUID (EROFS), hyphenated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Set for a DDI: its partitions, root hash and signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddi: Option<DdiInfo>,
    pub extension_release: Option<ReleaseInfo>,
    pub manifest: Option<Manifest>,
    pub files: Vec<Entry>,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReleaseInfo {
    pub path: String,
    pub fields: BTreeMap<String, String>,
    /// `user.extension-release.strict=false` is set: the image merges under any file name.
    pub relaxed: bool,
}

/// A DDI's verified structure, as `inspect` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DdiInfo {
    pub arch: Arch,
    pub sector_size: u64,
    pub partitions: Vec<ddi::Partition>,
    pub root_hash: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub salt: String,
    /// None: the image has no signature partition.
    pub signature: Option<ddi::Signature>,
}

impl DdiInfo {
    /// The signature verifies against a trusted certificate.
    pub fn signed(&self) -> bool {
        self.signature.as_ref().is_some_and(|s| s.signer.is_some())
    }
}

/// Which certificates verify a DDI's signature.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Those in the `verity.d` directories below this root, as systemd looks for them.
    Root(PathBuf),
    /// These PEM files.
    Files(Vec<PathBuf>),
}

impl Trust {
    pub fn load(&self) -> Result<Vec<ddi::sig::Trusted>> {
        match self {
            Trust::Root(root) => ddi::sig::trusted(root),
            Trust::Files(files) => {
                files.iter().map(|f| ddi::sig::load_pem(f)).collect::<Result<Vec<_>>>().map(|v| v.concat())
            }
        }
    }
}

/// Most bytes of an extension-release file and of a manifest bakery reads.
const RELEASE_CAP: usize = 64 << 10;
const MANIFEST_CAP: usize = 4 << 20;

/// Reads `path` with the strict reader and validates it against what its file name promises.
/// An image the reader refuses is bad input; what it accepts gets findings.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    inspect_as(path, &file_name)
}

/// [`inspect`] for an image that will be named `file_name` (a download not yet renamed).
pub fn inspect_as(path: &Path, file_name: &str) -> Result<Inspection> {
    inspect_with(path, file_name, &Trust::Root(PathBuf::from("/")))
}

/// [`inspect_as`] with a DDI's signature checked against `trust`.
pub fn inspect_with(path: &Path, file_name: &str, trust: &Trust) -> Result<Inspection> {
    let size = std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?.len();
    let keep = |p: &str| {
        let p = ImagePath::parse(p).ok()?;
        if validate::release_name(&p).is_some() {
            Some(RELEASE_CAP)
        } else if p.as_str().starts_with(MANIFEST_DIR) && p.as_str().ends_with(".json") {
            Some(MANIFEST_CAP)
        } else {
            None
        }
    };
    // A download not yet renamed is named by what it will be, not by its temporary file.
    let shown = match path.file_name().and_then(|n| n.to_str()) {
        Some(name) if name == file_name => path.display().to_string(),
        _ => file_name.to_string(),
    };
    let invalid = |e: anyhow::Error| bad_input(format!("{shown}: not a valid sysext image: {e:#}"));
    let (verified, ddi) = if read::is_gpt(path)? {
        let ddi = ddi::open(path, &trust.load()?).map_err(invalid)?;
        let info = DdiInfo {
            arch: ddi.arch,
            sector_size: ddi.sector_size,
            partitions: ddi.partitions.clone(),
            root_hash: ddi.root_hash.clone(),
            data_block_size: ddi.verity.data_block_size,
            hash_block_size: ddi.verity.hash_block_size,
            salt: ddi::sig::hex(&ddi.verity.salt),
            signature: ddi.signature.clone(),
        };
        (read::verify_span(ddi.data, &Limits::default(), &keep).map_err(invalid)?, Some(info))
    } else {
        (read::verify(path, &Limits::default(), &keep).map_err(invalid)?, None)
    };

    let mut view = ImageView::default();
    let mut manifest: Option<(String, Manifest)> = None;
    let mut release_paths = BTreeMap::new();
    let mut policy = Vec::new();
    for entry in &verified.entries {
        let image_path = ImagePath::parse(&entry.path)
            .map_err(|e| bad_input(format!("{}: /{}: {e}", path.display(), entry.path)))?;
        let kind = match &entry.kind {
            read::Kind::Dir => EntryKind::Dir { mode: entry.mode },
            read::Kind::Symlink { target } => EntryKind::Symlink { target: target.clone() },
            read::Kind::File { size, sha256 } => {
                if let Some(name) = validate::release_name(&image_path) {
                    let text = String::from_utf8_lossy(&verified.kept[&entry.path]).into_owned();
                    let relaxed = entry.xattrs.iter().any(|(k, v)| k == STRICT_XATTR && v == b"false");
                    release_paths.insert(name.to_string(), image_path.to_string());
                    view.releases.push(ReleaseFile { name: name.to_string(), text, relaxed });
                } else if let Some(bytes) = verified.kept.get(&entry.path)
                    && manifest.is_none()
                {
                    match Manifest::from_json(&String::from_utf8_lossy(bytes)) {
                        Ok(m) => manifest = Some((entry.path.clone(), m)),
                        Err(e) => policy.push(error(&image_path, format!("not a bakery manifest: {e}"))),
                    }
                }
                EntryKind::File { mode: entry.mode, size: *size, sha256: Some(*sha256) }
            }
        };
        policy.extend(xattr_findings(&image_path, entry));
        view.entries.push(Entry { path: image_path, kind });
    }
    policy.extend(digest_findings(&verified.entries, manifest.as_ref()));
    let manifest = manifest.map(|(_, m)| m);
    let (expect, name_findings) = expectations(file_name, &view.releases);
    let mut findings = validate::check(&view, &expect);
    findings.extend(name_findings);
    findings.extend(policy);
    findings.extend(ddi.as_ref().and_then(signature_finding));
    findings.sort_by_key(|f| f.severity);

    let extension_release =
        expect.name.as_ref().and_then(|n| view.releases.iter().find(|r| &r.name == n)).or(view.releases.first()).map(
            |release| ReleaseInfo {
                path: release_paths[&release.name].clone(),
                fields: extension_release::parse_env(&release.text).unwrap_or_default(),
                relaxed: release.relaxed,
            },
        );
    let identity = match (&expect.name, &expect.version, expect.arch) {
        (Some(extension), Some(version), Some(arch)) => {
            Some(Identity { extension: extension.clone(), version: version.clone(), arch })
        }
        _ => None,
    };
    Ok(Inspection {
        image: path.display().to_string(),
        identity,
        size,
        format: verified.format,
        compression: verified.compression,
        block_size: verified.block_size,
        uuid: verified.uuid.map(|u| hyphenated(&u)),
        ddi,
        extension_release,
        manifest,
        files: view.entries,
        findings,
    })
}

/// What the file name says the image is: `<ext>.raw` or `<ext>-<version>-<arch>.raw`.
fn expectations(file_name: &str, releases: &[ReleaseFile]) -> (Expect, Vec<Finding>) {
    let stem = file_name.strip_suffix(".raw").unwrap_or(file_name);
    for release in releases {
        if stem == release.name {
            return (Expect { name: Some(release.name.clone()), ..Expect::default() }, vec![]);
        }
        let Some(rest) = stem.strip_prefix(&format!("{}-", release.name)) else { continue };
        for arch in Arch::ALL {
            if let Some(version) = rest.strip_suffix(&format!("-{arch}")).filter(|v| !v.is_empty()) {
                let expect = Expect {
                    name: Some(release.name.clone()),
                    version: Some(version.to_string()),
                    arch: Some(arch),
                    versioned_file_name: true,
                };
                return (expect, vec![]);
            }
        }
    }
    if releases.is_empty() {
        return (Expect::default(), vec![]);
    }
    if let Some(release) = releases.iter().find(|r| r.relaxed) {
        return (Expect::default(), foreign_name(file_name, stem, release).into_iter().collect());
    }
    let finding = Finding {
        severity: validate::Severity::Error,
        path: None,
        message: format!(
            "the file name {file_name} matches no extension-release file, and none carries {STRICT_XATTR}=false: systemd-sysext refuses it"
        ),
    };
    (Expect::default(), vec![finding])
}

/// A relaxed image (it merges under any name) whose file name is not its own: an error when
/// the name is `<ext>-<version>-<arch>.raw` for another extension, version or spelling (release
/// refuses it, and nodes and sysupdate go by the name), a warning otherwise.
fn foreign_name(file_name: &str, stem: &str, release: &ReleaseFile) -> Option<Finding> {
    let fields = extension_release::parse_env(&release.text).unwrap_or_default();
    let (version, arch) = (fields.get("SYSEXT_VERSION_ID"), fields.get("ARCHITECTURE"));
    let own = match (version, arch) {
        (Some(version), Some(arch)) => format!("{}-{version}-{arch}.raw", release.name),
        _ => format!("{}.raw", release.name),
    };
    let what = [Some(&release.name), version, arch].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ");
    let versioned = Arch::ALL.iter().any(|a| stem.ends_with(&format!("-{a}")))
        || ["amd64", "aarch64", "x86_64"].iter().any(|a| stem.ends_with(&format!("-{a}")));
    let (severity, message) = if versioned && stem.contains('-') {
        (
            Severity::Error,
            format!("the file name {file_name} names another image: this is {what}, named {own}; release refuses it"),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "the file name {file_name} is not this image's ({what}): it merges ({STRICT_XATTR}=false), but release and nodes expect {own}"
            ),
        )
    };
    Some(Finding { severity, path: None, message })
}

/// A signature that does not verify is an error (the image was changed, or signed wrongly); one
/// made by a certificate not installed here is a warning (the node may trust it).
fn signature_finding(ddi: &DdiInfo) -> Option<Finding> {
    let signature = ddi.signature.as_ref()?;
    let why = signature.rejected.as_ref()?;
    let severity = if signature.unknown_signer { Severity::Warning } else { Severity::Error };
    Some(Finding { severity, path: None, message: format!("the verity signature is not verified: {why}") })
}

fn error(path: &ImagePath, message: impl Into<String>) -> Finding {
    Finding { severity: Severity::Error, path: Some(path.to_string()), message: message.into() }
}

/// xattrs the kernel or overlayfs act on (`trusted.overlay.*` hides or redirects what is below,
/// `security.capability` grants privileges) are errors; bakery writes only the strict flag.
fn xattr_findings(path: &ImagePath, entry: &read::Entry) -> Vec<Finding> {
    entry
        .xattrs
        .iter()
        .filter(|(name, _)| {
            let release = validate::release_name(path).is_some() && name == STRICT_XATTR;
            !(release || name == "security.selinux")
        })
        .map(|(name, _)| error(path, format!("xattr {name} is not allowed in a sysext image")))
        .collect()
}

/// Every regular file's bytes must hash to what the manifest lists, every listed file must be
/// there, and only the files the manifest names may be setuid or setgid.
fn digest_findings(entries: &[read::Entry], manifest: Option<&(String, Manifest)>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let allowed: Vec<&str> = manifest.map(|(_, m)| m.setuid.iter().map(String::as_str).collect()).unwrap_or_default();
    for entry in entries {
        let Ok(path) = ImagePath::parse(&entry.path) else { continue };
        if entry.mode & 0o6000 != 0 && !allowed.contains(&entry.path.as_str()) {
            findings.push(error(
                &path,
                format!("mode {:04o} is setuid/setgid and the manifest does not allow it", entry.mode),
            ));
        }
    }
    let Some((manifest_path, manifest)) = manifest else {
        findings.push(Finding {
            severity: Severity::Warning,
            path: None,
            message: "no bakery manifest: the files' digests cannot be checked".into(),
        });
        return findings;
    };
    if manifest.files.is_empty() {
        findings.push(Finding {
            severity: Severity::Warning,
            path: Some(format!("/{manifest_path}")),
            message: format!(
                "manifest schema {} lists no file digests: the files' bytes cannot be checked",
                manifest.schema
            ),
        });
        return findings;
    }
    let mut listed: BTreeMap<&str, &crate::model::Sha256> =
        manifest.files.iter().map(|(p, d)| (p.as_str(), d)).collect();
    for entry in entries {
        let (read::Kind::File { sha256, .. }, Ok(path)) = (&entry.kind, ImagePath::parse(&entry.path)) else {
            continue;
        };
        if &entry.path == manifest_path {
            continue;
        }
        match listed.remove(entry.path.as_str()) {
            Some(expected) if expected == sha256 => {}
            Some(expected) => {
                findings.push(error(&path, format!("sha256 {sha256}, but the manifest lists {expected}")))
            }
            None => findings.push(error(&path, "a file the manifest does not list")),
        }
    }
    for missing in listed.keys() {
        findings.push(Finding {
            severity: Severity::Error,
            path: Some(format!("/{missing}")),
            message: "listed in the manifest, missing from the image".into(),
        });
    }
    findings
}

fn hyphenated(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The human-readable report.
pub fn render(inspection: &Inspection) -> String {
    let mut out = String::new();
    let human = crate::util::human_bytes;
    out.push_str(&format!(
        "image:     {} ({}, {} {}, {} KiB blocks)\n",
        inspection.image,
        human(inspection.size),
        inspection.format,
        inspection.compression,
        inspection.block_size / 1024
    ));
    if let Some(uuid) = &inspection.uuid {
        out.push_str(&format!("uuid:      {uuid}\n"));
    }
    if let Some(ddi) = &inspection.ddi {
        out.push_str(&format!("ddi:       {} GPT, {}-byte sectors\n", ddi.arch, ddi.sector_size));
        for p in &ddi.partitions {
            out.push_str(&format!(
                "           {} {:<15} {} {} bytes at {}\n",
                p.number,
                p.role.to_string(),
                p.uuid,
                p.size,
                p.offset
            ));
        }
        out.push_str(&format!(
            "root hash: {} (sha256, {}/{}-byte blocks)\n",
            ddi.root_hash, ddi.data_block_size, ddi.hash_block_size
        ));
        match &ddi.signature {
            None => out.push_str("signature: none\n"),
            Some(s) => match (&s.signer, &s.rejected) {
                (Some(signer), _) => out.push_str(&format!(
                    "signature: verified by {} ({}, sha256 {})\n",
                    signer.certificate, signer.subject, signer.fingerprint
                )),
                (None, why) => out.push_str(&format!(
                    "signature: NOT verified: {}{}\n",
                    why.as_deref().unwrap_or("unknown"),
                    s.claimed_fingerprint
                        .as_ref()
                        .map(|f| format!(" (claims certificate sha256 {f})"))
                        .unwrap_or_default()
                )),
            },
        }
    }
    match &inspection.extension_release {
        Some(release) => {
            let relaxed = if release.relaxed { format!(" ({STRICT_XATTR}=false)") } else { String::new() };
            out.push_str(&format!("release:   {}{relaxed}\n", release.path));
            for (key, value) in &release.fields {
                out.push_str(&format!("           {key}={value}\n"));
            }
        }
        None => out.push_str("release:   none\n"),
    }
    match &inspection.manifest {
        Some(manifest) => {
            out.push_str(&format!(
                "manifest:  {} {} {} ({})\n",
                manifest.extension, manifest.version, manifest.arch, manifest.generator
            ));
            for (key, value) in &manifest.options {
                out.push_str(&format!("           option {key}={value}\n"));
            }
            for artifact in &manifest.artifacts {
                out.push_str(&format!("           {} {} sha256:{}\n", artifact.name, artifact.url, artifact.sha256));
            }
        }
        None => out.push_str("manifest:  none\n"),
    }
    out.push_str(&format!("files:     {}\n", inspection.files.len()));
    for entry in &inspection.files {
        let line = match &entry.kind {
            EntryKind::Dir { mode } => format!("  d{}  {:>10}  {}/", permissions(*mode), "-", entry.path),
            EntryKind::File { mode, size, .. } => format!("  -{}  {:>10}  {}", permissions(*mode), size, entry.path),
            EntryKind::Symlink { target } => {
                format!("  l{}  {:>10}  {} -> {target}", permissions(0o777), "-", entry.path)
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    if inspection.findings.is_empty() {
        out.push_str("findings:  none\n");
    } else {
        out.push_str("findings:\n");
        for finding in &inspection.findings {
            out.push_str(&format!("  {finding}\n"));
        }
    }
    out
}

/// `rwxr-xr-x` with setuid/setgid/sticky shown like ls.
fn permissions(mode: u16) -> String {
    let bit = |mask: u16, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: bool, set: bool, lower: char, upper: char| match (exec, set) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'),
    ]
    .iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_like_ls() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o4755), "rwsr-xr-x");
        assert_eq!(permissions(0o1777), "rwxrwxrwt");
    }

    #[test]
    fn file_names_set_expectations() {
        let release = |relaxed| ReleaseFile { name: "cni-plugins".into(), text: String::new(), relaxed };
        let (expect, findings) = expectations("cni-plugins-v1.6.2-arm64.raw", &[release(true)]);
        assert_eq!(expect.version.as_deref(), Some("v1.6.2"));
        assert_eq!(expect.arch, Some(Arch::Arm64));
        assert!(findings.is_empty());
        let (expect, _) = expectations("cni-plugins.raw", &[release(false)]);
        assert_eq!(expect.name.as_deref(), Some("cni-plugins"));
        let (_, findings) = expectations("other.raw", &[release(false)]);
        assert_eq!(findings.len(), 1);
        let built = ReleaseFile {
            name: "kubernetes".into(),
            text: "SYSEXT_VERSION_ID=v1.32.0\nARCHITECTURE=x86-64\n".into(),
            relaxed: true,
        };
        let (_, findings) = expectations("crio-v1.32.0-x86-64.raw", std::slice::from_ref(&built));
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(findings[0].message.contains("this is kubernetes v1.32.0 x86-64, named kubernetes-v1.32.0-x86-64.raw"));
        let (_, findings) = expectations("kubernetes-v1.32.0-amd64.raw", std::slice::from_ref(&built));
        assert_eq!(findings[0].severity, Severity::Error, "{findings:?}");
        let (_, findings) = expectations("k8s.raw", &[built]);
        assert_eq!(findings[0].severity, Severity::Warning);
    }
}
