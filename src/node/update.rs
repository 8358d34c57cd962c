//! `bakery node update [EXT]`: what systemd-sysupdate does, for hosts without it, from the same
//! transfer files, chosen as the node's systemd chooses them (`sysupdate.d` and
//! `sysupdate.<ext>.d` in `/etc`, `/run`, `/usr/local/lib`, `/usr/lib`; `.transfer` before `.conf`
//! from 257 on), or from the node config's `release_url` and `follow`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::config::NodeConfig;
use super::observe::Host;
use super::records::Records;
use super::refresh::{self, Timing};
use super::systemd::Systemd;
use crate::model::Mirrors;
use crate::pipeline::http::Http;
use crate::pipeline::versions::looks_prerelease_any;
use crate::sysupdate::pattern::{extension_pattern, minor_prefix};
use crate::sysupdate::transfer::{self, Transfer, TransferSpec};
use crate::sysupdate::update::{self as sysupdate, KEYRING, Node, Policy, replace_symlink};

/// One transfer found on the node.
#[derive(Clone, Debug)]
pub struct Found {
    /// The extension it updates (`/etc/extensions/<ext>.raw`, else its component).
    pub extension: String,
    pub path: PathBuf,
    pub transfer: Transfer,
}

/// What an update did for one extension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Staged {
    pub extension: String,
    pub source: String,
    pub version: Option<String>,
    pub image: Option<String>,
    pub downloaded: bool,
    pub removed: Vec<String>,
}

/// Where systemd-sysupdate reads a component's transfer files, earlier directories overriding a
/// file of the same name in later ones.
const TRANSFER_DIRS: [&str; 4] = ["etc", "run", "usr/local/lib", "usr/lib"];

/// Why [`update`] found nothing to follow (its result is empty): where it looked.
pub fn nothing_followed(config: &NodeConfig) -> String {
    let dirs: Vec<String> = TRANSFER_DIRS.iter().map(|d| format!("/{d}/sysupdate.d")).collect();
    let transfers = format!("no url-file transfer in {} (or their sysupdate.<ext>.d)", dirs.join(", "));
    let config_file = format!("/{} (or /{}/*.toml)", super::config::FILE, super::config::DROPINS);
    match config.extensions.is_empty() {
        true => format!("{transfers}, and no [extensions.<ext>] in {config_file}"),
        false => format!("{transfers}, and {config_file} sets [extensions] but no release_url to fetch them from"),
    }
}

/// The transfer files systemd-sysupdate would read on this node, with `url-file` sources (the
/// noop transfer is not one), by component and file name. As in systemd-sysupdate 257, a
/// component with any `.transfer` file ignores its `.conf` files; systemd before 257 reads only
/// `.conf` (the version comes from the root's libsystemd-shared, else 257's rules apply).
pub fn transfers(root: &Path) -> Result<Vec<Found>> {
    let reads_transfer = super::observe::systemd_version(root).is_none_or(|v| v >= 257);
    let mut components: BTreeMap<Option<String>, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for base in TRANSFER_DIRS {
        let mut dirs: Vec<(PathBuf, Option<String>)> = vec![(root.join(base).join("sysupdate.d"), None)];
        if let Ok(entries) = std::fs::read_dir(root.join(base)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(component) = name.strip_prefix("sysupdate.").and_then(|n| n.strip_suffix(".d"))
                    && !component.is_empty()
                {
                    dirs.push((entry.path(), Some(component.to_string())));
                }
            }
        }
        for (dir, component) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let files = components.entry(component).or_default();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") || name.ends_with(".transfer") {
                    files.entry(name).or_insert_with(|| entry.path());
                }
            }
        }
    }
    let mut found = Vec::new();
    for (component, files) in components {
        let any_transfer = files.keys().any(|n| n.ends_with(".transfer"));
        let suffix = if reads_transfer && any_transfer { ".transfer" } else { ".conf" };
        for (_, path) in files.into_iter().filter(|(n, _)| n.ends_with(suffix)) {
            if suffix == ".conf" && reads_transfer {
                tracing::debug!("{}: as of systemd 257 transfer files should end in .transfer", path.display());
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let transfer =
                transfer::parse(&text).map_err(|e| crate::error::bad_input(format!("{}: {e}", path.display())))?;
            if transfer.source.get("Type") != Some("url-file") {
                tracing::debug!("{}: a regular-file source is systemd-sysupdate's, not bakery's", path.display());
                continue;
            }
            let from_link = transfer
                .current_symlink()
                .and_then(|l| Path::new(&l).file_name()?.to_str()?.strip_suffix(".raw").map(str::to_string));
            let extension = from_link.or_else(|| component.clone()).unwrap_or_else(|| "unknown".to_string());
            found.push(Found { extension, path, transfer });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// A transfer for an extension the node config follows without transfer files.
fn configured(config: &NodeConfig, name: &str, verify: bool) -> Result<Option<Found>> {
    let Some(base_url) = &config.release_url else { return Ok(None) };
    let spec = TransferSpec {
        name: name.to_string(),
        base_url: crate::release::base_url(base_url)?,
        pattern: extension_pattern(name),
        verify,
        instances_max: config.instances,
        description: format!("{name} from the node config"),
    };
    let transfer = transfer::parse(&spec.render()?)
        .map_err(|e| crate::error::bad_input(format!("the transfer for {name} from the node config: {e}")))?;
    Ok(Some(Found { extension: name.to_string(), path: PathBuf::from("/etc/bakery/node.toml"), transfer }))
}

/// Whether `version` is what `follow` asks for (`latest`, `1.32`, or exact, `v` optional).
pub fn follows(follow: &str, version: &str) -> bool {
    let bare = |v: &str| v.trim_start_matches(|c: char| !c.is_ascii_digit()).to_string();
    match follow {
        "latest" => !looks_prerelease_any(version),
        f if f.matches('.').count() == 1 => {
            !looks_prerelease_any(version) && minor_prefix(version).is_some_and(|m| bare(&m) == format!("{}.", bare(f)))
        }
        f => bare(f) == bare(version),
    }
}

/// An image downloaded for an exact version, its link not yet flipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub extension: String,
    pub version: String,
    /// The image's path on the node.
    pub image: PathBuf,
    /// The link to point at it, on disk (under the root).
    pub link: PathBuf,
    pub downloaded: bool,
}

impl Prepared {
    /// Points the link at the staged image and refreshes: validate, merge, restart, health
    /// window, rollback, records.
    pub async fn activate<S: Systemd>(
        &self,
        root: &Path,
        config: &NodeConfig,
        systemd: Option<&S>,
    ) -> Result<refresh::Report> {
        replace_symlink(&self.link, &super::root::resolve(root, &self.image)?)?;
        refresh::refresh(root, config, systemd, Timing::from_config(config)).await
    }
}

/// The release did not (yet) offer the wanted version: worth retrying, as releases are published
/// after the targets that name them are sometimes set.
#[derive(Debug, thiserror::Error)]
#[error("{extension} {version} is not in the release at {url} (its newest: {newest})")]
pub struct NotInRelease {
    pub extension: String,
    pub version: String,
    pub url: String,
    pub newest: String,
}

/// Downloads exactly `version` of `extension` (verified, like [`update`]) from the release its
/// transfer file or the node config names, without touching its link: the caller flips the link
/// when it activates. A malformed version or an extension nothing updates is bad input.
pub async fn stage_exact(
    root: &Path,
    config: &NodeConfig,
    http: &Http,
    mirrors: &Mirrors,
    extension: &str,
    version: &str,
) -> Result<Prepared> {
    let version: crate::model::ExtVersion = version.parse().map_err(crate::error::bad_input)?;
    let host = Host::read(root)?;
    let records = Records::load(root)?;
    let keyring = keyring(root, config);
    let found = match transfers(root)?.into_iter().find(|f| f.extension == extension) {
        Some(found) => found,
        None => configured(config, extension, keyring.is_some())?.ok_or_else(|| {
            crate::error::bad_input(format!(
                "no transfer file and no release_url in the node config say where {extension} comes from"
            ))
        })?,
    };
    // Any version of the extension, not only what a minor-pinned transfer captures.
    let mut transfer = found.transfer.clone();
    for section in [&mut transfer.source, &mut transfer.target] {
        section.values.insert("MatchPattern".into(), vec![extension_pattern(extension)]);
    }
    let link = transfer.current_symlink().unwrap_or_else(|| format!("/etc/extensions/{extension}.raw"));
    let link = super::root::entry(root, &link)?;
    let wanted = version.as_str();
    let accept = |v: &str| follows(wanted, v);
    let policy = Policy {
        accept: Some(&accept),
        protect: protected(&records, extension),
        stage_only: true,
        require_signed: config.require_signed,
    };
    let node = Node { http, mirrors, root, arch: host.arch, keyring };
    let outcome = sysupdate::update_with(&node, &transfer, &policy)
        .await
        .with_context(|| format!("staging {extension} {version} with {}", found.path.display()))?;
    match outcome {
        Some(outcome) => Ok(Prepared {
            extension: extension.to_string(),
            version: outcome.version,
            image: outcome.path,
            link,
            downloaded: outcome.downloaded,
        }),
        None => {
            let base = transfer.source.get("Path").unwrap_or_default().to_string();
            let offered = sysupdate::offered(&node, &transfer).await.unwrap_or_default();
            let newest = offered.first().map(|c| c.version.clone()).unwrap_or_else(|| "none".into());
            Err(NotInRelease { extension: extension.into(), version: version.to_string(), url: base, newest }.into())
        }
    }
}

/// The keyring `SHA256SUMS.gpg` is checked with: the node config's, else systemd's when present;
/// a `release_url` is verified exactly when there is one.
pub fn keyring(root: &Path, config: &NodeConfig) -> Option<PathBuf> {
    config.keyring.clone().map(|k| root.join(k.strip_prefix("/").unwrap_or(&k))).or_else(|| {
        let default = root.join(KEYRING);
        default.is_file().then_some(default)
    })
}

/// Image file names pruning must keep: the active and the last good one.
fn protected(records: &Records, extension: &str) -> Vec<String> {
    records
        .extensions
        .get(extension)
        .into_iter()
        .flat_map(|r| [&r.active, &r.last_good])
        .flatten()
        .filter_map(|a| Path::new(&a.image).file_name()?.to_str().map(str::to_string))
        .collect()
}

/// Stages the newest image of every (or one) extension.
pub async fn update(
    root: &Path,
    config: &NodeConfig,
    http: &Http,
    mirrors: &Mirrors,
    only: Option<&str>,
) -> Result<Vec<Staged>> {
    let keyring = keyring(root, config);
    let mut work = transfers(root)?;
    for name in config.extensions.keys() {
        if !work.iter().any(|f| &f.extension == name) {
            work.extend(configured(config, name, keyring.is_some())?);
        }
    }
    if let Some(only) = only {
        work.retain(|f| f.extension == only);
        if work.is_empty() {
            return Err(crate::error::bad_input(format!("no transfer file or node config entry updates {only}")));
        }
    }
    if work.is_empty() {
        return Ok(Vec::new()); // nothing followed: the caller says where it looked
    }
    let host = Host::read(root)?;
    let records = Records::load(root)?;
    let node = Node { http, mirrors, root, arch: host.arch, keyring: keyring.clone() };
    let mut staged = Vec::new();
    for found in work {
        let protect = protected(&records, &found.extension);
        let follow = config.extensions.get(&found.extension).and_then(|e| e.follow.clone());
        let accept = |version: &str| follow.as_deref().is_none_or(|f| follows(f, version));
        // A minor-pinned transfer captures only the patch in @v; follow applies to full versions.
        let pinned = found.transfer.source.patterns().iter().any(|p| !p.contains("-@v-"));
        let policy = Policy {
            accept: (!pinned).then_some(&accept as &dyn Fn(&str) -> bool),
            protect,
            stage_only: false,
            require_signed: config.require_signed,
        };
        let source = found.path.display().to_string();
        let outcome = sysupdate::update_with(&node, &found.transfer, &policy)
            .await
            .with_context(|| format!("updating {} with {source}", found.extension))?;
        staged.push(match outcome {
            Some(outcome) => Staged {
                extension: found.extension,
                source,
                version: Some(outcome.version),
                image: Some(outcome.path.display().to_string()),
                downloaded: outcome.downloaded,
                removed: outcome.removed,
            },
            None => Staged {
                extension: found.extension,
                source,
                version: None,
                image: None,
                downloaded: false,
                removed: vec![],
            },
        });
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_accepts_latest_minors_and_exact_versions() {
        assert!(follows("latest", "v1.32.3") && !follows("latest", "v1.33.0-rc.1"));
        assert!(follows("1.32", "v1.32.3") && !follows("1.32", "v1.33.0") && !follows("1.32", "v1.32.4-rc.0"));
        assert!(follows("v1.32.3", "v1.32.3") && follows("1.32.3", "v1.32.3") && !follows("v1.32.3", "v1.32.4"));
    }

    #[test]
    fn transfers_are_found_in_component_directories_with_both_suffixes() {
        let root = tempfile::tempdir().unwrap();
        let spec = |name: &str| TransferSpec {
            name: name.into(),
            base_url: "https://x".into(),
            pattern: extension_pattern(name),
            verify: true,
            instances_max: 3,
            description: String::new(),
        };
        for (dir, file, text) in [
            ("etc/sysupdate.d", "noop.conf", transfer::noop()),
            ("etc/sysupdate.demo.d", "demo.conf", spec("demo").render().unwrap()),
            ("usr/lib/sysupdate.d", "other.transfer", spec("other").render().unwrap()),
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join(file), text).unwrap();
        }
        let found: Vec<String> = transfers(root.path()).unwrap().into_iter().map(|f| f.extension).collect();
        assert_eq!(found, ["demo", "other"], "the noop transfer is skipped");
    }

    /// systemd 257: a component with a `.transfer` ignores its `.conf` files, /etc overrides
    /// /usr/lib file by file; before 257 only `.conf` files are read.
    #[test]
    fn transfer_files_are_chosen_like_systemd_sysupdate_does() {
        let root = tempfile::tempdir().unwrap();
        let spec = |pattern: &str| TransferSpec {
            name: "demo".into(),
            base_url: "https://x".into(),
            pattern: pattern.into(),
            verify: true,
            instances_max: 3,
            description: String::new(),
        };
        for (dir, file, pattern) in [
            ("etc/sysupdate.demo.d", "demo.transfer", "demo-@v-%a.raw"),
            ("etc/sysupdate.demo.d", "demo-v1.0.conf", "demo-v1.0.@v-%a.raw"),
            ("usr/lib/sysupdate.demo.d", "demo.transfer", "demo-v9.@v-%a.raw"),
            ("usr/lib/sysupdate.other.d", "other.conf", "demo-v2.@v-%a.raw"),
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join(file), spec(pattern).render().unwrap()).unwrap();
        }
        let lib = root.path().join("usr/lib/x86_64-linux-gnu/systemd");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libsystemd-shared-257.so"), b"").unwrap();
        let patterns = |root: &Path| -> Vec<String> {
            transfers(root).unwrap().into_iter().map(|f| f.transfer.source.patterns().join(" ")).collect()
        };
        assert_eq!(patterns(root.path()), ["demo-@v-%a.raw", "demo-v2.@v-%a.raw"], "257");
        std::fs::rename(lib.join("libsystemd-shared-257.so"), lib.join("libsystemd-shared-252.so")).unwrap();
        assert_eq!(patterns(root.path()), ["demo-v1.0.@v-%a.raw", "demo-v2.@v-%a.raw"], "252 reads only .conf");
    }
}
