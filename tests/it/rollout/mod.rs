//! `bakery rollout controller` (the real binary, one or two processes) against the in-process
//! API server of `support::kube_api`, with the CRD from deploy/crd.yaml and a fleet of Nodes
//! whose agents are simulated (`fleet`): they follow the agent's contract (stage, activate,
//! report on annotations and the `BakeryUpToDate` condition) through the server's direct API.
//! Guarantees are asserted from the server's recorded history, at every instant: the most
//! selected Nodes ever unavailable, what the controller wrote and to which objects, how many
//! writes per Node, and how long a finished Node waited for the next one to start.

mod agents;
mod bench;
mod fleet;
mod kubectl;
mod large;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::kube_api::{History, KubeApi, View};
use crate::support::process::Logged;
use crate::support::{bakery, run};
use fleet::{Agents, EXT, NEW, ROLLOUTS, World, unavailable_at_each_write};

const WAIT: Duration = Duration::from_secs(60);
const LEASES: &str = "leases.coordination.k8s.io";
const NAMESPACE: &str = "bakery-system";
const LEASE: &str = "bakery-rollout-controller";

/// One `bakery rollout controller` process (its stderr collected, printed when a test fails).
struct Controller {
    identity: String,
    process: Logged,
}

impl Controller {
    fn start(world: &World, identity: &str) -> Controller {
        Controller::start_at(world.dir.path(), &world.kubeconfig, identity)
    }

    /// A controller with HOME `home`, talking to the server of `kubeconfig`.
    fn start_at(home: &std::path::Path, kubeconfig: &std::path::Path, identity: &str) -> Controller {
        let mut command = bakery(home);
        command.args(["rollout", "controller", "--kubeconfig"]).arg(kubeconfig);
        command.args(["--namespace", NAMESPACE, "--identity", identity, "--lease-duration", "2s"]);
        command.args(["--metrics-addr", "127.0.0.1:0"]);
        let process = Logged::spawn(&format!("bakery rollout controller {identity}"), command);
        Controller { identity: identity.into(), process }
    }

    /// What the controller's requests and writes are recorded under: its User-Agent.
    fn client(&self) -> String {
        format!("bakery/{} rollout-controller/{}", env!("CARGO_PKG_VERSION"), self.identity)
    }
}

impl std::ops::Deref for Controller {
    type Target = Logged;
    fn deref(&self) -> &Logged {
        &self.process
    }
}

impl std::ops::DerefMut for Controller {
    fn deref_mut(&mut self) -> &mut Logged {
        &mut self.process
    }
}

fn rollout_status(view: &View, name: &str) -> Value {
    view.objects(ROLLOUTS).get(name).map(|r| r["status"].clone()).unwrap_or(Value::Null)
}

/// Waits until rollout `name` reports `phase`; returns its status.
fn wait_phase(world: &World, name: &str, phase: &str) -> Value {
    world.api.wait_for(&format!("rollout {name} {phase}"), WAIT, |v| {
        let status = rollout_status(v, name);
        (status["phase"] == phase).then_some(status)
    })
}

fn lease_holder(view: &View) -> Option<String> {
    let lease = view.objects(LEASES).get(&format!("{NAMESPACE}/{LEASE}"))?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

fn wait_leader(world: &World, identity: &str) {
    world.api.wait_for(&format!("{identity} holding the Lease"), WAIT, |v| {
        (lease_holder(v).as_deref() == Some(identity)).then_some(())
    });
}

/// Target patches `client` made, by Node, from the history.
fn target_patches(history: &History, client: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in history.by(client).filter(|w| w.resource == "nodes") {
        *out.entry(w.name.clone()).or_default() += 1;
    }
    out
}

/// Every write of `client` to a Node changed one thing: the target annotation, to NEW.
fn assert_only_targets_written(history: &History, client: &str) {
    let mut replay = history.nodes_at_each_step();
    let key = format!("target.bakery.dev/{EXT}");
    while let Some(step) = replay.next_step() {
        if step.write.client != client {
            continue;
        }
        let before = step.before.clone().expect("the controller creates no Node");
        let after = step.objects[&step.write.name].clone();
        assert_eq!(after["metadata"]["annotations"][&key], NEW, "{}", step.write.name);
        let strip = |node: &Value| {
            let mut node = node.clone();
            node["metadata"]["annotations"].as_object_mut().unwrap().remove(&key);
            node["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            node
        };
        assert_eq!(strip(&before), strip(&after), "{}: the controller wrote more than the target", step.write.name);
    }
}

/// A serial rollout (maxUnavailable 1) of 10 workers (2 control-plane Nodes not selected) with
/// agents that answer at once, one of which rolls back within failureBudget 1, and a conflict
/// on the first start: it completes, never more than one Node unavailable, one target patch
/// per Node and nothing else written on Nodes, no polling, at most 4 writes per Node, and each
/// next Node started within moments of the previous one reporting done. The metrics say so.
#[test]
fn a_fleet_rolls_out_one_node_at_a_time_and_completes_within_its_failure_budget() {
    let world = World::new(10, 2);
    let agents = Agents::start(&world.api, false, &["w07"]);
    let controller = Controller::start(&world, "c1");
    wait_leader(&world, "c1");
    // the first start meets a conflict (the Node changed since the view): read, decide again
    world.api.conflict_next("PATCH", "/api/v1/nodes/w01", 1);
    world.create_rollout("workers", json!({ "maxUnavailable": 1, "failureBudget": 1 }));
    let status = wait_phase(&world, "workers", "Complete");
    assert_eq!((status["updated"].as_i64(), status["failed"].as_i64()), (Some(9), Some(1)), "{status:#}");
    assert_eq!(status["failedNodes"][0]["name"], "w07");
    let complete = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Complete").unwrap();
    assert_eq!(
        (complete["status"].as_str(), complete["reason"].as_str()),
        (Some("True"), Some("UpdatedWithinFailureBudget"))
    );
    drop(agents);

    let history = world.api.history();
    let client = controller.client();
    let most = unavailable_at_each_write(&history, &world.selected()).into_iter().max().unwrap();
    assert_eq!(most, 1, "never more than maxUnavailable");
    let patched = target_patches(&history, &client);
    assert_eq!(patched.len(), 10, "{patched:?}");
    assert!(patched.values().all(|n| *n == 1), "one target patch per Node: {patched:?}");
    assert_only_targets_written(&history, &client);
    let writes = history.by(&client).filter(|w| w.resource != LEASES).count();
    let per_node = writes as f64 / 10.0;
    assert!(per_node <= 4.0, "{writes} writes for 10 Nodes");
    let counts = world.api.with(|v| v.request_counts_by(&client));
    let count =
        |verb: &str, resource: &str| counts.get(&(verb.to_string(), resource.to_string())).copied().unwrap_or(0);
    assert_eq!(count("get", "nodes"), 1, "a Node read afresh only after its conflict: {counts:?}");
    assert!(count("list", "nodes") <= 2 && count("watch", "nodes") <= 2, "watched, not polled: {counts:?}");

    let waits = fleet::done_to_next_start(&history, &client);
    assert_eq!(waits.len(), 9, "{waits:?}");
    let mut sorted = waits.clone();
    sorted.sort();
    let (median, max) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    eprintln!(
        "rollout of 10 Nodes, serial: {writes} controller writes ({per_node:.1} per Node, Lease renewals aside); \
         done to next start: median {:.1} ms, max {:.1} ms",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(median < Duration::from_millis(100), "done to next start: {waits:?}");

    let metrics = controller.metrics();
    for line in [
        "bakery_rollout_leader 1",
        "bakery_rollout_nodes{rollout=\"workers\",state=\"updated\"} 9",
        "bakery_rollout_nodes{rollout=\"workers\",state=\"failed\"} 1",
        "bakery_rollout_nodes{rollout=\"workers\",state=\"in_flight\"} 0",
        "bakery_rollout_phase{rollout=\"workers\",phase=\"Complete\"} 1",
        "bakery_rollout_phase{rollout=\"workers\",phase=\"Progressing\"} 0",
        "bakery_rollout_target_patches_total{rollout=\"workers\"} 10",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }
    fleet::assert_rbac_covers(&world.api.with(|v| v.request_counts_by(&client)));
}

/// maxUnavailable 2 and agents that hold every Node mid-upgrade: kill -9 the controller with
/// two Nodes in flight, let them finish and an admin cordon a third meanwhile, start it again:
/// it resumes from what the Nodes say (one start: the cordon uses the budget), lists again
/// after its watches expire, never touches the cordon, and completes once the admin uncordons.
/// Never more than two unavailable, and no Node was targeted twice.
#[test]
fn killed_mid_rollout_the_controller_resumes_within_the_budget() {
    let world = World::new(10, 0);
    let agents = Agents::start(&world.api, true, &[]);
    let mut first = Controller::start(&world, "c1");
    world.create_rollout("workers", json!({ "maxUnavailable": "20%" }));
    let in_flight = |v: &View| {
        let count = fleet::targeted(v).len();
        (count == 2).then_some(count)
    };
    world.api.wait_for("two Nodes in flight", WAIT, in_flight);
    first.kill();
    let killed = Instant::now();
    let started: Vec<String> = world.api.with(fleet::targeted);
    assert_eq!(started, ["w01", "w02"]);

    agents.release();
    world
        .api
        .wait_for("w01 and w02 done", WAIT, |v| fleet::done(v, "w01").then_some(()).filter(|_| fleet::done(v, "w02")));
    agents.hold();
    world.api.set_unschedulable("w05", true);

    // the same identity: the Lease is still its own, it takes it at once
    let second = Controller::start(&world, "c1");
    world.api.wait_for("one more Node in flight", WAIT, |v| (fleet::targeted(v).len() == 3).then_some(()));
    let status = world.api.wait_for("the status after the restart", WAIT, |v| {
        let s = rollout_status(v, "workers");
        (s["inFlight"] == 1 && s["updated"] == 2).then_some(s)
    });
    assert_eq!(status["unavailable"], 2, "the cordoned Node uses the budget: {status:#}");
    assert_eq!(world.api.with(fleet::targeted), ["w01", "w02", "w03"]);
    // the history compacted under its watches (410 Gone): it lists again, whole, before deciding
    let lists = |v: &View| v.request_counts_by(&second.client()).get(&("list".into(), "nodes".into())).copied();
    let listed = world.api.with(lists).unwrap_or(0);
    world.api.expire();
    world.api.wait_for("the Nodes listed again", WAIT, |v| (lists(v).unwrap_or(0) > listed).then_some(()));

    agents.release();
    world.api.wait_for("all but w05 done", WAIT, |v| {
        let s = rollout_status(v, "workers");
        (s["updated"] == 9).then_some(())
    });
    assert_eq!(world.api.node("w05")["spec"]["unschedulable"], true, "nobody uncordoned it");
    world.api.set_unschedulable("w05", false);
    wait_phase(&world, "workers", "Complete");

    let history = world.api.history();
    let most = unavailable_at_each_write(&history, &world.selected()).into_iter().max().unwrap();
    assert_eq!(most, 2, "never more than maxUnavailable (20% of 10)");
    // the same identity, so the same client: the kill tells the two apart
    let client = first.client();
    let mut before: Vec<&str> =
        history.by(&client).filter(|w| w.resource == "nodes" && w.at < killed).map(|w| w.name.as_str()).collect();
    before.sort();
    assert_eq!(before, ["w01", "w02"], "both started in parallel");
    let patched = target_patches(&history, &second.client());
    assert_eq!(patched.len(), 10);
    assert!(patched.values().all(|n| *n == 1), "no Node targeted twice: {patched:?}");
    assert_only_targets_written(&history, &second.client());
}

/// Two replicas: one leads and writes, the other only reads the Lease. kill -9 the leader
/// mid-rollout: the other takes over once the Lease expires and finishes, never more than the
/// budget unavailable. SIGTERM then releases the Lease and exits 0.
#[test]
fn of_two_controllers_one_writes_and_the_other_takes_over_when_it_dies() {
    let world = World::new(6, 0);
    let agents = Agents::start(&world.api, true, &[]);
    let mut one = Controller::start(&world, "c1");
    wait_leader(&world, "c1");
    let mut two = Controller::start(&world, "c2");
    two.wait_log("c1 leads");
    world.create_rollout("workers", json!({ "maxUnavailable": 2 }));
    world.api.wait_for("two Nodes in flight", WAIT, |v| (fleet::targeted(v).len() == 2).then_some(()));
    agents.release();
    world.api.wait_for("w01, w02 done and two more in flight", WAIT, |v| {
        (fleet::done(v, "w01") && fleet::done(v, "w02") && fleet::targeted(v).len() == 4).then_some(())
    });
    agents.hold();
    let history = world.api.history();
    assert_eq!(history.by(&two.client()).count(), 0, "the waiting replica wrote nothing");
    let writes = world.api.with(|v| v.request_counts_by(&two.client()));
    assert!(writes.keys().all(|(verb, resource)| verb == "get" && resource.ends_with("leases")), "{writes:?}");

    one.kill();
    let killed = Instant::now();
    agents.release();
    wait_phase(&world, "workers", "Complete");
    wait_leader(&world, "c2");
    let history = world.api.history();
    let first_write = history.by(&two.client()).find(|w| w.resource != LEASES).map(|w| w.at);
    let takeover = first_write.map(|at| at.saturating_duration_since(killed));
    eprintln!("takeover after kill -9 of the leader (lease 2 s): {takeover:?}");
    let last_of_one = history.by(&one.client()).map(|w| w.at).max().unwrap();
    assert!(history.by(&two.client()).all(|w| w.at > last_of_one), "never two writers at once");
    let most = unavailable_at_each_write(&history, &world.selected()).into_iter().max().unwrap();
    assert!(most <= 2, "{most}");
    let lease = world.api.get(LEASES, Some(NAMESPACE), LEASE).unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease:#}");
    assert!(two.metrics().lines().any(|l| l == "bakery_rollout_leader 1"));

    assert_eq!(two.terminate(), 0, "{}", two.log());
    assert_eq!(world.api.with(lease_holder), None, "released on SIGTERM");
}

/// `rollout list` and `rollout status` print what the status says, as text and JSON; an
/// unknown name is bad input (exit 2), a cluster without the CRD is named as such.
#[test]
fn list_and_status_show_the_rollouts_progress() {
    let world = World::new(0, 0);
    world.create_rollout("workers", json!({ "maxUnavailable": "10%" }));
    world.create_rollout("canaries", json!({ "canary": 1 }));
    let status = json!({ "status": {
        "observedGeneration": 1, "phase": "Progressing", "version": NEW,
        "message": "3 of 10 updated, 1 in flight, 1 failed, 5 pending",
        "selected": 10, "updated": 3, "inFlight": 1, "failed": 1, "pending": 5,
        "unavailable": 1, "maxUnavailable": 1, "inFlightNodes": ["w04"],
        "failedNodes": [{"name": "w02", "state": "rolled-back", "message": "kubernetes: rolled back to v1.32.2"}],
        "conditions": [{"type": "Halted", "status": "False", "reason": "NotHalted", "message": "not halted",
                        "lastTransitionTime": "2026-11-23T03:00:00Z"}],
    }});
    world
        .api
        .patch_status("test", ROLLOUTS, None, "workers", crate::support::kube_api::PatchBody::Merge(status))
        .unwrap();
    let cli = |args: &[&str]| {
        let mut command = bakery(world.dir.path());
        command.arg("rollout").args(args).arg("--kubeconfig").arg(&world.kubeconfig);
        run(&mut command)
    };
    let list = cli(&["list"]).expect_code(0).stdout;
    let lines: Vec<Vec<&str>> = list.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "EXTENSION", "VERSION", "PHASE", "UPDATED", "IN", "FLIGHT", "FAILED", "PENDING"]);
    assert_eq!(lines[1], ["canaries", EXT, NEW, "-", "0/0", "0", "0", "0"]);
    assert_eq!(lines[2], ["workers", EXT, NEW, "Progressing", "3/10", "1", "1", "5"]);
    let json: Value = serde_json::from_str(&cli(&["list", "--json"]).expect_code(0).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!((json[1]["name"].as_str(), json[1]["inFlight"].as_i64()), (Some("workers"), Some(1)));

    let page = cli(&["status", "workers"]).expect_code(0).stdout;
    for line in [
        "  phase:       Progressing",
        "  nodes:       10 selected: 3 updated, 1 in flight, 1 failed, 5 pending",
        "  in flight:   w04",
        "    w02 (rolled-back): kubernetes: rolled back to v1.32.2",
    ] {
        assert!(page.lines().any(|l| l == line), "{line:?} missing from\n{page}");
    }
    let one: Value = serde_json::from_str(&cli(&["status", "workers", "--json"]).expect_code(0).stdout).unwrap();
    assert_eq!((one["phase"].as_str(), one["failedNodes"][0]["name"].as_str()), (Some("Progressing"), Some("w02")));
    let unknown = cli(&["status", "nope"]).expect_code(2);
    assert!(unknown.stderr.contains("no ExtensionRollout \"nope\""), "{}", unknown.stderr);

    let bare = KubeApi::start();
    let kubeconfig = bare.kubeconfig(&world.dir.path().join("bare"));
    let mut command = bakery(world.dir.path());
    let missing = run(command.args(["rollout", "list", "--kubeconfig"]).arg(&kubeconfig)).expect_code(1);
    assert!(missing.stderr.contains("apply deploy/crd.yaml"), "{}", missing.stderr);
}
