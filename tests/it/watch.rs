//! `bakery node watch` against the in-process Kubernetes API server of `support::kube_api` (no
//! real API server can run here; that one speaks the real wire format, and the agent talks to it
//! through kube's real client). The agent is the real binary with `--root` on a temporary root,
//! in a private mount namespace (systemd-sysext runs for real), staging from a release served
//! over HTTP; the last test runs it as the shipped systemd unit on a real systemd in a container.
//! These tests need root; elsewhere they say why they skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support;
use serde_json::{Value, json};
use support::container::{Bind, Container, Systemd};
use support::demo::{Demo, RELEASE_URL};
use support::kube_api::{KubeApi, View};
use support::process::Logged as Agent;
use support::root_or_skip;

const NODE: &str = "worker-1";
const WAIT: Duration = Duration::from_secs(60);

fn annotation(view: &View, key: &str) -> Option<String> {
    view.nodes().get(NODE)?["metadata"]["annotations"][key].as_str().map(str::to_string)
}

fn condition(view: &View) -> Option<Value> {
    let conditions = view.nodes().get(NODE)?["status"]["conditions"].as_array()?;
    conditions.iter().find(|c| c["type"] == "BakeryUpToDate").cloned()
}

fn reasons(view: &View) -> Vec<String> {
    view.events().iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect()
}

/// A release of the demo extension, a Node in the API server, and a node root.
struct World {
    demo: Demo,
    api: KubeApi,
    root: PathBuf,
}

impl World {
    /// Builds and releases `versions` (x86-64, healthy).
    fn new(versions: &[&str]) -> World {
        let demo = Demo::new();
        for version in versions {
            demo.build(version, "x86-64", false);
        }
        demo.release();
        let root = demo.dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/bakery")).unwrap();
        std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
        let world = World { demo, api: KubeApi::start(), root };
        world.config("");
        world.api.add_node(NODE);
        world
    }

    /// The node config: the release, quick retries, plus `extra`.
    fn config(&self, extra: &str) {
        let text =
            format!("release_url = \"{RELEASE_URL}\"\nretries = 2\nretry_backoff = 1\nhealth_window = 1\n{extra}");
        std::fs::write(self.root.join("etc/bakery/node.toml"), text).unwrap();
    }

    fn start(&self) -> Agent {
        self.start_with(&self.api.kubeconfig(self.demo.dir.path()))
    }

    fn start_with(&self, kubeconfig: &Path) -> Agent {
        let exe = env!("CARGO_BIN_EXE_bakery");
        let mut command = Command::new("unshare");
        command.env_clear().env("PATH", std::env::var_os("PATH").unwrap()).env("HOME", self.demo.dir.path());
        command.args(["--mount", "--propagation", "private", "sh", "-c", r#"mount -t tmpfs tmpfs /run && exec "$@""#]);
        command.args(["sh", exe, "--mirror", &self.demo.release_mirror(), "node", "--root"]).arg(&self.root);
        command.arg("watch").arg("--kubeconfig").arg(kubeconfig);
        command.args(["--node-name", NODE, "--metrics-addr", "127.0.0.1:0"]);
        Agent::spawn("bakery node watch", command)
    }

    fn link(&self) -> Option<PathBuf> {
        // the node path it points at: bakery writes it relative, as systemd-sysupdate does
        let target = std::fs::read_link(self.root.join("etc/extensions/demo.raw")).ok()?;
        Some(bakery::sysupdate::update::normalize(&Path::new("/etc/extensions").join(target)))
    }

    fn records(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.root.join("var/lib/bakery/versions.json")).unwrap()).unwrap()
    }

    /// Waits until the Node reports `version` active, idle and up to date.
    fn wait_active(&self, version: &str) {
        self.api.wait_for(&format!("demo {version} reported active"), WAIT, |v| {
            let up = condition(v).is_some_and(|c| c["status"] == "True");
            (annotation(v, "status.bakery.dev/demo").as_deref() == Some(version)
                && annotation(v, "bakery.dev/state").as_deref() == Some("idle")
                && up)
                .then_some(())
        });
    }

    /// Files in the demo's staging directory.
    /// The staged images (not the links bakery keeps for rollbacks in `.bakery-keep`).
    fn staged(&self) -> Vec<String> {
        let mut names = support::dir_names(&self.root.join("opt/extensions/demo"));
        names.retain(|n| n != ".bakery-keep");
        names
    }
}

/// Every (verb, resource) of deploy/rbac.yaml's ClusterRole.
fn granted() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml")).unwrap();
    let mut out = Vec::new();
    for document in text.split("\n---\n") {
        let value: Value = serde_saphyr::from_str(document).unwrap();
        if value["kind"] != "ClusterRole" {
            continue;
        }
        for rule in value["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let group = group.as_str().unwrap();
                        let resource = resource.as_str().unwrap();
                        let resource =
                            if group.is_empty() { resource.to_string() } else { format!("{group}:{resource}") };
                        out.push((verb.as_str().unwrap().to_string(), resource));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn a_target_is_staged_activated_and_reported() {
    if !root_or_skip("a_target_is_staged_activated_and_reported") {
        return;
    }
    let world = World::new(&["v1.0.0", "v2.0.0"]);
    let agent = world.start();

    // Without a target it reports what is active (nothing yet) and that it is up to date.
    let first =
        world.api.wait_for("the first report", WAIT, |v| condition(v).map(|c| (c, annotation(v, "bakery.dev/state"))));
    assert_eq!((first.0["status"].as_str(), first.0["reason"].as_str()), (Some("True"), Some("UpToDate")));
    assert_eq!(first.0["message"], "no targets set");
    assert_eq!(first.1.as_deref(), Some("idle"));
    assert_eq!(world.api.with(|v| annotation(v, "bakery.dev/message")).as_deref(), Some("no extensions active"));

    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    world.wait_active("v1.0.0");
    assert_eq!(world.link(), Some(PathBuf::from("/opt/extensions/demo/demo-v1.0.0-x86-64.raw")));
    assert_eq!(world.records()["extensions"]["demo"]["active"]["version"], "v1.0.0");
    let up = world.api.with(condition).unwrap();
    assert_eq!(
        (up["reason"].as_str(), up["message"].as_str()),
        (Some("UpToDate"), Some("demo v1.0.0 active as targeted"))
    );
    // the kubelet's conditions are untouched by the strategic merge
    let ready = world.api.with(|v| v.nodes()[NODE]["status"]["conditions"][0]["type"].clone());
    assert_eq!(ready, "Ready");

    // An upgrade: Events say what happened, on this Node, from bakery.
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v2.0.0"));
    world.wait_active("v2.0.0");
    let events = world.api.with(|v| v.events());
    let uid = world.api.node(NODE)["metadata"]["uid"].clone();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["reason"].as_str().unwrap().to_string(), e["note"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(summary.len(), 4, "{summary:?}");
    assert_eq!(summary[0].0, "ExtensionStaged");
    assert!(summary[0].1.contains("demo v1.0.0 staged as /opt/extensions/demo/demo-v1.0.0-x86-64.raw"), "{summary:?}");
    assert_eq!(summary[1], ("ExtensionActivated".into(), "demo: v1.0.0 active".into()));
    assert_eq!(summary[2].0, "ExtensionStaged");
    assert_eq!(summary[3], ("ExtensionActivated".into(), "demo: v2.0.0 active (was v1.0.0)".into()));
    for event in &events {
        assert_eq!(event["regarding"]["kind"], "Node");
        assert_eq!(event["regarding"]["uid"], uid);
        assert_eq!(event["reportingController"], "bakery");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["metadata"]["namespace"], "default");
    }

    let metrics = agent.metrics();
    for line in [
        "bakery_extension_active{extension=\"demo\",version=\"v2.0.0\"} 1",
        "bakery_upgrades_total{extension=\"demo\",result=\"activated\"} 2",
        "bakery_state{state=\"idle\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    let refreshed = metrics.lines().find_map(|l| l.strip_prefix("bakery_last_refresh_timestamp_seconds ")).unwrap();
    assert!(refreshed.parse::<u64>().unwrap() > 1_700_000_000, "{metrics}");

    // What it used is what deploy/rbac.yaml grants, and nothing more is granted.
    let used: std::collections::BTreeSet<(String, String)> =
        world.api.with(|v| v.requests.iter().filter_map(|r| r.rbac()).collect());
    let granted = granted();
    for need in &used {
        assert!(granted.contains(need), "deploy/rbac.yaml lacks {need:?} (used: {used:?})");
    }
    for grant in &granted {
        assert!(used.contains(grant), "{grant:?} is granted but unused");
    }
}

#[test]
fn a_watch_cut_and_410_in_the_middle_of_an_upgrade_miss_no_change() {
    if !root_or_skip("a_watch_cut_and_410_in_the_middle_of_an_upgrade_miss_no_change") {
        return;
    }
    let world = World::new(&["v1.0.0", "v2.0.0", "v3.0.0"]);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    let _agent = world.start();
    world.wait_active("v1.0.0");

    // v2's download hangs; meanwhile the watch is cut, history is compacted (410 for the old
    // resourceVersion) and the target moves on to v3 while the agent is not watching.
    let v2 = "/release.example/ext/demo-v2.0.0-x86-64.raw";
    world.demo.server.hold(v2);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v2.0.0"));
    assert!(world.demo.server.wait_for_hits(v2, 1, WAIT), "v2 was never requested");
    let lists_before =
        world.api.with(|v| v.requests.iter().filter(|r| r.rbac().is_some_and(|x| x.0 == "list")).count());
    world.api.cut_watches();
    world.api.expire();
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v3.0.0"));

    world.wait_active("v3.0.0");
    world.demo.server.release(v2);
    let (lists, gone) = world.api.with(|v| {
        let lists = v.requests.iter().filter(|r| r.rbac().is_some_and(|x| x.0 == "list")).count();
        (lists, v.watches_started)
    });
    assert!(lists > lists_before, "the agent listed again after the 410");
    assert!(gone >= 2, "and watched again");
    assert_eq!(world.link(), Some(PathBuf::from("/opt/extensions/demo/demo-v3.0.0-x86-64.raw")));
    assert_eq!(world.staged(), ["demo-v1.0.0-x86-64.raw", "demo-v3.0.0-x86-64.raw"], "v2's download left nothing");
    let reasons = world.api.with(reasons);
    assert_eq!(reasons.iter().filter(|r| *r == "ExtensionActivated").count(), 2, "v1 and v3 only: {reasons:?}");
}

#[test]
fn a_conflict_on_the_status_patch_is_retried() {
    if !root_or_skip("a_conflict_on_the_status_patch_is_retried") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    let status = format!("/api/v1/nodes/{NODE}/status");
    world.api.conflict_next("PATCH", &status, 1);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    let _agent = world.start();
    world.wait_active("v1.0.0");
    let codes: Vec<u16> = world
        .api
        .with(|v| v.requests.iter().filter(|r| r.method == "PATCH" && r.path == status).map(|r| r.status).collect());
    assert_eq!(codes[0], 409, "{codes:?}");
    assert!(codes[1..].iter().all(|c| *c == 200), "{codes:?}");
    let patch = world.api.with(|v| v.requests.iter().find(|r| r.path == status).unwrap().content_type.clone());
    assert_eq!(patch, "application/strategic-merge-patch+json");
}

#[test]
fn the_agent_uncordons_only_what_it_cordoned() {
    if !root_or_skip("the_agent_uncordons_only_what_it_cordoned") {
        return;
    }
    let world = World::new(&["v1.0.0", "v2.0.0"]);
    world.config("cordon = true\n");
    let _agent = world.start();
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    world.wait_active("v1.0.0");
    let node = world.api.node(NODE);
    assert_eq!(node["spec"].get("unschedulable"), None, "uncordoned after the upgrade: {node:#}");
    assert_eq!(node["metadata"]["annotations"].get("bakery.dev/cordoned"), None);
    // It was cordoned before the activation: the cordon patch precedes the report of activating.
    let order: Vec<&str> = world.api.with(|v| {
        v.requests
            .iter()
            .filter_map(|r| {
                let body = r.body.as_ref()?;
                if body["spec"]["unschedulable"] == true {
                    Some("cordon")
                } else if body["metadata"]["annotations"]["bakery.dev/state"] == "activating" {
                    Some("activating")
                } else if body["spec"].get("unschedulable").is_some_and(Value::is_null) {
                    Some("uncordon")
                } else {
                    None
                }
            })
            .collect()
    });
    assert_eq!(order, ["cordon", "activating", "uncordon"]);
    let cordon = world.api.with(|v| {
        v.requests.iter().find(|r| r.body.as_ref().is_some_and(|b| b["spec"]["unschedulable"] == true)).cloned()
    });
    assert!(cordon.unwrap().body.unwrap()["metadata"]["resourceVersion"].is_string(), "guarded by resourceVersion");

    // Cordoned by someone else: left cordoned after the upgrade.
    world.api.set_unschedulable(NODE, true);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v2.0.0"));
    world.wait_active("v2.0.0");
    let node = world.api.node(NODE);
    assert_eq!(node["spec"]["unschedulable"], true);
    assert_eq!(node["metadata"]["annotations"].get("bakery.dev/cordoned"), None);
}

#[test]
fn sigterm_mid_upgrade_stops_at_a_safe_point_and_the_next_start_resumes() {
    if !root_or_skip("sigterm_mid_upgrade_stops_at_a_safe_point_and_the_next_start_resumes") {
        return;
    }
    let world = World::new(&["v1.0.0", "v2.0.0"]);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    let mut agent = world.start();
    world.wait_active("v1.0.0");

    let v2 = "/release.example/ext/demo-v2.0.0-x86-64.raw";
    world.demo.server.hold(v2);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v2.0.0"));
    assert!(world.demo.server.wait_for_hits(v2, 1, WAIT));
    assert_eq!(agent.terminate(), 0, "{}", agent.log());
    assert!(agent.log().contains("SIGTERM: stopping at the next safe point"), "{}", agent.log());
    world.demo.server.release(v2);
    assert_eq!(
        world.link(),
        Some(PathBuf::from("/opt/extensions/demo/demo-v1.0.0-x86-64.raw")),
        "the link never moved"
    );
    assert_eq!(world.staged(), ["demo-v1.0.0-x86-64.raw"], "no partial download is left");
    assert_eq!(world.records()["extensions"]["demo"]["active"]["version"], "v1.0.0");
    let message = world.api.with(|v| annotation(v, "bakery.dev/message")).unwrap();
    assert_eq!(message, "stopped while staging demo v2.0.0; the next start resumes it");

    let _again = world.start();
    world.wait_active("v2.0.0");
}

#[test]
fn bad_targets_are_reported_and_failures_end_in_failed_without_a_crash() {
    if !root_or_skip("bad_targets_are_reported_and_failures_end_in_failed_without_a_crash") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("latest"));
    let mut agent = world.start();
    let invalid =
        world.api.wait_for("InvalidTarget", WAIT, |v| condition(v).filter(|c| c["reason"] == "InvalidTarget"));
    assert_eq!(invalid["message"], "target.bakery.dev/demo: a target is an exact version such as v1.32.3, not latest");
    assert_eq!(world.api.with(|v| annotation(v, "bakery.dev/state")).as_deref(), Some("failed"));

    // A version the release does not have: retried (2 attempts, 1 s apart), then failed.
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v9.9.9"));
    let message = world.api.wait_for("the target given up", WAIT, |v| {
        let failed = condition(v).is_some_and(|c| c["reason"] == "Failed");
        (failed && annotation(v, "bakery.dev/state").as_deref() == Some("failed"))
            .then(|| annotation(v, "bakery.dev/message"))
            .flatten()
            .filter(|m| m.contains("v9.9.9"))
    });
    assert!(
        message.contains("gave up after 2 attempts")
            && message.contains("not in the release")
            && message.contains("newest: v1.0.0"),
        "{message}"
    );
    let failed = world.api.with(|v| v.events().iter().filter(|e| e["reason"] == "ExtensionFailed").count());
    assert_eq!(failed, 1);
    let sums = world.demo.server.hits("/release.example/ext/SHA256SUMS");
    assert!(agent.running(), "no crash:\n{}", agent.log());

    // A new target is tried at once, and the retries did not storm the release.
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    world.wait_active("v1.0.0");
    assert!(sums <= 4, "{sums} SHA256SUMS requests for 2 attempts");
}

#[test]
fn a_permanent_failure_is_given_up_at_once() {
    if !root_or_skip("a_permanent_failure_is_given_up_at_once") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    // the image served does not match SHA256SUMS: another attempt would fetch the same bytes
    let image = "/release.example/ext/demo-v1.0.0-x86-64.raw";
    world.demo.server.put(image, b"not the released image".to_vec());
    world.api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    let mut agent = world.start();
    let message = world.api.wait_for("the target given up", WAIT, |v| {
        let failed = condition(v).is_some_and(|c| c["reason"] == "Failed");
        (failed && annotation(v, "bakery.dev/state").as_deref() == Some("failed"))
            .then(|| annotation(v, "bakery.dev/message"))
            .flatten()
    });
    assert!(message.contains("checksum mismatch") && !message.contains("gave up after"), "{message}");
    assert_eq!(world.demo.server.hits(image), 1, "not retried:\n{}", agent.log());
    assert!(agent.running(), "no crash:\n{}", agent.log());
}

#[test]
fn an_unreachable_api_server_is_waited_for() {
    if !root_or_skip("an_unreachable_api_server_is_waited_for") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    // A kubeconfig for a server that is not there yet: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let kubeconfig = support::kube_api::kubeconfig(&world.demo.dir.path().join("later"), &url);
    let mut agent = world.start_with(&kubeconfig);
    agent.wait_log("cannot watch Node worker-1");
    assert!(agent.running(), "it keeps trying:\n{}", agent.log());

    let later = KubeApi::start_on(port);
    later.add_node(NODE);
    later.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    later.wait_for("the report after the API came back", WAIT, |v| {
        (annotation(v, "status.bakery.dev/demo").as_deref() == Some("v1.0.0")).then_some(())
    });
    assert!(agent.running());
}

#[test]
fn kubectl_sets_targets_and_reads_the_report() {
    if !root_or_skip("kubectl_sets_targets_and_reads_the_report") {
        return;
    }
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        support::skip("kubectl_sets_targets_and_reads_the_report", "kubectl is not installed");
        return;
    }
    let world = World::new(&["v1.0.0"]);
    let kubeconfig = world.api.kubeconfig(world.demo.dir.path());
    let kubectl = |args: &[&str]| {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&kubeconfig).arg("--cache-dir").arg(world.demo.dir.path().join("kube-cache"));
        let out = command.args(args).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let _agent = world.start();
    kubectl(&["annotate", "node", NODE, "target.bakery.dev/demo=v1.0.0"]);
    world.wait_active("v1.0.0");
    let active = kubectl(&["get", "node", NODE, "-o", r"jsonpath={.metadata.annotations.status\.bakery\.dev/demo}"]);
    assert_eq!(active, "v1.0.0");
    let up =
        kubectl(&["get", "node", NODE, "-o", r#"jsonpath={.status.conditions[?(@.type=="BakeryUpToDate")].status}"#]);
    assert_eq!(up, "True");
}

#[test]
fn the_fake_api_merges_conditions_by_type_like_a_strategic_merge_patch() {
    let mut node = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
    let patch = json!({"status": {"$setElementOrder/conditions": [{"type": "Ready"}], "conditions": [
        {"type": "Ready", "status": "False"}, {"type": "New", "status": "True"}, {"type": "Other", "$patch": "delete"}]}});
    support::kube_api::strategic(&mut node, &patch, "");
    assert_eq!(
        node,
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "New", "status": "True"}]}})
    );
}

/// The shipped unit on a real systemd: `Type=notify` readiness, a target activated with the
/// demo's service restarted, a crashing version rolled back and reported, a clean stop.
fn the_unit_follows_targets_on_a_real_systemd_and_rolls_back(systemd: Systemd) {
    let demo = Demo::new();
    demo.build("v1.0.0", "x86-64", false);
    demo.build("v2.0.0", "x86-64", true);
    demo.release();
    let api = KubeApi::start();
    api.add_node(NODE);
    api.kubeconfig(&demo.shared());
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
    let container = Container::boot_on(
        systemd,
        &[
            Bind { host: exe.parent().unwrap().to_path_buf(), container: "/srv/bin".into(), writable: false },
            Bind { host: demo.shared(), container: "/srv/bakery".into(), writable: true },
        ],
    );
    let unit = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("units/bakery-watch.service")).unwrap();
    container.write("/etc/systemd/system/bakery-watch.service", &unit);
    container.write(
        "/etc/bakery/node.toml",
        format!("release_url = \"{RELEASE_URL}\"\nhealth_window = 3\nretries = 2\nretry_backoff = 1\n").as_bytes(),
    );
    let env = format!(
        "KUBECONFIG=/srv/bakery/kubeconfig\nNODE_NAME={NODE}\nBAKERY_MIRRORS=https://release.example={}/release.example\n",
        demo.server.url()
    );
    container.write("/etc/bakery/watch.env", env.as_bytes());
    container
        .sh("mkdir -p /opt/bin && ln -s /srv/bin/bakery /opt/bin/bakery && systemctl daemon-reload")
        .expect_code(0);
    // Type=notify: start returns once bakery says READY=1
    container.run(&["systemctl", "start", "bakery-watch.service"]).expect_code(0);
    assert_eq!(container.run(&["systemctl", "is-active", "bakery-watch.service"]).stdout.trim(), "active");

    api.annotate(NODE, "target.bakery.dev/demo", Some("v1.0.0"));
    api.wait_for("v1 reported", WAIT, |v| {
        (annotation(v, "status.bakery.dev/demo").as_deref() == Some("v1.0.0")).then_some(())
    });
    assert_eq!(container.read("/run/demo.version").trim(), "v1.0.0", "the service runs the new version");

    api.annotate(NODE, "target.bakery.dev/demo", Some("v2.0.0"));
    let message = api.wait_for("the rollback reported", WAIT, |v| {
        let reported = condition(v).is_some_and(|c| c["reason"] == "RolledBack");
        (reported && annotation(v, "bakery.dev/state").as_deref() == Some("rolled-back"))
            .then(|| annotation(v, "bakery.dev/message"))
            .flatten()
    });
    assert!(message.contains("demo.service") && message.contains("rolled back to v1.0.0"), "{message}");
    assert_eq!(api.with(|v| annotation(v, "status.bakery.dev/demo")).as_deref(), Some("v1.0.0"));
    let rolled = api.with(|v| v.events().iter().find(|e| e["reason"] == "ExtensionRolledBack").cloned()).unwrap();
    assert_eq!(rolled["type"], "Warning");
    assert_eq!(container.run(&["systemctl", "is-active", "demo.service"]).stdout.trim(), "active");
    assert_eq!(container.read("/run/demo.version").trim(), "v1.0.0");

    container.run(&["systemctl", "stop", "bakery-watch.service"]).expect_code(0);
    let state = container.run(&["systemctl", "show", "-P", "Result", "bakery-watch.service"]);
    assert_eq!(state.stdout.trim(), "success", "a clean stop");
}

on_both_systemds!(the_unit_follows_targets_on_a_real_systemd_and_rolls_back);
