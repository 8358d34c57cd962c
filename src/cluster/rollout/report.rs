//! `bakery rollout list` and `status`: ExtensionRollouts as people read them (a table, a
//! page per rollout) and as scripts do (`--json`: one [`Summary`] each), for those without
//! kubectl plugins. Pure: the CLI reads the objects, this renders them.

use std::fmt::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::crd::{ExtensionRollout, FailedNode};

/// One rollout, flattened: the spec's essentials and the controller's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub extension: String,
    pub version: String,
    pub paused: bool,
    /// `spec.maxUnavailable` as written (default 1).
    pub max_unavailable_spec: String,
    /// None until the controller has written a status.
    pub phase: Option<String>,
    pub message: String,
    pub selected: i64,
    pub updated: i64,
    pub in_flight: i64,
    pub failed: i64,
    pub pending: i64,
    pub unavailable: i64,
    pub max_unavailable: i64,
    pub in_flight_nodes: Vec<String>,
    pub failed_nodes: Vec<FailedNode>,
    pub conditions: Vec<Condition>,
    pub generation: Option<i64>,
    /// The generation the status is about; behind `generation` until the controller catches up.
    pub observed_generation: Option<i64>,
}

impl Summary {
    pub fn of(rollout: &ExtensionRollout) -> Self {
        let status = rollout.status.clone().unwrap_or_default();
        let seen = rollout.status.is_some();
        Summary {
            name: rollout.name().to_string(),
            extension: rollout.spec.extension.clone(),
            version: rollout.spec.version.clone(),
            paused: rollout.spec.paused,
            max_unavailable_spec: match &rollout.spec.max_unavailable {
                None => "1".into(),
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
            },
            phase: seen.then(|| status.phase.as_str().to_string()),
            message: status.message,
            selected: status.selected,
            updated: status.updated,
            in_flight: status.in_flight,
            failed: status.failed,
            pending: status.pending,
            unavailable: status.unavailable,
            max_unavailable: status.max_unavailable,
            in_flight_nodes: status.in_flight_nodes,
            failed_nodes: status.failed_nodes,
            conditions: status.conditions,
            generation: rollout.metadata.generation,
            observed_generation: status.observed_generation,
        }
    }

    /// The phase for people: `-` before the controller wrote one, `(stale)` when the status is
    /// about an older spec.
    fn phase_text(&self) -> String {
        let phase = self.phase.clone().unwrap_or_else(|| "-".into());
        if self.stale() { format!("{phase} (stale)") } else { phase }
    }

    fn stale(&self) -> bool {
        self.phase.is_some() && self.generation.is_some() && self.observed_generation != self.generation
    }
}

/// The rollouts as a table, one line each (name order).
pub fn table(summaries: &[Summary]) -> String {
    if summaries.is_empty() {
        return "no ExtensionRollouts\n".into();
    }
    let header = ["NAME", "EXTENSION", "VERSION", "PHASE", "UPDATED", "IN FLIGHT", "FAILED", "PENDING"];
    let rows: Vec<[String; 8]> = summaries
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.extension.clone(),
                s.version.clone(),
                s.phase_text(),
                format!("{}/{}", s.updated, s.selected),
                s.in_flight.to_string(),
                s.failed.to_string(),
                s.pending.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// One rollout, a line per fact.
pub fn page(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ExtensionRollout {}", s.name);
    let _ = writeln!(out, "  extension:   {} {}{}", s.extension, s.version, if s.paused { " (paused)" } else { "" });
    let Some(phase) = &s.phase else {
        let _ = writeln!(out, "  phase:       - (no status yet: is `bakery rollout controller` running?)");
        return out;
    };
    let _ = writeln!(out, "  phase:       {phase}");
    if s.stale() {
        let _ = writeln!(
            out,
            "  note:        the status is about generation {}, the spec is at {}: the controller has not caught up",
            s.observed_generation.map_or("-".into(), |g| g.to_string()),
            s.generation.map_or("-".into(), |g| g.to_string()),
        );
    }
    let _ = writeln!(out, "  message:     {}", s.message);
    let _ = writeln!(
        out,
        "  nodes:       {} selected: {} updated, {} in flight, {} failed, {} pending",
        s.selected, s.updated, s.in_flight, s.failed, s.pending
    );
    let _ = writeln!(
        out,
        "  unavailable: {} of at most {} (maxUnavailable {})",
        s.unavailable, s.max_unavailable, s.max_unavailable_spec
    );
    if !s.in_flight_nodes.is_empty() {
        let more = more(s.in_flight, s.in_flight_nodes.len());
        let _ = writeln!(out, "  in flight:   {}{more}", s.in_flight_nodes.join(", "));
    }
    if !s.failed_nodes.is_empty() {
        let _ = writeln!(out, "  failed:");
        for f in &s.failed_nodes {
            let message = if f.message.is_empty() { String::new() } else { format!(": {}", f.message) };
            let _ = writeln!(out, "    {} ({}){message}", f.name, f.state);
        }
        let more = more(s.failed, s.failed_nodes.len());
        if !more.is_empty() {
            let _ = writeln!(out, "   {more}");
        }
    }
    if !s.conditions.is_empty() {
        let _ = writeln!(out, "  conditions:");
        let width = s.conditions.iter().map(|c| c.type_.len()).max().unwrap_or(0);
        for c in &s.conditions {
            let _ = writeln!(out, "    {:<width$}  {:<5}  {}: {}", c.type_, c.status, c.reason, c.message);
        }
    }
    out
}

/// ` and N more` when a status list names fewer Nodes than its count.
fn more(count: i64, listed: usize) -> String {
    let rest = count - listed as i64;
    if rest > 0 { format!(" and {rest} more") } else { String::new() }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::cluster::rollout::crd::{ExtensionRolloutSpec, ExtensionRolloutStatus, Phase};

    fn rollout(name: &str, status: Option<ExtensionRolloutStatus>) -> ExtensionRollout {
        let mut r = ExtensionRollout::new(
            name,
            ExtensionRolloutSpec {
                extension: "kubernetes".into(),
                version: "v1.32.3".into(),
                max_unavailable: Some(IntOrString::String("10%".into())),
                ..ExtensionRolloutSpec::default()
            },
        );
        r.metadata.generation = Some(2);
        r.status = status;
        r
    }

    fn progressing() -> ExtensionRolloutStatus {
        ExtensionRolloutStatus {
            observed_generation: Some(2),
            phase: Phase::Progressing,
            version: "v1.32.3".into(),
            message: "3 of 10 updated, 1 in flight, 1 failed, 5 pending".into(),
            selected: 10,
            updated: 3,
            in_flight: 1,
            failed: 1,
            pending: 5,
            unavailable: 1,
            max_unavailable: 1,
            in_flight_nodes: vec!["w04".into()],
            failed_nodes: vec![FailedNode {
                name: "w02".into(),
                state: "rolled-back".into(),
                message: "kubernetes: rolled back".into(),
            }],
            conditions: vec![Condition {
                type_: "Complete".into(),
                status: "False".into(),
                reason: "Progressing".into(),
                message: "not complete".into(),
                last_transition_time: Time("2026-11-23T03:00:00Z".parse().unwrap()),
                observed_generation: Some(2),
            }],
        }
    }

    #[test]
    fn the_table_has_a_line_per_rollout_and_says_what_has_no_status() {
        let mut stale = rollout("b-stale", Some(progressing()));
        stale.metadata.generation = Some(3);
        let summaries: Vec<Summary> =
            [rollout("a", Some(progressing())), stale, rollout("c-new", None)].iter().map(Summary::of).collect();
        assert_eq!(
            table(&summaries),
            "NAME     EXTENSION   VERSION  PHASE                UPDATED  IN FLIGHT  FAILED  PENDING\n\
             a        kubernetes  v1.32.3  Progressing          3/10     1          1       5\n\
             b-stale  kubernetes  v1.32.3  Progressing (stale)  3/10     1          1       5\n\
             c-new    kubernetes  v1.32.3  -                    0/0      0          0       0\n"
        );
        assert_eq!(table(&[]), "no ExtensionRollouts\n");
    }

    #[test]
    fn the_page_names_the_nodes_in_flight_and_failed_and_the_conditions() {
        let text = page(&Summary::of(&rollout("k", Some(progressing()))));
        for line in [
            "ExtensionRollout k",
            "  extension:   kubernetes v1.32.3",
            "  phase:       Progressing",
            "  nodes:       10 selected: 3 updated, 1 in flight, 1 failed, 5 pending",
            "  unavailable: 1 of at most 1 (maxUnavailable 10%)",
            "  in flight:   w04",
            "    w02 (rolled-back): kubernetes: rolled back",
            "    Complete  False  Progressing: not complete",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        let text = page(&Summary::of(&rollout("k", None)));
        assert!(text.contains("no status yet"), "{text}");
    }

    #[test]
    fn json_summaries_are_camel_case_with_a_null_phase_before_any_status() {
        let value = serde_json::to_value(Summary::of(&rollout("k", None))).unwrap();
        assert_eq!(value["phase"], serde_json::Value::Null);
        assert_eq!(value["maxUnavailableSpec"], "10%");
        let value = serde_json::to_value(Summary::of(&rollout("k", Some(progressing())))).unwrap();
        assert_eq!((value["phase"].as_str(), value["inFlight"].as_i64()), (Some("Progressing"), Some(1)));
        assert_eq!(value["failedNodes"][0]["state"], "rolled-back");
    }
}
