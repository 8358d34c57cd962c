//! The images a rollback may need (active, previous and last good), kept as hard links in
//! `/opt/extensions/<ext>/.bakery-keep/`. systemd-sysupdate's `InstancesMax=` cleanup removes the
//! oldest images matching its pattern and knows nothing of rollbacks, so it deletes the image
//! bakery rolled back to; it never looks into this directory, and a link costs no space.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::observe::{STAGING, on_disk};
use super::records::Records;

/// The directory beside the staged images.
pub const DIR: &str = ".bakery-keep";

/// The kept copy of a staged image (a node path), if it is a staged image at all.
fn kept_path(root: &Path, node_image: &str) -> Option<PathBuf> {
    let rest = Path::new(node_image).strip_prefix(Path::new("/").join(STAGING)).ok()?;
    let mut parts = rest.components();
    let (extension, file) = (parts.next()?, parts.next()?);
    let kept = Path::new("/").join(STAGING).join(extension).join(DIR).join(file);
    parts.next().is_none().then(|| on_disk(root, &kept.to_string_lossy()))
}

/// The kept images of `extension`, as node paths.
pub fn kept(root: &Path, extension: &str) -> Vec<String> {
    super::observe::images_in(root, &format!("{STAGING}/{extension}/{DIR}"))
}

/// Puts a staged image back from its kept link when something removed it; true when the image
/// is (now) on disk.
pub fn restore(root: &Path, node_image: &str) -> Result<bool> {
    let image = on_disk(root, node_image);
    if image.is_file() {
        return Ok(true);
    }
    let Some(kept) = kept_path(root, node_image).filter(|k| k.is_file()) else { return Ok(false) };
    std::fs::hard_link(&kept, &image)
        .with_context(|| format!("restoring {} from {}", image.display(), kept.display()))?;
    tracing::info!("restored {node_image}, which something removed, from {}", kept.display());
    Ok(true)
}

/// Links every image the records may roll back to into the keep directory and drops the links
/// nothing needs any more.
pub fn sync(root: &Path, records: &Records) -> Result<()> {
    for (extension, record) in &records.extensions {
        let wanted: Vec<PathBuf> = [&record.active, &record.previous, &record.last_good]
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let kept = kept_path(root, &a.image)?;
                let image = on_disk(root, &a.image);
                if image.is_file() && !same_file(&image, &kept) {
                    std::fs::create_dir_all(kept.parent()?).ok()?;
                    let _ = std::fs::remove_file(&kept);
                    if let Err(e) = std::fs::hard_link(&image, &kept) {
                        tracing::warn!("keeping {} for rollbacks: {e}", image.display());
                    }
                }
                Some(kept)
            })
            .collect();
        for node in kept(root, extension) {
            let path = on_disk(root, &node);
            if !wanted.contains(&path) {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::records::{Activation, ExtensionRecord};

    fn activation(image: &str) -> Activation {
        Activation {
            version: "v1".into(),
            image: image.into(),
            sha256: String::new(),
            artifacts: Default::default(),
            activated_at: String::new(),
        }
    }

    #[test]
    fn kept_images_survive_their_removal_and_come_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("opt/extensions/demo");
        std::fs::create_dir_all(&dir).unwrap();
        for v in ["v1", "v2", "v3"] {
            std::fs::write(dir.join(format!("demo-{v}-x86-64.raw")), v).unwrap();
        }
        let mut records = Records::default();
        records.extensions.insert(
            "demo".into(),
            ExtensionRecord {
                active: Some(activation("/opt/extensions/demo/demo-v1-x86-64.raw")),
                previous: Some(activation("/opt/extensions/demo/demo-v2-x86-64.raw")),
                ..Default::default()
            },
        );
        sync(root.path(), &records).unwrap();
        assert_eq!(
            kept(root.path(), "demo"),
            [
                "/opt/extensions/demo/.bakery-keep/demo-v1-x86-64.raw",
                "/opt/extensions/demo/.bakery-keep/demo-v2-x86-64.raw"
            ]
        );
        // sysupdate's cleanup removes v1; a rollback to it gets it back
        std::fs::remove_file(dir.join("demo-v1-x86-64.raw")).unwrap();
        assert!(restore(root.path(), "/opt/extensions/demo/demo-v1-x86-64.raw").unwrap());
        assert_eq!(std::fs::read(dir.join("demo-v1-x86-64.raw")).unwrap(), b"v1");
        assert!(!restore(root.path(), "/opt/extensions/demo/demo-v9-x86-64.raw").unwrap());
        // what the records no longer name is dropped
        records.extensions.get_mut("demo").unwrap().previous = None;
        sync(root.path(), &records).unwrap();
        assert_eq!(kept(root.path(), "demo"), ["/opt/extensions/demo/.bakery-keep/demo-v1-x86-64.raw"]);
    }
}
