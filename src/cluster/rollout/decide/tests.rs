//! The decision's tables: one test per guarantee of the rollout controller; `sim` runs a
//! simulated fleet under a controller with no memory.

mod sim;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::cluster::contract::MESSAGE;
use crate::cluster::rollout::crd::{COMPLETE, ExtensionRolloutSpec, RolloutWindow};

const EXT: &str = "kubernetes";
const V: &str = "v1.32.3";
const OLD: &str = "v1.32.2";
/// A Monday, 04:00 in Paris.
const NOW: &str = "2026-11-23T03:00:00Z";
const LONG_AGO: &str = "2026-11-01T00:00:00Z";
const WORKER: &str = "node-role.kubernetes.io/worker";

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn secs(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(n)
}

/// A Node under construction: by default a Ready, schedulable worker running OLD, idle.
#[derive(Clone)]
struct N(NodeView);

fn node(name: &str) -> N {
    N(NodeView {
        name: name.into(),
        resource_version: Some(format!("rv-{name}")),
        labels: [(WORKER.to_string(), String::new())].into(),
        annotations: [(format!("{STATUS}{EXT}"), OLD.to_string()), (STATE.to_string(), "idle".to_string())].into(),
        ready_since: Some(at(LONG_AGO)),
        up_to_date_since: Some(at(LONG_AGO)),
        unschedulable: false,
        deleting: false,
    })
}

/// `n` workers named node-01, node-02, ...
fn fleet(n: usize) -> Vec<N> {
    (1..=n).map(|i| node(&format!("node-{i:02}"))).collect()
}

impl N {
    fn ann(mut self, key: &str, value: &str) -> Self {
        self.0.annotations.insert(key.to_string(), value.to_string());
        self
    }
    fn target(self, version: &str) -> Self {
        self.ann(&format!("{TARGET}{EXT}"), version)
    }
    fn status(self, version: &str) -> Self {
        self.ann(&format!("{STATUS}{EXT}"), version)
    }
    fn state(self, state: &str, message: &str) -> Self {
        self.ann(STATE, state).ann(MESSAGE, message)
    }
    fn up_to_date(mut self, since: Option<Timestamp>) -> Self {
        self.0.up_to_date_since = since;
        self
    }
    /// Settled on V long ago.
    fn updated(self) -> Self {
        self.target(V).status(V).state("idle", "kubernetes v1.32.3 active as targeted")
    }
    /// Targeted V, the agent staging it.
    fn in_flight(self) -> Self {
        self.target(V).state("staging", "staging kubernetes v1.32.3 (attempt 1 of 3)").up_to_date(None)
    }
    /// Targeted V, the agent rolled back (and uncordoned).
    fn rolled_back(self) -> Self {
        self.target(V)
            .state("rolled-back", "kubernetes: rolled back to v1.32.2: kubelet.service is not up")
            .up_to_date(None)
    }
    fn not_ready(mut self) -> Self {
        self.0.ready_since = None;
        self
    }
    fn cordoned(mut self) -> Self {
        self.0.unschedulable = true;
        self
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }
    fn deleting(mut self) -> Self {
        self.0.deleting = true;
        self
    }
}

fn workers() -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: WORKER.into(),
            operator: "Exists".into(),
            values: None,
        }]),
    }
}

fn rollout(edit: impl FnOnce(&mut ExtensionRolloutSpec)) -> ExtensionRollout {
    let mut spec = ExtensionRolloutSpec {
        extension: EXT.into(),
        version: V.into(),
        node_selector: Some(workers()),
        ..ExtensionRolloutSpec::default()
    };
    edit(&mut spec);
    let mut r = ExtensionRollout::new("kubernetes-workers", spec);
    r.metadata.generation = Some(1);
    r.metadata.creation_timestamp = Some(Time(at("2026-11-20T10:00:00Z")));
    r
}

fn max(n: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(n))
}

fn views(nodes: &[N]) -> Vec<NodeView> {
    nodes.iter().map(|n| n.0.clone()).collect()
}

fn run_at(r: &ExtensionRollout, nodes: &[N], now: &str) -> Decision {
    decide(r, &views(nodes), &[], at(now))
}

fn run(r: &ExtensionRollout, nodes: &[N]) -> Decision {
    run_at(r, nodes, NOW)
}

fn started(d: &Decision) -> Vec<&str> {
    d.start.iter().map(|s| s.node.as_str()).collect()
}

fn cond<'a>(d: &'a Decision, type_: &str) -> &'a Condition {
    crd::condition(&d.status, type_).unwrap_or_else(|| panic!("no {type_} condition in {:?}", d.status))
}

/// (status, reason) of a condition.
fn cond_sr<'a>(d: &'a Decision, type_: &str) -> (&'a str, &'a str) {
    let c = cond(d, type_);
    (c.status.as_str(), c.reason.as_str())
}

/// Unavailable counts every selected Node in flight, NotReady, unschedulable (any cordon) or
/// whose agent is busy; starts only fill what is left of maxUnavailable, and never pick such a
/// Node. (nodes, maxUnavailable, started, status.unavailable)
#[test]
fn the_budget_counts_every_unavailable_node() {
    let busy_elsewhere = node("node-01")
        .ann("target.bakery.dev/containerd", "v2.0.1")
        .state("activating", "activating containerd v2.0.1")
        .up_to_date(None);
    type Case<'a> = (&'a str, Vec<N>, i32, Vec<&'a str>, i64);
    let cases: Vec<Case> = vec![
        ("all free", fleet(5), 2, vec!["node-01", "node-02"], 2),
        (
            "an admin's cordon",
            vec![node("node-01").cordoned()].into_iter().chain(fleet(5).into_iter().skip(1)).collect(),
            2,
            vec!["node-02"],
            2,
        ),
        (
            "a cordon and a NotReady use it all",
            [vec![node("node-01").cordoned(), node("node-02").not_ready()], fleet(5).split_off(2)].concat(),
            2,
            vec![],
            2,
        ),
        ("one in flight", [vec![node("node-01").in_flight()], fleet(5).split_off(1)].concat(), 2, vec!["node-02"], 2),
        (
            "the agent busy with another extension",
            [vec![busy_elsewhere], fleet(5).split_off(1)].concat(),
            2,
            vec!["node-02"],
            2,
        ),
        (
            "already over: nothing starts",
            [
                vec![node("node-01").cordoned(), node("node-02").cordoned(), node("node-03").not_ready()],
                fleet(5).split_off(3),
            ]
            .concat(),
            2,
            vec![],
            3,
        ),
        (
            "a cordoned Node is not started even with room",
            [vec![node("node-01").cordoned()], fleet(3).split_off(1)].concat(),
            5,
            vec!["node-02", "node-03"],
            3,
        ),
        (
            "an updated Node cordoned by kured",
            [vec![node("node-01").updated().cordoned()], fleet(3).split_off(1)].concat(),
            2,
            vec!["node-02"],
            2,
        ),
    ];
    for (what, nodes, max_unavailable, expected, unavailable) in cases {
        let d = run(&rollout(|s| s.max_unavailable = max(max_unavailable)), &nodes);
        assert_eq!(started(&d), expected, "{what}");
        assert_eq!(d.status.unavailable, unavailable, "{what}");
        assert_eq!(d.status.max_unavailable, i64::from(max_unavailable), "{what}");
    }
}

/// Starts come with the resourceVersion seen, for the patch's precondition, in name order
/// whatever the input order.
#[test]
fn starts_are_in_name_order_with_their_resource_version() {
    let mut nodes = fleet(4);
    nodes.reverse();
    let d = run(&rollout(|s| s.max_unavailable = max(2)), &nodes);
    assert_eq!(
        d.start,
        [
            Start { node: "node-01".into(), resource_version: Some("rv-node-01".into()) },
            Start { node: "node-02".into(), resource_version: Some("rv-node-02".into()) },
        ]
    );
    assert_eq!(d.status.in_flight_nodes, ["node-01", "node-02"], "the status counts what this decision started");
    assert_eq!((d.status.in_flight, d.status.pending), (2, 2));
}

/// A percentage of the selected Nodes rounds down, but at least one Node moves.
#[test]
fn percentages_round_down_but_at_least_one() {
    for (nodes, percent, starts) in [(25, "10%", 2), (5, "10%", 1), (10, "33%", 3), (3, "100%", 3)] {
        let d = run(&rollout(|s| s.max_unavailable = Some(IntOrString::String(percent.into()))), &fleet(nodes));
        assert_eq!(d.start.len(), starts, "{percent} of {nodes}");
        assert_eq!(d.status.max_unavailable, starts as i64);
    }
}

/// The canary Nodes go first; then the rollout pauses until it is annotated with the version.
#[test]
fn canaries_then_a_pause_until_the_version_is_approved() {
    let canary = |edit: fn(&mut ExtensionRollout)| {
        let mut r = rollout(|s| {
            s.canary = 2;
            s.max_unavailable = max(3);
        });
        edit(&mut r);
        r
    };
    let approve = |r: &mut ExtensionRollout, version: &str| {
        r.metadata.annotations = Some([(APPROVED_VERSION.to_string(), version.to_string())].into());
    };

    // only the canaries start, though the budget has room for three
    let d = run(&canary(|_| {}), &fleet(6));
    assert_eq!(started(&d), ["node-01", "node-02"]);
    assert_eq!(d.status.phase, Phase::Progressing);

    // one canary done, one in flight: still nothing more
    let mid = [vec![node("node-01").updated(), node("node-02").in_flight()], fleet(6).split_off(2)].concat();
    let d = run(&canary(|_| {}), &mid);
    assert_eq!(started(&d), Vec::<&str>::new());
    assert_eq!(d.status.phase, Phase::Progressing);

    // both done: paused, awaiting approval
    let done = [vec![node("node-01").updated(), node("node-02").updated()], fleet(6).split_off(2)].concat();
    let d = run(&canary(|_| {}), &done);
    assert_eq!(started(&d), Vec::<&str>::new());
    assert_eq!(d.status.phase, Phase::Paused);
    assert_eq!(cond_sr(&d, COMPLETE), ("False", "AwaitingApproval"));
    assert!(d.status.message.contains("bakery.dev/approved-version=v1.32.3"), "{}", d.status.message);

    // an approval of another version approves nothing
    let d = run(&canary(|r| r.metadata.annotations = Some([(APPROVED_VERSION.into(), OLD.into())].into())), &done);
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Paused));

    // approved (with or without the v): the rest go, within the budget
    for version in [V, "1.32.3"] {
        let mut r = canary(|_| {});
        approve(&mut r, version);
        let d = run(&r, &done);
        assert_eq!(started(&d), ["node-03", "node-04", "node-05"], "approved as {version}");
        assert_eq!(d.status.phase, Phase::Progressing);
    }

    // spec.paused holds everything, approval or not
    let mut r = canary(|r| r.spec.paused = true);
    approve(&mut r, V);
    let d = run(&r, &done);
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Paused));
    assert_eq!(cond_sr(&d, COMPLETE), ("False", "Paused"));

    // a canary that failed within the budget still counts as a canary Node
    let failed = [vec![node("node-01").updated(), node("node-02").rolled_back()], fleet(6).split_off(2)].concat();
    let d = run(&canary(|r| r.spec.failure_budget = 1), &failed);
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Paused));
}

fn window(days: &[&str], start: &str, end: &str, zone: &str) -> Option<RolloutWindow> {
    Some(RolloutWindow {
        days: days.iter().map(|d| d.to_string()).collect(),
        start: start.into(),
        end: end.into(),
        time_zone: Some(zone.into()),
    })
}

/// New Nodes start only inside the window (in its time zone, across midnight); Nodes in flight
/// go on outside it; outside, the decision asks to be called again when it opens.
#[test]
fn new_nodes_start_only_inside_the_window() {
    let paris = rollout(|s| s.window = window(&["Mon", "Tue", "Wed", "Thu", "Fri"], "02:00", "05:00", "Europe/Paris"));
    // Monday 02:30 in Paris (UTC+1)
    let d = run_at(&paris, &fleet(3), "2026-11-23T01:30:00Z");
    assert_eq!(started(&d), ["node-01"]);
    assert_eq!(d.requeue_at, None);
    // Monday 06:00 in Paris: nothing; look again at Tuesday 02:00 Paris
    let d = run_at(&paris, &fleet(3), "2026-11-23T05:00:00Z");
    assert_eq!(started(&d), Vec::<&str>::new());
    assert_eq!(d.status.phase, Phase::Pending);
    assert_eq!(cond_sr(&d, COMPLETE), ("False", "OutsideWindow"));
    assert_eq!(d.requeue_at, Some(at("2026-11-24T01:00:00Z")));
    assert!(d.status.message.contains("it opens at 2026-11-24T01:00:00Z"), "{}", d.status.message);
    // Saturday: the next is Monday
    let d = run_at(&paris, &fleet(3), "2026-11-28T02:00:00Z");
    assert_eq!((d.start.len(), d.requeue_at), (0, Some(at("2026-11-30T01:00:00Z"))));
    // summer: 02:30 Paris is 00:30 UTC
    let d = run_at(&paris, &fleet(3), "2026-06-15T00:30:00Z");
    assert_eq!(started(&d), ["node-01"]);
    // a Node in flight goes on outside the window; the rollout is progressing
    let nodes = [vec![node("node-01").in_flight()], fleet(3).split_off(1)].concat();
    let d = run_at(&paris, &nodes, "2026-11-23T05:00:00Z");
    assert_eq!((d.start.len(), d.status.phase, d.status.in_flight), (0, Phase::Progressing, 1));

    // across midnight: Friday 22:00 to Saturday 02:00 (UTC)
    let night = rollout(|s| s.window = window(&["Fri"], "22:00", "02:00", "UTC"));
    assert_eq!(run_at(&night, &fleet(2), "2026-11-28T01:00:00Z").start.len(), 1, "Saturday 01:00 is Friday's");
    let d = run_at(&night, &fleet(2), "2026-11-28T23:00:00Z");
    assert_eq!((d.start.len(), d.requeue_at), (0, Some(at("2026-12-04T22:00:00Z"))), "Saturday night is not");
}

/// A Node that rolled back or failed counts against failureBudget; past it the rollout halts
/// (nothing new starts), and stays halted for this generation even if the Nodes go away.
#[test]
fn failures_past_the_budget_halt_the_rollout() {
    let one_down = [vec![node("node-01").rolled_back()], fleet(5).split_off(1)].concat();
    let d = run(&rollout(|_| {}), &one_down);
    assert_eq!(started(&d), Vec::<&str>::new());
    assert_eq!(d.status.phase, Phase::Halted);
    assert_eq!(cond_sr(&d, HALTED), ("True", "FailureBudgetExceeded"));
    assert_eq!(d.status.failed, 1);
    assert_eq!(
        d.status.failed_nodes,
        [FailedNode {
            name: "node-01".into(),
            state: "rolled-back".into(),
            message: "kubernetes: rolled back to v1.32.2: kubelet.service is not up".into()
        }]
    );
    assert!(d.status.message.contains("node-01 (rolled-back)"), "{}", d.status.message);

    // within a budget of 1 it goes on
    let d = run(&rollout(|s| s.failure_budget = 1), &one_down);
    assert_eq!(started(&d), ["node-02"]);
    assert_eq!((d.status.phase, d.status.failed), (Phase::Progressing, 1));
    assert_eq!(cond_sr(&d, HALTED), ("False", "NotHalted"));

    // a second one (failed, left cordoned by the agent) is one too many
    let two_down = [
        vec![
            node("node-01").rolled_back(),
            node("node-02").target(V).state("failed", "kubernetes v1.32.3: gave up").cordoned(),
        ],
        fleet(5).split_off(2),
    ]
    .concat();
    let halted = run(&rollout(|s| s.failure_budget = 1), &two_down);
    assert_eq!((halted.start.len(), halted.status.phase, halted.status.failed), (0, Phase::Halted, 2));

    // the halt sticks while the generation is the same, even with the failed Nodes deleted
    let mut r = rollout(|s| s.failure_budget = 1);
    r.status = Some(halted.status.clone());
    let d = run(&r, &fleet(5).split_off(2));
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Halted));
    // a new generation (the spec changed) counts again
    r.metadata.generation = Some(2);
    let d = run(&r, &fleet(5).split_off(2));
    assert_eq!((d.start.len(), d.status.phase), (1, Phase::Progressing));
    assert_eq!(d.status.observed_generation, Some(2));
}

/// The agent reports one state per Node: a failure of another extension there is not this
/// rollout's (the Node stays in flight for it, using the budget, and counts as no failure).
#[test]
fn another_extensions_failure_is_not_counted() {
    let other = node("node-01")
        .target(V)
        .ann("target.bakery.dev/containerd", "v2.0.1")
        .state("failed", "containerd v2.0.1: checksum mismatch")
        .up_to_date(None);
    let d = run(&rollout(|_| {}), &[vec![other], fleet(3).split_off(1)].concat());
    assert_eq!((d.status.failed, d.status.in_flight, d.status.phase), (0, 1, Phase::Progressing));
    // the same message about this extension is a failure
    let ours = node("node-01")
        .target(V)
        .ann("target.bakery.dev/containerd", "v2.0.1")
        .state("failed", "kubernetes v1.32.3: checksum mismatch")
        .up_to_date(None);
    let d = run(&rollout(|_| {}), &[vec![ours], fleet(3).split_off(1)].concat());
    assert_eq!((d.status.failed, d.status.phase), (1, Phase::Halted));
}

/// A failed Node never gets a new target from the rollout, however much room there is; when
/// the rest are updated, the rollout is complete within its failure budget.
#[test]
fn a_failed_node_is_never_retried() {
    let nodes = [vec![node("node-01").rolled_back()], fleet(4).split_off(1)].concat();
    let d = run(
        &rollout(|s| {
            s.failure_budget = 5;
            s.max_unavailable = max(10);
        }),
        &nodes,
    );
    assert_eq!(started(&d), ["node-02", "node-03", "node-04"]);
    let rest_done =
        [vec![node("node-01").rolled_back()], fleet(4).split_off(1).into_iter().map(N::updated).collect()].concat();
    let d = run(&rollout(|s| s.failure_budget = 5), &rest_done);
    assert_eq!(started(&d), Vec::<&str>::new());
    assert_eq!(d.status.phase, Phase::Complete);
    assert_eq!(cond_sr(&d, COMPLETE), ("True", "UpdatedWithinFailureBudget"));
    assert_eq!((d.status.updated, d.status.failed), (3, 1));
}

/// A new version supersedes: Nodes in flight on the old one finish first (and use the budget);
/// Nodes settled on the old one, or that failed it, get the new target.
#[test]
fn a_new_version_lets_nodes_in_flight_finish_first() {
    let nodes = vec![
        node("node-01")
            .target(OLD)
            .status("v1.32.1")
            .state("activating", "activating kubernetes v1.32.2")
            .up_to_date(None),
        node("node-02").target(OLD),
        node("node-03").target(OLD).status("v1.32.1").state("rolled-back", "kubernetes: rolled back").up_to_date(None),
        node("node-04"),
    ];
    let d = run(&rollout(|s| s.max_unavailable = max(2)), &nodes);
    assert_eq!(started(&d), ["node-02"], "node-01 holds one of the two");
    assert!(d.status.in_flight_nodes.contains(&"node-01".to_string()));
    assert_eq!(d.status.failed, 0, "failing the old version is not failing this one");
    let d = run(&rollout(|s| s.max_unavailable = max(4)), &nodes);
    assert_eq!(started(&d), ["node-02", "node-03", "node-04"], "never node-01 while it is in flight");
    // once node-01 settles on the old version it is retargeted like the others
    let settled = [vec![node("node-01").target(OLD)], nodes[1..].to_vec()].concat();
    assert_eq!(
        started(&run(&rollout(|s| s.max_unavailable = max(4)), &settled)),
        ["node-01", "node-02", "node-03", "node-04"]
    );
}

/// A Node that joins a complete rollout is upgraded; a Node being deleted is dropped (it no
/// longer counts, in flight or not).
#[test]
fn joined_nodes_are_upgraded_and_deleted_ones_dropped() {
    let done: Vec<N> = fleet(3).into_iter().map(N::updated).collect();
    let d = run(&rollout(|_| {}), &done);
    assert_eq!((d.status.phase, d.start.len()), (Phase::Complete, 0));
    assert_eq!(cond_sr(&d, COMPLETE), ("True", "AllNodesUpdated"));

    let joined = [done.clone(), vec![node("node-04")]].concat();
    let d = run(&rollout(|_| {}), &joined);
    assert_eq!(started(&d), ["node-04"]);
    assert_eq!((d.status.phase, d.status.selected), (Phase::Progressing, 4));
    assert_eq!(cond_sr(&d, COMPLETE), ("False", "Progressing"));

    // node-01 in flight, then deleted: its slot is free and it is not counted
    let nodes = [vec![node("node-01").in_flight()], fleet(3).split_off(1)].concat();
    assert_eq!(run(&rollout(|_| {}), &nodes).start.len(), 0);
    let deleting = [vec![node("node-01").in_flight().deleting()], fleet(3).split_off(1)].concat();
    let d = run(&rollout(|_| {}), &deleting);
    assert_eq!((started(&d), d.status.selected), (vec!["node-02"], 2));
    let gone = fleet(3).split_off(1);
    assert_eq!(run(&rollout(|_| {}), &gone).status.selected, 2);
}

/// A Node counts as updated only after it has been up to date and Ready for minReadySeconds;
/// until then it is in flight (using the budget) and the decision asks to be called again at
/// the moment it settles.
#[test]
fn min_ready_seconds_hold_a_node_in_flight() {
    let now = at(NOW);
    let fresh = |up: Timestamp, ready: Timestamp| {
        let mut n = node("node-01").updated().up_to_date(Some(up));
        n.0.ready_since = Some(ready);
        n
    };
    let r = rollout(|s| s.min_ready_seconds = 300);
    let nodes = [vec![fresh(now - secs(100), at(LONG_AGO))], fleet(2).split_off(1)].concat();
    let d = run(&r, &nodes);
    assert_eq!((d.start.len(), d.status.updated, d.status.in_flight), (0, 0, 1));
    assert_eq!(d.requeue_at, Some(now + secs(200)));
    // the later of the two conditions counts: Ready again 50 s ago
    let nodes = [vec![fresh(now - secs(400), now - secs(50))], fleet(2).split_off(1)].concat();
    assert_eq!(run(&r, &nodes).requeue_at, Some(now + secs(250)));
    // settled: updated, and the next Node starts
    let nodes = [vec![fresh(now - secs(300), at(LONG_AGO))], fleet(2).split_off(1)].concat();
    let d = run(&r, &nodes);
    assert_eq!((started(&d), d.status.updated), (vec!["node-02"], 1));
    // NotReady: in flight again, no timer (a Node change wakes the controller)
    let nodes = [vec![node("node-01").updated().not_ready()], fleet(2).split_off(1)].concat();
    let d = run(&r, &nodes);
    assert_eq!((d.start.len(), d.status.updated, d.requeue_at), (0, 0, None));
}

/// Two rollouts of one extension selecting the same Node: the later created is refused (and
/// starts nothing); different extensions or disjoint selectors do not conflict.
#[test]
fn the_later_of_two_overlapping_rollouts_is_refused() {
    let nodes = [fleet(3), vec![node("node-04").label("zone", "a")]].concat();
    let first = rollout(|_| {});
    let later = |name: &str, edit: fn(&mut ExtensionRolloutSpec), created: &str| {
        let mut r = rollout(edit);
        r.metadata.name = Some(name.into());
        r.metadata.creation_timestamp = Some(Time(at(created)));
        r
    };
    let zone_a = later(
        "zone-a",
        |s| {
            s.node_selector =
                Some(LabelSelector { match_labels: Some([("zone".into(), "a".into())].into()), ..Default::default() })
        },
        "2026-11-21T10:00:00Z",
    );
    let all = [first.clone(), zone_a.clone()];

    let d = decide(&zone_a, &views(&nodes), &all, at(NOW));
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Halted));
    assert_eq!(cond_sr(&d, CONFLICT), ("True", "OverlappingRollout"));
    assert_eq!(cond_sr(&d, HALTED), ("True", "Conflict"));
    assert_eq!(cond(&d, CONFLICT).message, "ExtensionRollout kubernetes-workers was first on Node node-04");

    let d = decide(&first, &views(&nodes), &all, at(NOW));
    assert_eq!((d.start.len(), d.status.phase), (1, Phase::Progressing));
    assert_eq!(cond_sr(&d, CONFLICT), ("False", "NoOverlap"));

    // another extension on the same Nodes
    let containerd = later("containerd", |s| s.extension = "containerd".into(), "2026-11-21T10:00:00Z");
    let d = decide(&containerd, &views(&nodes), &[first.clone(), containerd.clone()], at(NOW));
    assert_eq!(cond_sr(&d, CONFLICT).0, "False");
    // a selector that picks none of these Nodes
    let zone_b = later(
        "zone-b",
        |s| {
            s.node_selector =
                Some(LabelSelector { match_labels: Some([("zone".into(), "b".into())].into()), ..Default::default() })
        },
        "2026-11-21T10:00:00Z",
    );
    let d = decide(&zone_b, &views(&nodes), &[first.clone(), zone_b.clone()], at(NOW));
    assert_eq!(cond_sr(&d, CONFLICT).0, "False");
    // created at the same second: the name decides (kubernetes-workers > a-first)
    let twin = later("a-first", |_| {}, "2026-11-20T10:00:00Z");
    let d = decide(&first, &views(&nodes), &[first.clone(), twin.clone()], at(NOW));
    assert_eq!(cond_sr(&d, CONFLICT).0, "True");
    // a rollout being deleted does not refuse anyone
    let mut leaving = twin.clone();
    leaving.metadata.deletion_timestamp = Some(Time(at(NOW)));
    let d = decide(&first, &views(&nodes), &[first.clone(), leaving], at(NOW));
    assert_eq!(cond_sr(&d, CONFLICT).0, "False");
}

/// Conditions carry the generation; a condition keeps its transition time while its status
/// stays, and moves it when it changes.
#[test]
fn conditions_keep_their_transition_time_and_carry_the_generation() {
    let mut r = rollout(|_| {});
    r.metadata.generation = Some(7);
    let first = run_at(&r, &fleet(2), "2026-11-23T03:00:00Z");
    assert_eq!(first.status.observed_generation, Some(7));
    let types: Vec<&str> = first.status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [COMPLETE, HALTED, CONFLICT]);
    for c in &first.status.conditions {
        assert_eq!((c.observed_generation, c.last_transition_time.0), (Some(7), at("2026-11-23T03:00:00Z")));
    }

    r.status = Some(first.status.clone());
    let done: Vec<N> = fleet(2).into_iter().map(N::updated).collect();
    let later = run_at(&r, &done, "2026-11-23T04:00:00Z");
    assert_eq!(later.status.phase, Phase::Complete);
    assert_eq!(cond(&later, COMPLETE).last_transition_time.0, at("2026-11-23T04:00:00Z"), "False → True moves");
    assert_eq!(cond(&later, HALTED).last_transition_time.0, at("2026-11-23T03:00:00Z"), "False stays False");
    r.status = Some(later.status.clone());
    let again = run_at(&r, &done, "2026-11-23T05:00:00Z");
    assert_eq!(again.status, later.status, "nothing changed: the same status, nothing to write");
}

#[test]
fn an_invalid_spec_or_no_nodes_starts_nothing() {
    let d = run(
        &rollout(|s| {
            s.version = "latest".into();
            s.max_unavailable = max(0);
        }),
        &fleet(3),
    );
    assert_eq!((d.start.len(), d.status.phase), (0, Phase::Halted));
    assert_eq!(cond_sr(&d, HALTED), ("True", "InvalidSpec"));
    assert_eq!(
        d.status.message,
        "invalid spec: spec.version: an exact version such as v1.32.3, not latest; spec.maxUnavailable: 0 would never let a Node start (at least 1)"
    );

    let d = run(
        &rollout(|_| {}),
        &[node("cp-1").label("x", "y")].map(|mut n| {
            n.0.labels.remove(WORKER);
            n
        }),
    );
    assert_eq!((d.status.phase, d.status.selected), (Phase::Pending, 0));
    assert_eq!(cond_sr(&d, COMPLETE), ("False", "NoNodesSelected"));
}
