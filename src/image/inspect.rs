//! `bakery inspect IMAGE`: extension-release, manifest, files and validation findings of a
//! SquashFS sysext image, read with backhand (plus bakery's own xattr reader).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};
use serde::Serialize;

use crate::error::bad_input;
use crate::model::extension_release::{self, STRICT_XATTR};
use crate::model::{Arch, ImagePath, Manifest};
use crate::pipeline::validate::{self, Entry, EntryKind, Expect, Finding, ImageView, ReleaseFile};
use crate::squashfs::format::{NO_INDEX, NOT_SET, SuperBlock};
use crate::squashfs::xattr;

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
    pub compression: String,
    pub block_size: u32,
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

const COMPRESSORS: [(u16, &str); 4] = [(1, "gzip"), (4, "xz"), (5, "lz4"), (6, "zstd")];

/// Reads `path` and validates it against what its file name promises.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata()?.len();
    let superblock = SuperBlock::read_from(&mut file).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
    file.seek(std::io::SeekFrom::Start(0))?; // the clone below shares this file offset
    let reader = FilesystemReader::from_reader(BufReader::new(file.try_clone()?))
        .map_err(|e| bad_input(format!("{}: not a readable SquashFS image: {e}", path.display())))?;

    let mut view = ImageView::default();
    let mut manifest = None;
    let mut release_paths = BTreeMap::new();
    for node in reader.files() {
        let Some(image_path) = node.fullpath.to_str().and_then(|p| ImagePath::parse(p).ok()) else { continue };
        let mode = node.header.permissions;
        let kind = match &node.inner {
            InnerNode::Dir(_) => EntryKind::Dir { mode },
            InnerNode::Symlink(link) => EntryKind::Symlink { target: link.link.to_string_lossy().into_owned() },
            InnerNode::File(data) => {
                if let Some(name) = validate::release_name(&image_path) {
                    let text = String::from_utf8_lossy(&read_file(&reader, data)?).into_owned();
                    let relaxed = file_xattrs(&mut file, &superblock, data)?
                        .iter()
                        .any(|(k, v)| k == STRICT_XATTR && v == b"false");
                    release_paths.insert(name.to_string(), image_path.to_string());
                    view.releases.push(ReleaseFile { name: name.to_string(), text, relaxed });
                } else if image_path.as_str().starts_with("usr/lib/bakery/")
                    && image_path.as_str().ends_with(".json")
                    && manifest.is_none()
                {
                    manifest = Manifest::from_json(&String::from_utf8_lossy(&read_file(&reader, data)?)).ok();
                }
                EntryKind::File { mode, size: data.file_len() as u64 }
            }
            _ => EntryKind::File { mode, size: 0 },
        };
        view.entries.push(Entry { path: image_path, kind });
    }

    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (expect, name_findings) = expectations(file_name, &view.releases);
    let mut findings = validate::check(&view, &expect);
    findings.extend(name_findings);
    findings.sort_by_key(|f| f.severity);

    let extension_release =
        expect.name.as_ref().and_then(|n| view.releases.iter().find(|r| &r.name == n)).or(view.releases.first()).map(
            |release| ReleaseInfo {
                path: release_paths[&release.name].clone(),
                fields: extension_release::parse_env(&release.text).unwrap_or_default(),
                relaxed: release.relaxed,
            },
        );
    let compression = COMPRESSORS.iter().find(|(id, _)| *id == superblock.compressor).map(|(_, n)| n.to_string());
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
        compression: compression.unwrap_or_else(|| format!("compressor {}", superblock.compressor)),
        block_size: superblock.block_size,
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
    if releases.iter().any(|r| r.relaxed) || releases.is_empty() {
        return (Expect::default(), vec![]);
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

fn read_file(reader: &FilesystemReader, data: &SquashfsFileReader) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.file(data).reader().read_to_end(&mut bytes).context("reading a file from the image")?;
    Ok(bytes)
}

fn file_xattrs(file: &mut File, superblock: &SuperBlock, data: &SquashfsFileReader) -> Result<Vec<(String, Vec<u8>)>> {
    let index = match data {
        SquashfsFileReader::Extended(extended) => extended.xattr_index,
        SquashfsFileReader::Basic(_) => NO_INDEX,
    };
    if index == NO_INDEX || superblock.xattr_table == NOT_SET {
        return Ok(Vec::new());
    }
    xattr::read_set(file, superblock.compressor, superblock.xattr_table, index)
        .map_err(|e| anyhow!("reading xattrs: {e:#}"))
}

/// The human-readable report.
pub fn render(inspection: &Inspection) -> String {
    let mut out = String::new();
    let human = crate::util::human_bytes;
    out.push_str(&format!(
        "image:     {} ({}, {}, {} KiB blocks)\n",
        inspection.image,
        human(inspection.size),
        inspection.compression,
        inspection.block_size / 1024
    ));
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
            EntryKind::File { mode, size } => format!("  -{}  {:>10}  {}", permissions(*mode), size, entry.path),
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
    }
}
