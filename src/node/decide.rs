//! The node agent's decisions, as pure functions: what changed, which units to restart, whether
//! a unit is healthy, where to roll back to.

use std::collections::BTreeMap;

use super::records::{Activation, ExtensionRecord};
use super::systemd::UnitState;
use crate::model::manifest::{HealthRule, Require};

/// How an extension's linked image relates to what the records say is active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The active image is still linked.
    Same,
    /// A different image is linked; `from` is the version active before, if any.
    Changed { from: Option<String> },
}

pub fn change(record: Option<&ExtensionRecord>, linked_sha256: &str) -> Change {
    match record.and_then(|r| r.active.as_ref()) {
        Some(active) if active.sha256 == linked_sha256 => Change::Same,
        Some(active) => Change::Changed { from: Some(active.version.clone()) },
        None => Change::Changed { from: None },
    }
}

/// Each unit to restart once, with the changed extensions that name it, in first-named order.
pub fn restarts(changed: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (extension, units) in changed {
        for unit in units {
            match out.iter_mut().find(|(u, _)| u == unit) {
                Some((_, extensions)) => extensions.push(extension.clone()),
                None => out.push((unit.clone(), vec![extension.clone()])),
            }
        }
    }
    out
}

/// Whether a restarted unit is healthy: its job finished `done`, and in every sample over the
/// health window it is active and systemd did not restart it.
pub fn judge(unit: &str, job_result: &str, start: &UnitState, samples: &[UnitState]) -> Result<(), String> {
    if job_result != "done" {
        let last = samples.last().unwrap_or(start);
        return Err(format!("{unit}: its restart job ended {job_result:?} ({last})"));
    }
    for sample in samples {
        if sample.active_state != "active" {
            return Err(format!("{unit} is not up ({sample})"));
        }
        if sample.n_restarts > start.n_restarts {
            return Err(format!("{unit} restarted during the health window ({sample})"));
        }
    }
    Ok(())
}

/// A restarted unit's health as it counts for an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Not up, but it does not count against the update; the note says why.
    Excused(String),
    /// Not up because of the update: roll back.
    Failed(String),
}

impl Verdict {
    pub fn note(&self) -> Option<&str> {
        match self {
            Verdict::Excused(note) => Some(note),
            _ => None,
        }
    }

    pub fn failure(&self) -> Option<&str> {
        match self {
            Verdict::Failed(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Why a unit's health does not count, from its rule: `require: none`, or an `unless_missing`
/// file that does not exist (yet).
pub fn exempt(rule: Option<&HealthRule>, exists: &dyn Fn(&str) -> bool) -> Option<String> {
    let rule = rule?;
    if rule.require == Require::None {
        return Some("its health rule requires nothing".to_string());
    }
    let missing = rule.unless_missing.as_deref().filter(|path| !exists(path))?;
    Some(format!("{missing} does not exist yet"))
}

/// What is known of a unit before an update.
#[derive(Clone, Copy, Debug)]
pub struct Before<'a> {
    /// Nothing of the extension was ever activated or tried: there is no "before".
    pub first_activation: bool,
    /// The extension's last activation failed (its image stayed linked): a single sample of a
    /// crash-looping unit may catch it running, so this settles it.
    pub last_failed: bool,
    /// The unit's state just before the merge, if it was loaded.
    pub state: Option<&'a UnitState>,
}

/// How a unit's health counts for an extension: an exempt unit, or one that was not up before
/// the update either (not on a first activation, where there was no before), is excused.
pub fn consider(unit: &str, health: Result<(), String>, exempt: Option<String>, before: Before<'_>) -> Verdict {
    let Err(reason) = health else { return Verdict::Healthy };
    if let Some(why) = exempt {
        return Verdict::Excused(format!("{reason}, not counted: {why}"));
    }
    if before.first_activation {
        return Verdict::Failed(reason);
    }
    let why = match before.state {
        _ if before.last_failed => Some("its last activation failed".to_string()),
        Some(state) if state.active_state == "active" => None,
        Some(state) => Some(state.to_string()),
        None => Some("not loaded".to_string()),
    };
    match why {
        Some(why) => {
            Verdict::Excused(format!("{reason}, not counted: {unit} was not up before the update either ({why})"))
        }
        None => Verdict::Failed(reason),
    }
}

/// What to link after `failed` (an image's sha256) did not come up: the last good image, else
/// the one before, if either differs from the failed one.
pub fn rollback_target(record: &ExtensionRecord, failed: &str) -> Option<Activation> {
    [&record.last_good, &record.previous, &record.active].into_iter().flatten().find(|a| a.sha256 != failed).cloned()
}

/// The units an extension restarts: the node config's override, else the image manifest's.
pub fn units_for(overrides: &BTreeMap<String, Vec<String>>, extension: &str, manifest_units: &[String]) -> Vec<String> {
    overrides.get(extension).cloned().unwrap_or_else(|| manifest_units.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, sub: &str, restarts: u32) -> UnitState {
        UnitState { active_state: active.into(), sub_state: sub.into(), n_restarts: restarts }
    }

    fn activation(version: &str) -> Activation {
        Activation {
            version: version.into(),
            image: format!("/opt/extensions/demo/demo-{version}-x86-64.raw"),
            sha256: format!("sha-{version}"),
            artifacts: BTreeMap::new(),
            activated_at: String::new(),
        }
    }

    #[test]
    fn changes_compare_image_digests() {
        let record = ExtensionRecord { active: Some(activation("v1")), ..Default::default() };
        assert_eq!(change(Some(&record), "sha-v1"), Change::Same);
        assert_eq!(change(Some(&record), "sha-v2"), Change::Changed { from: Some("v1".into()) });
        assert_eq!(change(None, "sha-v2"), Change::Changed { from: None });
    }

    #[test]
    fn shared_units_restart_once() {
        let changed = vec![
            ("kubernetes".to_string(), vec!["kubelet.service".to_string()]),
            ("containerd".to_string(), vec!["containerd.service".to_string(), "kubelet.service".to_string()]),
        ];
        assert_eq!(
            restarts(&changed),
            [
                ("kubelet.service".to_string(), vec!["kubernetes".to_string(), "containerd".to_string()]),
                ("containerd.service".to_string(), vec!["containerd".to_string()]),
            ]
        );
    }

    /// The health table: job result, states over the window, restarts.
    #[test]
    fn health_judgements() {
        let start = state("active", "running", 0);
        let up = state("active", "running", 0);
        let cases: [(&str, Vec<UnitState>, bool); 6] = [
            ("done", vec![up.clone(), up.clone()], true),
            ("done", vec![state("active", "exited", 0)], true),
            ("failed", vec![up.clone()], false),
            ("done", vec![up.clone(), state("activating", "auto-restart", 1)], false),
            ("done", vec![up.clone(), state("active", "running", 1)], false),
            ("done", vec![state("failed", "failed", 0)], false),
        ];
        for (result, samples, healthy) in cases {
            assert_eq!(judge("demo.service", result, &start, &samples).is_ok(), healthy, "{result} {samples:?}");
        }
        let err = judge("demo.service", "done", &start, &[state("activating", "auto-restart", 2)]).unwrap_err();
        assert_eq!(err, "demo.service is not up (activating/auto-restart, 2 restarts)");
    }

    /// Which failures count: exempt by the rule, not up before, first activation.
    #[test]
    fn health_considerations() {
        let kubelet =
            HealthRule { require: Require::Active, unless_missing: Some("/var/lib/kubelet/config.yaml".into()) };
        let none = HealthRule { require: Require::None, unless_missing: None };
        assert!(exempt(Some(&kubelet), &|_| false).unwrap().contains("/var/lib/kubelet/config.yaml does not exist"));
        assert_eq!(exempt(Some(&kubelet), &|_| true), None, "the config exists: the rule applies");
        assert!(exempt(Some(&none), &|_| true).is_some());
        assert_eq!(exempt(None, &|_| false), None);

        let up = state("active", "running", 0);
        let down = state("activating", "auto-restart", 4);
        let bad = || Err("kubelet.service is not up".to_string());
        let before = |state, first_activation, last_failed| Before { first_activation, last_failed, state };
        assert_eq!(consider("k", Ok(()), None, before(None, true, false)), Verdict::Healthy);
        let exempted = consider("k", bad(), Some("why".into()), before(Some(&up), false, false));
        assert!(matches!(exempted, Verdict::Excused(_)));
        let regressed = consider("k", bad(), None, before(Some(&up), false, false));
        assert!(matches!(regressed, Verdict::Failed(_)), "it was up before");
        let excused = consider("k", bad(), None, before(Some(&down), false, false));
        assert!(excused.note().unwrap().contains("was not up before the update either (activating/auto-restart"));
        let new_unit = consider("k", bad(), None, before(None, false, false));
        assert!(matches!(new_unit, Verdict::Excused(_)), "a unit new in this version");
        let first = consider("k", bad(), None, before(None, true, false));
        assert!(matches!(first, Verdict::Failed(_)), "a first activation counts");
        // a crash-looping unit caught running in its one sample: the records settle it
        let caught_running = consider("k", bad(), None, before(Some(&up), false, true));
        assert!(caught_running.note().unwrap().contains("its last activation failed"), "{caught_running:?}");
    }

    #[test]
    fn rollback_prefers_the_last_good_image() {
        let record = ExtensionRecord {
            active: Some(activation("v2")),
            previous: Some(activation("v1")),
            last_good: Some(activation("v2")),
            last_result: None,
        };
        assert_eq!(rollback_target(&record, "sha-v3").unwrap().version, "v2");
        assert_eq!(rollback_target(&record, "sha-v2").unwrap().version, "v1");
        assert_eq!(rollback_target(&ExtensionRecord::default(), "sha-v1"), None);
    }
}
