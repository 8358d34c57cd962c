//! `bakery node status` and `bakery node rollback`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::config::NodeConfig;
use super::observe::{self, Host, on_disk};
use super::records::{Failure, LastResult, Outcome, Records, ReleaseRecord};
use super::refresh::{self, Report, Timing};
use super::systemd::Systemd;
use super::{lock, sysext};
use crate::error::bad_input;
use crate::image::inspect;
use crate::model::version::compare;
use crate::sysupdate::pattern::{Pattern, extension_pattern};
use crate::sysupdate::update::replace_symlink;

#[derive(Clone, Debug, Serialize)]
pub struct UnitStatus {
    pub unit: String,
    pub state: String,
}

/// One extension on the node.
#[derive(Clone, Debug, Serialize)]
pub struct ExtensionStatus {
    pub extension: String,
    /// The image linked for merging (node path).
    pub linked: Option<String>,
    pub linked_version: Option<String>,
    pub merged: bool,
    /// The version the records say is active.
    pub recorded: Option<String>,
    pub last_good: Option<String>,
    pub last_result: Option<LastResult>,
    /// Staged images newer than the linked one.
    pub staged_newer: Vec<String>,
    pub units: Vec<UnitStatus>,
}

/// One component `node bootstrap` installed.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentStatus {
    pub component: String,
    pub version: String,
    pub release: String,
    pub installed_at: String,
}

/// The node: its extensions and its components.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub extensions: Vec<ExtensionStatus>,
    /// The release the last complete bootstrap installed.
    pub release: Option<ReleaseRecord>,
    pub components: Vec<ComponentStatus>,
    /// Why the last bootstrap stopped, when it did.
    pub bootstrap_failure: Option<Failure>,
    pub pending_restarts: Vec<String>,
    /// What could not be read (the records, the links, unit states without D-Bus): the rest is
    /// shown regardless.
    pub not_read: Vec<NotRead>,
}

/// Something [`status`] could not read, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotRead {
    /// [`RECORDS`], [`LINKS`] or [`UNITS`].
    pub what: &'static str,
    pub why: String,
}

pub const RECORDS: &str = "the records";
pub const LINKS: &str = "the links";
pub const UNITS: &str = "unit states";

impl NodeStatus {
    /// Nothing linked, recorded or installed.
    pub fn is_empty(&self) -> bool {
        self.extensions.is_empty()
            && self.release.is_none()
            && self.components.is_empty()
            && self.bootstrap_failure.is_none()
            && self.pending_restarts.is_empty()
    }
}

/// The state of every extension linked or recorded, and of the components. What cannot be read
/// is noted in `not_read` rather than failing: status is what an operator runs when something
/// is wrong.
pub async fn status<S: Systemd>(root: &Path, systemd: Option<&S>) -> NodeStatus {
    let mut not_read = Vec::new();
    let records = Records::load(root).unwrap_or_else(|e| {
        not_read.push(NotRead { what: RECORDS, why: crate::error::describe(&e) });
        Records::default()
    });
    let mut components: Vec<ComponentStatus> = records
        .components
        .iter()
        .map(|(name, c)| ComponentStatus {
            component: name.clone(),
            version: c.version.clone(),
            release: c.release.clone(),
            installed_at: c.installed_at.clone(),
        })
        .collect();
    components.sort_by_key(|c| records.components[&c.component].position);
    NodeStatus {
        extensions: extensions(root, &records, systemd, &mut not_read).await,
        release: records.release.clone(),
        components,
        bootstrap_failure: records.failure.clone(),
        pending_restarts: records.pending_restarts.clone(),
        not_read,
    }
}

async fn extensions<S: Systemd>(
    root: &Path,
    records: &Records,
    systemd: Option<&S>,
    not_read: &mut Vec<NotRead>,
) -> Vec<ExtensionStatus> {
    // the versions in image names are read for this machine (no os-release needed)
    let arch = Host::machine_arch();
    let linked = observe::linked(root).unwrap_or_else(|e| {
        not_read.push(NotRead { what: LINKS, why: crate::error::describe(&e) });
        Vec::new()
    });
    let merged = sysext::merged(root);
    let names: BTreeSet<String> =
        linked.iter().map(|l| l.name.clone()).chain(records.extensions.keys().cloned()).collect();
    let mut out = Vec::new();
    for name in names {
        let link = linked.iter().find(|l| l.name == name);
        let pattern = Pattern::parse(&extension_pattern(&name), arch).ok();
        let version_of = |node_path: &str| {
            let file = Path::new(node_path).file_name()?.to_str()?;
            pattern.as_ref()?.matches(file)
        };
        let linked_version = link.and_then(|l| version_of(&l.node_image));
        let staged_newer = observe::staged(root, &name)
            .into_iter()
            .filter(|image| match (version_of(image), &linked_version) {
                (Some(staged), Some(current)) => compare(&staged, current).is_gt(),
                (Some(_), None) => true,
                _ => false,
            })
            .collect();
        let mut units = Vec::new();
        if let (Some(systemd), Some(link)) = (systemd, link) {
            let manifest = inspect::inspect(&link.image).ok().and_then(|i| i.manifest);
            for unit in manifest.map(|m| m.restart_units).unwrap_or_default() {
                let state = match systemd.state(&unit).await {
                    Ok(state) => state.to_string(),
                    Err(e) => format!("unknown ({})", crate::error::describe(&e)),
                };
                units.push(UnitStatus { unit, state });
            }
        }
        let record = records.extensions.get(&name);
        out.push(ExtensionStatus {
            linked: link.map(|l| l.node_image.clone()),
            linked_version,
            merged: merged.contains(&name),
            recorded: record.and_then(|r| r.active.as_ref()).map(|a| a.version.clone()),
            last_good: record.and_then(|r| r.last_good.as_ref()).map(|a| a.version.clone()),
            last_result: record.and_then(|r| r.last_result.clone()),
            staged_newer,
            units,
            extension: name,
        });
    }
    out
}

/// Human-readable status.
pub fn render(status: &NodeStatus) -> String {
    let mut out = String::new();
    for s in &status.extensions {
        let dash = || "-".to_string();
        out.push_str(&format!(
            "{}: linked {} ({}), {}, recorded {}, last good {}\n",
            s.extension,
            s.linked_version.clone().unwrap_or_else(dash),
            s.linked.clone().unwrap_or_else(|| "nothing".into()),
            if s.merged { "merged" } else { "not merged" },
            s.recorded.clone().unwrap_or_else(dash),
            s.last_good.clone().unwrap_or_else(dash),
        ));
        if let Some(result) = &s.last_result {
            out.push_str(&format!("  last run {}: {:?}: {}\n", result.at, result.outcome, result.message));
        }
        for image in &s.staged_newer {
            out.push_str(&format!("  staged, newer: {image}\n"));
        }
        for unit in &s.units {
            out.push_str(&format!("  {}: {}\n", unit.unit, unit.state));
        }
    }
    if let Some(release) = &status.release {
        out.push_str(&format!("release {} ({}), completed {}\n", release.version, release.role, release.completed_at));
    }
    for c in &status.components {
        out.push_str(&format!("component {} {} (release {}, {})\n", c.component, c.version, c.release, c.installed_at));
    }
    if let Some(failure) = &status.bootstrap_failure {
        out.push_str(&format!(
            "last bootstrap failed at {} {} ({}): {}\n",
            failure.component, failure.version, failure.at, failure.message
        ));
    }
    if !status.pending_restarts.is_empty() {
        out.push_str(&format!("restarts pending: {}\n", status.pending_restarts.join(", ")));
    }
    if status.is_empty() {
        let unread = |what: &str| status.not_read.iter().any(|n| n.what == what);
        let mut why = Vec::new();
        if !unread(LINKS) {
            why.push(format!("no links in {}", observe::LINK_DIRS.map(|d| format!("/{d}")).join(" and ")));
        }
        if !unread(RECORDS) {
            why.push(format!("no records in /{}", super::records::FILE));
        }
        match why.is_empty() {
            true => out.push_str("nothing to show\n"),
            false => out.push_str(&format!("nothing to show: {}\n", why.join(", "))),
        }
    }
    for unread in &status.not_read {
        out.push_str(&format!("could not read {}: {}\n", unread.what, unread.why));
    }
    out
}

/// Links `extension` back to the image before the active one, then refreshes.
pub async fn rollback<S: Systemd>(
    root: &Path,
    config: &NodeConfig,
    extension: &str,
    systemd: Option<&S>,
) -> Result<Report> {
    {
        let _lock = lock::acquire(root)?;
        let mut records = Records::load(root)?;
        let record = records.extensions.get(extension).cloned().unwrap_or_default();
        let active = record.active.as_ref().map(|a| a.sha256.clone()).unwrap_or_default();
        let target = [&record.previous, &record.last_good]
            .into_iter()
            .flatten()
            .find(|a| a.sha256 != active && on_disk(root, &a.image).is_file())
            .cloned()
            .ok_or_else(|| {
                bad_input(format!("no earlier image of {extension} is recorded (or it is gone from the node)"))
            })?;
        let link = observe::linked(root)?
            .into_iter()
            .find(|l| l.name == extension)
            .map(|l| l.link)
            .map_or_else(|| super::root::entry(root, format!("/etc/extensions/{extension}.raw")), Ok)?;
        replace_symlink(&link, &on_disk(root, &target.image))?;
        records.note(
            extension,
            Outcome::RolledBack,
            Some(&target.version),
            &format!("rolled back to {} on request", target.version),
        );
        records.save_extensions(root)?;
    }
    refresh::refresh(root, config, systemd, Timing::from_config(config)).await
}
