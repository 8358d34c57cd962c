//! systemd-sysupdate's part for `url-file` → `regular-file` transfers, for hosts that lack it
//! and for tests: read the release's `SHA256SUMS` (and check `SHA256SUMS.gpg` when the transfer
//! says `Verify=yes`), pick the newest matching image in systemd's version order, download it
//! verified next to its target, rename it into place, flip `CurrentSymlink` by rename, and keep
//! at most `InstancesMax` images.

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
    let sums_url = node.mirrors.resolve(&format!("{base}/SHA256SUMS"))?;
    let sums_bytes = node.http.get_small(&sums_url).await?;
    if transfer.verify {
        verify(node, &base, &sums_bytes).await?;
    }
    let text = String::from_utf8(sums_bytes).map_err(|_| anyhow!("{sums_url}: not UTF-8"))?;
    let sums = Sha256Sums::parse(&text).map_err(|e| anyhow!("{sums_url}: {e}"))?;
    candidates(transfer, &sums, node.arch)
}

/// [`update`] with a [`Policy`].
pub async fn update_with(node: &Node<'_>, transfer: &Transfer, policy: &Policy<'_>) -> Result<Option<Outcome>> {
    let base = transfer.source.get("Path").unwrap_or_default().trim_end_matches('/').to_string();
    let accepted =
        offered(node, transfer).await?.into_iter().filter(|c| policy.accept.is_none_or(|accept| accept(&c.version)));
    let Some(newest) = accepted.into_iter().next() else { return Ok(None) };

    let target_pattern =
        transfer.target.patterns().into_iter().next().or_else(|| transfer.source.patterns().into_iter().next());
    let target_pattern = Pattern::parse(&target_pattern.unwrap_or_default(), node.arch).map_err(|e| anyhow!(e))?;
    let target_dir = transfer.target.get("Path").unwrap_or_default();
    let dir = node.root.join(target_dir.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = target_pattern.render(&newest.version);
    let dest = dir.join(&name);
    let present = dest.is_file() && hash_file(&dest)?.0 == newest.sha256;
    if !present {
        let url = node.mirrors.resolve(&format!("{base}/{}", newest.file))?;
        let temp = || atomic::temp_beside(&dest);
        let (tmp, _) = node.http.download_verified(&url, &newest.sha256, &temp, &ProgressBar::hidden()).await?;
        atomic::persist(tmp, &dest)?;
    }
    let node_path = Path::new(target_dir).join(&name);
    if let Some(link) = transfer.target.get("CurrentSymlink").filter(|_| !policy.stage_only) {
        replace_symlink(&node.root.join(link.trim_start_matches('/')), &node_path)?;
    }
    let keep: usize = transfer.target.get("InstancesMax").and_then(|n| n.parse().ok()).unwrap_or(2);
    let mut protected = policy.protect.clone();
    protected.push(name.clone());
    let removed = prune(&dir, &target_pattern, &protected, keep)?;
    Ok(Some(Outcome { version: newest.version, path: node_path, downloaded: !present, removed }))
}

/// Checks `SHA256SUMS.gpg` against the node's keyring.
async fn verify(node: &Node<'_>, base: &str, sums: &[u8]) -> Result<()> {
    let keyring = node.keyring.clone().unwrap_or_else(|| node.root.join(KEYRING));
    if !keyring.is_file() {
        bail!("Verify=yes, but there is no keyring at {} to check SHA256SUMS.gpg with", keyring.display());
    }
    let signature_url = node.mirrors.resolve(&format!("{base}/SHA256SUMS.gpg"))?;
    let signature = node.http.get_small(&signature_url).await.context("Verify=yes needs the release's signature")?;
    let dir = tempfile::tempdir().context("creating a directory for signature checks")?;
    let (data, sig) = (dir.path().join("SHA256SUMS"), dir.path().join("SHA256SUMS.gpg"));
    std::fs::write(&data, sums)?;
    std::fs::write(&sig, signature)?;
    gpg::verify_detached(&keyring, &data, &sig).with_context(|| format!("{base}/SHA256SUMS"))
}

/// Points `link` at `target`, replacing any link there by rename.
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().ok_or_else(|| anyhow!("{} has no parent directory", link.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = link.file_name().and_then(|n| n.to_str()).unwrap_or("link");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp).with_context(|| format!("creating {}", temp.display()))?;
    std::fs::rename(&temp, link).with_context(|| format!("replacing {}", link.display()))?;
    atomic::sync_dir(dir)
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
