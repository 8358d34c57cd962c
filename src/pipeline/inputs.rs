//! What an image is built from: the recipe, the rendered files, the options, every artifact's
//! digest, bakery's version, compression, os and mtime. Two builds of the same inputs are
//! bit-identical, so `create` of an image already built from them is up to date: it compares
//! the inputs recorded in the cache (keyed by the image's sha256) instead of building again.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::checksum;
use super::http::Http;
use super::resolve::{Resolved, ResolvedChecksum};
use crate::model::Sha256;

fn squashfs() -> String {
    "squashfs".to_string()
}

/// The inputs of one build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub image: String,
    pub generator: String,
    /// sha256 of `recipe.yaml`.
    pub recipe: Sha256,
    /// Image path → `mode sha256` of every rendered template and static file.
    pub files: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Artifact name → the sha256 it was verified against.
    pub artifacts: BTreeMap<String, Sha256>,
    /// Records from before `--format` were SquashFS.
    #[serde(default = "squashfs")]
    pub format: String,
    pub compression: String,
    pub os: String,
    pub source_date_epoch: u32,
    /// A signed DDI: sha256 of the signing certificate (absent for a plain filesystem image,
    /// so those records and digests stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddi: Option<String>,
}

impl Inputs {
    pub fn of(resolved: &Resolved, recipe_yaml: &[u8], artifacts: BTreeMap<String, Sha256>, generator: &str) -> Self {
        Self {
            image: resolved.image.clone(),
            generator: generator.to_string(),
            recipe: Sha256::of(recipe_yaml),
            files: resolved.files.iter().map(|f| (f.path.to_string(), format!("{} {}", f.mode, f.sha256))).collect(),
            options: resolved.options.clone(),
            artifacts,
            format: resolved.format.to_string(),
            compression: resolved.compression.to_string(),
            os: resolved.os.to_string(),
            source_date_epoch: resolved.source_date_epoch,
            ddi: None,
        }
    }

    /// One digest of all of it: what the image's UUID is derived from.
    pub fn digest(&self) -> Sha256 {
        Sha256::of(&serde_json::to_vec(self).expect("inputs serialize"))
    }

    /// What differs from `older`, in words (`compression gzip → zstd`, `the recipe`).
    pub fn differences(&self, older: &Inputs) -> Vec<String> {
        let mut out = Vec::new();
        let mut changed = |what: &str, old: &str, new: &str| {
            if old != new {
                out.push(format!("{what} {old} → {new}"));
            }
        };
        changed("image", &older.image, &self.image);
        changed("bakery", &older.generator, &self.generator);
        changed("format", &older.format, &self.format);
        changed("compression", &older.compression, &self.compression);
        changed("os", &older.os, &self.os);
        let ddi = |d: &Option<String>| d.as_ref().map_or("plain".to_string(), |f| format!("DDI signed by {f}"));
        changed("image type", &ddi(&older.ddi), &ddi(&self.ddi));
        changed("mtime", &older.source_date_epoch.to_string(), &self.source_date_epoch.to_string());
        for key in older.options.keys().chain(self.options.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (old, new) = (older.options.get(key), self.options.get(key));
            changed(&format!("option {key}"), old.map_or("(unset)", |v| v), new.map_or("(unset)", |v| v));
        }
        if older.recipe != self.recipe {
            out.push("the recipe".to_string());
        }
        if older.files != self.files {
            out.push("the rendered files".to_string());
        }
        for (name, digest) in &self.artifacts {
            if older.artifacts.get(name) != Some(digest) {
                out.push(format!("the digest of {name}"));
            }
        }
        if older.artifacts.keys().any(|name| !self.artifacts.contains_key(name)) {
            out.push("the artifacts".to_string());
        }
        out.dedup();
        out
    }
}

/// The digest each artifact must have, without downloading it: pinned in the recipe, or read
/// from its checksum file (from the cache when it holds it, else fetched). Returns the
/// digests and the checksum files that were fetched (the caller caches them once they proved
/// right).
pub async fn expected_digests(
    http: &Http,
    cache: &Cache,
    resolved: &Resolved,
) -> Result<(BTreeMap<String, Sha256>, Vec<(String, Vec<u8>)>)> {
    let mut digests = BTreeMap::new();
    let mut fetched = Vec::new();
    for artifact in &resolved.artifacts {
        let digest = match &artifact.checksum {
            ResolvedChecksum::Pinned { sha256 } => *sha256,
            ResolvedChecksum::File { fetch_url, format, file_name, .. } => {
                let bytes = match cache.checksum_file(fetch_url) {
                    Some(bytes) => bytes,
                    None => {
                        let bytes = http
                            .get_small(fetch_url)
                            .await
                            .with_context(|| format!("fetching the checksum of {}", artifact.name))?;
                        fetched.push((fetch_url.clone(), bytes.clone()));
                        bytes
                    }
                };
                checksum::parse(&String::from_utf8_lossy(&bytes), *format, file_name)
                    .map_err(|e| anyhow!("checksum file {fetch_url}: {e}"))?
            }
        };
        digests.insert(artifact.name.clone(), digest);
    }
    Ok((digests, fetched))
}

/// The inputs recorded for the image with digest `image`, if this cache built it.
pub fn recorded(cache: &Cache, image: &Sha256) -> Option<Inputs> {
    serde_json::from_slice(&cache.image_inputs(image)?).ok()
}

/// Records that the image with digest `image` was built from `inputs`.
pub fn record(cache: &Cache, image: &Sha256, inputs: &Inputs) -> Result<()> {
    let json = serde_json::to_vec_pretty(inputs).expect("inputs serialise");
    cache.store_image_inputs(image, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            image: "k-v1-x86-64.raw".into(),
            generator: "bakery 0.1.0".into(),
            recipe: Sha256::of(b"recipe"),
            files: BTreeMap::from([("usr/lib/a".into(), "0644 00".into())]),
            options: BTreeMap::from([("cni_version".into(), "v1.6.0".into())]),
            artifacts: BTreeMap::from([("kubelet".into(), Sha256::of(b"kubelet"))]),
            format: "squashfs".into(),
            compression: "gzip".into(),
            os: "_any".into(),
            source_date_epoch: 0,
            ddi: None,
        }
    }

    #[test]
    fn differences_name_what_changed() {
        let old = inputs();
        assert!(old.differences(&old).is_empty());
        let mut new = inputs();
        new.compression = "zstd".into();
        new.options.insert("cni_version".into(), "v1.6.2".into());
        new.artifacts.insert("kubelet".into(), Sha256::of(b"other"));
        new.recipe = Sha256::of(b"edited");
        assert_eq!(
            new.differences(&old),
            ["compression gzip → zstd", "option cni_version v1.6.0 → v1.6.2", "the recipe", "the digest of kubelet"]
        );
    }

    #[test]
    fn records_round_trip_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let image = Sha256::of(b"image");
        assert_eq!(recorded(&cache, &image), None);
        record(&cache, &image, &inputs()).unwrap();
        assert_eq!(recorded(&cache, &image), Some(inputs()));
        assert_eq!(recorded(&cache, &Sha256::of(b"another image")), None);
    }
}
