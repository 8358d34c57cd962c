//! `bakery node refresh`: validate what is linked, merge it, restart what changed, check that it
//! stays up, roll back what does not, record it all. Links flip by rename and the records are
//! written atomically at consistent points, so a run killed at any moment leaves a node that the
//! next run converges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::config::NodeConfig;
use super::decide::{self, Change};
use super::observe::{self, Host, Linked, on_disk};
use super::records::{Activation, Outcome, Records};
use super::systemd::{Systemd, UnitState};
use super::{lock, sysext};
use crate::pipeline::publish::hash_file;
use crate::sysupdate::update::replace_symlink;

/// One extension's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    pub extension: String,
    pub version: Option<String>,
    pub outcome: Outcome,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// The failures (rolled back, failed), which make the command exit 1.
    pub fn failures(&self) -> Vec<&Line> {
        self.lines.iter().filter(|l| matches!(l.outcome, Outcome::RolledBack | Outcome::Failed)).collect()
    }

    fn push(&mut self, extension: &str, version: Option<&str>, outcome: Outcome, message: String) {
        self.lines.push(Line { extension: extension.into(), version: version.map(str::to_string), outcome, message });
    }
}

/// How long to watch, how often to look.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub health_window: Duration,
    pub poll: Duration,
}

impl Timing {
    pub fn from_config(config: &NodeConfig) -> Self {
        Self { health_window: Duration::from_secs(config.health_window), poll: Duration::from_millis(500) }
    }
}

/// A linked image that may be merged.
struct Candidate {
    linked: Linked,
    version: String,
    sha256: String,
    artifacts: BTreeMap<String, String>,
    units: Vec<String>,
}

/// Refreshes the node at `root`; `systemd` is None when units cannot be restarted (`--root`).
pub async fn refresh<S: Systemd>(
    root: &Path,
    config: &NodeConfig,
    systemd: Option<&S>,
    timing: Timing,
) -> Result<Report> {
    let _lock = lock::acquire(root)?;
    let mut records = Records::load(root)?;
    let host = Host::read(root)?;
    let mut report = Report::default();
    let overrides: BTreeMap<String, Vec<String>> =
        config.extensions.iter().filter_map(|(n, e)| e.restart_units.clone().map(|u| (n.clone(), u))).collect();

    let mut candidates = Vec::new();
    for linked in observe::linked(root)? {
        match observe::check(&linked.image, &linked.name, &host) {
            Ok(checked) => {
                let sha256 = hash_file(&linked.image)?.0.to_string();
                let artifacts = checked
                    .inspection
                    .manifest
                    .as_ref()
                    .map(|m| m.artifacts.iter().map(|a| (a.name.clone(), a.sha256.clone())).collect())
                    .unwrap_or_default();
                let units = decide::units_for(&overrides, &linked.name, &checked.restart_units);
                candidates.push(Candidate { linked, version: checked.version, sha256, artifacts, units });
            }
            Err(reason) => {
                let back = put_back(root, &linked, &records)?;
                let message = format!("refused {}: {reason}; {back}", linked.node_image);
                tracing::warn!("{}: {message}", linked.name);
                records.note(&linked.name, Outcome::Refused, None, &message);
                report.push(&linked.name, None, Outcome::Refused, message);
            }
        }
    }
    records.save(root)?;

    let changed: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| decide::change(records.extensions.get(&c.linked.name), &c.sha256) != Change::Same)
        .collect();
    sysext::refresh(root)?;
    if let Some(systemd) = systemd {
        systemd.reload().await?;
    }

    let plan = decide::restarts(&changed.iter().map(|c| (c.linked.name.clone(), c.units.clone())).collect::<Vec<_>>());
    let mut unhealthy: BTreeMap<String, String> = BTreeMap::new();
    if let Some(systemd) = systemd {
        for (extension, reason) in check_health(systemd, &plan, timing).await? {
            unhealthy.entry(extension).or_insert(reason);
        }
    }

    for candidate in &changed {
        let name = candidate.linked.name.as_str();
        let from = records.extensions.get(name).and_then(|r| r.active.as_ref()).map(|a| a.version.clone());
        match unhealthy.get(name) {
            None => {
                let activation = Activation {
                    version: candidate.version.clone(),
                    image: candidate.linked.node_image.clone(),
                    sha256: candidate.sha256.clone(),
                    artifacts: candidate.artifacts.clone(),
                    activated_at: crate::util::time::now_rfc3339(),
                };
                records.activate(name, activation.clone());
                records.extension(name).last_good = Some(activation);
                let was = from.map(|v| format!(" (was {v})")).unwrap_or_default();
                let restarted = if systemd.is_some() && !candidate.units.is_empty() {
                    format!("; restarted {}", candidate.units.join(", "))
                } else {
                    String::new()
                };
                let message = format!("{} active{was}{restarted}", candidate.version);
                tracing::info!("{name}: {message}");
                records.note(name, Outcome::Activated, Some(&candidate.version), &message);
                report.push(name, Some(&candidate.version), Outcome::Activated, message);
            }
            Some(reason) => {
                let (outcome, message) = roll_back(root, &mut records, candidate, reason, systemd).await?;
                tracing::error!("{name}: {message}");
                records.note(name, outcome.clone(), Some(&candidate.version), &message);
                report.push(name, Some(&candidate.version), outcome, message);
            }
        }
        records.save(root)?;
    }
    for candidate in candidates.iter().filter(|c| !changed.iter().any(|d| d.linked.name == c.linked.name)) {
        report.push(
            &candidate.linked.name,
            Some(&candidate.version),
            Outcome::Unchanged,
            format!("{} active", candidate.version),
        );
    }
    records.save(root)?;
    Ok(report)
}

/// Restarts every planned unit, then watches them all for the health window. Returns the
/// extensions whose units failed, with the reason.
async fn check_health<S: Systemd>(
    systemd: &S,
    plan: &[(String, Vec<String>)],
    timing: Timing,
) -> Result<Vec<(String, String)>> {
    let mut watched: Vec<(&str, &[String], String, UnitState)> = Vec::new();
    for (unit, extensions) in plan {
        tracing::info!("restarting {unit}");
        let result = systemd.restart(unit).await?;
        let baseline = systemd.state(unit).await?;
        watched.push((unit, extensions, result, baseline));
    }
    let mut samples: Vec<Vec<UnitState>> = vec![Vec::new(); watched.len()];
    if !watched.is_empty() {
        let deadline = Instant::now() + timing.health_window;
        loop {
            for (index, (unit, ..)) in watched.iter().enumerate() {
                samples[index].push(systemd.state(unit).await?);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(timing.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    let mut failed = Vec::new();
    for ((unit, extensions, result, baseline), samples) in watched.iter().zip(&samples) {
        if let Err(reason) = decide::judge(unit, result, baseline, samples) {
            failed.extend(extensions.iter().map(|e| (e.clone(), reason.clone())));
        }
    }
    Ok(failed)
}

/// Links `candidate`'s extension back to its last good image (or unlinks it when there is
/// none), merges again and restarts its units.
async fn roll_back<S: Systemd>(
    root: &Path,
    records: &mut Records,
    candidate: &Candidate,
    reason: &str,
    systemd: Option<&S>,
) -> Result<(Outcome, String)> {
    let name = &candidate.linked.name;
    let record = records.extension(name).clone();
    let target = decide::rollback_target(&record, &candidate.sha256).filter(|t| on_disk(root, &t.image).is_file());
    let (outcome, message) = match &target {
        Some(target) => {
            relink(&candidate.linked, &target.image)?;
            (
                Outcome::RolledBack,
                format!("{reason} after {name} {}; rolled back to {}", candidate.version, target.version),
            )
        }
        None => {
            set_aside(&candidate.linked, "failed")?;
            (
                Outcome::Failed,
                format!(
                    "{reason} after {name} {}; no earlier image to go back to, so {name} is unlinked",
                    candidate.version
                ),
            )
        }
    };
    sysext::refresh(root)?;
    if let Some(systemd) = systemd {
        systemd.reload().await?;
        for unit in &candidate.units {
            let result = systemd.restart(unit).await?;
            if result != "done" {
                tracing::warn!("{unit}: restart after the rollback ended {result:?}");
            }
        }
    }
    Ok((outcome, message))
}

/// After a refused image: link the active (else last good) image again, or set the link aside.
fn put_back(root: &Path, linked: &Linked, records: &Records) -> Result<String> {
    let record = records.extensions.get(&linked.name);
    let target = record
        .and_then(|r| [&r.active, &r.last_good].into_iter().flatten().find(|a| a.image != linked.node_image).cloned())
        .filter(|a| on_disk(root, &a.image).is_file());
    match target {
        Some(target) => {
            relink(linked, &target.image)?;
            Ok(format!("linked back to {}", target.version))
        }
        None => {
            let aside = set_aside(linked, "refused")?;
            Ok(format!("set aside as {}", aside.display()))
        }
    }
}

/// Points the extension's link at `image` (a node path), replacing a plain file by a link.
fn relink(linked: &Linked, image: &str) -> Result<()> {
    if !linked.is_symlink {
        set_aside(linked, "replaced")?;
    }
    replace_symlink(&linked.link, Path::new(image))
}

/// Renames the link (or file) to a hidden name systemd-sysext and bakery ignore.
fn set_aside(linked: &Linked, why: &str) -> Result<PathBuf> {
    let dir = linked.link.parent().expect("links live in a directory");
    let aside = dir.join(format!(".{}.raw.{why}", linked.name));
    std::fs::rename(&linked.link, &aside).with_context(|| format!("setting {} aside", linked.link.display()))?;
    crate::util::atomic::sync_dir(dir)?;
    Ok(aside)
}
