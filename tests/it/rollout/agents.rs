//! Real agents: three `bakery node watch` processes (each with its own node root, in a private
//! mount namespace, as tests/it/watch.rs runs one) follow the targets a real `bakery rollout
//! controller` sets, all against the in-process API server (no real one can run here). The
//! rollout completes with every node running the new version from the served release, never
//! more than `maxUnavailable` nodes unavailable at once, and the controller writes nothing on a
//! Node but the target annotation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};

use super::fleet::ROLLOUTS;
use super::{Controller, WAIT, rollout_status};
use crate::support::demo::{Demo, RELEASE_URL};
use crate::support::kube_api::{KubeApi, View};
use crate::support::root_or_skip;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const WORKER: &str = "node-role.kubernetes.io/worker";

/// `bakery node watch` for `node` with its own root; killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(demo: &Demo, root: &Path, kubeconfig: &Path, node: &str) -> Agent {
        let mut command = Command::new("unshare");
        command.env_clear().env("PATH", std::env::var_os("PATH").unwrap()).env("HOME", demo.dir.path());
        command.args(["--mount", "--propagation", "private", "sh", "-c", r#"mount -t tmpfs tmpfs /run && exec "$@""#]);
        command.args(["sh", env!("CARGO_BIN_EXE_bakery"), "--mirror", &demo.release_mirror(), "node", "--root"]);
        command.arg(root).arg("watch").arg("--kubeconfig").arg(kubeconfig).args(["--node-name", node]);
        Agent(command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starting bakery node watch"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unavailable as the controller counts it: in flight on demo (a target not yet settled and not
/// failed), NotReady, unschedulable, or the agent busy.
fn unavailable(node: &Value) -> bool {
    let annotations = &node["metadata"]["annotations"];
    let (target, active) =
        (annotations["target.bakery.dev/demo"].as_str(), annotations["status.bakery.dev/demo"].as_str());
    let state = annotations["bakery.dev/state"].as_str().unwrap_or_default();
    let condition = |type_: &str| {
        node["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
    };
    let settled = target.is_some() && active == target && condition("BakeryUpToDate");
    let failed = matches!(state, "failed" | "rolled-back") && active != target;
    (target.is_some() && !settled && !failed)
        || !condition("Ready")
        || node["spec"]["unschedulable"] == true
        || matches!(state, "staging" | "activating")
}

fn annotation<'a>(view: &'a View, node: &str, key: &str) -> Option<&'a str> {
    view.nodes().get(node)?["metadata"]["annotations"][key].as_str()
}

/// Every node reports `version` active, idle and up to date.
fn all_active(api: &KubeApi, version: &str) {
    api.wait_for(&format!("every node on demo {version}"), WAIT, |view| {
        NODES
            .iter()
            .all(|node| {
                let up = view.nodes()[*node]["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "BakeryUpToDate" && c["status"] == "True"));
                annotation(view, node, "status.bakery.dev/demo") == Some(version)
                    && annotation(view, node, "bakery.dev/state") == Some("idle")
                    && up
            })
            .then_some(())
    });
}

#[test]
fn real_agents_follow_the_controllers_targets_one_node_at_a_time() {
    if !root_or_skip("real_agents_follow_the_controllers_targets_one_node_at_a_time (mount namespaces)") {
        return;
    }
    let demo = Demo::new();
    for version in ["v1.0.0", "v2.0.0"] {
        demo.build(version, "x86-64", false);
    }
    demo.release();
    let api = Arc::new(KubeApi::start());
    let crd = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crd.yaml")).unwrap();
    api.install_crd(serde_saphyr::from_str(&crd).unwrap()).unwrap();
    let kubeconfig = api.kubeconfig(demo.dir.path());

    let mut agents = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    for node in NODES {
        let root = demo.dir.path().join(format!("root-{node}"));
        std::fs::create_dir_all(root.join("etc/bakery")).unwrap();
        std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
        let config = format!("release_url = \"{RELEASE_URL}\"\nretries = 2\nretry_backoff = 1\nhealth_window = 1\n");
        std::fs::write(root.join("etc/bakery/node.toml"), config).unwrap();
        api.add_node_with(node, &[(WORKER, "")]);
        // the operator's first version, set by hand as before there was a controller
        api.annotate(node, "target.bakery.dev/demo", Some("v1.0.0"));
        agents.push(Agent::start(&demo, &root, &kubeconfig, node));
        roots.push(root);
    }
    all_active(&api, "v1.0.0");

    let spec = json!({ "extension": "demo", "version": "v2.0.0", "maxUnavailable": 1,
        "nodeSelector": { "matchLabels": { WORKER: "" } } });
    let rollout = json!({ "apiVersion": "bakery.dev/v1alpha1", "kind": "ExtensionRollout",
        "metadata": { "name": "demo" }, "spec": spec });
    let started = api.with(|view| view.history().writes.len());
    api.create("kubectl", ROLLOUTS, None, rollout).unwrap();
    let controller = Controller::start_at(demo.dir.path(), &kubeconfig, "replica-a");
    let status: Value = api.wait_for("the rollout Complete", WAIT, |view| {
        let status = rollout_status(view, "demo");
        (status["phase"] == "Complete").then_some(status)
    });
    assert_eq!((status["selected"].as_u64(), status["updated"].as_u64()), (Some(3), Some(3)), "{status}");
    all_active(&api, "v2.0.0");
    for root in &roots {
        let link = std::fs::read_link(root.join("etc/extensions/demo.raw")).unwrap();
        assert!(link.to_string_lossy().ends_with("demo-v2.0.0-x86-64.raw"), "{}: {link:?}", root.display());
    }

    // the most nodes unavailable after any write since the rollout was created (before it, the
    // operator's hand-set first version ran on all three at once)
    let client = controller.client();
    let (most, targeted) = api.with(|view| {
        let history = view.history();
        let mut down = BTreeSet::new();
        let mut most = 0;
        let mut targeted = Vec::new();
        for (i, write) in history.writes.iter().enumerate().filter(|(_, w)| w.resource == "nodes") {
            if unavailable(&write.object) && !write.deleted {
                down.insert(write.name.clone());
            } else {
                down.remove(&write.name);
            }
            if i >= started {
                most = most.max(down.len());
            }
            if i >= started && write.client == client {
                targeted.push((write.name.clone(), write.object.clone()));
            }
        }
        (most, targeted)
    });
    assert_eq!(most, 1, "maxUnavailable 1: one node at a time, and the rollout moved");
    let mut names: Vec<&str> = targeted.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    assert_eq!(names, NODES, "one target patch per node");
    for (name, node) in &targeted {
        assert_eq!(node["metadata"]["annotations"]["target.bakery.dev/demo"], "v2.0.0", "{name}");
        assert_ne!(node["spec"]["unschedulable"], true, "{name}: the controller never cordons");
    }
    drop(agents);
}
