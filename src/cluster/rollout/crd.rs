//! The `ExtensionRollout` custom resource (`bakery.dev/v1alpha1`, cluster-scoped), written by
//! hand (no kube derive, no schemars): the serde types, `kube::Resource` so that
//! `Api<ExtensionRollout>` and `runtime::Controller` take it, and the spec's checks.
//! `deploy/crd.yaml` is its schema; a test keeps the two in step.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::selector::Selector;
use super::window::Window;
use crate::model::{ExtName, ExtVersion};

pub const GROUP: &str = "bakery.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "bakery.dev/v1alpha1";
pub const KIND: &str = "ExtensionRollout";
pub const PLURAL: &str = "extensionrollouts";

/// The annotation on a rollout that lets it go past its canary nodes: its value is the version
/// approved (`kubectl annotate extensionrollout NAME bakery.dev/approved-version=v1.32.3`), so
/// an approval does not carry over to a later version.
pub const APPROVED_VERSION: &str = "bakery.dev/approved-version";

/// The condition types in the status.
pub const COMPLETE: &str = "Complete";
pub const HALTED: &str = "Halted";
pub const CONFLICT: &str = "Conflict";

/// An `ExtensionRollout`: one extension at one version on the Nodes a selector picks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtensionRollout {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ExtensionRolloutSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExtensionRolloutStatus>,
}

fn api_version() -> String {
    API_VERSION.into()
}

fn kind() -> String {
    KIND.into()
}

impl ExtensionRollout {
    /// A rollout as a test builds it (the controller only reads them).
    #[cfg(test)]
    pub fn new(name: &str, spec: ExtensionRolloutSpec) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The rollout's own annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

impl kube::Resource for ExtensionRollout {
    type DynamicType = ();
    type Scope = k8s_openapi::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }

    fn api_version(_: &()) -> Cow<'_, str> {
        API_VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl kube::core::object::HasSpec for ExtensionRollout {
    type Spec = ExtensionRolloutSpec;

    fn spec(&self) -> &ExtensionRolloutSpec {
        &self.spec
    }

    fn spec_mut(&mut self) -> &mut ExtensionRolloutSpec {
        &mut self.spec
    }
}

impl kube::core::object::HasStatus for ExtensionRollout {
    type Status = ExtensionRolloutStatus;

    fn status(&self) -> Option<&ExtensionRolloutStatus> {
        self.status.as_ref()
    }

    fn status_mut(&mut self) -> &mut Option<ExtensionRolloutStatus> {
        &mut self.status
    }
}

/// What the rollout asks for. Numbers are i64 and strings stay strings here, so that one
/// malformed object cannot break the controller's watch: [`ExtensionRolloutSpec::check`] says
/// what is wrong, and the rollout halts with that.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionRolloutSpec {
    /// The extension's name (`kubernetes`).
    pub extension: String,
    /// The exact version every selected Node gets (`v1.32.3`).
    pub version: String,
    /// The Nodes (absent or empty: every Node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// At most this many selected Nodes unavailable at once: a count, or `"N%"` of the selected
    /// Nodes rounded down but at least 1. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// The first this many Nodes go alone; the rest wait for [`APPROVED_VERSION`]. 0: none.
    #[serde(default)]
    pub canary: i64,
    /// When new Nodes may start (absent: any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RolloutWindow>,
    /// Nodes that may fail (rolled back or failed) before the rollout halts. Default 0.
    #[serde(default)]
    pub failure_budget: i64,
    /// A Node counts as updated once it has been up to date and Ready this long.
    #[serde(default)]
    pub min_ready_seconds: i64,
    /// No new Nodes start; those in flight finish.
    #[serde(default)]
    pub paused: bool,
}

/// A maintenance window (see `window` for how times resolve).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutWindow {
    /// `Mon` ... `Sun`; empty: every day. A window crossing midnight belongs to its start day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`
    pub start: String,
    /// `HH:MM`; not after `start`: the next day.
    pub end: String,
    /// IANA name (`Europe/Paris`); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// `maxUnavailable`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxUnavailable {
    Count(u32),
    Percent(u32),
}

impl MaxUnavailable {
    /// The number of Nodes for `selected` selected Nodes: a percentage rounds down but is at
    /// least 1, so that a small pool still moves.
    pub fn resolve(self, selected: usize) -> usize {
        match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => (selected * p as usize / 100).max(1),
        }
    }

    fn parse(value: Option<&IntOrString>) -> Result<Self, String> {
        let at = "spec.maxUnavailable";
        match value {
            None => Ok(MaxUnavailable::Count(1)),
            Some(IntOrString::Int(n)) if *n >= 1 => Ok(MaxUnavailable::Count(*n as u32)),
            Some(IntOrString::Int(n)) => Err(format!("{at}: {n} would never let a Node start (at least 1)")),
            Some(IntOrString::String(s)) => {
                let percent = s.strip_suffix('%').and_then(|p| p.parse::<u32>().ok());
                match percent {
                    Some(p) if (1..=100).contains(&p) => Ok(MaxUnavailable::Percent(p)),
                    _ => Err(format!("{at}: {s:?} is neither a count nor a percentage from 1% to 100%")),
                }
            }
        }
    }
}

/// A spec that passed its checks.
#[derive(Clone, Debug)]
pub struct ValidSpec {
    pub extension: ExtName,
    pub version: ExtVersion,
    pub selector: Selector,
    pub max_unavailable: MaxUnavailable,
    pub canary: u32,
    pub window: Option<Window>,
    pub failure_budget: u32,
    pub min_ready: jiff::SignedDuration,
    pub paused: bool,
}

impl ExtensionRolloutSpec {
    /// Checks every field; the errors name each field at fault.
    pub fn check(&self) -> Result<ValidSpec, Vec<String>> {
        let mut problems = Vec::new();
        let p = &mut problems;
        let count = |value: i64, at: &str| {
            u32::try_from(value).map_err(|_| format!("{at}: {value} is not a count from 0 to {}", u32::MAX))
        };
        let extension = keep(p, self.extension.parse::<ExtName>().map_err(|e| format!("spec.extension: {e}")));
        let version = keep(
            p,
            match self.version.as_str() {
                "latest" => Err("spec.version: an exact version such as v1.32.3, not latest".to_string()),
                v => v.parse::<ExtVersion>().map_err(|e| format!("spec.version: {e}")),
            },
        );
        let selector = keep(p, Selector::parse(self.node_selector.as_ref()));
        let max_unavailable = keep(p, MaxUnavailable::parse(self.max_unavailable.as_ref()));
        let window = keep(p, self.window.as_ref().map(Window::parse).transpose());
        let canary = keep(p, count(self.canary, "spec.canary"));
        let failure_budget = keep(p, count(self.failure_budget, "spec.failureBudget"));
        let min_ready = keep(p, count(self.min_ready_seconds, "spec.minReadySeconds"));
        match (extension, version, selector, max_unavailable, window, canary, failure_budget, min_ready) {
            (
                Some(extension),
                Some(version),
                Some(selector),
                Some(max_unavailable),
                Some(window),
                Some(canary),
                Some(failure_budget),
                Some(min_ready),
            ) => Ok(ValidSpec {
                extension,
                version,
                selector,
                max_unavailable,
                canary,
                window,
                failure_budget,
                min_ready: jiff::SignedDuration::from_secs(i64::from(min_ready)),
                paused: self.paused,
            }),
            _ => Err(problems),
        }
    }
}

/// The value, or None with its error noted.
fn keep<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| problems.push(e)).ok()
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No Node started yet (none selected, outside the window, or all unavailable).
    #[default]
    Pending,
    Progressing,
    /// `spec.paused`, or the canary Nodes are done and the rest await approval.
    Paused,
    /// More Nodes failed than `failureBudget`, the spec is invalid, or another rollout was
    /// first on the same Nodes: nothing new starts until a person acts.
    Halted,
    /// Every selected Node is updated.
    Complete,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Halted => "Halted",
            Phase::Complete => "Complete",
        }
    }
}

/// What the controller reports. Counts partition the selected Nodes:
/// `selected = updated + inFlight + failed + pending`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionRolloutStatus {
    /// The `metadata.generation` this status is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub phase: Phase,
    /// The version counted as updated.
    pub version: String,
    /// What the rollout does or waits for, for people.
    pub message: String,
    pub selected: i64,
    pub updated: i64,
    pub in_flight: i64,
    pub failed: i64,
    pub pending: i64,
    /// Selected Nodes unavailable for any reason (in flight, NotReady, cordoned, agent busy),
    /// counting the Nodes this decision started.
    pub unavailable: i64,
    /// `spec.maxUnavailable` resolved against `selected`.
    pub max_unavailable: i64,
    /// The first [`NODE_LIST_LIMIT`] Nodes in flight, by name.
    pub in_flight_nodes: Vec<String>,
    /// The first [`NODE_LIST_LIMIT`] failed Nodes, by name.
    pub failed_nodes: Vec<FailedNode>,
    pub conditions: Vec<Condition>,
}

/// The most Nodes each status list names (the counts are complete).
pub const NODE_LIST_LIMIT: usize = 50;

/// A Node whose agent reported `rolled-back` or `failed` for the version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedNode {
    pub name: String,
    /// `rolled-back` or `failed`, from `bakery.dev/state`.
    pub state: String,
    /// The agent's `bakery.dev/message`, cut to 200 characters.
    pub message: String,
}

/// The condition of `type_` in `status`.
pub fn condition<'a>(status: &'a ExtensionRolloutStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests;
