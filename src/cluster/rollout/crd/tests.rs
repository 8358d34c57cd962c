use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};
use kube::Resource;
use serde_json::{Value, json};

use super::*;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A spec and status with every field set, so that serialising names them all.
fn everything() -> ExtensionRollout {
    let mut rollout = ExtensionRollout::new(
        "all",
        ExtensionRolloutSpec {
            extension: "kubernetes".into(),
            version: "v1.32.3".into(),
            node_selector: Some(LabelSelector {
                match_labels: Some([("zone".to_string(), "a".to_string())].into()),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "node-role.kubernetes.io/worker".into(),
                    operator: "In".into(),
                    values: Some(vec!["".into()]),
                }]),
            }),
            max_unavailable: Some(IntOrString::String("10%".into())),
            canary: 3,
            window: Some(RolloutWindow {
                days: vec!["Mon".into()],
                start: "02:00".into(),
                end: "05:00".into(),
                time_zone: Some("Europe/Paris".into()),
            }),
            failure_budget: 1,
            min_ready_seconds: 300,
            paused: true,
        },
    );
    rollout.status = Some(ExtensionRolloutStatus {
        observed_generation: Some(2),
        phase: Phase::Progressing,
        version: "v1.32.3".into(),
        message: "m".into(),
        selected: 10,
        updated: 1,
        in_flight: 1,
        failed: 1,
        pending: 7,
        unavailable: 1,
        max_unavailable: 1,
        in_flight_nodes: vec!["a".into()],
        failed_nodes: vec![FailedNode { name: "b".into(), state: "rolled-back".into(), message: "m".into() }],
        conditions: vec![Condition {
            type_: COMPLETE.into(),
            status: "False".into(),
            reason: "Progressing".into(),
            message: "m".into(),
            last_transition_time: Time("2026-11-23T02:00:00Z".parse().unwrap()),
            observed_generation: Some(2),
        }],
    });
    rollout
}

/// Walks `value` and `schema` together: every object's keys are the schema's `properties`
/// (both ways), arrays by their `items`. Objects the schema types by `additionalProperties`
/// (maps such as matchLabels) are not compared key by key.
fn same_fields(value: &Value, schema: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                assert!(
                    schema.get("additionalProperties").is_some() || at == ".metadata",
                    "{at}: the schema has no properties for {value}"
                );
                return;
            };
            let ours: Vec<&String> = map.keys().collect();
            let theirs: Vec<&String> = properties.keys().collect();
            let mut ours_sorted = ours.clone();
            ours_sorted.sort();
            let mut theirs_sorted = theirs.clone();
            theirs_sorted.sort();
            assert_eq!(ours_sorted, theirs_sorted, "{at}: the serde fields differ from deploy/crd.yaml");
            for (key, inner) in map {
                same_fields(inner, &properties[key], &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            let schema = schema.get("items").unwrap_or_else(|| panic!("{at}: an array without items in the schema"));
            for item in items {
                same_fields(item, schema, &format!("{at}[]"));
            }
        }
        _ => {}
    }
}

fn crd() -> Value {
    serde_saphyr::from_str(&read("deploy/crd.yaml")).unwrap()
}

#[test]
fn the_crd_schema_has_exactly_the_serde_fields() {
    let crd = crd();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let value = serde_json::to_value(everything()).unwrap();
    same_fields(&value, schema, "");

    // the names the Resource impl gives are the CRD's
    assert_eq!(crd["spec"]["group"], ExtensionRollout::group(&()).as_ref());
    assert_eq!(version["name"], ExtensionRollout::version(&()).as_ref());
    assert_eq!(crd["spec"]["names"]["kind"], ExtensionRollout::kind(&()).as_ref());
    assert_eq!(crd["spec"]["names"]["plural"], ExtensionRollout::plural(&()).as_ref());
    assert_eq!(crd["metadata"]["name"], format!("{PLURAL}.{GROUP}"));
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(version["subresources"], json!({"status": {}}));
    assert_eq!(ExtensionRollout::url_path(&(), None), "/apis/bakery.dev/v1alpha1/extensionrollouts");

    // the schema's enums are the code's values
    let phases: Vec<&str> = schema["properties"]["status"]["properties"]["phase"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: Vec<&str> =
        [Phase::Pending, Phase::Progressing, Phase::Paused, Phase::Halted, Phase::Complete].map(Phase::as_str).into();
    assert_eq!(phases, ours);
    for phase in ours {
        assert_eq!(serde_json::to_value(phase_of(phase)).unwrap(), phase);
    }
    let days = &schema["properties"]["spec"]["properties"]["window"]["properties"]["days"]["items"]["enum"];
    assert_eq!(*days, json!(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]));
}

fn phase_of(name: &str) -> Phase {
    serde_json::from_value(json!(name)).unwrap()
}

#[test]
fn printer_columns_are_extension_version_phase_updated_selected_age() {
    let crd = crd();
    let columns: Vec<(String, String)> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["jsonPath"].as_str().unwrap().to_string()))
        .collect();
    let expected = [
        ("Extension", ".spec.extension"),
        ("Version", ".spec.version"),
        ("Phase", ".status.phase"),
        ("Updated", ".status.updated"),
        ("Selected", ".status.selected"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    assert_eq!(columns, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    // each path exists in what the code writes
    let value = serde_json::to_value(everything()).unwrap();
    for (name, path) in &expected[..5] {
        let mut at = &value;
        for part in path.trim_start_matches('.').split('.') {
            at = &at[part];
        }
        assert!(!at.is_null(), "{name}: {path} is not in {value}");
    }
}

#[test]
fn the_example_manifest_parses_and_checks() {
    let rollout: ExtensionRollout = serde_saphyr::from_str(&read("examples/rollout/kubernetes-workers.yaml")).unwrap();
    assert_eq!((rollout.api_version.as_str(), rollout.kind.as_str()), (API_VERSION, KIND));
    assert_eq!(rollout.name(), "kubernetes-workers");
    let spec = rollout.spec.check().unwrap();
    assert_eq!((spec.extension.as_str(), spec.version.as_str()), ("kubernetes", "v1.32.3"));
    assert_eq!(spec.max_unavailable, MaxUnavailable::Percent(10));
    assert_eq!((spec.canary, spec.failure_budget, spec.min_ready.as_secs()), (3, 0, 300));
    assert!(spec.window.is_some() && !spec.paused);
    assert!(spec.selector.matches(&[("node-role.kubernetes.io/worker".into(), String::new())].into()));
    assert!(!spec.selector.matches(&[("node-role.kubernetes.io/control-plane".into(), String::new())].into()));
}

#[test]
fn round_trips_and_defaults() {
    let full = everything();
    let back: ExtensionRollout = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
    assert_eq!(back, full);

    // the least a user writes; an absent status
    let least: ExtensionRollout =
        serde_json::from_value(json!({"spec": {"extension": "kubernetes", "version": "v1.32.3"}})).unwrap();
    assert_eq!((least.api_version.as_str(), least.kind.as_str()), (API_VERSION, KIND));
    assert_eq!(least.status, None);
    let spec = least.spec.check().unwrap();
    assert_eq!(spec.max_unavailable, MaxUnavailable::Count(1));
    assert_eq!((spec.canary, spec.failure_budget, spec.min_ready.as_secs(), spec.paused), (0, 0, 0, false));
    assert!(spec.window.is_none());
    assert!(spec.selector.matches(&BTreeMap::new()), "no selector: every Node");
    let written = serde_json::to_value(&least).unwrap();
    assert_eq!(written["apiVersion"], API_VERSION);
    assert!(written.get("status").is_none());
}

/// maxUnavailable resolves against the selected count: percentages round down, but at least 1.
#[test]
fn max_unavailable_table() {
    let cases = [
        (MaxUnavailable::Count(3), 10, 3),
        (MaxUnavailable::Count(3), 2, 3),
        (MaxUnavailable::Percent(10), 1000, 100),
        (MaxUnavailable::Percent(10), 25, 2),
        (MaxUnavailable::Percent(10), 9, 1),
        (MaxUnavailable::Percent(10), 0, 1),
        (MaxUnavailable::Percent(33), 10, 3),
        (MaxUnavailable::Percent(100), 7, 7),
    ];
    for (max, selected, expected) in cases {
        assert_eq!(max.resolve(selected), expected, "{max:?} of {selected}");
    }
    let parse = |v: IntOrString| MaxUnavailable::parse(Some(&v));
    assert_eq!(parse(IntOrString::Int(2)), Ok(MaxUnavailable::Count(2)));
    assert_eq!(parse(IntOrString::String("25%".into())), Ok(MaxUnavailable::Percent(25)));
    assert_eq!(
        parse(IntOrString::Int(0)).unwrap_err(),
        "spec.maxUnavailable: 0 would never let a Node start (at least 1)"
    );
    for bad in ["0%", "101%", "10", "ten%", "-5%"] {
        assert_eq!(
            parse(IntOrString::String(bad.into())).unwrap_err(),
            format!("spec.maxUnavailable: {bad:?} is neither a count nor a percentage from 1% to 100%")
        );
    }
}

#[test]
fn check_names_every_field_at_fault() {
    let spec = ExtensionRolloutSpec {
        extension: "kube/rnetes".into(),
        version: "latest".into(),
        max_unavailable: Some(IntOrString::Int(0)),
        canary: -1,
        failure_budget: -2,
        min_ready_seconds: -3,
        window: Some(RolloutWindow { days: vec![], start: "2am".into(), end: "05:00".into(), time_zone: None }),
        ..ExtensionRolloutSpec::default()
    };
    let problems = spec.check().unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "spec.extension",
            "spec.version",
            "spec.maxUnavailable",
            "spec.window.start",
            "spec.canary",
            "spec.failureBudget",
            "spec.minReadySeconds"
        ]
    );
    assert_eq!(problems[1], "spec.version: an exact version such as v1.32.3, not latest");
    assert_eq!(problems[4], "spec.canary: -1 is not a count from 0 to 4294967295");
    let bad_version = ExtensionRolloutSpec { extension: "k".into(), version: "v1/../x".into(), ..Default::default() };
    assert!(bad_version.check().unwrap_err()[0].starts_with("spec.version: malformed version"));
}

/// Every document of a manifest file.
fn documents(relative: &str) -> Vec<Value> {
    read(relative)
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// (verb, group:resource) of every rule.
fn grants(role: &Value) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let (group, resource) = (group.as_str().unwrap(), resource.as_str().unwrap());
                    let what = if group.is_empty() { resource.to_string() } else { format!("{group}:{resource}") };
                    out.insert((verb.as_str().unwrap().to_string(), what));
                }
            }
        }
    }
    out
}

fn set(pairs: &[(&str, &str)]) -> std::collections::BTreeSet<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// The controller's manifests fit together: its account is bound to exactly the rights it
/// needs (Nodes patched, never their status; rollouts read, their status written; a Lease in
/// its namespace; Events), and the Deployment runs two replicas of `bakery rollout controller`
/// under that account with the leader-election environment.
#[test]
fn the_controller_manifests_fit_together() {
    let rbac = documents("deploy/rollout-rbac.yaml");
    let controller = documents("deploy/controller.yaml");
    let namespace = "bakery-system";
    assert_eq!(of_kind(&controller, "Namespace")[0]["metadata"]["name"], namespace);

    let account = of_kind(&rbac, "ServiceAccount")[0];
    assert_eq!(account["metadata"]["namespace"], namespace);
    let account = account["metadata"]["name"].as_str().unwrap();

    let cluster_role = of_kind(&rbac, "ClusterRole")[0];
    assert_eq!(
        grants(cluster_role),
        set(&[
            ("get", "nodes"),
            ("list", "nodes"),
            ("watch", "nodes"),
            ("patch", "nodes"),
            ("get", "bakery.dev:extensionrollouts"),
            ("list", "bakery.dev:extensionrollouts"),
            ("watch", "bakery.dev:extensionrollouts"),
            ("get", "bakery.dev:extensionrollouts/status"),
            ("patch", "bakery.dev:extensionrollouts/status"),
            ("update", "bakery.dev:extensionrollouts/status"),
            ("create", "events.k8s.io:events"),
        ])
    );
    let role = of_kind(&rbac, "Role")[0];
    assert_eq!(role["metadata"]["namespace"], namespace);
    assert_eq!(
        grants(role),
        set(&[
            ("create", "coordination.k8s.io:leases"),
            ("get", "coordination.k8s.io:leases"),
            ("update", "coordination.k8s.io:leases")
        ])
    );
    for (binding, role_kind, role) in [
        (of_kind(&rbac, "ClusterRoleBinding")[0], "ClusterRole", cluster_role),
        (of_kind(&rbac, "RoleBinding")[0], "Role", role),
    ] {
        assert_eq!(binding["roleRef"]["kind"], role_kind);
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]));
    }

    let deployment = of_kind(&controller, "Deployment")[0];
    assert_eq!(deployment["metadata"]["namespace"], namespace);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    let container = &pod["containers"][0];
    assert_eq!(container["args"], json!(["rollout", "controller", "--metrics-addr", "0.0.0.0:9102"]));
    assert_eq!(container["ports"], json!([{"name": "metrics", "containerPort": 9102}]));
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), &e["valueFrom"]["fieldRef"]["fieldPath"]))
        .collect();
    assert_eq!(env["POD_NAME"], "metadata.name");
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace");
}

/// kubectl's own decoder reads every manifest under deploy/ without a server (`annotate
/// --local`; `apply --dry-run=client` needs the server's discovery, so it cannot run here).
#[test]
fn kubectl_reads_every_manifest_offline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = std::process::Command::new("kubectl")
        .args(["annotate", "--local", "-o", "name", "-f"])
        .arg(&dir)
        .arg("bakery.dev/checked=true")
        .env("KUBECONFIG", "/dev/null")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "kubectl cannot run in CI: {e}");
            eprintln!("skipping kubectl_reads_every_manifest_offline: kubectl: {e}");
            return;
        }
    };
    assert!(out.status.success(), "kubectl: {}", String::from_utf8_lossy(&out.stderr));
    let names: std::collections::BTreeSet<String> =
        String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    for expected in [
        "customresourcedefinition.apiextensions.k8s.io/extensionrollouts.bakery.dev",
        "namespace/bakery-system",
        "deployment.apps/bakery-rollout-controller",
        "serviceaccount/bakery-rollout-controller",
        "clusterrole.rbac.authorization.k8s.io/bakery-rollout-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/bakery-rollout-controller",
        "role.rbac.authorization.k8s.io/bakery-rollout-controller-leader",
        "rolebinding.rbac.authorization.k8s.io/bakery-rollout-controller-leader",
        "clusterrole.rbac.authorization.k8s.io/bakery-node-agent",
    ] {
        assert!(names.contains(expected), "{expected} missing from {names:?}");
    }
}
