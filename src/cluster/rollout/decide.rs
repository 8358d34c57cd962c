//! THE decision of the rollout controller, pure: given a rollout, the Nodes as the API shows
//! them, the other rollouts and the clock, which Nodes get `target.bakery.dev/<ext>: <version>`
//! now, what the status says, and when to look again.
//!
//! Nothing is remembered between calls: every input is an API object (the Nodes' annotations
//! and conditions as the agents report them, the rollout's spec, annotations and last status),
//! so a controller killed at any moment and started again decides the same and never exceeds
//! the budget. The one thing the caller must do is decide on a view that holds its own writes:
//! apply each target patch's response (the patched Node) to its cache before the next call,
//! since a watch may lag behind the controller's own patches.
//!
//! How a selected Node (labels match, not being deleted) is classed, for extension E version V,
//! with T = `target.bakery.dev/E`, S = `status.bakery.dev/E`, and "settled on W" meaning S = W,
//! `BakeryUpToDate` True, Ready, both for at least `minReadySeconds`:
//! - **updated**: T is V or absent, settled on V;
//! - **failed**: T = V, S ≠ V, `bakery.dev/state` is `rolled-back` or `failed` and the agent's
//!   message is not about another extension of that Node: it counts against `failureBudget`
//!   and never gets a new target from this rollout (the agent does not retry a target it
//!   failed either);
//! - **in flight**: T is set (V, or an older version W of a superseded spec, or anyone's) and
//!   the Node is neither settled on T nor failed it: it finishes before anything replaces it;
//! - **pending**: the rest (no T, or settled on / failed an older W): may start when it is
//!   Ready, schedulable and its agent is not busy.
//!
//! A Node is **unavailable** when it is in flight, NotReady, unschedulable (an admin's or
//! kured's cordon included) or its agent is `staging`/`activating` (for any extension). Starts
//! are only ever Ready, schedulable, idle Nodes, each adding exactly one, so after a decision
//! `unavailable ≤ maxUnavailable` whenever it held before, and no Node starts while it does not.
//! Nodes start in name order.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::crd::{
    self, APPROVED_VERSION, CONFLICT, ExtensionRollout, ExtensionRolloutStatus, FailedNode, HALTED, NODE_LIST_LIMIT,
    Phase, ValidSpec,
};
use super::selector::Selector;
pub use super::view::NodeView;
use crate::cluster::contract::{self, STATE, STATUS, TARGET};

/// A Node to set the target on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub node: String,
    /// The resourceVersion the decision saw, for [`contract::target_patch`].
    pub resource_version: Option<String>,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Set `target.bakery.dev/<ext>: <version>` on these Nodes, now (name order). Never more
    /// than the budget leaves; empty when paused, halted, refused, outside the window or
    /// waiting for approval.
    pub start: Vec<Start>,
    /// The status to write (as it is once `start` is applied): phase, counts, lists,
    /// conditions, observedGeneration.
    pub status: ExtensionRolloutStatus,
    /// Decide again at this instant even if nothing changes: the window opens, or a Node's
    /// `minReadySeconds` runs out. None: only a change of the rollout or a Node matters.
    pub requeue_at: Option<Timestamp>,
}

/// How one selected Node stands.
#[derive(Clone, Debug, PartialEq)]
enum Class {
    Updated,
    Failed {
        state: String,
        message: String,
    },
    /// On `version` (V or an older one); settles at that instant if it is only waiting for
    /// `minReadySeconds`.
    InFlight {
        version: String,
        settles_at: Option<Timestamp>,
    },
    /// May start when `blocked` is None.
    Pending {
        blocked: Option<&'static str>,
    },
}

/// The extension's annotation keys on a Node.
struct Keys {
    target: String,
    status: String,
}

/// One selected Node, classed.
struct Seen<'a> {
    node: &'a NodeView,
    /// Its `target.bakery.dev/<ext>`.
    target: Option<&'a str>,
    class: Class,
    unavailable: bool,
}

/// Decides for `rollout` at `now`. `nodes` may be every Node of the cluster (the rollout's
/// selector picks) in any order; `others` may include `rollout` itself (skipped) and rollouts
/// of other extensions (ignored).
pub fn decide(rollout: &ExtensionRollout, nodes: &[NodeView], others: &[ExtensionRollout], now: Timestamp) -> Decision {
    let generation = rollout.metadata.generation;
    let previous = rollout.status.as_ref();
    let spec = match rollout.spec.check() {
        Ok(spec) => spec,
        Err(problems) => {
            let message = format!("invalid spec: {}", problems.join("; "));
            let status = ExtensionRolloutStatus {
                phase: Phase::Halted,
                version: rollout.spec.version.clone(),
                message: message.clone(),
                ..ExtensionRolloutStatus::default()
            };
            let verdict = Verdict { phase: Phase::Halted, reason: "InvalidSpec", message, conflict: None };
            return Decision {
                start: vec![],
                status: finish(status, &verdict, generation, previous, now),
                requeue_at: None,
            };
        }
    };
    let ext = spec.extension.as_str();
    let version = spec.version.as_str();

    let mut selected: Vec<&NodeView> =
        nodes.iter().filter(|n| !n.deleting && spec.selector.matches(&n.labels)).collect();
    selected.sort_by(|a, b| a.name.cmp(&b.name));
    selected.dedup_by(|a, b| a.name == b.name);
    let keys = Keys { target: format!("{TARGET}{ext}"), status: format!("{STATUS}{ext}") };
    let seen: Vec<Seen> = selected.iter().map(|n| classify(n, &spec, &keys, now)).collect();

    let count = |f: fn(&Class) -> bool| seen.iter().filter(|s| f(&s.class)).count();
    let updated = count(|c| matches!(c, Class::Updated));
    let failed = count(|c| matches!(c, Class::Failed { .. }));
    let unavailable = seen.iter().filter(|s| s.unavailable).count();
    let max_unavailable = spec.max_unavailable.resolve(selected.len());
    // canary: Nodes this version touched (updated, failed or in flight on it)
    let touched = seen
        .iter()
        .filter(|s| match &s.class {
            Class::Updated | Class::Failed { .. } => true,
            Class::InFlight { version: v, .. } => contract::same_version(v, version),
            Class::Pending { .. } => false,
        })
        .count();
    let approved = rollout.annotation(APPROVED_VERSION).is_some_and(|a| contract::same_version(a.trim(), version));
    let canary_left =
        if spec.canary > 0 && !approved { (spec.canary as usize).saturating_sub(touched) } else { usize::MAX };
    let window_open = spec.window.as_ref().is_none_or(|w| w.contains(now));
    let startable: Vec<&Seen> = seen.iter().filter(|s| matches!(s.class, Class::Pending { blocked: None })).collect();

    let conflict = conflict(rollout, &spec, &selected, others);
    let halted = failed > spec.failure_budget as usize || still_halted(previous, generation);

    let room = max_unavailable.saturating_sub(unavailable).min(canary_left);
    let may_start = conflict.is_none() && !halted && !spec.paused && window_open;
    let start: Vec<Start> = if may_start {
        startable
            .iter()
            .take(room)
            .map(|s| Start { node: s.node.name.clone(), resource_version: s.node.resource_version.clone() })
            .collect()
    } else {
        vec![]
    };

    // the status as it is once the starts are applied
    let started: BTreeSet<&str> = start.iter().map(|s| s.node.as_str()).collect();
    let mut in_flight_nodes = Vec::new();
    let mut failed_nodes = Vec::new();
    let mut blocked: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        match &s.class {
            Class::InFlight { .. } => in_flight_nodes.push(s.node.name.clone()),
            Class::Pending { .. } if started.contains(s.node.name.as_str()) => {
                in_flight_nodes.push(s.node.name.clone())
            }
            Class::Pending { blocked: Some(why) } => *blocked.entry(why).or_default() += 1,
            Class::Pending { blocked: None } | Class::Updated => {}
            Class::Failed { state, message } => failed_nodes.push(FailedNode {
                name: s.node.name.clone(),
                state: state.clone(),
                message: message.chars().take(200).collect(),
            }),
        }
    }
    let in_flight = in_flight_nodes.len();
    let counts = Counts {
        selected: selected.len(),
        updated,
        in_flight,
        failed,
        pending: selected.len() - updated - failed - in_flight,
    };
    let tally = Tally {
        spec: &spec,
        counts,
        unavailable,
        max_unavailable,
        touched,
        canary_left,
        window_open,
        startable: startable.len(),
        started: start.len(),
        has_target: seen.iter().any(|s| s.target.is_some()),
        halted,
        conflict: conflict.clone(),
        failed_names: failed_nodes.iter().take(5).map(|f| format!("{} ({})", f.name, f.state)).collect(),
        blocked,
    };
    let verdict = verdict(&tally, now);
    let Counts { pending, .. } = tally.counts;

    let status = ExtensionRolloutStatus {
        phase: verdict.phase,
        version: version.to_string(),
        message: verdict.message.clone(),
        selected: selected.len() as i64,
        updated: updated as i64,
        in_flight: in_flight as i64,
        failed: failed as i64,
        pending: pending as i64,
        unavailable: (unavailable + start.len()) as i64,
        max_unavailable: max_unavailable as i64,
        in_flight_nodes: in_flight_nodes.into_iter().take(NODE_LIST_LIMIT).collect(),
        failed_nodes: failed_nodes.into_iter().take(NODE_LIST_LIMIT).collect(),
        ..ExtensionRolloutStatus::default()
    };

    // look again when a Node settles, or when the window opens for Nodes waiting for it
    let settles = seen.iter().filter_map(|s| match s.class {
        Class::InFlight { settles_at: Some(at), .. } if at > now => Some(at),
        _ => None,
    });
    let opens = (!window_open && !startable.is_empty() && conflict.is_none() && !halted && !spec.paused)
        .then(|| spec.window.as_ref().and_then(|w| w.next_open(now)))
        .flatten();
    let requeue_at = settles.chain(opens).min();

    Decision { start, status: finish(status, &verdict, generation, previous, now), requeue_at }
}

/// What the verdict is drawn from, once the starts are counted.
struct Tally<'a> {
    spec: &'a ValidSpec,
    counts: Counts,
    /// Before the starts.
    unavailable: usize,
    max_unavailable: usize,
    /// Nodes updated, failed or in flight on the version (for the canary).
    touched: usize,
    canary_left: usize,
    window_open: bool,
    startable: usize,
    started: usize,
    /// A selected Node has a target for the extension (the rollout began).
    has_target: bool,
    halted: bool,
    conflict: Option<(String, String)>,
    /// The first failed Nodes, as `name (state)`.
    failed_names: Vec<String>,
    /// Pending Nodes that may not start, by why.
    blocked: BTreeMap<&'static str, usize>,
}

/// The phase, its reason and the message, in order of precedence: refused, halted, no Nodes,
/// complete, paused, awaiting approval, then pending or progressing (with what it waits for).
fn verdict(t: &Tally, now: Timestamp) -> Verdict {
    let spec = t.spec;
    let (ext, version) = (spec.extension.as_str(), spec.version.as_str());
    let Counts { selected, updated, in_flight, failed, pending } = t.counts;
    let verdict = |phase, reason, message| Verdict { phase, reason, message, conflict: None };
    if let Some((other, node)) = &t.conflict {
        let message = format!(
            "refused: ExtensionRollout {other} (created earlier) also selects Node {node} for {ext}; \
             make the nodeSelectors disjoint or delete one"
        );
        return Verdict { conflict: t.conflict.clone(), ..verdict(Phase::Halted, "Conflict", message) };
    }
    if t.halted {
        let names = if t.failed_names.is_empty() { String::new() } else { format!(": {}", t.failed_names.join(", ")) };
        let message = format!(
            "halted: {failed} Node(s) failed {ext} {version} with failureBudget {}{names}; \
             raise failureBudget or set another version to go on",
            spec.failure_budget
        );
        return verdict(Phase::Halted, "FailureBudgetExceeded", message);
    }
    if selected == 0 {
        return verdict(Phase::Pending, "NoNodesSelected", "no Node matches spec.nodeSelector".into());
    }
    if pending == 0 && in_flight == 0 {
        // every selected Node is updated, or failed within the budget
        if failed == 0 {
            return verdict(
                Phase::Complete,
                "AllNodesUpdated",
                format!("all {updated} selected Node(s) run {ext} {version}"),
            );
        }
        let message = format!(
            "{updated} of {selected} selected Node(s) run {ext} {version}; {failed} failed (failureBudget {})",
            spec.failure_budget
        );
        return verdict(Phase::Complete, "UpdatedWithinFailureBudget", message);
    }
    if spec.paused {
        return verdict(Phase::Paused, "Paused", format!("paused (spec.paused); {}", t.counts.describe()));
    }
    if t.canary_left == 0 && in_flight == 0 {
        let message = format!(
            "the {} canary Node(s) are done; annotate the rollout {APPROVED_VERSION}={version} to go on; {}",
            t.touched,
            t.counts.describe()
        );
        return verdict(Phase::Paused, "AwaitingApproval", message);
    }
    let phase = if in_flight == 0 && !t.has_target { Phase::Pending } else { Phase::Progressing };
    let (reason, why) = if !t.window_open && t.startable > 0 {
        let opens = spec.window.as_ref().and_then(|w| w.next_open(now));
        (
            "OutsideWindow",
            format!("outside the window{}; ", opens.map(|t| format!(" (it opens at {t})")).unwrap_or_default()),
        )
    } else if t.started == 0 && in_flight == 0 && t.startable == 0 {
        let list: Vec<String> = t.blocked.iter().map(|(why, n)| format!("{n} {why}")).collect();
        ("WaitingForNodes", format!("no pending Node can start ({}); ", list.join(", ")))
    } else if t.started == 0 && in_flight == 0 {
        ("WaitingForBudget", format!("{} Node(s) unavailable, maxUnavailable {}; ", t.unavailable, t.max_unavailable))
    } else {
        ("Progressing", String::new())
    };
    verdict(phase, reason, format!("{why}{}", t.counts.describe()))
}

/// How one selected Node stands for `spec`.
fn classify<'a>(node: &'a NodeView, spec: &ValidSpec, keys: &Keys, now: Timestamp) -> Seen<'a> {
    let ext = spec.extension.as_str();
    let version = spec.version.as_str();
    let target = node.annotation(&keys.target);
    let status = node.annotation(&keys.status);
    // when the Node is (or will be) settled on `w`
    let settles_at = |w: &str| {
        if !status.is_some_and(|s| contract::same_version(s, w)) {
            return None;
        }
        let since = node.up_to_date_since?.max(node.ready_since?);
        Some(since.checked_add(spec.min_ready).unwrap_or(Timestamp::MAX))
    };
    let failed_on = |w: &str| {
        let state = node.annotation(STATE).filter(|s| matches!(*s, "failed" | "rolled-back"))?;
        if status.is_some_and(|s| contract::same_version(s, w)) {
            return None;
        }
        let message = node.annotation(contract::MESSAGE).unwrap_or_default();
        // the agent reports one state per Node: a failure of another of its extensions is not ours
        let mut other = node.annotations.keys().filter_map(|k| k.strip_prefix(TARGET)).filter(|e| *e != ext);
        if !contract::message_names(message, ext) && other.any(|e| contract::message_names(message, e)) {
            return None;
        }
        Some((state.to_string(), message.to_string()))
    };
    let class = match target {
        // an older (or anyone's) target: it finishes first
        Some(t) if !contract::same_version(t, version) => {
            let settled = settles_at(t).is_some_and(|at| at <= now);
            if settled || failed_on(t).is_some() {
                pending(node)
            } else {
                Class::InFlight { version: t.to_string(), settles_at: settles_at(t) }
            }
        }
        _ if settles_at(version).is_some_and(|at| at <= now) => Class::Updated,
        Some(t) => match failed_on(t) {
            Some((state, message)) => Class::Failed { state, message },
            None => Class::InFlight { version: t.to_string(), settles_at: settles_at(t) },
        },
        None => pending(node),
    };
    let unavailable =
        matches!(class, Class::InFlight { .. }) || node.ready_since.is_none() || node.unschedulable || node.busy();
    Seen { node, target, class, unavailable }
}

/// A pending Node, blocked or free to start.
fn pending(node: &NodeView) -> Class {
    let blocked = if node.ready_since.is_none() {
        Some("NotReady")
    } else if node.unschedulable {
        Some("unschedulable")
    } else if node.busy() {
        Some("agent busy")
    } else {
        None
    };
    Class::Pending { blocked }
}

/// The earliest-created other rollout of the same extension selecting one of `selected`, if
/// it was created before `rollout` (ties: the smaller name is first): (its name, the Node).
/// A refused rollout still refuses later ones, so the rule needs no fixpoint.
fn conflict(
    rollout: &ExtensionRollout,
    spec: &ValidSpec,
    selected: &[&NodeView],
    others: &[ExtensionRollout],
) -> Option<(String, String)> {
    let key = |r: &ExtensionRollout| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name().to_string());
    let ours = key(rollout);
    let mut earlier: Vec<&ExtensionRollout> = others
        .iter()
        .filter(|o| o.name() != rollout.name() && o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.spec.extension.trim() == spec.extension.as_str())
        .filter(|o| before(&key(o), &ours))
        .collect();
    earlier.sort_by_key(|o| key(o));
    earlier.into_iter().find_map(|other| {
        let selector = Selector::parse(other.spec.node_selector.as_ref()).ok()?;
        let node = selected.iter().find(|n| selector.matches(&n.labels))?;
        Some((other.name().to_string(), node.name.clone()))
    })
}

/// Whether `a` was created before `b`; a rollout without a creation time counts as the latest.
fn before(a: &(Option<Timestamp>, String), b: &(Option<Timestamp>, String)) -> bool {
    let time = |t: Option<Timestamp>| t.unwrap_or(Timestamp::MAX);
    (time(a.0), &a.1) < (time(b.0), &b.1)
}

/// Whether the last status halted this same generation for failures: a halt stays until the
/// spec changes, even if the failed Nodes are deleted or repaired meanwhile.
fn still_halted(previous: Option<&ExtensionRolloutStatus>, generation: Option<i64>) -> bool {
    previous.and_then(|p| crd::condition(p, HALTED)).is_some_and(|c| {
        c.status == "True" && c.reason == "FailureBudgetExceeded" && c.observed_generation == generation
    })
}

#[derive(Clone, Copy)]
struct Counts {
    selected: usize,
    updated: usize,
    in_flight: usize,
    failed: usize,
    pending: usize,
}

impl Counts {
    fn describe(&self) -> String {
        let Counts { selected, updated, in_flight, failed, pending } = self;
        format!("{updated} of {selected} updated, {in_flight} in flight, {failed} failed, {pending} pending")
    }
}

/// The phase and why.
struct Verdict {
    phase: Phase,
    reason: &'static str,
    message: String,
    /// (the earlier rollout, a Node both select)
    conflict: Option<(String, String)>,
}

/// Adds observedGeneration and the conditions (Complete, Halted, Conflict), keeping each one's
/// transition time from `previous` while its status stays the same.
fn finish(
    mut status: ExtensionRolloutStatus,
    verdict: &Verdict,
    generation: Option<i64>,
    previous: Option<&ExtensionRolloutStatus>,
    now: Timestamp,
) -> ExtensionRolloutStatus {
    let complete = verdict.phase == Phase::Complete;
    let halted = verdict.phase == Phase::Halted;
    let not = |what: &str| format!("not {what}: {}", verdict.message);
    let wanted = [
        (crd::COMPLETE, complete, verdict.reason, if complete { verdict.message.clone() } else { not("complete") }),
        (
            HALTED,
            halted,
            if halted { verdict.reason } else { "NotHalted" },
            if halted { verdict.message.clone() } else { not("halted") },
        ),
        (
            CONFLICT,
            verdict.conflict.is_some(),
            if verdict.conflict.is_some() { "OverlappingRollout" } else { "NoOverlap" },
            match &verdict.conflict {
                Some((other, node)) => format!("ExtensionRollout {other} was first on Node {node}"),
                None => "no earlier rollout of this extension selects these Nodes".to_string(),
            },
        ),
    ];
    status.observed_generation = generation;
    status.conditions = wanted
        .into_iter()
        .map(|(type_, on, reason, message)| {
            let value = if on { "True" } else { "False" };
            let since = previous
                .and_then(|p| crd::condition(p, type_))
                .filter(|c| c.status == value)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.to_string(),
                status: value.to_string(),
                reason: reason.to_string(),
                message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    status
}

#[cfg(test)]
mod tests;
