//! `/var/lib/bakery/versions.json`: per extension what is active, what was before, what last
//! worked and how the last run ended, plus a bounded history; the components a bootstrap
//! installed. Written atomically, so it always parses, even when a run is killed.
//!
//! This module is the file's only writer: every change is a load-change-save under one lock
//! ([`LOCK`]), so `node refresh` (which owns the extension records and the history) and `node
//! bootstrap` (which owns the rest) never lose each other's records.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::atomic;

pub const FILE: &str = "var/lib/bakery/versions.json";
/// Held (waiting for it) around every load-change-save of [`FILE`].
pub const LOCK: &str = "run/bakery/records.lock";
/// History entries kept.
pub const HISTORY: usize = 50;

/// One image as activated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub version: String,
    /// The image's path on the node.
    pub image: String,
    /// The image file's sha256.
    pub sha256: String,
    /// The upstream artifacts' sha256, from the image's manifest.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    pub activated_at: String,
}

/// How a run ended for an extension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Activated,
    Unchanged,
    RolledBack,
    Refused,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub outcome: Outcome,
    /// The version the run was about (the one activated, rolled back from or refused).
    #[serde(default)]
    pub version: Option<String>,
    pub message: String,
    pub at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionRecord {
    pub active: Option<Activation>,
    pub previous: Option<Activation>,
    pub last_good: Option<Activation>,
    pub last_result: Option<LastResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub extension: String,
    pub outcome: Outcome,
    pub version: Option<String>,
    pub message: String,
}

/// A component as `node bootstrap` installed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// The full version (`v1.32.1~2`).
    pub version: String,
    /// The release it was installed for.
    pub release: String,
    /// Its place in that release (uninstalls run in reverse).
    pub position: usize,
    pub installed_at: String,
    /// Its uninstall steps, rendered when it was installed.
    #[serde(default)]
    pub uninstall: Vec<crate::components::render::Action>,
    /// What its scripts printed.
    #[serde(default)]
    pub scripts: Vec<ScriptRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRun {
    pub run: String,
    pub exit: i32,
    /// stdout and stderr, at most 16 KiB (the end is kept).
    pub output: String,
    pub at: String,
}

/// Why the last bootstrap stopped (cleared when one completes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub component: String,
    pub version: String,
    pub message: String,
    /// A failed script's output.
    #[serde(default)]
    pub output: Option<String>,
    pub at: String,
}

/// The release a bootstrap completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub version: String,
    pub role: String,
    pub completed_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    pub schema: u32,
    #[serde(default)]
    pub extensions: BTreeMap<String, ExtensionRecord>,
    #[serde(default)]
    pub history: Vec<Event>,
    /// Components installed by `node bootstrap`, recorded as each completes.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentRecord>,
    /// Services a bootstrap still has to restart (kept across a failed run).
    #[serde(default)]
    pub pending_restarts: Vec<String>,
    /// The release the last complete bootstrap installed.
    #[serde(default)]
    pub release: Option<ReleaseRecord>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

impl Default for Records {
    fn default() -> Self {
        Self {
            schema: 1,
            extensions: BTreeMap::new(),
            history: Vec::new(),
            components: BTreeMap::new(),
            pending_restarts: Vec::new(),
            release: None,
            failure: None,
        }
    }
}

/// Reads the records afresh under [`LOCK`], lets `change` edit them and writes them back: the
/// one way the file is changed.
pub fn edit<T>(root: &Path, change: impl FnOnce(&mut Records) -> T) -> Result<T> {
    let _lock = super::lock::wait_file(root, LOCK)?;
    let mut records = Records::load(root)?;
    let out = change(&mut records);
    records.save(root)?;
    Ok(out)
}

impl Records {
    /// Reads the records under `root` (empty when there are none yet): a snapshot, as the file
    /// is only ever replaced whole.
    pub fn load(root: &Path) -> Result<Self> {
        let path = super::root::resolve(root, FILE)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes this copy's extension records and history (what refresh and rollback own, under
    /// the node run lock) into the file, keeping the rest as the file has it now.
    pub fn save_extensions(&self, root: &Path) -> Result<()> {
        edit(root, |on_disk| {
            on_disk.extensions = self.extensions.clone();
            on_disk.history = self.history.clone();
        })
    }

    /// Writes the records atomically (callers hold [`LOCK`]).
    fn save(&self, root: &Path) -> Result<()> {
        let path = super::root::entry_in_new_dir(root, FILE)?;
        let mut json = serde_json::to_vec_pretty(self).expect("records serialise");
        json.push(b'\n');
        // private: the records keep rendered component files, which may hold secrets
        atomic::write_atomic_mode(&path, &json, 0o600)
    }

    pub fn extension(&mut self, name: &str) -> &mut ExtensionRecord {
        self.extensions.entry(name.to_string()).or_default()
    }

    /// Notes how a run ended for `extension`, in its record and the bounded history.
    pub fn note(&mut self, extension: &str, outcome: Outcome, version: Option<&str>, message: &str) {
        let at = crate::util::time::now_rfc3339();
        self.extension(extension).last_result = Some(LastResult {
            outcome: outcome.clone(),
            version: version.map(str::to_string),
            message: message.to_string(),
            at: at.clone(),
        });
        self.history.push(Event {
            at,
            extension: extension.to_string(),
            outcome,
            version: version.map(str::to_string),
            message: message.to_string(),
        });
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }

    /// Makes `activation` the active one of `extension`; the old active becomes previous.
    pub fn activate(&mut self, extension: &str, activation: Activation) {
        let record = self.extension(extension);
        if record.active.as_ref().is_some_and(|a| a.sha256 != activation.sha256) {
            record.previous = record.active.take();
        }
        record.active = Some(activation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activation(version: &str) -> Activation {
        Activation {
            version: version.into(),
            image: format!("/opt/extensions/demo/demo-{version}-x86-64.raw"),
            sha256: format!("{version:0>64}"),
            artifacts: BTreeMap::new(),
            activated_at: "2026-11-21T00:00:00Z".into(),
        }
    }

    #[test]
    fn activation_moves_the_old_one_to_previous_and_history_is_bounded() {
        let mut records = Records::default();
        records.activate("demo", activation("v1"));
        records.activate("demo", activation("v2"));
        records.activate("demo", activation("v2"));
        let demo = &records.extensions["demo"];
        assert_eq!(demo.active.as_ref().unwrap().version, "v2");
        assert_eq!(demo.previous.as_ref().unwrap().version, "v1", "re-activating the same image keeps previous");
        for i in 0..(HISTORY + 7) {
            records.note("demo", Outcome::Unchanged, None, &format!("run {i}"));
        }
        assert_eq!(records.history.len(), HISTORY);
        assert_eq!(records.history.last().unwrap().message, format!("run {}", HISTORY + 6));
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Records::load(root.path()).unwrap(), Records::default());
        let mut records = Records::default();
        records.activate("demo", activation("v1"));
        records.note("demo", Outcome::Activated, Some("v1"), "ok");
        records.save_extensions(root.path()).unwrap();
        assert_eq!(Records::load(root.path()).unwrap(), records);
    }

    fn component(version: &str) -> ComponentRecord {
        ComponentRecord {
            version: version.into(),
            release: "r1".into(),
            position: 0,
            installed_at: String::new(),
            uninstall: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// A refresh holds its copy for the whole run; a bootstrap records a component meanwhile.
    #[test]
    fn a_refresh_saving_its_copy_keeps_what_a_bootstrap_recorded_meanwhile() {
        let root = tempfile::tempdir().unwrap();
        let mut refresh = Records::load(root.path()).unwrap();
        edit(root.path(), |r| {
            r.components.insert("net".into(), component("1"));
            r.release =
                Some(ReleaseRecord { version: "r1".into(), role: "worker".into(), completed_at: String::new() });
        })
        .unwrap();
        refresh.activate("demo", activation("v1"));
        refresh.note("demo", Outcome::Activated, Some("v1"), "ok");
        refresh.save_extensions(root.path()).unwrap();
        let on_disk = Records::load(root.path()).unwrap();
        assert_eq!(on_disk.components["net"].version, "1", "the bootstrap's record is kept");
        assert_eq!(on_disk.release.as_ref().unwrap().version, "r1");
        assert_eq!(on_disk.extensions["demo"].active.as_ref().unwrap().version, "v1");
        edit(root.path(), |r| r.components.insert("kubelet".into(), component("2"))).unwrap();
        assert_eq!(Records::load(root.path()).unwrap().extensions, on_disk.extensions, "and the other way round");
    }

    /// A second writer waits for the first one's load-change-save to end, and starts from its
    /// result.
    #[test]
    fn writers_wait_for_each_other() {
        let root = tempfile::tempdir().unwrap();
        let (inside_tx, inside) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let path = root.path().to_path_buf();
        let first = std::thread::spawn(move || {
            edit(&path, |r| {
                inside_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                r.components.insert("first".into(), component("1"));
            })
            .unwrap()
        });
        inside.recv().unwrap();
        let path = root.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let mut refresh = Records::default();
            refresh.note("demo", Outcome::Unchanged, None, "second");
            refresh.save_extensions(&path).unwrap()
        });
        go.send(()).unwrap();
        first.join().unwrap();
        second.join().unwrap();
        let on_disk = Records::load(root.path()).unwrap();
        assert!(on_disk.components.contains_key("first") && on_disk.extensions.contains_key("demo"), "{on_disk:?}");
    }
}
