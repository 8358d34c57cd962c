//! An in-process Kubernetes API server for tests, since no real one can be installed here. It
//! speaks the real HTTP/JSON wire format for what node agents and kubectl use: discovery (`/api`,
//! `/apis`, resource lists), Nodes (get; list with `fieldSelector` and a list resourceVersion;
//! watch from a resourceVersion with chunked JSON events, `BOOKMARK`s when asked for, and
//! `410 Gone` (an `ERROR` event with an `Expired` Status) for a resourceVersion older than its
//! history), merge, strategic merge (conditions and addresses merged by `type`) and apply
//! patches, the status subresource (a main-resource patch cannot change `status`, a status patch
//! changes nothing else), `metadata.resourceVersion` preconditions (409), no-op patches that do
//! not bump the resourceVersion, and events.k8s.io/v1 Events (create, patch). Faults on demand:
//! 409 Conflict for the next requests to a path, watches cut mid-stream, history expired.
//!
//! Not modelled: authentication and authorization (every request is allowed and its verb and
//! resource recorded, so tests can check an RBAC manifest against what was used), protobuf, field
//! ownership in server-side apply (an apply merges like a merge patch), pagination (lists fit one
//! page), and objects other than Nodes and Events.

mod http;
mod patch;
mod store;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use patch::strategic;
use store::store;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Option<Value>,
    /// The answer's status code (200 for a watch that started).
    pub status: u16,
}

impl Request {
    /// `(verb, resource)` as RBAC names them: `patch nodes/status`, `watch nodes`, ...
    pub fn rbac(&self) -> Option<(String, String)> {
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, _, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let rest = match rest {
            ["namespaces", _, rest @ ..] => rest,
            rest => rest,
        };
        let (resource, named) = match rest {
            [resource] => (resource.to_string(), false),
            [resource, _] => (resource.to_string(), true),
            [resource, _, sub] => (format!("{resource}/{sub}"), true),
            _ => return None,
        };
        let verb = match (self.method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if self.query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("DELETE", _) => "delete",
            _ => return None,
        };
        let resource = if group.is_empty() { resource } else { format!("{group}:{resource}") };
        Some((verb.to_string(), resource))
    }
}

/// What tests look at.
#[derive(Default)]
pub struct View {
    pub nodes: BTreeMap<String, Value>,
    pub events: Vec<Value>,
    pub requests: Vec<Request>,
    /// Watches open now.
    pub watching: usize,
    /// Watches ever started.
    pub watches_started: usize,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) view: View,
    pub(super) rv: u64,
    /// (resourceVersion, type, object) of every Node change still in the history.
    pub(super) history: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410.
    pub(super) oldest: u64,
    /// Bumped to cut every open watch (no terminating chunk).
    pub(super) cut: u64,
    /// Bumped to send 410 to every open watch.
    pub(super) expired: u64,
    /// Bumped to send a BOOKMARK to every open watch that allows them.
    pub(super) bookmarks: u64,
    /// (method, path) → how many more requests answer 409.
    pub(super) conflicts: HashMap<(String, String), usize>,
    pub(super) next_uid: u64,
    pub(super) closing: bool,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) changed: Condvar,
}

pub struct KubeApi {
    pub port: u16,
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl KubeApi {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared =
            Arc::new(Shared { state: Mutex::new(State { rv: 100, ..State::default() }), changed: Condvar::new() });
        super::accept_connections(&listener, shared.clone(), |s| s.state.lock().unwrap().closing, http::serve);
        KubeApi { port, shared, listener }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for this server in `dir` (no credentials: the server allows everything).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig(dir, &self.url())
    }

    /// Registers a Node as the kubelet would (Ready, with node info).
    pub fn add_node(&self, name: &str) {
        let mut state = self.state();
        state.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", state.next_uid);
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": uid,
                "creationTimestamp": "2026-11-21T00:00:00Z",
                "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" },
                "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
            },
            "spec": { "podCIDR": "10.244.0.0/24" },
            "status": {
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": "2026-11-21T00:00:00Z", "lastTransitionTime": "2026-11-21T00:00:00Z",
                }],
                "addresses": [{ "type": "InternalIP", "address": "192.0.2.10" }, { "type": "Hostname", "address": name }],
                "nodeInfo": { "kubeletVersion": "v1.32.3", "architecture": "amd64", "operatingSystem": "linux" },
            },
        });
        store(&mut state, name, node, "ADDED");
        self.shared.changed.notify_all();
    }

    /// Sets (or with None removes) an annotation, as `kubectl annotate` would.
    pub fn annotate(&self, node: &str, key: &str, value: Option<&str>) {
        let mut state = self.state();
        let mut object = state.view.nodes.get(node).cloned().expect("a known node");
        let annotations = object["metadata"].as_object_mut().unwrap().entry("annotations").or_insert(json!({}));
        match value {
            Some(v) => annotations[key] = json!(v),
            None => {
                annotations.as_object_mut().unwrap().remove(key);
            }
        }
        store(&mut state, node, object, "MODIFIED");
        self.shared.changed.notify_all();
    }

    /// Sets `spec.unschedulable` as `kubectl cordon` would.
    pub fn set_unschedulable(&self, node: &str, unschedulable: bool) {
        let mut state = self.state();
        let mut object = state.view.nodes.get(node).cloned().expect("a known node");
        object["spec"]["unschedulable"] = json!(unschedulable);
        store(&mut state, node, object, "MODIFIED");
        self.shared.changed.notify_all();
    }

    pub fn node(&self, name: &str) -> Value {
        self.state().view.nodes.get(name).cloned().expect("a known node")
    }

    /// The next `count` requests `method path` answer 409 Conflict.
    pub fn conflict_next(&self, method: &str, path: &str, count: usize) {
        self.state().conflicts.insert((method.to_string(), path.to_string()), count);
    }

    /// Cuts every open watch mid-stream (the connection closes without the final chunk).
    pub fn cut_watches(&self) {
        self.state().cut += 1;
        self.shared.changed.notify_all();
    }

    /// Compacts the history: open watches get an `ERROR` 410 event and end, and a watch from any
    /// resourceVersion seen so far gets 410, so clients must list again.
    pub fn expire(&self) {
        let mut state = self.state();
        state.expired += 1;
        state.oldest = state.rv + 1;
        state.history.clear();
        self.shared.changed.notify_all();
    }

    /// Sends a BOOKMARK with the current resourceVersion to watches that allow them.
    pub fn bookmark(&self) {
        self.state().bookmarks += 1;
        self.shared.changed.notify_all();
    }

    /// Runs `check` on every change until it gives Some, and returns that; panics naming `what`
    /// (with the Nodes, Events and requests) after `timeout`.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&View) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if let Some(found) = check(&state.view) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let requests: Vec<String> = state
                    .view
                    .requests
                    .iter()
                    .map(|r| format!("{} {} {:?} -> {}", r.method, r.path, r.query, r.status))
                    .collect();
                panic!(
                    "timed out waiting for {what}\nnodes: {:#}\nevents: {:#}\nrequests:\n{}",
                    json!(state.view.nodes),
                    json!(state.view.events),
                    requests.join("\n")
                );
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Runs `read` on the current view.
    pub fn with<T>(&self, read: impl FnOnce(&View) -> T) -> T {
        read(&self.state().view)
    }
}

/// A kubeconfig for the API server at `url`, written as `dir/kubeconfig`.
pub fn kubeconfig(dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.changed.notify_all();
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
