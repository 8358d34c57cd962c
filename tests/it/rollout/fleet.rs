//! The rollout tests' world: an API server with the ExtensionRollout CRD and a fleet of Nodes,
//! simulated agents that answer targets as `bakery node watch` does, and measures over the
//! server's history.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::kube_api::{History, KubeApi, PatchBody, View};

pub const ROLLOUTS: &str = "extensionrollouts.bakery.dev";
pub const EXT: &str = "kubernetes";
pub const OLD: &str = "v1.32.2";
pub const NEW: &str = "v1.32.3";
const WORKER: &str = "node-role.kubernetes.io/worker";
const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

fn target_key() -> String {
    format!("target.bakery.dev/{EXT}")
}

fn status_key() -> String {
    format!("status.bakery.dev/{EXT}")
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn annotation<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node["metadata"]["annotations"][key].as_str()
}

fn condition_true(node: &Value, type_: &str) -> bool {
    let conditions = node["status"]["conditions"].as_array();
    conditions.is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// An API server with the CRD of deploy/crd.yaml and a fleet: workers `w01`... and
/// control-plane Nodes `cp1`..., every one Ready, running OLD and reporting so.
pub struct World {
    pub api: Arc<KubeApi>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    workers: usize,
}

impl World {
    pub fn new(workers: usize, control_planes: usize) -> World {
        let api = Arc::new(KubeApi::start());
        let crd = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crd.yaml")).unwrap();
        api.install_crd(serde_saphyr::from_str(&crd).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.kubeconfig(dir.path());
        let world = World { api, dir, kubeconfig, workers };
        for name in world.selected() {
            world.api.add_node_with(&name, &[(WORKER, "")]);
            report(&world.api, &name, OLD, "idle", &format!("active: {EXT} {OLD}"), true);
        }
        for i in 1..=control_planes {
            let name = format!("cp{i}");
            world.api.add_node_with(&name, &[(CONTROL_PLANE, "")]);
            report(&world.api, &name, OLD, "idle", &format!("active: {EXT} {OLD}"), true);
        }
        world
    }

    /// The Nodes rollouts select: the workers.
    pub fn selected(&self) -> Vec<String> {
        (1..=self.workers).map(|i| format!("w{i:02}")).collect()
    }

    /// Creates rollout `name` of EXT NEW on every Node but the control plane, with `extra`
    /// spec fields.
    pub fn create_rollout(&self, name: &str, extra: Value) {
        let mut spec = json!({
            "extension": EXT, "version": NEW,
            "nodeSelector": { "matchExpressions": [{ "key": CONTROL_PLANE, "operator": "DoesNotExist" }] },
        });
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        let object = json!({
            "apiVersion": "bakery.dev/v1alpha1", "kind": "ExtensionRollout",
            "metadata": { "name": name }, "spec": spec,
        });
        self.api.create("kubectl", ROLLOUTS, None, object).unwrap();
    }
}

/// What an agent reports: the annotations (one merge patch), then the condition (one status
/// patch), as `bakery node watch` writes them.
fn report(api: &KubeApi, node: &str, active: &str, state: &str, message: &str, up_to_date: bool) {
    let client = format!("agent/{node}");
    let patch = json!({ "metadata": { "annotations": {
        status_key(): active, "bakery.dev/state": state, "bakery.dev/message": message,
    }}});
    api.patch(&client, "nodes", None, node, PatchBody::Merge(patch)).unwrap();
    let current = api.node(node);
    let before = current["status"]["conditions"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["type"] == "BakeryUpToDate")
            .map(|c| (c["status"].clone(), c["lastTransitionTime"].clone()))
    });
    let status = if up_to_date { "True" } else { "False" };
    let transition = match before {
        Some((s, t)) if s == status => t,
        _ => json!(now()),
    };
    let reason = match (up_to_date, state) {
        (true, _) => "UpToDate",
        (false, "staging") => "Staging",
        (false, "activating") => "Activating",
        (false, "rolled-back") => "RolledBack",
        (false, _) => "Failed",
    };
    let condition = json!({
        "type": "BakeryUpToDate", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now(), "lastTransitionTime": transition,
    });
    api.set_node_condition(&client, node, condition).unwrap();
}

struct AgentState {
    /// Nodes stop after staging until released.
    hold: bool,
    held: BTreeSet<String>,
    roll_back: BTreeSet<String>,
}

/// The fleet's agents, on one thread: each follows its Node's target through staging and
/// activation (or a rollback) at once, or holds after staging while `hold` is on.
pub struct Agents {
    api: Arc<KubeApi>,
    state: Arc<Mutex<AgentState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agents {
    pub fn start(api: &Arc<KubeApi>, hold: bool, roll_back: &[&str]) -> Agents {
        let state =
            AgentState { hold, held: BTreeSet::new(), roll_back: roll_back.iter().map(|s| s.to_string()).collect() };
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let subscription = api.subscribe("nodes", "", "", true);
        let (api_t, state_t, stop_t) = (api.clone(), state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop_t.load(Ordering::SeqCst) {
                // the timeout only lets the thread see `stop`
                let Some(event) = subscription.recv_timeout(Duration::from_millis(100)) else { continue };
                if event.type_ == "DELETED" {
                    continue;
                }
                let name = event.object["metadata"]["name"].as_str().unwrap().to_string();
                let mut state = state_t.lock().unwrap();
                act(&api_t, &mut state, &name);
            }
        });
        Agents { api: api.clone(), state, stop, thread: Some(thread) }
    }

    /// Held Nodes go on, and the next ones will not stop.
    pub fn release(&self) {
        let mut state = self.state.lock().unwrap();
        state.hold = false;
        for name in std::mem::take(&mut state.held) {
            act(&self.api, &mut state, &name);
        }
    }

    /// Nodes stop after staging from now on.
    pub fn hold(&self) {
        self.state.lock().unwrap().hold = true;
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One agent's step on its Node as it is now: nothing to do, stage (and hold), or finish.
fn act(api: &KubeApi, state: &mut AgentState, name: &str) {
    let Some(node) = api.get("nodes", None, name) else { return };
    let (Some(target), active) = (annotation(&node, &target_key()), annotation(&node, &status_key())) else { return };
    let target = target.to_string();
    let active = active.unwrap_or_default().to_string();
    let phase = annotation(&node, "bakery.dev/state").unwrap_or("idle");
    if active == target || matches!(phase, "rolled-back" | "failed") {
        return;
    }
    if phase == "idle" {
        report(api, name, &active, "staging", &format!("staging {EXT} {target} (attempt 1 of 3)"), false);
    }
    if state.hold {
        state.held.insert(name.to_string());
        return;
    }
    report(api, name, &active, "activating", &format!("activating {EXT} {target}"), false);
    if state.roll_back.contains(name) {
        let message = format!("{EXT}: rolled back to {active}: kubelet.service failed");
        report(api, name, &active, "rolled-back", &message, false);
    } else {
        report(api, name, &target, "idle", &format!("{EXT}: activated {target}"), true);
    }
}

/// The Nodes with a target, by name.
pub fn targeted(view: &View) -> Vec<String> {
    view.nodes().iter().filter(|(_, n)| annotation(n, &target_key()).is_some()).map(|(k, _)| k.clone()).collect()
}

/// Whether a Node runs NEW and says it is up to date.
pub fn done(view: &View, node: &str) -> bool {
    view.nodes()
        .get(node)
        .is_some_and(|n| annotation(n, &status_key()) == Some(NEW) && condition_true(n, "BakeryUpToDate"))
}

/// Unavailable by the definition (minReadySeconds 0), apart from the controller's
/// code: in flight (a target not yet settled, not failed), NotReady, unschedulable, or an agent
/// staging or activating.
fn unavailable(node: &Value) -> bool {
    let target = annotation(node, &target_key());
    let active = annotation(node, &status_key());
    let phase = annotation(node, "bakery.dev/state").unwrap_or_default();
    let settled = |t: &str| active == Some(t) && condition_true(node, "BakeryUpToDate");
    let failed = |t: &str| matches!(phase, "failed" | "rolled-back") && active != Some(t);
    let in_flight = target.is_some_and(|t| !settled(t) && !failed(t));
    in_flight
        || !condition_true(node, "Ready")
        || node["spec"]["unschedulable"] == true
        || matches!(phase, "staging" | "activating")
}

/// The selected Nodes unavailable after each write to a Node.
pub fn unavailable_at_each_write(history: &History, selected: &[String]) -> Vec<usize> {
    let mut replay = history.nodes_at_each_step();
    let mut out = Vec::new();
    while let Some(step) = replay.next_step() {
        out.push(selected.iter().filter(|name| step.objects.get(*name).is_some_and(|n| unavailable(n))).count());
    }
    out
}

/// For each target patch of `client` that followed an agent's final report (a Node up to date
/// on NEW), how long after that report it came.
pub fn done_to_next_start(history: &History, client: &str) -> Vec<Duration> {
    let mut replay = history.nodes_at_each_step();
    let mut last_done: Option<Instant> = None;
    let mut out = Vec::new();
    while let Some(step) = replay.next_step() {
        let write = step.write;
        if write.client == client {
            if let Some(done) = last_done.take() {
                out.push(write.at.saturating_duration_since(done));
            }
        } else if write.client.starts_with("agent/") && write.subresource == "status" {
            let node = &step.objects[&write.name];
            let was = step.before.as_ref().is_some_and(|b| condition_true(b, "BakeryUpToDate"));
            let settled = annotation(node, &status_key()) == Some(NEW) && condition_true(node, "BakeryUpToDate");
            let failed = annotation(node, "bakery.dev/state") == Some("rolled-back");
            if (settled && !was) || failed {
                last_done = Some(write.at);
            }
        }
    }
    out
}

/// Every `(verb, resource)` of `counts` is granted by deploy/rollout-rbac.yaml.
pub fn assert_rbac_covers(counts: &BTreeMap<(String, String), usize>) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rollout-rbac.yaml")).unwrap();
    let mut granted = BTreeSet::new();
    for document in text.split("\n---\n") {
        let value: Value = serde_saphyr::from_str(document).unwrap();
        if !matches!(value["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        for rule in value["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let (group, resource) = (group.as_str().unwrap(), resource.as_str().unwrap());
                        let resource =
                            if group.is_empty() { resource.to_string() } else { format!("{group}:{resource}") };
                        granted.insert((verb.as_str().unwrap().to_string(), resource));
                    }
                }
            }
        }
    }
    for used in counts.keys() {
        assert!(granted.contains(used), "{used:?} is not granted by deploy/rollout-rbac.yaml: {granted:?}");
    }
}

/// How the agents of a large fleet behave, by the order in which their Nodes were targeted
/// (0 for the first): which roll back, which are slow (a timer between staging and
/// activation), which go NotReady while activating (a reboot).
#[derive(Clone, Default)]
pub struct Behaviour {
    pub roll_back: BTreeSet<usize>,
    pub slow_every: Option<usize>,
    pub slow: Duration,
    pub reboot_every: Option<usize>,
}

#[derive(Default)]
struct FleetState {
    order: BTreeMap<String, usize>,
    busy: BTreeSet<String>,
}

/// A large fleet's agents: one thread on one subscription to every Node, acting on each event
/// (no polling); slow agents finish on a timer thread of their own.
pub struct FleetAgents {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FleetAgents {
    pub fn start(api: &Arc<KubeApi>, behaviour: Behaviour) -> FleetAgents {
        let stop = Arc::new(AtomicBool::new(false));
        let subscription = api.subscribe("nodes", "", "", true);
        let (api, stop_t) = (api.clone(), stop.clone());
        let state = Arc::new(Mutex::new(FleetState::default()));
        let behaviour = Arc::new(behaviour);
        let thread = std::thread::spawn(move || {
            while !stop_t.load(Ordering::SeqCst) {
                // the timeout only lets the thread see `stop`
                let Some(event) = subscription.recv_timeout(Duration::from_millis(100)) else { continue };
                if event.type_ == "DELETED" {
                    continue;
                }
                let name = event.object["metadata"]["name"].as_str().unwrap().to_string();
                fleet_act(&api, &state, &behaviour, &name);
            }
        });
        FleetAgents { stop, thread: Some(thread) }
    }
}

impl Drop for FleetAgents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fleet_act(api: &Arc<KubeApi>, state: &Arc<Mutex<FleetState>>, behaviour: &Arc<Behaviour>, name: &str) {
    let Some(node) = api.get("nodes", None, name) else { return };
    let (Some(target), active) = (annotation(&node, &target_key()), annotation(&node, &status_key())) else { return };
    let (target, active) = (target.to_string(), active.unwrap_or_default().to_string());
    let phase = annotation(&node, "bakery.dev/state").unwrap_or("idle").to_string();
    if active == target || matches!(phase.as_str(), "rolled-back" | "failed") {
        return;
    }
    let index = {
        let mut s = state.lock().unwrap();
        if s.busy.contains(name) {
            return;
        }
        let next = s.order.len();
        let index = *s.order.entry(name.to_string()).or_insert(next);
        s.busy.insert(name.to_string());
        index
    };
    if phase == "idle" {
        report(api, name, &active, "staging", &format!("staging {EXT} {target} (attempt 1 of 3)"), false);
    }
    let slow = behaviour.slow_every.is_some_and(|n| index % n == n - 1);
    let delay = behaviour.slow;
    let (api, state, behaviour, name) = (api.clone(), state.clone(), behaviour.clone(), name.to_string());
    let finish = move || {
        report(&api, &name, &active, "activating", &format!("activating {EXT} {target}"), false);
        if behaviour.reboot_every.is_some_and(|n| index % n == n / 2) {
            api.set_node_ready(&name, false).unwrap();
            api.set_node_ready(&name, true).unwrap();
        }
        if behaviour.roll_back.contains(&index) {
            let message = format!("{EXT}: rolled back to {active}: kubelet.service failed");
            report(&api, &name, &active, "rolled-back", &message, false);
        } else {
            report(&api, &name, &target, "idle", &format!("{EXT}: activated {target}"), true);
        }
        state.lock().unwrap().busy.remove(&name);
    };
    if slow {
        // the agent's own work takes a while: a timer, not a synchronisation
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            finish();
        });
    } else {
        finish();
    }
}

/// The most selected Nodes unavailable at once over the history, computed incrementally (one
/// Node's change per write), with the selected Nodes those in `selected` (deleted ones leave).
pub fn max_unavailable(history: &History, selected: &BTreeSet<String>) -> usize {
    let mut down = BTreeSet::new();
    let mut most = 0;
    for write in history.of("nodes") {
        if !selected.contains(&write.name) {
            continue;
        }
        if !write.deleted && unavailable(&write.object) {
            down.insert(write.name.clone());
        } else {
            down.remove(&write.name);
        }
        most = most.max(down.len());
    }
    most
}

/// The Nodes unschedulable now.
pub fn cordoned(view: &View) -> Vec<String> {
    view.nodes().iter().filter(|(_, n)| n["spec"]["unschedulable"] == true).map(|(k, _)| k.clone()).collect()
}

/// Cordons (or uncordons) a Node as kured does before (after) a reboot.
pub fn kured(api: &KubeApi, node: &str, cordon: bool) {
    let value = if cordon { json!(true) } else { Value::Null };
    let patch = json!({ "spec": { "unschedulable": value } });
    api.patch("kured", "nodes", None, node, PatchBody::Merge(patch)).unwrap();
}
