//! The controller's Prometheus exposition (`--metrics-addr`, served by `util::prometheus`):
//! per rollout the Nodes by state and the phase, as the leader last decided them, whether this
//! replica leads, and the target patches it made.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use super::crd::{ExtensionRolloutStatus, Phase};
use crate::util::prometheus::escape;

const PHASES: [Phase; 5] = [Phase::Pending, Phase::Progressing, Phase::Paused, Phase::Halted, Phase::Complete];

#[derive(Debug, Default)]
struct Inner {
    leader: bool,
    /// rollout → its last decided status
    rollouts: BTreeMap<String, ExtensionRolloutStatus>,
    /// rollout → target annotations set
    patches: BTreeMap<String, u64>,
}

/// What the endpoint shows; cheap to clone and share with the loop.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("metrics lock")
    }

    pub fn leader(&self, leads: bool) {
        self.lock().leader = leads;
    }

    /// The status just decided for `rollout`.
    pub fn status(&self, rollout: &str, status: &ExtensionRolloutStatus) {
        self.lock().rollouts.insert(rollout.to_string(), status.clone());
    }

    /// `rollout` is gone: its series too.
    pub fn forget(&self, rollout: &str) {
        self.lock().rollouts.remove(rollout);
    }

    /// The rollouts it has series for.
    pub fn rollouts(&self) -> Vec<String> {
        self.lock().rollouts.keys().cloned().collect()
    }

    pub fn patched(&self, rollout: &str, nodes: usize) {
        *self.lock().patches.entry(rollout.to_string()).or_default() += nodes as u64;
    }

    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP bakery_rollout_leader Whether this replica holds the leader Lease and acts (1) or waits (0).\n",
        );
        out.push_str("# TYPE bakery_rollout_leader gauge\n");
        let _ = writeln!(out, "bakery_rollout_leader {}", u8::from(inner.leader));
        out.push_str("# HELP bakery_rollout_nodes Selected Nodes of each rollout by state.\n");
        out.push_str("# TYPE bakery_rollout_nodes gauge\n");
        for (name, s) in &inner.rollouts {
            let name = escape(name);
            for (state, count) in
                [("updated", s.updated), ("in_flight", s.in_flight), ("failed", s.failed), ("pending", s.pending)]
            {
                let _ = writeln!(out, "bakery_rollout_nodes{{rollout=\"{name}\",state=\"{state}\"}} {count}");
            }
        }
        out.push_str("# HELP bakery_rollout_phase The phase of each rollout (1 for the current one).\n");
        out.push_str("# TYPE bakery_rollout_phase gauge\n");
        for (name, s) in &inner.rollouts {
            let name = escape(name);
            for phase in PHASES {
                let value = u8::from(s.phase == phase);
                let _ =
                    writeln!(out, "bakery_rollout_phase{{rollout=\"{name}\",phase=\"{}\"}} {value}", phase.as_str());
            }
        }
        out.push_str("# HELP bakery_rollout_unavailable Selected Nodes unavailable for any reason, and the budget.\n");
        out.push_str("# TYPE bakery_rollout_unavailable gauge\n");
        for (name, s) in &inner.rollouts {
            let _ = writeln!(out, "bakery_rollout_unavailable{{rollout=\"{}\"}} {}", escape(name), s.unavailable);
        }
        out.push_str(
            "# HELP bakery_rollout_max_unavailable spec.maxUnavailable resolved against the selected Nodes.\n",
        );
        out.push_str("# TYPE bakery_rollout_max_unavailable gauge\n");
        for (name, s) in &inner.rollouts {
            let _ =
                writeln!(out, "bakery_rollout_max_unavailable{{rollout=\"{}\"}} {}", escape(name), s.max_unavailable);
        }
        out.push_str("# HELP bakery_rollout_target_patches_total Target annotations this replica set on Nodes.\n");
        out.push_str("# TYPE bakery_rollout_target_patches_total counter\n");
        for (name, count) in &inner.patches {
            let _ = writeln!(out, "bakery_rollout_target_patches_total{{rollout=\"{}\"}} {count}", escape(name));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_nodes_by_state_the_phase_and_leadership() {
        let metrics = Metrics::default();
        assert!(metrics.render().lines().any(|l| l == "bakery_rollout_leader 0"));
        metrics.leader(true);
        let status = ExtensionRolloutStatus {
            phase: Phase::Progressing,
            updated: 3,
            in_flight: 1,
            failed: 0,
            pending: 6,
            unavailable: 1,
            max_unavailable: 1,
            ..ExtensionRolloutStatus::default()
        };
        metrics.status("k8s-\"1.32\"", &status);
        metrics.patched("k8s-\"1.32\"", 4);
        let text = metrics.render();
        for line in [
            "bakery_rollout_leader 1",
            "bakery_rollout_nodes{rollout=\"k8s-\\\"1.32\\\"\",state=\"updated\"} 3",
            "bakery_rollout_nodes{rollout=\"k8s-\\\"1.32\\\"\",state=\"in_flight\"} 1",
            "bakery_rollout_nodes{rollout=\"k8s-\\\"1.32\\\"\",state=\"failed\"} 0",
            "bakery_rollout_nodes{rollout=\"k8s-\\\"1.32\\\"\",state=\"pending\"} 6",
            "bakery_rollout_phase{rollout=\"k8s-\\\"1.32\\\"\",phase=\"Progressing\"} 1",
            "bakery_rollout_phase{rollout=\"k8s-\\\"1.32\\\"\",phase=\"Complete\"} 0",
            "bakery_rollout_unavailable{rollout=\"k8s-\\\"1.32\\\"\"} 1",
            "bakery_rollout_target_patches_total{rollout=\"k8s-\\\"1.32\\\"\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        metrics.forget("k8s-\"1.32\"");
        assert!(!metrics.render().contains("bakery_rollout_nodes{"));
    }
}
