//! The node agent's decisions, as pure functions: what changed, which units to restart, whether
//! a unit is healthy, where to roll back to.

use std::collections::BTreeMap;

use super::records::{Activation, ExtensionRecord};
use super::systemd::UnitState;

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
