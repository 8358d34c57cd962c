//! An in-process Kubernetes API server for tests, since no real one can be installed here. It
//! speaks the real HTTP/JSON wire format to kube-rs clients and kubectl, for what node agents and
//! the rollout controller use:
//!
//! - discovery (`/version`, `/api`, `/apis`, groups and resource lists, and aggregated discovery
//!   `apidiscovery.k8s.io/v2` when asked for);
//! - Nodes (with their status subresource), events.k8s.io/v1 Events, coordination.k8s.io/v1
//!   Leases, CustomResourceDefinitions (creating one serves its resources at once) and any
//!   custom resource (cluster-scoped or namespaced, with the status subresource and
//!   `metadata.generation`);
//! - get, create, replace, patch (merge, strategic merge for built-in kinds, JSON patch,
//!   server-side apply with field ownership and conflicts) and delete (preconditions,
//!   finalizers), with `dryRun=All`; a stale `metadata.resourceVersion` is a 409 Conflict on
//!   every kind, a no-op write keeps the resourceVersion (`write.rs`, `apply.rs`, `patch.rs`;
//!   `store.rs` holds the objects and commits every write);
//! - lists with label and field selectors, `limit`/`continue` pagination and
//!   `remainingItemCount`, metadata-only lists (`list.rs`, `selector.rs`);
//! - watches from a resourceVersion or with initial events (`sendInitialEvents` too), selectors,
//!   BOOKMARKs, `410 Gone` for a resourceVersion older than the kept events, metadata-only
//!   watches (`watch.rs`);
//! - server-side printing for `kubectl get` (Tables with a CRD's printer columns, `table.rs`);
//! - failures as `Status` objects with the real reasons and messages (`errors.rs`).
//!
//! Tests see every request (verb, resource, user agent, body) and a history of every write
//! (`history.rs`) to assert guarantees at every instant, and drive simulated clients through a
//! direct API that goes through the same rules and notifies the same watches (`direct.rs`).
//! Faults on demand: 409 Conflict for the next requests to a path, watches cut mid-stream,
//! history expired.
//!
//! Not modelled: authentication and authorization (every request is allowed and its verb and
//! resource recorded, so tests can check an RBAC manifest against what was used), protobuf and
//! CBOR, `metadata.managedFields` in served objects (ownership is kept beside them), Tables
//! in watches, namespaces as objects, deletecollection, `resourceVersionMatch=Exact` for anything
//! but the current resourceVersion, and admission or schema validation of custom resources.

mod apply;
mod direct;
mod errors;
mod history;
mod http;
mod list;
mod patch;
mod resources;
mod selector;
mod store;
mod table;
mod watch;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

// The model's public API for the fleet and controller tests (not all of it is used yet).
#[allow(unused_imports)]
pub use self::{
    errors::ApiError,
    history::{History, Replay, Step, Write, count_requests},
    patch::strategic,
    resources::{PrinterColumn, ResourceType},
    selector::{FieldSelector, Filter, LabelSelector},
    watch::{Subscription, WatchEvent},
    write::PatchBody,
};

use list::Snapshot;
use store::Store;
use watch::Message;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    /// The User-Agent header ("" when none was sent).
    pub user_agent: String,
    pub accept: String,
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

/// What tests look at: the objects, the requests, the watches and the history. Everything the
/// server holds sits behind one lock, taken briefly per request or direct write.
pub struct View {
    store: Store,
    pub requests: Vec<Request>,
    /// Watches open now (HTTP).
    pub watching: usize,
    /// Watches ever started (HTTP).
    pub watches_started: usize,
    snapshots: BTreeMap<u64, Snapshot>,
    next_snapshot: u64,
    next_watch: u64,
    /// (method, path) → how many more requests answer 409.
    conflicts: HashMap<(String, String), usize>,
    closing: bool,
}

static NO_OBJECTS: BTreeMap<String, Arc<Value>> = BTreeMap::new();

impl View {
    /// The objects of `resource` (`nodes`, `leases.coordination.k8s.io`, ...), by `name` or
    /// `namespace/name`.
    pub fn objects(&self, resource: &str) -> &BTreeMap<String, Arc<Value>> {
        match self.store.find(resource) {
            Some(c) => &self.store.collections[c].objects,
            None => &NO_OBJECTS,
        }
    }

    pub fn nodes(&self) -> &BTreeMap<String, Arc<Value>> {
        self.objects("nodes")
    }

    /// The Events, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let Some(c) = self.store.find("events.events.k8s.io") else { return Vec::new() };
        let collection = &self.store.collections[c];
        let mut events: Vec<(u64, &Arc<Value>)> = collection
            .objects
            .iter()
            .map(|(key, object)| (collection.meta.get(key).map(|m| m.created).unwrap_or(0), object))
            .collect();
        events.sort_by_key(|(created, _)| *created);
        events.into_iter().map(|(_, e)| (**e).clone()).collect()
    }

    /// The current resourceVersion (of the last write).
    pub fn resource_version(&self) -> u64 {
        self.store.rv
    }

    pub fn history(&self) -> History {
        History { writes: self.store.history.clone() }
    }

    /// Requests by `(verb, resource)` (see `Request::rbac`).
    pub fn request_counts(&self) -> BTreeMap<(String, String), usize> {
        count_requests(&self.requests)
    }

    /// Requests by `(verb, resource)` from one User-Agent.
    pub fn request_counts_by(&self, user_agent: &str) -> BTreeMap<(String, String), usize> {
        count_requests(self.requests.iter().filter(|r| r.user_agent == user_agent))
    }

    /// The field managers of an object: `(manager, by apply, subresource, fields owned)`.
    pub fn managers(&self, resource: &str, key: &str) -> Vec<(String, bool, String, usize)> {
        let Some(c) = self.store.find(resource) else { return Vec::new() };
        self.store.collections[c].meta.get(key).map(|m| m.owners.summary()).unwrap_or_default()
    }

    /// Sends `message` (made per watch) to the HTTP watches, and drops them when `end`.
    fn tell_http_watches(&mut self, mut message: impl FnMut(&watch::Watcher) -> Option<Message>, end: bool) {
        for collection in &mut self.store.collections {
            collection.watchers.retain(|w| {
                if w.direct {
                    return true;
                }
                if let Some(m) = message(w) {
                    let _ = w.tx.send(m);
                }
                !end
            });
        }
    }
}

struct Shared {
    state: Mutex<View>,
    changed: Condvar,
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
        let view = View {
            store: Store::new(resources::builtins()),
            requests: Vec::new(),
            watching: 0,
            watches_started: 0,
            snapshots: BTreeMap::new(),
            next_snapshot: 0,
            next_watch: 0,
            conflicts: HashMap::new(),
            closing: false,
        };
        let shared = Arc::new(Shared { state: Mutex::new(view), changed: Condvar::new() });
        super::accept_connections(&listener, shared.clone(), |s| s.state.lock().unwrap().closing, http::serve);
        KubeApi { port, shared, listener }
    }

    fn state(&self) -> MutexGuard<'_, View> {
        self.shared.state.lock().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for this server in `dir` (no credentials: the server allows everything).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig(dir, &self.url())
    }

    /// A kube-rs client for this server, sending `user_agent` as its User-Agent (which the
    /// history and the request counts name it by). Call it inside a tokio runtime: the client
    /// spawns its buffer task.
    pub fn kube_client(&self, user_agent: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("the server's URL"));
        let agent = reqwest::header::HeaderValue::from_str(user_agent).expect("a User-Agent header value");
        config.headers.push((reqwest::header::USER_AGENT, agent));
        kube::Client::try_from(config).expect("a kube client")
    }

    /// Serves a custom resource type (as a CRD would; see also `install_crd`).
    pub fn add_custom_resource(&self, ty: ResourceType) {
        self.state().store.register(ty);
    }

    /// How many events per resource type watches can resume from (default 50,000): a watch
    /// from an older resourceVersion gets 410 Gone.
    pub fn set_event_log_capacity(&self, events: usize) {
        self.state().store.log_capacity = events.max(1);
    }

    /// Whether writes are recorded in the history (on by default; off saves memory at scale).
    pub fn record_history(&self, on: bool) {
        self.state().store.record_history = on;
    }

    /// Every write so far.
    pub fn history(&self) -> History {
        self.state().history()
    }

    /// The next `count` requests `method path` answer 409 Conflict.
    pub fn conflict_next(&self, method: &str, path: &str, count: usize) {
        self.state().conflicts.insert((method.to_string(), path.to_string()), count);
    }

    /// Cuts every open HTTP watch mid-stream (the connection closes without the final chunk).
    pub fn cut_watches(&self) {
        self.state().tell_http_watches(|_| Some(Message::Cut), true);
        self.shared.changed.notify_all();
    }

    /// Compacts the history: open watches get an `ERROR` 410 event and end, and a watch (or a
    /// list's continue token) from any resourceVersion seen so far gets 410, so clients must
    /// list again. The resourceVersion moves on by one (as writes to other kinds move etcd's
    /// revision), so the list they make is one a watch can start from.
    pub fn expire(&self) {
        let mut state = self.state();
        state.store.rv += 1;
        let rv = state.store.rv;
        state.tell_http_watches(|_| Some(Message::Expired(ApiError::expired("too old resource version"))), true);
        for collection in &mut state.store.collections {
            collection.log.clear();
            collection.complete_after = rv;
        }
        state.snapshots.clear();
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Sends a BOOKMARK with the current resourceVersion to watches that allow them.
    pub fn bookmark(&self) {
        let mut state = self.state();
        let rv = state.store.rv;
        state.tell_http_watches(|w| w.bookmarks.then_some(Message::Bookmark { rv, initial_events_end: false }), false);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Runs `check` on every change until it gives Some, and returns that; panics naming `what`
    /// (with the Nodes, Events and requests) after `timeout`.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&View) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if let Some(found) = check(&state) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let requests: Vec<String> = state
                    .requests
                    .iter()
                    .map(|r| format!("{} {} {:?} -> {}", r.method, r.path, r.query, r.status))
                    .collect();
                let nodes: BTreeMap<&String, &Value> = state.nodes().iter().map(|(k, v)| (k, &**v)).collect();
                panic!(
                    "timed out waiting for {what}\nnodes: {:#}\nevents: {:#}\nrequests:\n{}",
                    serde_json::json!(nodes),
                    Value::Array(state.events()),
                    requests.join("\n")
                );
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Runs `read` on the current view.
    pub fn with<T>(&self, read: impl FnOnce(&View) -> T) -> T {
        read(&self.state())
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
        let mut state = self.state();
        state.closing = true;
        state.tell_http_watches(|_| Some(Message::Cut), true);
        drop(state);
        self.shared.changed.notify_all();
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
