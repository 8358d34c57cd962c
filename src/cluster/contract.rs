//! The contract between operators and `bakery node watch`, on the Node object, as pure functions:
//! which annotations ask for what, and what the agent reports back (annotations and the
//! `BakeryUpToDate` condition), computed as patches that are empty when nothing changed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{ExtName, ExtVersion};

/// `target.bakery.dev/<ext>: <exact version>`: what the operator wants.
pub const TARGET: &str = "target.bakery.dev/";
/// `status.bakery.dev/<ext>: <active version>`: what is active.
pub const STATUS: &str = "status.bakery.dev/";
/// The agent's state: `idle`, `staging`, `activating`, `failed`, `rolled-back`.
pub const STATE: &str = "bakery.dev/state";
/// What the agent last did or why it stopped, for people.
pub const MESSAGE: &str = "bakery.dev/message";
/// Set when the agent cordoned the Node, so it uncordons only what it cordoned.
pub const CORDONED: &str = "bakery.dev/cordoned";
/// The Node condition on the status subresource.
pub const CONDITION: &str = "BakeryUpToDate";

/// The agent's lifecycle state as the Node shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Idle,
    Staging,
    Activating,
    Failed,
    RolledBack,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Staging => "staging",
            State::Activating => "activating",
            State::Failed => "failed",
            State::RolledBack => "rolled-back",
        }
    }

    /// The condition reason for a Node that is not up to date in this state.
    fn reason(self) -> &'static str {
        match self {
            State::Idle => "Pending",
            State::Staging => "Staging",
            State::Activating => "Activating",
            State::Failed => "Failed",
            State::RolledBack => "RolledBack",
        }
    }
}

/// The targets set on a Node: the valid ones, and the annotations that are not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// extension → exact version
    pub wanted: BTreeMap<String, String>,
    /// (annotation, why it is ignored)
    pub invalid: Vec<(String, String)>,
}

/// Reads the `target.bakery.dev/<ext>` annotations.
pub fn targets(annotations: &BTreeMap<String, String>) -> Targets {
    let mut out = Targets::default();
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(TARGET) else { continue };
        let value = value.trim();
        if let Err(e) = name.parse::<ExtName>() {
            out.invalid.push((key.clone(), e.to_string()));
            continue;
        }
        if value == "latest" {
            out.invalid.push((key.clone(), "a target is an exact version such as v1.32.3, not latest".into()));
            continue;
        }
        match value.parse::<ExtVersion>() {
            Ok(version) => {
                out.wanted.insert(name.to_string(), version.to_string());
            }
            Err(e) => out.invalid.push((key.clone(), e.to_string())),
        }
    }
    out
}

/// Whether the active version is the wanted one (`v1.32.3` and `1.32.3` are the same).
pub fn same_version(a: &str, b: &str) -> bool {
    a.strip_prefix('v').unwrap_or(a) == b.strip_prefix('v').unwrap_or(b)
}

/// The extensions whose target differs from what is active, in name order.
pub fn pending(targets: &Targets, active: &BTreeMap<String, String>) -> Vec<(String, String)> {
    targets
        .wanted
        .iter()
        .filter(|(ext, version)| !active.get(*ext).is_some_and(|a| same_version(a, version)))
        .map(|(ext, version)| (ext.clone(), version.clone()))
        .collect()
}

/// The merge patch that sets `target.bakery.dev/<ext>: <version>` on a Node, guarded by the
/// `resourceVersion` the decision saw when there is one (the API answers `409 Conflict` if the
/// Node changed since): all a rollout controller ever writes on a Node.
pub fn target_patch(ext: &str, version: &str, resource_version: Option<&str>) -> Value {
    let mut metadata = json!({ "annotations": { format!("{TARGET}{ext}"): version } });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({ "metadata": metadata })
}

/// Whether the agent's message is about `ext`: the agent starts every message about one
/// extension with its name and a space or a colon (`kubernetes v1.32.3: gave up ...`,
/// `kubernetes: rolled back ...`).
pub fn message_names(message: &str, ext: &str) -> bool {
    message.strip_prefix(ext).is_some_and(|rest| rest.starts_with([' ', ':']))
}

/// What the agent reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// extension → active version
    pub active: BTreeMap<String, String>,
    pub state: State,
    pub message: String,
}

/// The merge patch that makes the Node's annotations say `report`, or None when they do.
/// Status annotations of extensions no longer active are removed.
pub fn annotations_patch(current: &BTreeMap<String, String>, report: &Report) -> Option<Value> {
    let mut wanted: BTreeMap<String, Option<String>> = BTreeMap::new();
    for key in current.keys().filter(|k| k.starts_with(STATUS)) {
        wanted.insert(key.clone(), None);
    }
    for (ext, version) in &report.active {
        wanted.insert(format!("{STATUS}{ext}"), Some(version.clone()));
    }
    wanted.insert(STATE.into(), Some(report.state.as_str().into()));
    wanted.insert(MESSAGE.into(), Some(report.message.clone()));
    let changes: serde_json::Map<String, Value> = wanted
        .into_iter()
        .filter(|(key, value)| current.get(key) != value.as_ref())
        .map(|(key, value)| (key, value.map(Value::String).unwrap_or(Value::Null)))
        .collect();
    (!changes.is_empty()).then(|| json!({ "metadata": { "annotations": changes } }))
}

/// A Node condition as the API has it (the fields the agent sets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_heartbeat_time: String,
    pub last_transition_time: String,
}

/// The `BakeryUpToDate` condition for `report` against `targets`.
fn condition_for(targets: &Targets, report: &Report) -> (bool, String, String) {
    if let Some((key, why)) = targets.invalid.first() {
        return (false, "InvalidTarget".into(), format!("{key}: {why}"));
    }
    let pending = pending(targets, &report.active);
    if pending.is_empty() {
        let message = if targets.wanted.is_empty() {
            "no targets set".to_string()
        } else {
            let list: Vec<String> = targets.wanted.iter().map(|(e, v)| format!("{e} {v}")).collect();
            format!("{} active as targeted", list.join(", "))
        };
        return (true, "UpToDate".into(), message);
    }
    (false, report.state.reason().into(), report.message.clone())
}

/// The condition to write, or None when the Node's current one (`status`, `reason`, `message`)
/// already says it. The transition time moves only when the status changes.
pub fn condition(current: Option<&Condition>, targets: &Targets, report: &Report, now: &str) -> Option<Condition> {
    let (up, reason, message) = condition_for(targets, report);
    let status = if up { "True" } else { "False" }.to_string();
    if let Some(c) = current
        && c.status == status
        && c.reason == reason
        && c.message == message
    {
        return None;
    }
    let last_transition_time = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    Some(Condition {
        type_: CONDITION.into(),
        status,
        reason,
        message,
        last_heartbeat_time: now.to_string(),
        last_transition_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn targets_are_exact_versions_of_valid_extension_names() {
        let found = targets(&map(&[
            ("target.bakery.dev/kubernetes", "v1.32.3"),
            ("target.bakery.dev/containerd", "latest"),
            ("target.bakery.dev/a.b", "v1"),
            ("target.bakery.dev/etcd", "v3.5.17/../x"),
            ("other.example/kubernetes", "v9"),
        ]));
        assert_eq!(found.wanted, map(&[("kubernetes", "v1.32.3")]));
        let keys: Vec<&str> = found.invalid.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["target.bakery.dev/a.b", "target.bakery.dev/containerd", "target.bakery.dev/etcd"]);
        assert!(found.invalid[1].1.contains("not latest"));
        assert!(found.invalid[2].1.contains("malformed version"), "{:?}", found.invalid);
    }

    #[test]
    fn pending_compares_with_and_without_the_v() {
        let t = targets(&map(&[("target.bakery.dev/a", "v1.0.0"), ("target.bakery.dev/b", "2.0.0")]));
        assert_eq!(pending(&t, &map(&[("a", "1.0.0"), ("b", "v2.0.0")])), []);
        assert_eq!(
            pending(&t, &map(&[("a", "v0.9.0")])),
            [("a".into(), "v1.0.0".into()), ("b".into(), "2.0.0".into())]
        );
    }

    #[test]
    fn the_target_patch_sets_one_annotation_guarded_by_the_resource_version() {
        assert_eq!(
            target_patch("kubernetes", "v1.32.3", Some("42")),
            json!({"metadata": {"resourceVersion": "42", "annotations": {"target.bakery.dev/kubernetes": "v1.32.3"}}})
        );
        assert_eq!(
            target_patch("kubernetes", "v1.32.3", None),
            json!({"metadata": {"annotations": {"target.bakery.dev/kubernetes": "v1.32.3"}}})
        );
    }

    #[test]
    fn messages_name_their_extension_by_prefix() {
        assert!(message_names("kubernetes v1.32.3: gave up after 3 attempts: HTTP 503", "kubernetes"));
        assert!(message_names("kubernetes: rolled back to v1.32.2", "kubernetes"));
        assert!(!message_names("kubernetes-tools v1: failed", "kubernetes"));
        assert!(!message_names("kube v1: failed", "kubernetes"));
        assert!(!message_names("cannot read the records: denied", "kubernetes"));
    }

    #[test]
    fn annotation_patches_carry_only_changes_and_drop_stale_status() {
        let report = Report { active: map(&[("kubernetes", "v1.32.3")]), state: State::Idle, message: "ok".into() };
        let current = map(&[
            ("status.bakery.dev/kubernetes", "v1.32.2"),
            ("status.bakery.dev/gone", "v1"),
            ("bakery.dev/state", "idle"),
            ("unrelated", "x"),
        ]);
        let patch = annotations_patch(&current, &report).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {
                "status.bakery.dev/kubernetes": "v1.32.3",
                "status.bakery.dev/gone": null,
                "bakery.dev/message": "ok",
            }}})
        );
        let applied = map(&[
            ("status.bakery.dev/kubernetes", "v1.32.3"),
            ("bakery.dev/state", "idle"),
            ("bakery.dev/message", "ok"),
        ]);
        assert_eq!(annotations_patch(&applied, &report), None, "nothing to say twice");
    }

    /// The condition table: targets, what is active, the state, and the condition it gives.
    #[test]
    fn condition_table() {
        let report = |active: &[(&str, &str)], state, message: &str| Report {
            active: map(active),
            state,
            message: message.into(),
        };
        let wanted = targets(&map(&[("target.bakery.dev/k", "v2")]));
        let cases = [
            (targets(&BTreeMap::new()), report(&[("k", "v1")], State::Idle, ""), "True", "UpToDate", "no targets set"),
            (wanted.clone(), report(&[("k", "v2")], State::Idle, "x"), "True", "UpToDate", "k v2 active as targeted"),
            (
                wanted.clone(),
                report(&[("k", "v1")], State::Staging, "staging k v2"),
                "False",
                "Staging",
                "staging k v2",
            ),
            (wanted.clone(), report(&[("k", "v1")], State::RolledBack, "rb"), "False", "RolledBack", "rb"),
            (wanted.clone(), report(&[("k", "v1")], State::Failed, "no"), "False", "Failed", "no"),
            (
                targets(&map(&[("target.bakery.dev/k", "latest")])),
                report(&[("k", "v1")], State::Idle, ""),
                "False",
                "InvalidTarget",
                "target.bakery.dev/k: a target is an exact version such as v1.32.3, not latest",
            ),
        ];
        for (targets, report, status, reason, message) in cases {
            let c = condition(None, &targets, &report, "T1").unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str(), c.message.as_str()), (status, reason, message));
            assert_eq!((c.last_heartbeat_time.as_str(), c.last_transition_time.as_str()), ("T1", "T1"));
        }
    }

    #[test]
    fn conditions_are_written_on_change_and_keep_their_transition_time() {
        let wanted = targets(&map(&[("target.bakery.dev/k", "v2")]));
        let staging = Report { active: map(&[("k", "v1")]), state: State::Staging, message: "staging".into() };
        let first = condition(None, &wanted, &staging, "T1").unwrap();
        assert_eq!(condition(Some(&first), &wanted, &staging, "T2"), None, "unchanged: no write");
        let activating = Report { state: State::Activating, message: "activating".into(), ..staging.clone() };
        let second = condition(Some(&first), &wanted, &activating, "T3").unwrap();
        assert_eq!((second.last_transition_time.as_str(), second.last_heartbeat_time.as_str()), ("T1", "T3"));
        let done = Report { active: map(&[("k", "v2")]), state: State::Idle, message: String::new() };
        let third = condition(Some(&second), &wanted, &done, "T4").unwrap();
        assert_eq!((third.status.as_str(), third.last_transition_time.as_str()), ("True", "T4"));
    }
}
