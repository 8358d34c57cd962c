//! A Node as the rollout decision sees it: what the API object says, flattened (labels,
//! annotations, since when Ready and `BakeryUpToDate` are True, schedulable or not, going away
//! or not).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;

use crate::cluster::contract::{self, STATE};

/// A Node as the decision needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// For the target patch's precondition.
    pub resource_version: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Ready is True, since then (its lastTransitionTime); None when NotReady or unknown.
    pub ready_since: Option<Timestamp>,
    /// `BakeryUpToDate` is True, since then; None when False or absent.
    pub up_to_date_since: Option<Timestamp>,
    /// `spec.unschedulable` or the `node.kubernetes.io/unschedulable` taint.
    pub unschedulable: bool,
    /// `metadata.deletionTimestamp` is set: the Node is dropped.
    pub deleting: bool,
}

impl NodeView {
    /// The view of `node`. A True condition without a transition time counts as true since
    /// the epoch.
    pub fn from_node(node: &Node) -> Self {
        let meta = &node.metadata;
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let true_since = |type_: &str| {
            let c = conditions.iter().find(|c| c.type_ == type_).filter(|c| c.status == "True")?;
            Some(c.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
        };
        let spec = node.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let tainted = spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|taints| taints.iter().any(|t| t.key == "node.kubernetes.io/unschedulable"));
        Self {
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            ready_since: true_since("Ready"),
            up_to_date_since: true_since(contract::CONDITION),
            unschedulable: cordoned || tainted,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    pub(super) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(|v| v.trim())
    }

    /// Whether the agent is working on something (any extension).
    pub(super) fn busy(&self) -> bool {
        matches!(self.annotation(STATE), Some("staging" | "activating"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn node_views_read_the_node() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": "w1", "resourceVersion": "9", "labels": {"a": "b"},
                "annotations": {"target.bakery.dev/kubernetes": "v1.32.3"},
                "deletionTimestamp": "2026-11-23T03:00:00Z",
            },
            "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T01:00:00Z"},
                {"type": "BakeryUpToDate", "status": "False", "lastTransitionTime": "2026-11-23T02:00:00Z"},
            ]},
        }))
        .unwrap();
        let view = NodeView::from_node(&node);
        assert_eq!((view.name.as_str(), view.resource_version.as_deref()), ("w1", Some("9")));
        assert_eq!(view.ready_since, Some(at("2026-11-23T01:00:00Z")));
        assert_eq!(view.up_to_date_since, None);
        assert!(view.unschedulable && view.deleting);
        assert_eq!(view.annotations["target.bakery.dev/kubernetes"], "v1.32.3");

        let bare: Node =
            serde_json::from_value(json!({"metadata": {"name": "w2"}, "spec": {"unschedulable": true}})).unwrap();
        let view = NodeView::from_node(&bare);
        assert_eq!(
            (view.ready_since, view.unschedulable, view.deleting),
            (None, true, false),
            "no Ready condition: NotReady"
        );
    }
}
