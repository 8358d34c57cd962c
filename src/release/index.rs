//! `index.json`: extension → version → arch → file, sha256, size and a manifest summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::manifest::Manifest;
use crate::model::{Arch, Sha256};

/// One valid image of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexedImage {
    pub file: String,
    pub extension: String,
    pub version: String,
    pub arch: Arch,
    pub sha256: Sha256,
    pub size: u64,
    pub manifest: Option<ManifestSummary>,
}

/// The parts of an image's manifest a fleet tool needs without downloading the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestSummary {
    pub generator: String,
    pub os: String,
    pub options: BTreeMap<String, String>,
    pub restart_units: Vec<String>,
    pub artifacts: Vec<ArtifactSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactSummary {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

impl From<Manifest> for ManifestSummary {
    fn from(manifest: Manifest) -> Self {
        ManifestSummary {
            generator: manifest.generator,
            os: manifest.os,
            options: manifest.options,
            restart_units: manifest.restart_units,
            artifacts: manifest
                .artifacts
                .into_iter()
                .map(|a| ArtifactSummary { name: a.name, url: a.url, sha256: a.sha256 })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    pub file: String,
    pub sha256: Sha256,
    pub size: u64,
    pub manifest: Option<ManifestSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Index {
    pub schema: u32,
    pub extensions: BTreeMap<String, BTreeMap<String, BTreeMap<String, IndexEntry>>>,
}

impl Index {
    pub fn new(images: &[IndexedImage]) -> Self {
        let mut extensions: BTreeMap<String, BTreeMap<String, BTreeMap<String, IndexEntry>>> = BTreeMap::new();
        for image in images {
            let entry = IndexEntry {
                file: image.file.clone(),
                sha256: image.sha256,
                size: image.size,
                manifest: image.manifest.clone(),
            };
            extensions
                .entry(image.extension.clone())
                .or_default()
                .entry(image.version.clone())
                .or_default()
                .insert(image.arch.to_string(), entry);
        }
        Index { schema: 1, extensions }
    }

    /// Every version of `extension`.
    pub fn versions(&self, extension: &str) -> Vec<&str> {
        self.extensions.get(extension).map(|v| v.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("an index serialises");
        json.push('\n');
        json
    }
}
