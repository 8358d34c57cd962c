//! systemd-sysupdate's part for `url-file` → `regular-file` transfers, for hosts that lack it
//! and for tests: read the release's `SHA256SUMS` (and check `SHA256SUMS.gpg` when the transfer
//! says `Verify=yes`), pick the newest matching image in systemd's version order (never older
//! than one installed), download it verified next to its target with `Mode=`, check it with the
//! strict image reader (which systemd-sysupdate does not have), rename it into place, flip a relative `CurrentSymlink` by rename, and keep at most `InstancesMax` images, as
//! the real systemd-sysupdate 257 does (tests/it/sysupdate.rs compares them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;

use super::pattern::Pattern;
use super::transfer::Transfer;
use crate::model::sums::Sha256Sums;
use crate::model::version::compare;
use crate::model::{Arch, Mirrors, Sha256};
use crate::pipeline::http::Http;
use crate::pipeline::publish::hash_file;
use crate::util::{atomic, gpg};

/// The keyring systemd-sysupdate verifies `SHA256SUMS.gpg` with.
pub const KEYRING: &str = "etc/systemd/import-pubring.gpg";

/// An image the release offers for this transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub file: String,
    pub version: String,
    pub sha256: Sha256,
}

/// What an update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub version: String,
    /// The image's path on the node (`/opt/extensions/kubernetes/kubernetes-v1.32.1-x86-64.raw`).
    pub path: PathBuf,
    pub downloaded: bool,
    /// Older images removed to respect `InstancesMax=`.
    pub removed: Vec<String>,
}

/// Where and how to update.
pub struct Node<'a> {
    pub http: &'a Http,
    pub mirrors: &'a Mirrors,
    /// The node's root directory (`/` on a node, a temporary directory in tests).
    pub root: &'a Path,
    pub arch: Arch,
    /// Overrides `<root>/etc/systemd/import-pubring.gpg`.
    pub keyring: Option<PathBuf>,
}

/// Limits on top of the transfer file: which versions are wanted, which images must stay.
#[derive(Default)]
pub struct Policy<'a> {
    /// Only versions (as `@v` captures them) this accepts are candidates.
    pub accept: Option<&'a dyn Fn(&str) -> bool>,
    /// Image file names never pruned (the active and the last good one).
    pub protect: Vec<String>,
    /// Download only: leave `CurrentSymlink` alone (the caller flips it when it activates).
    pub stage_only: bool,
    /// Refuse a download that is not a DDI signed by a certificate in the node root's
    /// `verity.d` (node.toml `require_signed`), before it is renamed into place.
    pub require_signed: bool,
}

/// Every image in `sums` that a source pattern of `transfer` matches for `arch`, newest first.
pub fn candidates(transfer: &Transfer, sums: &Sha256Sums, arch: Arch) -> Result<Vec<Candidate>> {
    let patterns: Vec<Pattern> = transfer
        .source
        .patterns()
        .iter()
        .map(|p| Pattern::parse(p, arch).map_err(|e| anyhow!(e)))
        .collect::<Result<_>>()?;
    let mut out: Vec<Candidate> = sums
        .iter()
        .filter_map(|(file, sha256)| {
            let version = patterns.iter().find_map(|p| p.matches(file))?;
            Some(Candidate { file: file.clone(), version, sha256: *sha256 })
        })
        .collect();
    out.sort_by(|a, b| compare(&b.version, &a.version).then_with(|| b.version.cmp(&a.version)));
    Ok(out)
}

/// Runs one transfer; `None` when the release offers nothing it matches.
pub async fn update(node: &Node<'_>, transfer: &Transfer) -> Result<Option<Outcome>> {
    update_with(node, transfer, &Policy::default()).await
}

/// What the release offers for `transfer` on this node, newest first: its `SHA256SUMS` read (and
/// its signature checked when the transfer says `Verify=yes`).
pub async fn offered(node: &Node<'_>, transfer: &Transfer) -> Result<Vec<Candidate>> {
    let (source_type, target_type) = (transfer.source.get("Type"), transfer.target.get("Type"));
    if source_type != Some("url-file") || target_type != Some("regular-file") {
        bail!("only url-file sources and regular-file targets are supported, not {source_type:?} → {target_type:?}");
    }
    let base = transfer.source.get("Path").unwrap_or_default().trim_end_matches('/').to_string();
    let sums_url = resolve(node, transfer, &format!("{base}/SHA256SUMS"))?;
    let sums_bytes = node.http.get_small(&sums_url).await?;
    if transfer.verify {
        verify(node, &base, &sums_bytes).await?;
    }
    let text = String::from_utf8(sums_bytes).map_err(|_| anyhow!("{sums_url}: not UTF-8"))?;
    let sums = Sha256Sums::parse(&text).map_err(|e| anyhow!("{sums_url}: {e}"))?;
    candidates(transfer, &sums, node.arch)
}

/// [`update`] with a [`Policy`]. Like systemd-sysupdate, it never goes back: when an installed
/// image is at least as new as the newest one offered, that one is the outcome and nothing is
/// downloaded or removed (an exact version asked for with `stage_only` is fetched regardless).
pub async fn update_with(node: &Node<'_>, transfer: &Transfer, policy: &Policy<'_>) -> Result<Option<Outcome>> {
    let base = transfer.source.get("Path").unwrap_or_default().trim_end_matches('/').to_string();
    let accepted =
        offered(node, transfer).await?.into_iter().filter(|c| policy.accept.is_none_or(|accept| accept(&c.version)));
    let Some(newest) = accepted.into_iter().next() else { return Ok(None) };

    let target_pattern =
        transfer.target.patterns().into_iter().next().or_else(|| transfer.source.patterns().into_iter().next());
    let target_pattern = Pattern::parse(&target_pattern.unwrap_or_default(), node.arch).map_err(|e| anyhow!(e))?;
    let target_dir = transfer.target.get("Path").unwrap_or_default();
    // inside the root whatever links are on the way (a `..` in the transfer is refused)
    let dir = crate::node::root::resolve(node.root, target_dir)?;
    let installed = if policy.stage_only { None } else { newest_installed(&dir, &target_pattern, policy) };
    let (version, name) = match installed {
        Some((version, name)) if compare(&version, &newest.version).is_ge() => (version, name),
        _ => (newest.version.clone(), target_pattern.render(&newest.version)),
    };
    let dest = dir.join(&name);
    // a link there is replaced by the download, never read or written through
    let present = std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file())
        && (version != newest.version || hash_file(&dest)?.0 == newest.sha256);
    let mut removed = Vec::new();
    if !present {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let url = resolve(node, transfer, &format!("{base}/{}", newest.file))?;
        let temp = || atomic::temp_beside(&dest);
        let (tmp, _) = node.http.download_verified(&url, &newest.sha256, &temp, &ProgressBar::hidden()).await?;
        // a signed digest says the release is what was published, not that it is sound: the
        // strict reader decides before the image is where systemd-sysext would merge it
        let (path, file, root) = (tmp.path().to_path_buf(), name.clone(), node.root.to_path_buf());
        let require_signed = policy.require_signed;
        tokio::task::spawn_blocking(move || check_download(&path, &file, &root, require_signed))
            .await
            .context("checking a download")?
            .with_context(|| format!("refusing {url}"))?;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode(transfer)?))?;
        atomic::persist(tmp, &dest)?;
        // InstancesMax= counts the new image, as systemd-sysupdate's vacuum before an install does.
        let keep: usize = transfer.target.get("InstancesMax").and_then(|n| n.parse().ok()).unwrap_or(3);
        let mut protected = policy.protect.clone();
        protected.push(name.clone());
        removed = prune(&dir, &target_pattern, &protected, keep)?;
    }
    let node_path = Path::new(target_dir).join(&name);
    if let Some(link) = transfer.current_symlink().filter(|_| !policy.stage_only) {
        replace_symlink(&crate::node::root::entry(node.root, &link)?, &dest)?;
    }
    Ok(Some(Outcome { version, path: node_path, downloaded: !present, removed }))
}

/// The strict reader's verdict on a downloaded image that will be named `file`: an image it
/// refuses, or finds errors in, is bad input (retrying fetches the same bytes). A DDI's
/// signature is checked against the certificates of the node `root` (`verity.d`), and with
/// `require_signed` one that none of them verifies is refused as well.
fn check_download(path: &Path, file: &str, root: &Path, require_signed: bool) -> Result<()> {
    let trust = crate::image::inspect::Trust::Root(root.to_path_buf());
    let inspection = crate::image::inspect::inspect_with(path, file, &trust)?;
    let errors: Vec<String> =
        crate::pipeline::validate::errors(&inspection.findings).iter().map(|f| f.describe()).collect();
    if !errors.is_empty() {
        return Err(crate::error::bad_input(format!("{file} is not a valid sysext image: {}", errors.join("; "))));
    }
    if require_signed {
        crate::node::observe::signed(&inspection).map_err(|why| crate::error::bad_input(format!("{file}: {why}")))?;
    }
    Ok(())
}

/// The newest image in `dir` the target pattern matches and the policy accepts: (version, file).
fn newest_installed(dir: &Path, pattern: &Pattern, policy: &Policy<'_>) -> Option<(String, String)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| pattern.matches(&name).map(|v| (v, name)))
        .filter(|(v, _)| policy.accept.is_none_or(|accept| accept(v)))
        .max_by(|a, b| compare(&a.0, &b.0))
}

/// The mode an installed image gets: `[Target] Mode=` (octal), else 0644 like systemd-sysupdate.
fn mode(transfer: &Transfer) -> Result<u32> {
    match transfer.target.get("Mode") {
        None => Ok(0o644),
        Some(text) => u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| anyhow!("[Target] Mode={text} is not an octal file mode")),
    }
}

/// The URL to fetch for `upstream`, a file of the transfer's source: a plain http release is
/// fetched when the transfer verifies its signature (which covers every digest), as
/// systemd-sysupdate does; without `Verify=yes` only through a mirror configured for it.
fn resolve(node: &Node<'_>, transfer: &Transfer, upstream: &str) -> Result<String> {
    if transfer.verify {
        node.mirrors.resolve_signed(upstream)
    } else {
        node.mirrors.resolve(upstream).map_err(|e| {
            if upstream.starts_with("http://") {
                e.context("the transfer says Verify=no, so nothing but TLS could vouch for it: use https, sign the release (Verify=yes) or configure a mirror")
            } else {
                e
            }
        })
    }
}

/// Checks `SHA256SUMS.gpg` against the node's keyring.
async fn verify(node: &Node<'_>, base: &str, sums: &[u8]) -> Result<()> {
    let keyring = node.keyring.clone().unwrap_or_else(|| node.root.join(KEYRING));
    if !keyring.is_file() {
        bail!("Verify=yes, but there is no keyring at {} to check SHA256SUMS.gpg with", keyring.display());
    }
    let signature_url = node.mirrors.resolve_signed(&format!("{base}/SHA256SUMS.gpg"))?;
    let signature = node.http.get_small(&signature_url).await.context("Verify=yes needs the release's signature")?;
    let dir = tempfile::tempdir().context("creating a directory for signature checks")?;
    let (data, sig) = (dir.path().join("SHA256SUMS"), dir.path().join("SHA256SUMS.gpg"));
    std::fs::write(&data, sums)?;
    std::fs::write(&sig, signature)?;
    gpg::verify_detached(&keyring, &data, &sig).with_context(|| format!("{base}/SHA256SUMS"))
}

/// Points `link` at `target` (both paths on disk) with a relative link, as systemd-sysupdate
/// writes `CurrentSymlink=` (`../../opt/extensions/...`), so it resolves the same under any root;
/// any link there is replaced by rename, and a missing directory is created.
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().ok_or_else(|| anyhow!("{} has no parent directory", link.display()))?;
    write_symlink(link, &relative_to(dir, target))
}

/// Makes `link` (a path on disk) a symlink whose text is `text`, replacing what is there by
/// rename; a missing directory is created.
pub fn write_symlink(link: &Path, text: &Path) -> Result<()> {
    let dir = link.parent().ok_or_else(|| anyhow!("{} has no parent directory", link.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = link.file_name().and_then(|n| n.to_str()).unwrap_or("link");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(text, &temp).with_context(|| format!("creating {}", temp.display()))?;
    std::fs::rename(&temp, link).with_context(|| format!("replacing {}", link.display()))?;
    atomic::sync_dir(dir)
}

/// `target` as a path relative to the directory `from` (both absolute, compared lexically).
pub fn relative_to(from: &Path, target: &Path) -> PathBuf {
    let (from, target) = (normalize(from), normalize(target));
    let common = from.components().zip(target.components()).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for part in target.components().skip(common) {
        out.push(part);
    }
    out
}

/// `path` with `.` and `..` resolved lexically (never above `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Removes the oldest images matching `pattern` beyond `keep`, never a `protected` one.
fn prune(dir: &Path, pattern: &Pattern, protected: &[String], keep: usize) -> Result<Vec<String>> {
    let mut images: Vec<(String, String)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| pattern.matches(&name).map(|v| (v, name)))
        .collect();
    images.sort_by(|a, b| compare(&b.0, &a.0));
    let mut removed = Vec::new();
    let mut kept = 0;
    for (_, name) in images {
        if protected.contains(&name) || kept < keep.max(1) {
            kept += 1;
            continue;
        }
        std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing {name}"))?;
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysupdate::transfer;

    #[test]
    fn candidates_follow_the_pattern_and_systemd_order() {
        let transfer = transfer::parse(
            "[Source]\nType=url-file\nPath=https://x\nMatchPattern=k-v1.32.@v-%a.raw\n[Target]\nType=regular-file\nPath=/opt/extensions/k\n",
        )
        .unwrap();
        let mut sums = Sha256Sums::default();
        for name in ["k-v1.32.9-x86-64.raw", "k-v1.32.10-x86-64.raw", "k-v1.33.0-x86-64.raw", "k-v1.32.11-arm64.raw"] {
            sums.insert(name, Sha256::of(name.as_bytes())).unwrap();
        }
        let found: Vec<String> =
            candidates(&transfer, &sums, Arch::X86_64).unwrap().into_iter().map(|c| c.file).collect();
        assert_eq!(found, ["k-v1.32.10-x86-64.raw", "k-v1.32.9-x86-64.raw"]);
    }

    #[test]
    fn links_are_relative_like_systemd_sysupdate_writes_them() {
        let rel = |from: &str, to: &str| relative_to(Path::new(from), Path::new(to)).display().to_string();
        assert_eq!(
            rel("/etc/extensions", "/opt/extensions/k/k-v1-x86-64.raw"),
            "../../opt/extensions/k/k-v1-x86-64.raw"
        );
        assert_eq!(rel("/tmp/r/etc/extensions", "/tmp/r/opt/extensions/k/a.raw"), "../../opt/extensions/k/a.raw");
        assert_eq!(rel("/var/lib/extensions", "/var/lib/extensions/a.raw"), "a.raw");
        assert_eq!(normalize(Path::new("/etc/extensions/../../opt/./x")), Path::new("/opt/x"));
        assert_eq!(normalize(Path::new("/../../x")), Path::new("/x"));
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_current() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["1", "2", "3", "4"] {
            std::fs::write(dir.path().join(format!("k-v1.32.{v}-x86-64.raw")), v).unwrap();
        }
        let pattern = Pattern::parse("k-v1.32.@v-%a.raw", Arch::X86_64).unwrap();
        let protected = ["k-v1.32.1-x86-64.raw".to_string()];
        let removed = prune(dir.path(), &pattern, &protected, 2).unwrap();
        assert_eq!(removed, ["k-v1.32.2-x86-64.raw"]);
    }
}
