//! `bakery node refresh`: validate what is linked, merge it (an image the merge still fails on
//! is put back, [`super::merge`]), restart what changed, check that it stays up, roll back what
//! does not, record it all. Links flip by rename and the records are
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
use super::records::{Activation, ExtensionRecord, Outcome, Records};
use super::systemd::{Systemd, UnitState};
use super::{keep, lock, merge, sysext};
use crate::model::manifest::HealthRule;
use crate::model::version::compare;
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
    /// The failures (rolled back, refused, failed), which make the command exit 1: the node
    /// is not on what was linked, whether validation or the merge refused it.
    pub fn failures(&self) -> Vec<&Line> {
        self.lines
            .iter()
            .filter(|l| matches!(l.outcome, Outcome::RolledBack | Outcome::Refused | Outcome::Failed))
            .collect()
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
    health: BTreeMap<String, HealthRule>,
}

/// Refreshes the node at `root`; `systemd` is None when units cannot be restarted (`--root`).
pub async fn refresh<S: Systemd>(
    root: &Path,
    config: &NodeConfig,
    systemd: Option<&S>,
    timing: Timing,
) -> Result<Report> {
    let _lock = lock::acquire(root)?;
    merge::restore_held(root)?;
    let linked = observe::linked(root)?;
    if linked.is_empty() {
        let merged = sysext::merged(root);
        if merged.is_empty() {
            return Ok(Report::default()); // nothing linked, nothing merged: the caller says so
        }
        tracing::info!("unmerging {}: nothing is linked any more", merged.join(", "));
    }
    let mut records = Records::load(root)?;
    let mut host = Host::read(root)?;
    host.require_signed = config.require_signed;
    host.image_policy = sysext::merge_policy(config.require_signed);
    let mut report = Report::default();
    let overrides: BTreeMap<String, Vec<String>> =
        config.extensions.iter().filter_map(|(n, e)| e.restart_units.clone().map(|u| (n.clone(), u))).collect();

    let mut candidates = Vec::new();
    for linked in linked {
        match observe::check(&linked.image, &linked.name, &host) {
            Ok(checked) => {
                let sha256 = hash_file(&linked.image)?.0.to_string();
                let manifest = checked.inspection.manifest.as_ref();
                let artifacts = manifest
                    .map(|m| m.artifacts.iter().map(|a| (a.name.clone(), a.sha256.clone())).collect())
                    .unwrap_or_default();
                let health = manifest.map(|m| m.health.clone()).unwrap_or_default();
                let units = decide::units_for(&overrides, &linked.name, &checked.restart_units);
                candidates.push(Candidate { linked, version: checked.version, sha256, artifacts, units, health });
            }
            Err(reason) => {
                let back = put_back(root, &host, &linked, &records)?;
                let message = format!("refused {}: {reason}; {back}", linked.node_image);
                tracing::warn!("{}: {message}", linked.name);
                records.note(&linked.name, Outcome::Refused, None, &message);
                report.push(&linked.name, None, Outcome::Refused, message);
            }
        }
    }
    records.save_extensions(root)?;

    let changed: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| decide::change(records.extensions.get(&c.linked.name), &c.sha256) != Change::Same)
        .collect();
    // what was checked may change before systemd-sysext reads it (sysupdate, a failing disk):
    // the merge fallback catches that; tests rewrite an image here
    crate::util::failpoint::pause("refresh:checked");
    let activated = activate(root, &host, &mut records, &mut report, &changed, systemd, timing).await;
    if let Err(error) = activated {
        // a step failed part way: every change without a verdict yet is recorded as failed
        let message = crate::error::describe(&error);
        for candidate in changed.iter().filter(|c| !report.lines.iter().any(|l| l.extension == c.linked.name)) {
            records.note(&candidate.linked.name, Outcome::Failed, Some(&candidate.version), &message);
        }
        records.save_extensions(root)?;
        return Err(error);
    }
    for candidate in candidates.iter().filter(|c| !changed.iter().any(|d| d.linked.name == c.linked.name)) {
        report.push(
            &candidate.linked.name,
            Some(&candidate.version),
            Outcome::Unchanged,
            format!("{} active", candidate.version),
        );
    }
    records.save_extensions(root)?;
    keep::sync(root, &records)?;
    Ok(report)
}

/// Merges, restarts what changed, judges its health, and records each changed extension as
/// activated or rolled back.
async fn activate<S: Systemd>(
    root: &Path,
    host: &Host,
    records: &mut Records,
    report: &mut Report,
    changed: &[&Candidate],
    systemd: Option<&S>,
    timing: Timing,
) -> Result<()> {
    let restarts = |changed: &[&Candidate]| {
        decide::restarts(&changed.iter().map(|c| (c.linked.name.clone(), c.units.clone())).collect::<Vec<_>>())
    };
    // how each unit was before the merge: a unit that was not up then is not the update's fault
    let mut before: BTreeMap<String, UnitState> = BTreeMap::new();
    if let Some(systemd) = systemd {
        for (unit, _) in &restarts(changed) {
            if let Ok(state) = systemd.state(unit).await {
                before.insert(unit.clone(), state);
            }
        }
    }
    let links: Vec<&Linked> = changed.iter().map(|c| &c.linked).collect();
    let faults = merge::merge(root, host.image_policy, &links, |linked| put_back(root, host, linked, records))?;
    for fault in &faults {
        let version = changed.iter().find(|c| c.linked.name == fault.name).map(|c| c.version.as_str());
        records.note(&fault.name, Outcome::Failed, version, &fault.message);
        report.push(&fault.name, version, Outcome::Failed, fault.message.clone());
    }
    records.save_extensions(root)?;
    let changed: Vec<&Candidate> =
        changed.iter().filter(|c| !faults.iter().any(|f| f.name == c.linked.name)).copied().collect();
    let plan = restarts(&changed);
    if let Some(systemd) = systemd {
        systemd.reload().await?;
    }

    let mut verdicts: BTreeMap<String, Vec<decide::Verdict>> = BTreeMap::new();
    if let Some(systemd) = systemd {
        for (unit, extensions, verdict) in check_health(systemd, &plan, timing).await? {
            for extension in extensions {
                let candidate = changed.iter().find(|c| c.linked.name == extension).expect("planned from changed");
                let record = records.extensions.get(&extension);
                let last = record.and_then(|r| r.last_result.as_ref());
                let before = decide::Before {
                    first_activation: record.is_none_or(|r| r.active.is_none() && r.last_result.is_none()),
                    last_failed: last.is_some_and(|l| l.outcome == Outcome::Failed),
                    state: before.get(&unit),
                };
                let exempt = decide::exempt(candidate.health.get(&unit), &|p| on_disk(root, p).exists());
                let judged = decide::consider(&unit, verdict.clone(), exempt, before);
                verdicts.entry(extension).or_default().push(judged);
            }
        }
    }

    for candidate in changed {
        let name = candidate.linked.name.as_str();
        let from = records.extensions.get(name).and_then(|r| r.active.as_ref()).map(|a| a.version.clone());
        let verdicts = verdicts.remove(name).unwrap_or_default();
        let notes: Vec<&str> = verdicts.iter().filter_map(decide::Verdict::note).collect();
        let failure = verdicts.iter().find_map(decide::Verdict::failure);
        let (outcome, message) = match failure {
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
                let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
                let message = format!("{} active{was}{restarted}{notes}", candidate.version);
                tracing::info!("{name}: {message}");
                (Outcome::Activated, message)
            }
            Some(reason) => {
                let result = roll_back(root, host, records, candidate, reason, systemd).await?;
                tracing::warn!("{name}: {}", result.1);
                result
            }
        };
        records.note(name, outcome.clone(), Some(&candidate.version), &message);
        report.push(name, Some(&candidate.version), outcome, message);
        records.save_extensions(root)?;
    }
    Ok(())
}

/// A unit judged for the health window: the extensions that restart it and the verdict on it.
type Judged = (String, Vec<String>, Result<(), String>);

/// Restarts every planned unit, then watches them all for the health window.
async fn check_health<S: Systemd>(systemd: &S, plan: &[(String, Vec<String>)], timing: Timing) -> Result<Vec<Judged>> {
    // unit, extensions, and the restart job's result with the unit's state right after it, or
    // why the unit could not be restarted at all (not found, refused): judged like a failed one
    type Watched<'a> = (&'a str, &'a [String], Result<(String, UnitState), String>);
    let mut watched: Vec<Watched> = Vec::new();
    for (unit, extensions) in plan {
        tracing::info!("restarting {unit}");
        let restarted = match restart(systemd, unit).await {
            Ok(result) => Ok((result, systemd.state(unit).await?)),
            Err(e) => Err(format!("{unit}: {}", crate::error::describe(&e))),
        };
        watched.push((unit, extensions, restarted));
    }
    let mut samples: Vec<Vec<UnitState>> = vec![Vec::new(); watched.len()];
    if watched.iter().any(|w| w.2.is_ok()) {
        let deadline = Instant::now() + timing.health_window;
        loop {
            for (index, (unit, _, restarted)) in watched.iter().enumerate() {
                if restarted.is_ok() {
                    samples[index].push(systemd.state(unit).await?);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(timing.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    Ok(watched
        .into_iter()
        .zip(samples)
        .map(|((unit, extensions, restarted), samples)| {
            let verdict = restarted.and_then(|(result, baseline)| decide::judge(unit, &result, &baseline, &samples));
            (unit.to_string(), extensions.to_vec(), verdict)
        })
        .collect())
}

/// Links `candidate`'s extension back to a good image: the last good one (else the previous),
/// put back from its kept copy when something removed it, else the newest earlier image still
/// on disk that passes validation. With none, the failing image stays linked: an extension is
/// never unlinked over its health, and a first activation has nothing to go back to.
async fn roll_back<S: Systemd>(
    root: &Path,
    host: &Host,
    records: &mut Records,
    candidate: &Candidate,
    reason: &str,
    systemd: Option<&S>,
) -> Result<(Outcome, String)> {
    let name = &candidate.linked.name;
    let record = records.extension(name).clone();
    let target = rollback_target(root, host, records, &record, candidate)?;
    let Some((image, version)) = target else {
        let message = format!(
            "{reason} after {name} {}; no earlier image to go back to, so {name} {} stays linked",
            candidate.version, candidate.version
        );
        return Ok((Outcome::Failed, message));
    };
    relink(root, &candidate.linked, &image)?;
    let mut message = format!("{reason} after {name} {}; rolled back to {version}", candidate.version);
    sysext::refresh(root, host.image_policy)?;
    if let Some(systemd) = systemd {
        systemd.reload().await?;
        for unit in &candidate.units {
            match restart(systemd, unit).await {
                Ok(result) if result == "done" => {}
                Ok(result) => message.push_str(&format!("; {unit}: its restart after the rollback ended {result:?}")),
                Err(e) => message.push_str(&format!("; {unit}: {}", crate::error::describe(&e))),
            }
        }
    }
    Ok((Outcome::RolledBack, message))
}

/// Restarts `unit` afresh: a version that crash-looped may have used up its start rate limit,
/// and then systemd refuses to start the next one ("start request repeated too quickly").
async fn restart<S: Systemd>(systemd: &S, unit: &str) -> Result<String> {
    if let Err(e) = systemd.reset_failed(unit).await {
        tracing::debug!("{}", crate::error::describe(&e));
    }
    systemd.restart(unit).await
}

/// Where a rollback goes: (node path, version).
fn rollback_target(
    root: &Path,
    host: &Host,
    records: &Records,
    record: &ExtensionRecord,
    candidate: &Candidate,
) -> Result<Option<(String, String)>> {
    let name = &candidate.linked.name;
    let good = |node_image: &str| observe::check(&on_disk(root, node_image), name, host).ok();
    if let Some(target) = decide::rollback_target(record, &candidate.sha256)
        && keep::restore(root, &target.image)?
        && good(&target.image).is_some()
    {
        return Ok(Some((target.image, target.version)));
    }
    let proven_bad = |version: &str| {
        records.history.iter().any(|e| {
            e.extension == *name
                && e.version.as_deref() == Some(version)
                && matches!(e.outcome, Outcome::RolledBack | Outcome::Failed)
        })
    };
    let mut earlier: Vec<(String, String)> = observe::staged(root, name)
        .into_iter()
        .chain(keep::kept(root, name))
        .filter(|image| *image != candidate.linked.node_image)
        .filter_map(|image| {
            let checked = good(&image).filter(|c| !proven_bad(&c.version))?;
            let older = compare(&checked.version, &candidate.version).is_lt();
            // hashed only when older: images are large
            (older && hash_file(&on_disk(root, &image)).ok()?.0.to_string() != candidate.sha256)
                .then_some((image, checked.version))
        })
        .collect();
    earlier.sort_by(|a, b| compare(&b.1, &a.1));
    Ok(earlier.into_iter().next())
}

/// After a refused image: link the active (else last good) image again, put back from its kept
/// copy when removed, or set the link aside.
fn put_back(root: &Path, host: &Host, linked: &Linked, records: &Records) -> Result<String> {
    let record = records.extensions.get(&linked.name);
    let mut targets = record.into_iter().flat_map(|r| [&r.active, &r.last_good]).flatten();
    let target = targets.find(|a| {
        a.image != linked.node_image
            && keep::restore(root, &a.image).unwrap_or(false)
            && observe::check(&on_disk(root, &a.image), &linked.name, host).is_ok()
    });
    match target {
        Some(target) => {
            relink(root, linked, &target.image)?;
            Ok(format!("linked back to {}", target.version))
        }
        None => {
            let aside = set_aside(linked, "refused")?;
            Ok(format!("set aside as {}", aside.display()))
        }
    }
}

/// Points the extension's link at `image` (a node path), replacing a plain file by a link.
fn relink(root: &Path, linked: &Linked, image: &str) -> Result<()> {
    if !linked.is_symlink {
        set_aside(linked, "replaced")?;
    }
    replace_symlink(&linked.link, &on_disk(root, image))
}

/// Renames the link (or file) to a hidden name systemd-sysext and bakery ignore.
fn set_aside(linked: &Linked, why: &str) -> Result<PathBuf> {
    let dir = linked.link.parent().expect("links live in a directory");
    let aside = dir.join(format!(".{}.raw.{why}", linked.name));
    std::fs::rename(&linked.link, &aside).with_context(|| format!("setting {} aside", linked.link.display()))?;
    crate::util::atomic::sync_dir(dir)?;
    Ok(aside)
}
