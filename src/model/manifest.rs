//! The machine-readable manifest inside every image (`usr/lib/bakery/<ext>.json`): what a node
//! records and an auditor reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ExtName, Sha256};

/// 2: adds `files` (a digest for every regular file) and `setuid`.
pub const SCHEMA: u32 = 2;

/// Path of the manifest inside an image.
pub fn path(name: &ExtName) -> String {
    format!("usr/lib/bakery/{name}.json")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub extension: String,
    pub version: String,
    pub arch: String,
    /// `_any` or the os-release ID the image is for.
    pub os: String,
    /// Recipe options with their effective values (defaults included).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub reload_manager: bool,
    /// Units a node restarts when this extension's version changes.
    #[serde(default)]
    pub restart_units: Vec<String>,
    /// What "healthy" means for a restarted unit, where the recipe says more than the default
    /// (active, without restarts, for the health window).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health: BTreeMap<String, HealthRule>,
    #[serde(default)]
    pub artifacts: Vec<ManifestArtifact>,
    /// The sha256 of every regular file in the image but this manifest (path without the
    /// leading `/`): what the strict reader compares every file's bytes against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Sha256>,
    /// Paths the recipe gave a setuid or setgid mode on purpose; any other is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setuid: Vec<String>,
    /// The tool that built the image (`bakery 0.1.0`).
    pub generator: String,
}

/// A unit's health rule: `{ require: active, unless_missing: /var/lib/kubelet/config.yaml }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRule {
    /// `active` (the default): the unit stays active without restarts for the health window;
    /// `none`: the unit is restarted but its health never causes a rollback.
    #[serde(default)]
    pub require: Require,
    /// The rule applies only once this file exists on the node: kubelet crash-loops by design
    /// until `kubeadm join` writes `/var/lib/kubelet/config.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless_missing: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    #[default]
    Active,
    None,
}

/// One upstream download and where its content went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestArtifact {
    pub name: String,
    /// The upstream URL (never the mirror it was fetched through).
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// Image paths installed from this artifact.
    #[serde(default)]
    pub installs: Vec<String>,
}

impl Manifest {
    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        json.push('\n');
        json
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}
