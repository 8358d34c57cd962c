//! Merging what is linked so that one image the kernel (or systemd-sysext) refuses neither keeps
//! the other extensions unmerged nor fails every later refresh: when the merge fails, the changed
//! links are held aside, the rest merged, and the changed ones added back one at a time; one
//! that makes the merge fail is linked back to its last good image (or set aside) by the caller's
//! `put_back`, and the merge runs again without it.
//!
//! bakery validates every image before it is linked for a merge; this catches what validation
//! cannot see (a kernel without the image's compressor, a table the kernel reads differently).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::observe::{LINK_DIRS, Linked};
use super::sysext;
use crate::error::describe;

/// Suffix of a link held aside while the merge is retried (hidden: neither systemd-sysext nor
/// bakery merges it); a run killed meanwhile is put right by [`restore_held`].
const HELD: &str = ".held";

/// An extension whose image could not be merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub name: String,
    /// What systemd-sysext said and where the link went.
    pub message: String,
}

/// Merges what is linked under `root`, systemd enforcing the image `policy`
/// ([`sysext::merge_policy`]). When that fails, finds which of `changed` (the links that
/// point at a new image) is at fault; `put_back` moves such a link away and says where to. Fails
/// as before when the merge fails without any changed image too.
pub fn merge(
    root: &Path,
    policy: Option<&str>,
    changed: &[&Linked],
    mut put_back: impl FnMut(&Linked) -> Result<String>,
) -> Result<Vec<Fault>> {
    let Err(error) = sysext::refresh(root, policy) else { return Ok(Vec::new()) };
    if changed.is_empty() {
        return Err(error);
    }
    tracing::warn!("{}; merging the changed extensions one at a time", describe(&error));
    let mut held = Vec::new();
    for linked in changed {
        held.push((*linked, hold(&linked.link)?));
    }
    if let Err(without) = sysext::refresh(root, policy) {
        for (linked, aside) in &held {
            release(aside, &linked.link)?;
        }
        return Err(without.context(format!("{}, and it fails without the changed extensions too", describe(&error))));
    }
    let mut faults = Vec::new();
    for (linked, aside) in held {
        release(&aside, &linked.link)?;
        let Err(error) = sysext::refresh(root, policy) else { continue };
        let back = put_back(linked)?;
        let message = format!("systemd-sysext could not merge {}: {}; {back}", linked.node_image, describe(&error));
        tracing::warn!("{}: {message}", linked.name);
        faults.push(Fault { name: linked.name.clone(), message });
        sysext::refresh(root, policy).context("merging the other extensions again")?;
    }
    Ok(faults)
}

/// Renames `link` to its hidden held name.
fn hold(link: &Path) -> Result<PathBuf> {
    let aside = held_path(link);
    std::fs::rename(link, &aside).with_context(|| format!("holding {} aside", link.display()))?;
    sync(link)?;
    Ok(aside)
}

fn release(aside: &Path, link: &Path) -> Result<()> {
    std::fs::rename(aside, link).with_context(|| format!("putting {} back", link.display()))?;
    sync(link)
}

fn held_path(link: &Path) -> PathBuf {
    let name = link.file_name().and_then(|n| n.to_str()).unwrap_or("link");
    link.with_file_name(format!(".{name}{HELD}"))
}

fn sync(link: &Path) -> Result<()> {
    crate::util::atomic::sync_dir(link.parent().expect("links live in a directory"))
}

/// Puts back links a killed run left held aside (unless the link was made anew meanwhile).
pub fn restore_held(root: &Path) -> Result<()> {
    for dir in LINK_DIRS {
        let dir = super::root::resolve(root, dir)?;
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(link) = name.strip_prefix('.').and_then(|n| n.strip_suffix(HELD)) else { continue };
            let link = dir.join(link);
            if std::fs::symlink_metadata(&link).is_err() {
                tracing::info!("putting back {}, held aside by a run that did not finish", link.display());
                release(&entry.path(), &link)?;
            } else {
                std::fs::remove_file(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_links_of_a_killed_run_are_put_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/extensions");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/opt/extensions/a/a-v2.raw", dir.join("a.raw")).unwrap();
        let aside = hold(&dir.join("a.raw")).unwrap();
        assert_eq!(aside, dir.join(".a.raw.held"));
        std::os::unix::fs::symlink("/opt/extensions/b/b-v1.raw", dir.join(".b.raw.held")).unwrap();
        std::os::unix::fs::symlink("/opt/extensions/b/b-v2.raw", dir.join("b.raw")).unwrap();
        restore_held(root.path()).unwrap();
        assert_eq!(std::fs::read_link(dir.join("a.raw")).unwrap(), Path::new("/opt/extensions/a/a-v2.raw"));
        assert_eq!(std::fs::read_link(dir.join("b.raw")).unwrap(), Path::new("/opt/extensions/b/b-v2.raw"));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
