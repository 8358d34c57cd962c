//! The in-process API server of `support::kube_api`, driven by kube-rs's own client the way the
//! agent and the rollout controller use it: what it answers must be what a real API server
//! answers, or tests against it prove nothing. Each test names the wire behaviour it pins.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::support::kube_api::{KubeApi, PatchBody, ResourceType};

const ROLLOUTS: &str = "extensionrollouts.bakery.dev";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn rollouts_type() -> ApiResource {
    let gvk = GroupVersionKind::gvk("bakery.dev", "v1alpha1", "ExtensionRollout");
    ApiResource::from_gvk_with_plural(&gvk, "extensionrollouts")
}

/// A server with the ExtensionRollout resource (cluster-scoped, status subresource).
fn server_with_rollouts() -> KubeApi {
    let api = KubeApi::start();
    api.add_custom_resource(ResourceType::custom(
        "bakery.dev",
        "v1alpha1",
        "extensionrollouts",
        "ExtensionRollout",
        false,
    ));
    api
}

fn rollout(name: &str, version: &str) -> DynamicObject {
    let mut object = DynamicObject::new(name, &rollouts_type());
    object.data = json!({ "spec": { "extension": "kubernetes", "version": version, "maxUnavailable": "10%" },
                          "status": { "phase": "Complete" } });
    object
}

fn api_error(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => panic!("not an API error: {other:?}"),
    }
}

#[test]
fn lists_select_by_label_and_come_in_pages_with_continue_tokens() {
    let api = KubeApi::start();
    for i in 0..25 {
        let role = if i % 5 == 0 { "control-plane" } else { "worker" };
        api.add_node_with(&format!("node-{i:02}"), &[("role", role), ("zone", if i < 10 { "a" } else { "b" })]);
    }
    runtime().block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("test-client/1"));
        let names = |list: &kube::core::ObjectList<Node>| -> Vec<String> {
            list.items.iter().map(|n| n.metadata.name.clone().unwrap()).collect()
        };

        // 20 workers in pages of 8: 8, 8, 4, in key order, one snapshot's resourceVersion
        let mut params = ListParams::default().labels("role=worker").limit(8);
        let mut pages = Vec::new();
        loop {
            let page = nodes.list(&params).await.unwrap();
            assert_eq!(page.metadata.remaining_item_count, None, "not with a selector");
            pages.push((names(&page), page.metadata.resource_version.clone()));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        let sizes: Vec<usize> = pages.iter().map(|(p, _)| p.len()).collect();
        assert_eq!(sizes, [8, 8, 4]);
        let all: Vec<String> = pages.iter().flat_map(|(p, _)| p.clone()).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert!(!all.contains(&"node-00".to_string()) && all.contains(&"node-01".to_string()));
        assert!(pages.iter().all(|(_, rv)| *rv == pages[0].1));

        // without a selector the first page says how many remain
        let first = nodes.list(&ListParams::default().limit(10)).await.unwrap();
        assert_eq!(first.metadata.remaining_item_count, Some(15));

        // set-based and negative requirements
        let count = |selector: &'static str| {
            let nodes = nodes.clone();
            async move { nodes.list(&ListParams::default().labels(selector)).await.unwrap().items.len() }
        };
        assert_eq!(count("role in (worker,control-plane),zone=a").await, 10);
        assert_eq!(count("role notin (worker)").await, 5);
        assert_eq!(count("role!=worker,zone==b").await, 3);
        assert_eq!(count("!role").await, 0);
        assert_eq!(count("zone").await, 25);
        assert_eq!(count("missing!=x").await, 25, "!= matches nodes without the label");

        let (code, reason, message) =
            api_error(nodes.list(&ListParams::default().labels("role in worker")).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (400, "BadRequest"), "{message}");
        let (code, _, message) =
            api_error(nodes.list(&ListParams::default().fields("spec.podCIDR=x")).await.unwrap_err());
        assert_eq!((code, message.as_str()), (400, "field label not supported: spec.podCIDR"));
    });
    // a continue token the server no longer has is 410 Expired
    api.expire();
    runtime().block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("test-client/1"));
        let page = nodes.list(&ListParams::default().limit(5)).await.unwrap();
        let token = page.metadata.continue_.unwrap();
        api.expire();
        let (code, reason, _) =
            api_error(nodes.list(&ListParams::default().limit(5).continue_token(&token)).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (410, "Expired"));
    });
}

#[test]
fn the_status_subresource_and_generation_behave_as_for_a_crd() {
    let api = server_with_rollouts();
    runtime().block_on(async {
        let rollouts: Api<DynamicObject> = Api::all_with(api.kube_client("controller/1"), &rollouts_type());
        let created = rollouts.create(&PostParams::default(), &rollout("workers", "v1.32.3")).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert_eq!(created.data.get("status"), None, "a create drops status");
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

        // a spec change counts up the generation; a label does not; status is ignored
        let patch = json!({ "spec": { "version": "v1.32.4" }, "status": { "phase": "Halted" } });
        let changed = rollouts.patch("workers", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(changed.metadata.generation, Some(2));
        assert_eq!(changed.data.get("status"), None);
        let labelled = rollouts
            .patch("workers", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "labels": { "a": "b" } } })))
            .await
            .unwrap();
        assert_eq!(labelled.metadata.generation, Some(2));

        // status writes change only status, and not the generation
        let status = json!({ "status": { "phase": "Progressing", "observedGeneration": 2 }, "spec": { "version": "x" } });
        let reported = rollouts.patch_status("workers", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        assert_eq!(reported.data["status"]["phase"], "Progressing");
        assert_eq!(reported.data["spec"]["version"], "v1.32.4");
        assert_eq!(reported.metadata.generation, Some(2));
        let got = rollouts.get_status("workers").await.unwrap();
        assert_eq!(got.data["status"]["observedGeneration"], 2);

        // a status replace with a stale resourceVersion is a conflict; with the current one it applies
        let mut stale = labelled.clone();
        stale.data["status"] = json!({ "phase": "Paused" });
        let (code, reason, message) = api_error(
            rollouts.replace_status("workers", &PostParams::default(), &stale).await.unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
        assert!(message.contains("extensionrollouts.bakery.dev \"workers\": the object has been modified"), "{message}");
        let mut fresh = reported.clone();
        fresh.data["status"] = json!({ "phase": "Paused" });
        let replaced =
            rollouts.replace_status("workers", &PostParams::default(), &fresh).await.unwrap();
        assert_eq!(replaced.data["status"], json!({ "phase": "Paused" }));

        // a no-op write keeps the resourceVersion
        let same = rollouts.patch_status("workers", &PatchParams::default(), &Patch::Merge(json!({ "status": { "phase": "Paused" } }))).await.unwrap();
        assert_eq!(same.metadata.resource_version, replaced.metadata.resource_version);

        // custom resources take no strategic merge patch
        let (code, reason, _) = api_error(
            rollouts.patch("workers", &PatchParams::default(), &Patch::Strategic(json!({ "spec": {} }))).await.unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));

        // server-side apply of the status by the controller, as kube-rs sends it
        let applied = json!({ "apiVersion": "bakery.dev/v1alpha1", "kind": "ExtensionRollout",
                              "status": { "phase": "Complete", "updated": 3 } });
        let done = rollouts
            .patch_status("workers", &PatchParams::apply("bakery-controller").force(), &Patch::Apply(&applied))
            .await
            .unwrap();
        assert_eq!(done.data["status"], json!({ "phase": "Complete", "updated": 3 }));
        let without = json!({ "apiVersion": "bakery.dev/v1alpha1", "kind": "ExtensionRollout", "status": { "phase": "Complete" } });
        let pruned = rollouts
            .patch_status("workers", &PatchParams::apply("bakery-controller").force(), &Patch::Apply(&without))
            .await
            .unwrap();
        assert_eq!(pruned.data["status"], json!({ "phase": "Complete" }), "a field the manager stopped applying is removed");

        // list items of a custom resource carry apiVersion and kind
        let listed = rollouts.list(&ListParams::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);
        assert_eq!(listed.items[0].types.as_ref().unwrap().kind, "ExtensionRollout");

        let (code, reason, message) = api_error(rollouts.get("nope").await.unwrap_err());
        assert_eq!((code, reason.as_str(), message.as_str()), (404, "NotFound", "extensionrollouts.bakery.dev \"nope\" not found"));
    });
    let writes = api.history();
    let rollout_writes = writes.writes_per_object(ROLLOUTS);
    assert_eq!(rollout_writes["workers"], 7, "{rollout_writes:?}");
    assert!(writes.of(ROLLOUTS).all(|w| w.client == "controller/1"));
}

#[test]
fn leases_conflict_on_create_and_on_a_stale_replace() {
    let api = KubeApi::start();
    runtime().block_on(async {
        let leases: Api<Lease> = Api::namespaced(api.kube_client("controller/a"), "bakery-system");
        let lease = Lease {
            metadata: kube::api::ObjectMeta { name: Some("bakery-rollout-controller".into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
        };
        let created = leases.create(&PostParams::default(), &lease).await.unwrap();
        assert_eq!(created.metadata.namespace.as_deref(), Some("bakery-system"));
        let (code, reason, message) = api_error(leases.create(&PostParams::default(), &lease).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
        assert_eq!(message, "leases.coordination.k8s.io \"bakery-rollout-controller\" already exists");

        // two candidates read the same version; the first replace wins, the second conflicts
        let other: Api<Lease> = Api::namespaced(api.kube_client("controller/b"), "bakery-system");
        let mut mine = leases.get("bakery-rollout-controller").await.unwrap();
        let mut theirs = other.get("bakery-rollout-controller").await.unwrap();
        mine.spec.as_mut().unwrap().lease_transitions = Some(1);
        theirs.spec.as_mut().unwrap().holder_identity = Some("b".into());
        let won = leases.replace("bakery-rollout-controller", &PostParams::default(), &mine).await.unwrap();
        let (code, reason, _) =
            api_error(other.replace("bakery-rollout-controller", &PostParams::default(), &theirs).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
        assert_ne!(won.metadata.resource_version, mine.metadata.resource_version);
        assert_eq!(
            leases.get("bakery-rollout-controller").await.unwrap().spec.unwrap().holder_identity.as_deref(),
            Some("a")
        );

        // without a resourceVersion a replace is unconditional, as for every kind that allows it
        theirs.metadata.resource_version = None;
        let taken = other.replace("bakery-rollout-controller", &PostParams::default(), &theirs).await.unwrap();
        assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));

        // a name in another namespace is another Lease; a cluster path is not served
        let elsewhere: Api<Lease> = Api::namespaced(api.kube_client("controller/a"), "default");
        assert_eq!(api_error(elsewhere.get("bakery-rollout-controller").await.unwrap_err()).0, 404);
        let all: Api<Lease> = Api::all(api.kube_client("controller/a"));
        assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 1);
    });
    let counts = api.with(|v| v.request_counts_by("controller/b"));
    assert_eq!(counts.get(&("update".into(), "coordination.k8s.io:leases".into())), Some(&2));
    assert_eq!(counts.get(&("get".into(), "coordination.k8s.io:leases".into())), Some(&1));
}

#[test]
fn watches_resume_from_a_resource_version_and_expire_with_410() {
    let api = KubeApi::start();
    api.add_node("a");
    runtime().block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("watcher/1"));
        let listed = nodes.list(&ListParams::default()).await.unwrap();
        let rv = listed.metadata.resource_version.clone().unwrap();

        // changes made after the list, while nobody watches, arrive in order
        api.annotate("a", "k", Some("1"));
        api.add_node("b");
        api.set_unschedulable("a", true);
        api.delete_node("b").unwrap();
        let mut stream = nodes.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
        let mut seen = Vec::new();
        for _ in 0..4 {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(n) => seen.push(format!("ADDED {}", n.metadata.name.unwrap())),
                WatchEvent::Modified(n) => seen.push(format!("MODIFIED {}", n.metadata.name.unwrap())),
                WatchEvent::Deleted(n) => seen.push(format!("DELETED {}", n.metadata.name.unwrap())),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, ["MODIFIED a", "ADDED b", "MODIFIED a", "DELETED b"]);
        api.bookmark();
        let Some(Ok(WatchEvent::Bookmark(mark))) = stream.next().await else { panic!("a bookmark") };
        assert_eq!(mark.metadata.resource_version, api.with(|v| v.resource_version()).to_string());

        // a selector: a Node that stops matching is DELETED for this watch, one that starts ADDED
        let rv = api.with(|v| v.resource_version()).to_string();
        let params = WatchParams::default().labels("pool=blue").timeout(5);
        let mut blue = nodes.watch(&params, &rv).await.unwrap().boxed();
        api.label_node("a", "pool", Some("blue")).unwrap();
        api.label_node("a", "pool", Some("green")).unwrap();
        let Some(Ok(WatchEvent::Added(added))) = blue.next().await else { panic!("added") };
        let Some(Ok(WatchEvent::Deleted(gone))) = blue.next().await else { panic!("deleted") };
        assert_eq!(added.metadata.labels.unwrap()["pool"], "blue");
        assert_eq!(gone.metadata.labels.unwrap()["pool"], "blue", "the last matching state");
        assert!(gone.metadata.resource_version > added.metadata.resource_version);

        // after compaction, a watch from an old resourceVersion gets an ERROR 410
        api.expire();
        let mut old = nodes.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
        let Some(Ok(WatchEvent::Error(gone))) = old.next().await else { panic!("an ERROR event") };
        assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
        assert!(old.next().await.is_none(), "and the stream ends");
        // a list made after it gives a resourceVersion to watch from, even with no write since
        let relisted = nodes.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let mut fresh = nodes.watch(&WatchParams::default().timeout(5), &relisted).await.unwrap().boxed();
        api.annotate("a", "after", Some("expiry"));
        let Some(Ok(WatchEvent::Modified(node))) = fresh.next().await else { panic!("modified") };
        assert_eq!(node.metadata.annotations.unwrap()["after"], "expiry");
    });

    // a bounded event log: a recent resourceVersion resumes, one older than it gets 410
    api.set_event_log_capacity(3);
    let start = api.with(|v| v.resource_version());
    for i in 0..5 {
        api.annotate("a", "n", Some(&i.to_string()));
    }
    runtime().block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("watcher/1"));
        let mut old = nodes.watch(&WatchParams::default(), &start.to_string()).await.unwrap().boxed();
        let Some(Ok(WatchEvent::Error(gone))) = old.next().await else { panic!("an ERROR event") };
        assert_eq!(gone.code, 410);
        let recent = (start + 3).to_string();
        let mut resumed = nodes.watch(&WatchParams::default().timeout(5), &recent).await.unwrap().boxed();
        let Some(Ok(WatchEvent::Modified(node))) = resumed.next().await else { panic!("modified") };
        assert_eq!(node.metadata.annotations.unwrap()["n"], "3");
    });
}

#[test]
fn kube_runtime_watchers_see_direct_writes_and_metadata_only_watches_work() {
    let api = KubeApi::start();
    for i in 0..12 {
        api.add_node_with(&format!("w{i}"), &[("node-role.kubernetes.io/worker", "")]);
    }
    api.add_node("cp");
    runtime().block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("controller/1"));
        // kube's default watcher: paged initial list (page_size 5 here), then a watch with bookmarks
        let config = watcher::Config::default().labels("node-role.kubernetes.io/worker").page_size(5);
        let mut events = watcher(nodes.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::Init => {}
                watcher::Event::InitApply(n) => initial.push(n.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(initial.len(), 12);
        api.patch_node_annotations("agent/w3", "w3", &[("status.bakery.dev/kubernetes", Some("v1.32.3"))]).unwrap();
        api.set_node_ready("w4", false).unwrap();
        api.annotate("cp", "ignored", Some("x"));
        api.delete_node("w5").unwrap();
        let mut changes = Vec::new();
        while changes.len() < 3 {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::Apply(n) => changes.push(format!("apply {}", n.metadata.name.unwrap())),
                watcher::Event::Delete(n) => changes.push(format!("delete {}", n.metadata.name.unwrap())),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(changes, ["apply w3", "apply w4", "delete w5"]);

        // metadata only: list, get and watch answer PartialObjectMetadata
        let listed = nodes.list_metadata(&ListParams::default().limit(4)).await.unwrap();
        assert_eq!(listed.items.len(), 4);
        assert_eq!(listed.types.kind, "PartialObjectMetadataList");
        let got = nodes.get_metadata("w3").await.unwrap();
        assert_eq!(got.metadata.annotations.unwrap()["status.bakery.dev/kubernetes"], "v1.32.3");
        let rv = listed.metadata.resource_version.unwrap();
        let mut meta = nodes.watch_metadata(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
        api.annotate("w6", "m", Some("1"));
        let Some(Ok(WatchEvent::Modified(partial))) = meta.next().await else { panic!("modified") };
        assert_eq!(partial.types.unwrap().kind, "PartialObjectMetadata");
        assert_eq!(partial.metadata.name.as_deref(), Some("w6"));

        // a streaming list: initial events, then the BOOKMARK that ends them
        let streaming = watcher::Config::default().labels("node-role.kubernetes.io/worker").streaming_lists();
        let mut streamed = watcher(nodes.clone(), streaming).boxed();
        let mut count = 0;
        loop {
            match streamed.try_next().await.unwrap().unwrap() {
                watcher::Event::Init => {}
                watcher::Event::InitApply(_) => count += 1,
                watcher::Event::InitDone => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(count, 11);
    });
    let requests = api.with(|v| v.request_counts_by("controller/1"));
    assert_eq!(
        requests[&("list".to_string(), "nodes".to_string())],
        3 + 1,
        "three pages, then the metadata list: {requests:?}"
    );
    assert!(requests[&("watch".to_string(), "nodes".to_string())] >= 3, "{requests:?}");
}

#[test]
fn server_side_apply_owns_fields_and_conflicts_with_other_managers() {
    let api = KubeApi::start();
    api.add_node("n");
    runtime().block_on(async {
        let admin: Api<Node> = Api::all(api.kube_client("kubectl/v1.32.4"));
        let controller: Api<Node> = Api::all(api.kube_client("bakery-controller/0.1.0"));
        admin
            .patch("n", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "annotations": { "target.bakery.dev/demo": "v1" } } })))
            .await
            .unwrap();
        let applied = json!({ "apiVersion": "v1", "kind": "Node",
                              "metadata": { "name": "n", "annotations": { "target.bakery.dev/demo": "v2" } } });
        let params = PatchParams::apply("bakery-controller");
        let (code, reason, message) = api_error(controller.patch("n", &params, &Patch::Apply(&applied)).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .metadata.annotations.target.bakery.dev/demo"
        );
        let forced = controller.patch("n", &params.clone().force(), &Patch::Apply(&applied)).await.unwrap();
        assert_eq!(forced.metadata.annotations.unwrap()["target.bakery.dev/demo"], "v2");
        // the apply no longer naming the annotation removes it: the controller owns it alone
        let bare = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n" } });
        let removed = controller.patch("n", &params, &Patch::Apply(&bare)).await.unwrap();
        assert!(!removed.metadata.annotations.unwrap().contains_key("target.bakery.dev/demo"));

        // fieldManager is required; a JSON patch's failed test is 422
        let (code, _, message) =
            api_error(controller.patch("n", &PatchParams::default(), &Patch::Apply(&bare)).await.unwrap_err());
        assert_eq!(code, 422, "{message}");
        let ops = json!([{ "op": "test", "path": "/spec/podCIDR", "value": "nope" }]);
        let patch: Patch<()> = Patch::Json(serde_json::from_value(ops).unwrap());
        assert_eq!(api_error(controller.patch("n", &PatchParams::default(), &patch).await.unwrap_err()).0, 422);
        let ops = json!([{ "op": "test", "path": "/spec/podCIDR", "value": "10.244.0.0/24" },
                         { "op": "add", "path": "/metadata/labels/pool", "value": "blue" }]);
        let patch: Patch<()> = Patch::Json(serde_json::from_value(ops).unwrap());
        let patched = controller.patch("n", &PatchParams::default(), &patch).await.unwrap();
        assert_eq!(patched.metadata.labels.unwrap()["pool"], "blue");

        // a resourceVersion in a merge patch is a precondition
        let stale = json!({ "metadata": { "resourceVersion": "1", "labels": { "pool": "red" } } });
        assert_eq!(api_error(admin.patch("n", &PatchParams::default(), &Patch::Merge(&stale)).await.unwrap_err()).0, 409);
        // dryRun answers the result and changes nothing
        let dry = admin
            .patch("n", &PatchParams::default().dry_run(), &Patch::Merge(json!({ "metadata": { "labels": { "pool": "red" } } })))
            .await
            .unwrap();
        assert_eq!(dry.metadata.labels.unwrap()["pool"], "red");
        assert_eq!(api.node("n")["metadata"]["labels"]["pool"], "blue");
    });
    let managers = api.with(|v| v.managers("nodes", "n"));
    assert!(managers.iter().any(|(name, apply, _, _)| name == "bakery-controller" && !apply), "{managers:?}");
}

#[test]
fn finalizers_hold_a_delete_until_the_last_one_is_removed() {
    let api = server_with_rollouts();
    runtime().block_on(async {
        let rollouts: Api<DynamicObject> = Api::all_with(api.kube_client("controller/1"), &rollouts_type());
        let mut object = rollout("r", "v1");
        object.metadata.finalizers = Some(vec!["bakery.dev/cleanup".into()]);
        rollouts.create(&PostParams::default(), &object).await.unwrap();
        let pending = rollouts.delete("r", &DeleteParams::default()).await.unwrap();
        let marked = pending.left().expect("the object, still there");
        assert!(marked.metadata.deletion_timestamp.is_some());
        let patch = json!({ "metadata": { "finalizers": null } });
        rollouts.patch("r", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(api_error(rollouts.get("r").await.unwrap_err()).0, 404);

        rollouts.create(&PostParams::default(), &rollout("s", "v1")).await.unwrap();
        let stale = DeleteParams {
            preconditions: Some(kube::api::Preconditions { resource_version: Some("1".into()), uid: None }),
            ..Default::default()
        };
        assert_eq!(api_error(rollouts.delete("s", &stale).await.unwrap_err()).0, 409);
        assert!(rollouts.delete("s", &DeleteParams::default()).await.unwrap().is_right(), "a Status once deleted");
    });
    let verbs: Vec<&str> = api.history().of(ROLLOUTS).map(|w| w.verb).collect();
    assert_eq!(verbs, ["create", "delete", "patch", "patch", "create", "delete"]);
}

#[test]
fn the_history_replays_every_instant_and_counts_writes() {
    let api = KubeApi::start();
    for name in ["a", "b", "c"] {
        api.add_node(name);
    }
    api.set_unschedulable("a", true);
    api.set_unschedulable("b", true);
    api.set_unschedulable("a", false);
    api.set_node_ready("c", false).unwrap();
    api.set_unschedulable("b", false);
    api.delete_node("c").unwrap();
    let history = api.history();
    let unavailable = |nodes: &BTreeMap<String, std::sync::Arc<Value>>| {
        nodes
            .values()
            .filter(|n| {
                n["spec"]["unschedulable"] == true
                    || n["status"]["conditions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] != "True")
            })
            .count()
    };
    let mut replay = history.nodes_at_each_step();
    let mut trace = Vec::new();
    while let Some(step) = replay.next_step() {
        trace.push((step.write.verb, step.write.name.clone(), unavailable(step.objects)));
    }
    let expected = [
        ("create", "a", 0),
        ("create", "b", 0),
        ("create", "c", 0),
        ("patch", "a", 1),
        ("patch", "b", 2),
        ("patch", "a", 1),
        ("patch", "c", 2),
        ("patch", "b", 1),
        ("delete", "c", 0),
    ];
    let expected: Vec<(&str, String, usize)> = expected.iter().map(|(v, n, u)| (*v, n.to_string(), *u)).collect();
    assert_eq!(trace, expected);
    let (max, at) = history.max_over_steps("nodes", unavailable).unwrap();
    assert_eq!((max, at.name.as_str()), (2, "b"));
    assert!(history.writes.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "one resourceVersion per write");
    assert_eq!(history.writes_per_object("nodes")["a"], 3);
    assert_eq!(history.writes_per_client()["kubelet/c"], 2);
    assert_eq!(history.writes_per_client()["test"], 5);
}

#[test]
fn a_crd_applied_with_kubectl_serves_its_resource_and_printer_columns() {
    if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        crate::support::skip(
            "a_crd_applied_with_kubectl_serves_its_resource_and_printer_columns",
            "kubectl is not installed",
        );
        return;
    }
    let api = KubeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let mut command = std::process::Command::new("kubectl");
        command.arg("--kubeconfig").arg(&kubeconfig).arg("--cache-dir").arg(dir.path().join("cache")).args(args);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: extensionrollouts.bakery.dev
spec:
  group: bakery.dev
  scope: Cluster
  names: {plural: extensionrollouts, singular: extensionrollout, kind: ExtensionRollout, shortNames: [xr]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Version, type: string, jsonPath: .spec.version}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Halted, type: string, jsonPath: '.status.conditions[?(@.type=="Halted")].reason', priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;
    // no OpenAPI documents are served: kubectl validates nothing
    kubectl(&["apply", "--server-side", "--validate=false", "-f", "-"], Some(crd));
    let object = "apiVersion: bakery.dev/v1alpha1\nkind: ExtensionRollout\nmetadata: {name: workers}\nspec: {extension: kubernetes, version: v1.32.3}\n";
    kubectl(&["apply", "--server-side", "--validate=false", "-f", "-"], Some(object));
    let version = kubectl(&["get", "xr", "workers", "-o", "jsonpath={.spec.version}"], None);
    assert_eq!(version, "v1.32.3");
    let stored = api.get(ROLLOUTS, None, "workers").unwrap();
    assert_eq!(stored["metadata"]["generation"], 1);
    let status = api.patch_status(
        "test",
        ROLLOUTS,
        None,
        "workers",
        PatchBody::Merge(json!({"status": {"phase": "Progressing"}})),
    );
    assert!(status.is_ok());
    assert_eq!(
        kubectl(&["get", "extensionrollouts", "workers", "-o", "jsonpath={.status.phase}"], None),
        "Progressing"
    );
}

/// 5,000 Nodes, 1,000 watches over HTTP (one per Node, by field selector, as each agent
/// watches its own) plus 1,000 direct subscriptions, and a write to each watched Node: every
/// watch gets its event.
#[test]
fn five_thousand_nodes_and_a_thousand_http_watches() {
    let api = KubeApi::start();
    let started = Instant::now();
    for i in 0..5000 {
        api.add_node_with(&format!("node-{i:04}"), &[("node-role.kubernetes.io/worker", "")]);
    }
    let added = started.elapsed();
    let subscriptions: Vec<_> =
        (0..1000).map(|i| api.subscribe("nodes", "", &format!("metadata.name=node-{i:04}"), false)).collect();
    let rt = runtime();
    let (watching, took) = rt.block_on(async {
        let nodes: Api<Node> = Api::all(api.kube_client("agents"));
        let rv = nodes.list(&ListParams::default().limit(500)).await.unwrap().metadata.resource_version.unwrap();
        let mut streams = Vec::new();
        for i in 0..1000 {
            let params = WatchParams::default().fields(&format!("metadata.name=node-{i:04}")).timeout(60);
            streams.push(nodes.watch(&params, &rv).await.unwrap().boxed());
        }
        let watching = api.with(|v| v.watching);
        let start = Instant::now();
        for i in 0..1000 {
            api.patch_node_annotations(
                &format!("agent/node-{i:04}"),
                &format!("node-{i:04}"),
                &[("bakery.dev/state", Some("idle"))],
            )
            .unwrap();
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            let Some(Ok(WatchEvent::Modified(node))) = stream.next().await else { panic!("node-{i:04}: no event") };
            assert_eq!(node.metadata.name.unwrap(), format!("node-{i:04}"));
        }
        (watching, start.elapsed())
    });
    for (i, subscription) in subscriptions.iter().enumerate() {
        let event = subscription.recv_timeout(Duration::from_secs(10)).expect("an event");
        assert_eq!(
            (event.type_, event.object["metadata"]["name"].as_str().unwrap()),
            ("MODIFIED", format!("node-{i:04}").as_str())
        );
        assert!(subscription.try_recv().is_none(), "exactly one");
    }
    assert_eq!(watching, 1000);
    eprintln!(
        "5000 nodes added in {added:?}; 1000 writes reached 1000 HTTP watches and 1000 subscriptions in {took:?}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// The direct API from many threads at once, as a simulated fleet drives it: every write gets
/// its own resourceVersion, a subscription sees them all in that order, and a stale replace
/// conflicts as over HTTP.
#[test]
fn direct_writes_from_many_threads_reach_subscriptions_in_order() {
    let api = std::sync::Arc::new(KubeApi::start());
    for i in 0..200 {
        api.add_node_with(&format!("n{i:03}"), &[("pool", if i % 2 == 0 { "even" } else { "odd" })]);
    }
    let everything = api.subscribe("nodes", "", "", false);
    let even = api.subscribe("nodes", "pool=even", "", true);
    let first: Vec<String> =
        (0..100).map(|_| even.try_recv().unwrap().object["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(first.len(), 100, "the matching Nodes first, as ADDED");
    assert!(even.try_recv().is_none());

    let threads: Vec<_> = (0..8)
        .map(|t| {
            let api = api.clone();
            std::thread::spawn(move || {
                for round in 0..25 {
                    let node = format!("n{:03}", t * 25 + round);
                    let agent = format!("agent/{node}");
                    api.patch_node_annotations(&agent, &node, &[("bakery.dev/state", Some("staging"))]).unwrap();
                    api.patch_node_annotations(&agent, &node, &[("bakery.dev/state", Some("idle"))]).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut versions = Vec::new();
    while let Some(event) = everything.try_recv() {
        assert_eq!(event.type_, "MODIFIED");
        versions.push(event.object["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap());
    }
    assert_eq!(versions.len(), 400);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "in resourceVersion order");
    let mut even_events = 0;
    while even.try_recv().is_some() {
        even_events += 1;
    }
    assert_eq!(even_events, 200);
    let per_client = api.history().writes_per_client();
    assert!((0..200).all(|i| per_client[&format!("agent/n{i:03}")] == 2));

    // a relabelled Node leaves the even subscription as DELETED; a stale replace conflicts
    api.label_node("n000", "pool", Some("odd")).unwrap();
    let left = even.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((left.type_, left.object["metadata"]["labels"]["pool"].as_str()), ("DELETED", Some("even")));
    let mut stale = api.node("n001");
    stale["metadata"]["resourceVersion"] = json!("1");
    let error = api.replace("test", "nodes", None, stale).unwrap_err();
    assert_eq!((error.code, error.reason()), (409, "Conflict"));
    api.delete_node("n002").unwrap();
    assert!(api.get("nodes", None, "n002").is_none());
    let gone = everything.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(gone.type_, "MODIFIED", "the relabel first");
    assert_eq!(everything.recv_timeout(Duration::from_secs(5)).unwrap().type_, "DELETED");
}
