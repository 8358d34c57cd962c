//! What is on the node: the host's os-release and architecture, the extensions linked for
//! merging, the images staged, and whether an image may be merged on this host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::image::inspect::{self, Inspection};
use crate::model::Arch;
use crate::model::extension_release::parse_env;
use crate::pipeline::validate;

/// Where systemd-sysext looks for images bakery manages (in this order).
pub const LINK_DIRS: [&str; 2] = ["etc/extensions", "var/lib/extensions"];
/// Where staged images live, one directory per extension.
pub const STAGING: &str = "opt/extensions";

/// The host as systemd-sysext compares images against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    pub version_id: Option<String>,
    pub sysext_level: Option<String>,
    pub arch: Arch,
    /// The root whose `verity.d` certificates verify DDI signatures.
    pub root: PathBuf,
    /// `require_signed` of the node config: only DDIs with a verified signature pass [`check`].
    pub require_signed: bool,
    /// The image policy systemd-sysext merges with ([`super::sysext::merge_policy`]).
    pub image_policy: Option<&'static str>,
}

impl Host {
    /// The architecture this bakery runs on.
    pub fn machine_arch() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::X86_64,
        }
    }

    /// `<root>/etc/os-release` (else `usr/lib/os-release`) and the machine's architecture.
    pub fn read(root: &Path) -> Result<Self> {
        let candidates = [root.join("etc/os-release"), root.join("usr/lib/os-release")];
        let path = candidates.iter().find(|p| p.exists()).cloned().with_context(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!("no os-release under {}: looked at {}", root.display(), looked.join(" and "))
        })?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let fields = parse_env(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let arch = Self::machine_arch();
        Ok(Host {
            id: fields.get("ID").cloned().unwrap_or_else(|| "linux".to_string()),
            version_id: fields.get("VERSION_ID").cloned(),
            sysext_level: fields.get("SYSEXT_LEVEL").cloned(),
            arch,
            root: root.to_path_buf(),
            require_signed: false,
            image_policy: None,
        })
    }
}

/// The systemd version of the root, from its `libsystemd-shared-NNN.so` (Debian, Fedora and
/// Flatcar name it so), when it can be told.
pub fn systemd_version(root: &Path) -> Option<u32> {
    let mut dirs = vec![root.join("usr/lib/systemd"), root.join("usr/lib64/systemd")];
    if let Ok(entries) = std::fs::read_dir(root.join("usr/lib")) {
        dirs.extend(entries.flatten().map(|e| e.path().join("systemd")));
    }
    dirs.iter().filter_map(|d| std::fs::read_dir(d).ok()).flatten().flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let version = name.strip_prefix("libsystemd-shared-")?;
        let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// An extension linked for merging: `<dir>/<name>.raw`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub name: String,
    /// The link (or file) on disk.
    pub link: PathBuf,
    /// The image on disk it resolves to.
    pub image: PathBuf,
    /// The image's path on the node (`/opt/extensions/...`).
    pub node_image: String,
    pub is_symlink: bool,
}

/// Maps a node path (`/opt/...`) below `root`, links resolved inside it ([`super::root`]).
pub fn on_disk(root: &Path, node_path: &str) -> PathBuf {
    super::root::on_disk(root, node_path)
}

/// Every `*.raw` in the link directories, the first one of a name winning like in systemd.
pub fn linked(root: &Path) -> Result<Vec<Linked>> {
    let mut found: BTreeMap<String, Linked> = BTreeMap::new();
    for dir in LINK_DIRS {
        let on_disk_dir = super::root::resolve(root, dir)?;
        let Ok(entries) = std::fs::read_dir(&on_disk_dir) else { continue };
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for file in names {
            let Some(name) = file.strip_suffix(".raw").filter(|n| !n.is_empty() && !n.starts_with('.')) else {
                continue;
            };
            if found.contains_key(name) {
                continue;
            }
            let link = on_disk_dir.join(&file);
            let metadata = std::fs::symlink_metadata(&link)?;
            let (node_image, is_symlink) = if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&link)?;
                // systemd-sysupdate writes relative links (../../opt/extensions/...)
                let target = crate::sysupdate::update::normalize(&Path::new("/").join(dir).join(target));
                (target.to_string_lossy().into_owned(), true)
            } else {
                (format!("/{dir}/{file}"), false)
            };
            let image = on_disk(root, &node_image);
            found.insert(name.to_string(), Linked { name: name.to_string(), link, image, node_image, is_symlink });
        }
    }
    Ok(found.into_values().collect())
}

/// An image checked for this host.
#[derive(Clone, Debug)]
pub struct Checked {
    pub inspection: Inspection,
    /// `SYSEXT_VERSION_ID`, else the manifest's version.
    pub version: String,
    pub restart_units: Vec<String>,
}

/// Whether `image` may be merged as `name` on `host`: readable, a valid sysext for that name,
/// for this architecture and OS. The error says why not.
pub fn check(image: &Path, name: &str, host: &Host) -> Result<Checked, String> {
    if !image.exists() {
        return Err(format!("{} does not exist", image.display()));
    }
    // Callers name the image already: keep only what is wrong with it.
    let prefix = format!("{}: ", image.display());
    let file_name = image.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let trust = inspect::Trust::Root(host.root.clone());
    let inspection = inspect::inspect_with(image, file_name, &trust).map_err(|e| {
        let why = crate::error::describe(&e);
        why.strip_prefix(&prefix).map(str::to_string).unwrap_or(why)
    })?;
    let errors: Vec<String> = validate::errors(&inspection.findings).iter().map(|f| f.describe()).collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if host.require_signed {
        signed(&inspection)?;
    }
    let release = inspection.extension_release.as_ref().ok_or("no extension-release")?;
    let fields = &release.fields;
    let release_name = release.path.rsplit("extension-release.").next().unwrap_or_default();
    let named_right =
        release_name == name || (release.relaxed && fields.get("SYSEXT_ID").map(String::as_str) == Some(name));
    if !named_right {
        return Err(format!("its extension-release is for {release_name}, but it is linked as {name}.raw"));
    }
    if let Some(arch) = fields.get("ARCHITECTURE")
        && arch.parse::<Arch>().ok() != Some(host.arch)
    {
        return Err(format!("it is built for ARCHITECTURE={arch}, the host is {}", host.arch));
    }
    match fields.get("ID").map(String::as_str) {
        Some("_any") => {}
        Some(id) if id != host.id => return Err(format!("it is built for ID={id}, the host is ID={}", host.id)),
        Some(_) => match (fields.get("SYSEXT_LEVEL"), fields.get("VERSION_ID")) {
            (Some(level), _) if Some(level) != host.sysext_level.as_ref() => {
                return Err(format!("SYSEXT_LEVEL={level} does not match the host's {:?}", host.sysext_level));
            }
            (None, Some(version)) if Some(version) != host.version_id.as_ref() => {
                return Err(format!("VERSION_ID={version} does not match the host's {:?}", host.version_id));
            }
            _ => {}
        },
        None => return Err("its extension-release has no ID=".to_string()),
    }
    let version = fields
        .get("SYSEXT_VERSION_ID")
        .cloned()
        .or_else(|| inspection.manifest.as_ref().map(|m| m.version.clone()))
        .ok_or("it names no version (SYSEXT_VERSION_ID=)")?;
    let restart_units = inspection.manifest.as_ref().map(|m| m.restart_units.clone()).unwrap_or_default();
    Ok(Checked { inspection, version, restart_units })
}

/// Whether `inspection` is of a DDI whose signature a trusted certificate verified, as
/// `require_signed = true` demands; the error says why not.
pub fn signed(inspection: &Inspection) -> Result<(), String> {
    match &inspection.ddi {
        None => Err("it is not a signed DDI, and the node config says require_signed = true".into()),
        Some(ddi) if !ddi.signed() => {
            let why = match &ddi.signature {
                None => "it has no verity signature".to_string(),
                Some(s) => s.rejected.clone().unwrap_or_else(|| "its signature is not verified".into()),
            };
            Err(format!("{why}, and the node config says require_signed = true"))
        }
        Some(_) => Ok(()),
    }
}

/// Images staged for `name` in `/opt/extensions/<name>`, as node paths.
pub fn staged(root: &Path, name: &str) -> Vec<String> {
    images_in(root, &format!("{STAGING}/{name}"))
}

/// The `*.raw` images (not hidden) in the node directory `dir` (relative to the root), as node
/// paths, sorted.
pub fn images_in(root: &Path, dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(on_disk(root, dir)) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".raw") && !f.starts_with('.'))
        .map(|f| format!("/{dir}/{f}"))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_below_the_root_and_etc_wins() {
        let root = tempfile::tempdir().unwrap();
        for dir in LINK_DIRS {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("opt/extensions/demo")).unwrap();
        std::os::unix::fs::symlink(
            "/opt/extensions/demo/demo-v1-x86-64.raw",
            root.path().join("etc/extensions/demo.raw"),
        )
        .unwrap();
        std::fs::write(root.path().join("var/lib/extensions/demo.raw"), b"shadowed").unwrap();
        std::fs::write(root.path().join("var/lib/extensions/other.raw"), b"file").unwrap();
        std::os::unix::fs::symlink(
            "../../opt/extensions/rel/rel-v1-x86-64.raw",
            root.path().join("etc/extensions/rel.raw"),
        )
        .unwrap();
        let found = linked(root.path()).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].node_image, "/opt/extensions/demo/demo-v1-x86-64.raw");
        assert_eq!(found[0].image, root.path().join("opt/extensions/demo/demo-v1-x86-64.raw"));
        assert!(found[0].is_symlink);
        assert_eq!(found[1].node_image, "/var/lib/extensions/other.raw");
        assert!(!found[1].is_symlink);
        assert_eq!(found[2].node_image, "/opt/extensions/rel/rel-v1-x86-64.raw", "relative, as sysupdate links");
    }
}
