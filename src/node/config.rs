//! `/etc/bakery/node.toml` and its drop-ins `/etc/bakery/node.d/*.toml` (merged in name order,
//! later files winning key by key). Everything has a default that works with the Butane output
//! of `bakery butane`, so a node without any file is configured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

pub const FILE: &str = "etc/bakery/node.toml";
pub const DROPINS: &str = "etc/bakery/node.d";

/// The merged node configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// A release to follow without transfer files (with `[extensions.<ext>] follow`).
    pub release_url: Option<String>,
    /// Seconds a restarted unit must stay up (active, no restarts) to count as healthy.
    pub health_window: u64,
    /// Images kept per extension.
    pub instances: u32,
    /// Keyring that verifies `SHA256SUMS.gpg` (default `/etc/systemd/import-pubring.gpg`).
    pub keyring: Option<PathBuf>,
    /// `node watch`: cordon the Node while an upgrade activates (uncordon only what it cordoned).
    pub cordon: bool,
    /// `node watch`: attempts at one target before it is `failed`.
    pub retries: u32,
    /// `node watch`: seconds before the first retry, doubling for each further one (at most 10 min).
    pub retry_backoff: u64,
    /// `node bootstrap`: component repositories on top of the built-in ones (directories, URLs,
    /// ZIPs), later ones overriding earlier ones.
    pub components: Vec<String>,
    /// Merge only DDIs whose verity signature a certificate in `/etc/verity.d` or
    /// `/usr/lib/verity.d` verifies; plain images and unsigned DDIs are refused.
    pub require_signed: bool,
    pub extensions: BTreeMap<String, ExtensionConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            release_url: None,
            health_window: 30,
            instances: 3,
            keyring: None,
            cordon: false,
            retries: 5,
            retry_backoff: 10,
            components: Vec::new(),
            require_signed: false,
            extensions: BTreeMap::new(),
        }
    }
}

/// Per extension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    /// An exact version, a minor (`1.32`) or `latest`.
    #[serde(default)]
    pub follow: Option<String>,
    /// Overrides the image manifest's restart units.
    #[serde(default)]
    pub restart_units: Option<Vec<String>>,
}

/// One file's keys, all optional so drop-ins can set just one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    release_url: Option<String>,
    health_window: Option<u64>,
    instances: Option<u32>,
    keyring: Option<PathBuf>,
    cordon: Option<bool>,
    retries: Option<u32>,
    retry_backoff: Option<u64>,
    components: Option<Vec<String>>,
    require_signed: Option<bool>,
    #[serde(default)]
    extensions: BTreeMap<String, ExtensionConfig>,
}

impl NodeConfig {
    /// Reads `<root>/etc/bakery/node.toml` and `<root>/etc/bakery/node.d/*.toml`.
    pub fn load(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let main = root.join(FILE);
        if main.is_file() {
            files.push(main);
        }
        if let Ok(entries) = std::fs::read_dir(root.join(DROPINS)) {
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
        let mut config = NodeConfig::default();
        for path in files {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let fragment = parse(&text).map_err(|e| bad_input(format!("{}:{e}", path.display())))?;
            config.apply(fragment);
        }
        if config.health_window == 0 || config.retries == 0 || config.retry_backoff == 0 {
            return Err(bad_input("node config: health_window, retries and retry_backoff must be at least 1"));
        }
        if config.instances < 2 {
            return Err(bad_input(format!(
                "node config: instances = {} is below 2, the least systemd-sysupdate's InstancesMax= allows",
                config.instances
            )));
        }
        Ok(config)
    }

    fn apply(&mut self, fragment: Fragment) {
        if fragment.release_url.is_some() {
            self.release_url = fragment.release_url;
        }
        self.health_window = fragment.health_window.unwrap_or(self.health_window);
        self.instances = fragment.instances.unwrap_or(self.instances);
        if fragment.keyring.is_some() {
            self.keyring = fragment.keyring;
        }
        self.cordon = fragment.cordon.unwrap_or(self.cordon);
        self.retries = fragment.retries.unwrap_or(self.retries);
        self.retry_backoff = fragment.retry_backoff.unwrap_or(self.retry_backoff);
        self.require_signed = fragment.require_signed.unwrap_or(self.require_signed);
        if let Some(components) = fragment.components {
            self.components = components;
        }
        for (name, ext) in fragment.extensions {
            let entry = self.extensions.entry(name).or_default();
            if ext.follow.is_some() {
                entry.follow = ext.follow;
            }
            if ext.restart_units.is_some() {
                entry.restart_units = ext.restart_units;
            }
        }
    }
}

/// Parses one file; errors start with `LINE:COLUMN: `.
fn parse(text: &str) -> std::result::Result<Fragment, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let location = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                format!("{}: ", before.matches('\n').count() + 1)
            })
            .unwrap_or_else(|| " ".into());
        format!("{location}{}", e.message())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropins_merge_in_name_order_key_by_key() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(DROPINS)).unwrap();
        std::fs::write(root.path().join(FILE), "health_window = 60\n[extensions.kubernetes]\nfollow = \"1.31\"\n")
            .unwrap();
        std::fs::write(root.path().join(DROPINS).join("20-late.toml"), "[extensions.kubernetes]\nfollow = \"1.32\"\n")
            .unwrap();
        std::fs::write(
            root.path().join(DROPINS).join("10-early.toml"),
            "instances = 2\nhealth_window = 5\ncordon = true\nretries = 3\n",
        )
        .unwrap();
        std::fs::write(root.path().join(DROPINS).join("ignored.txt"), "not toml").unwrap();
        let config = NodeConfig::load(root.path()).unwrap();
        assert_eq!(config.health_window, 5);
        assert_eq!(config.instances, 2);
        assert_eq!(config.extensions["kubernetes"].follow.as_deref(), Some("1.32"));
        assert!(config.cordon);
        assert_eq!((config.retries, config.retry_backoff), (3, 10), "retry_backoff keeps its default");
    }

    #[test]
    fn no_files_give_the_defaults_and_typos_are_errors() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(NodeConfig::load(root.path()).unwrap(), NodeConfig::default());
        std::fs::create_dir_all(root.path().join("etc/bakery")).unwrap();
        std::fs::write(root.path().join(FILE), "\nhealth_windwo = 3\n").unwrap();
        let err = NodeConfig::load(root.path()).unwrap_err().to_string();
        assert!(err.contains("node.toml:2:") && err.contains("health_windwo"), "{err}");
        std::fs::write(root.path().join(FILE), "instances = 1\n").unwrap();
        let err = NodeConfig::load(root.path()).unwrap_err().to_string();
        assert!(err.contains("instances = 1 is below 2"), "InstancesMax= must be at least 2: {err}");
    }
}
