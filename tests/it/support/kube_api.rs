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

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
struct State {
    view: View,
    rv: u64,
    /// (resourceVersion, type, object) of every Node change still in the history.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410.
    oldest: u64,
    /// Bumped to cut every open watch (no terminating chunk).
    cut: u64,
    /// Bumped to send 410 to every open watch.
    expired: u64,
    /// Bumped to send a BOOKMARK to every open watch that allows them.
    bookmarks: u64,
    /// (method, path) → how many more requests answer 409.
    conflicts: HashMap<(String, String), usize>,
    next_uid: u64,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
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
        let shared =
            Arc::new(Shared { state: Mutex::new(State { rv: 100, ..State::default() }), changed: Condvar::new() });
        super::accept_connections(&listener, shared.clone(), |s| s.state.lock().unwrap().closing, serve);
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

/// Stores a Node with a new resourceVersion and records the change for watches.
fn store(state: &mut State, name: &str, mut object: Value, kind: &'static str) {
    state.rv += 1;
    object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
    state.history.push((state.rv, kind, object.clone()));
    state.view.nodes.insert(name.to_string(), object);
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

/// An answer: status and JSON body, or a watch to stream.
enum Answer {
    Json(u16, Value),
    Watch(WatchSpec),
}

struct WatchSpec {
    from: u64,
    name: Option<String>,
    bookmarks: bool,
    timeout: Duration,
}

struct Incoming {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Incoming> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if let Some(length) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    } else if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    Some(Incoming { method, path: path.to_string(), query, content_type, body })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        let answer = {
            let mut state = shared.state.lock().unwrap();
            let answer = route(&mut state, &request);
            let status = match &answer {
                Answer::Json(code, _) => *code,
                Answer::Watch(_) => 200,
            };
            let body = serde_json::from_slice(&request.body).ok();
            state.view.requests.push(Request {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                content_type: request.content_type.clone(),
                body,
                status,
            });
            shared.changed.notify_all();
            answer
        };
        match answer {
            Answer::Json(code, body) => {
                let body = serde_json::to_vec(&body).unwrap();
                let head = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    reason(code),
                    body.len()
                );
                if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&body)).is_err() {
                    return;
                }
            }
            Answer::Watch(spec) => {
                stream_watch(&mut writer, shared, spec);
                return;
            }
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Status",
    }
}

/// Streams watch events until the timeout, a cut, an expiry or the server closing.
fn stream_watch(writer: &mut TcpStream, shared: &Shared, spec: WatchSpec) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = |writer: &mut TcpStream, event: &Value| {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        let framed = [format!("{:x}\r\n", line.len()).into_bytes(), line, b"\r\n".to_vec()].concat();
        writer.write_all(&framed).and_then(|_| writer.flush()).is_ok()
    };
    let deadline = Instant::now() + spec.timeout;
    let mut state = shared.state.lock().unwrap();
    state.view.watching += 1;
    state.view.watches_started += 1;
    let (cut, expired, mut bookmarks) = (state.cut, state.expired, state.bookmarks);
    let mut sent = spec.from;
    let state_oldest = state.oldest;
    if spec.from < state_oldest {
        state.view.watching -= 1;
        drop(state);
        let gone = status(410, "Expired", &format!("too old resource version: {} ({})", spec.from, state_oldest));
        chunk(writer, &json!({ "type": "ERROR", "object": gone }));
        let _ = writer.write_all(b"0\r\n\r\n");
        return;
    }
    let end = loop {
        if state.closing || state.cut != cut {
            break "cut";
        }
        if state.expired != expired {
            break "expired";
        }
        let events: Vec<Value> = state
            .history
            .iter()
            .filter(|(rv, _, object)| {
                *rv > sent && spec.name.as_deref().is_none_or(|n| object["metadata"]["name"] == n)
            })
            .map(|(_, kind, object)| json!({ "type": kind, "object": object }))
            .collect();
        let newest = state.rv;
        let bookmark = spec.bookmarks && state.bookmarks != bookmarks;
        bookmarks = state.bookmarks;
        if !events.is_empty() || bookmark {
            drop(state);
            for event in &events {
                if !chunk(writer, event) {
                    return finish(shared);
                }
            }
            if bookmark {
                let mark = json!({ "type": "BOOKMARK", "object": {
                    "kind": "Node", "apiVersion": "v1", "metadata": { "resourceVersion": newest.to_string() } } });
                if !chunk(writer, &mark) {
                    return finish(shared);
                }
            }
            sent = newest;
            state = shared.state.lock().unwrap();
            continue;
        }
        sent = newest;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "timeout";
        }
        state = shared.changed.wait_timeout(state, left).unwrap().0;
    };
    state.view.watching -= 1;
    shared.changed.notify_all();
    drop(state);
    match end {
        "expired" => {
            let gone = status(410, "Expired", "too old resource version");
            chunk(writer, &json!({ "type": "ERROR", "object": gone }));
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        "timeout" => {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        _ => {
            // cut: no terminating chunk, the connection just ends
            let _ = writer.shutdown(Shutdown::Both);
        }
    }
}

fn finish(shared: &Shared) {
    shared.state.lock().unwrap().view.watching -= 1;
    shared.changed.notify_all();
}

fn route(state: &mut State, request: &Incoming) -> Answer {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let key = (request.method.clone(), request.path.clone());
    if let Some(left) = state.conflicts.get_mut(&key).filter(|n| **n > 0) {
        *left -= 1;
        return Answer::Json(
            409,
            status(409, "Conflict", "Operation cannot be fulfilled: the object has been modified"),
        );
    }
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["version"]) => {
            Answer::Json(200, json!({"major": "1", "minor": "32", "gitVersion": "v1.32.3", "platform": "linux/amd64"}))
        }
        ("GET", ["api"]) => Answer::Json(
            200,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ("GET", ["apis"]) => Answer::Json(
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": "events.k8s.io",
                "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}}]}),
        ),
        ("GET", ["api", "v1"]) => Answer::Json(
            200,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["no"]},
                {"name": "nodes/status", "singularName": "", "namespaced": false, "kind": "Node",
                 "verbs": ["get", "patch", "update"]}]}),
        ),
        ("GET", ["apis", "events.k8s.io", "v1"]) => Answer::Json(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "events.k8s.io/v1", "resources": [
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ev"]}]}),
        ),
        ("GET", ["api", "v1", "nodes"]) => list_or_watch(state, request),
        ("GET", ["api", "v1", "nodes", name]) => match state.view.nodes.get(*name) {
            Some(node) => Answer::Json(200, node.clone()),
            None => Answer::Json(404, status(404, "NotFound", &format!("nodes \"{name}\" not found"))),
        },
        ("PATCH", ["api", "v1", "nodes", name]) => patch_node(state, name, request, false),
        ("PATCH", ["api", "v1", "nodes", name, "status"]) => patch_node(state, name, request, true),
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", namespace, "events"]) => {
            create_event(state, namespace, request)
        }
        ("PATCH", ["apis", "events.k8s.io", "v1", "namespaces", namespace, "events", name]) => {
            patch_event(state, namespace, name, request)
        }
        ("GET", ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
            let items = state.view.events.clone();
            Answer::Json(
                200,
                json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                       "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
            )
        }
        _ => Answer::Json(404, status(404, "NotFound", &format!("the server could not find {}", request.path))),
    }
}

/// `metadata.name=N` (or `==`) from a field selector.
fn selected_name(query: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let Some(selector) = query.get("fieldSelector").filter(|s| !s.is_empty()) else { return Ok(None) };
    let name = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))
        .ok_or_else(|| format!("field selector {selector:?} is not supported here"))?;
    Ok(Some(name.to_string()))
}

fn list_or_watch(state: &mut State, request: &Incoming) -> Answer {
    let name = match selected_name(&request.query) {
        Ok(name) => name,
        Err(e) => return Answer::Json(400, status(400, "BadRequest", &e)),
    };
    let watching = request.query.get("watch").is_some_and(|w| w == "true" || w == "1");
    if watching {
        let from = request.query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(state.rv);
        let timeout = request.query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(290);
        let bookmarks = request.query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        return Answer::Watch(WatchSpec { from, name, bookmarks, timeout: Duration::from_secs(timeout) });
    }
    let items: Vec<Value> = state
        .view
        .nodes
        .values()
        .filter(|n| name.as_deref().is_none_or(|name| n["metadata"]["name"] == name))
        .cloned()
        .collect();
    Answer::Json(
        200,
        json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
    )
}

/// The patch body as JSON (apply patches may be YAML).
fn patch_body(request: &Incoming) -> Result<Value, Answer> {
    let parsed = if request.content_type.starts_with("application/apply-patch+yaml") {
        let text = String::from_utf8_lossy(&request.body);
        serde_saphyr::from_str::<Value>(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&request.body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| Answer::Json(400, status(400, "BadRequest", &format!("the patch does not parse: {e}"))))
}

fn apply_patch(request: &Incoming, target: &mut Value, patch: &Value) -> Result<(), Answer> {
    let content_type = request.content_type.split(';').next().unwrap_or_default().trim();
    match content_type {
        "application/merge-patch+json" => merge(target, patch),
        "application/strategic-merge-patch+json" => strategic(target, patch, ""),
        "application/apply-patch+yaml" => {
            if !request.query.contains_key("fieldManager") {
                return Err(Answer::Json(
                    400,
                    status(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value"),
                ));
            }
            merge(target, patch)
        }
        other => {
            return Err(Answer::Json(415, status(415, "UnsupportedMediaType", &format!("the body of type {other:?}"))));
        }
    }
    Ok(())
}

fn patch_node(state: &mut State, name: &str, request: &Incoming, subresource: bool) -> Answer {
    let Some(current) = state.view.nodes.get(name).cloned() else {
        return Answer::Json(404, status(404, "NotFound", &format!("nodes \"{name}\" not found")));
    };
    let patch = match patch_body(request) {
        Ok(patch) => patch,
        Err(answer) => return answer,
    };
    if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str()
        && Some(wanted) != current["metadata"]["resourceVersion"].as_str()
    {
        let message = format!(
            "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        );
        return Answer::Json(409, status(409, "Conflict", &message));
    }
    let mut patched = current.clone();
    if let Err(answer) = apply_patch(request, &mut patched, &patch) {
        return answer;
    }
    // the main resource cannot change status; the status subresource changes nothing else
    let mut updated = current.clone();
    if subresource {
        updated["status"] = patched["status"].take();
    } else {
        patched["status"] = current["status"].clone();
        updated = patched;
    }
    updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if updated == current {
        return Answer::Json(200, current);
    }
    store(state, name, updated.clone(), "MODIFIED");
    Answer::Json(200, state.view.nodes[name].clone())
}

fn create_event(state: &mut State, namespace: &str, request: &Incoming) -> Answer {
    let Ok(mut event) = serde_json::from_slice::<Value>(&request.body) else {
        return Answer::Json(400, status(400, "BadRequest", "the event does not parse"));
    };
    let name = event["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Answer::Json(422, status(422, "Invalid", "metadata.name: Required value"));
    }
    if state.view.events.iter().any(|e| e["metadata"]["name"] == name.as_str()) {
        return Answer::Json(
            409,
            status(409, "AlreadyExists", &format!("events.events.k8s.io \"{name}\" already exists")),
        );
    }
    state.rv += 1;
    state.next_uid += 1;
    event["apiVersion"] = json!("events.k8s.io/v1");
    event["kind"] = json!("Event");
    event["metadata"]["namespace"] = json!(namespace);
    event["metadata"]["resourceVersion"] = json!(state.rv.to_string());
    event["metadata"]["uid"] = json!(format!("00000000-0000-4000-9000-{:012}", state.next_uid));
    state.view.events.push(event.clone());
    Answer::Json(201, event)
}

fn patch_event(state: &mut State, namespace: &str, name: &str, request: &Incoming) -> Answer {
    let patch = match patch_body(request) {
        Ok(patch) => patch,
        Err(answer) => return answer,
    };
    let rv = state.rv + 1;
    let Some(event) =
        state.view.events.iter_mut().find(|e| e["metadata"]["name"] == name && e["metadata"]["namespace"] == namespace)
    else {
        return Answer::Json(404, status(404, "NotFound", &format!("events.events.k8s.io \"{name}\" not found")));
    };
    if let Err(answer) = apply_patch(request, event, &patch) {
        return answer;
    }
    event["metadata"]["resourceVersion"] = json!(rv.to_string());
    let answer = event.clone();
    state.rv = rv;
    Answer::Json(200, answer)
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Lists merged by a key in strategic merge patches (the ones a Node has).
fn merge_key(path: &str) -> Option<&'static str> {
    match path {
        "status.conditions" | "status.addresses" => Some("type"),
        "status.images" => None,
        _ => None,
    }
}

/// A strategic merge patch: a merge patch whose lists with a merge key merge item by item
/// (`$patch: delete` removes one), ignoring `$setElementOrder` and `$retainKeys` directives.
pub fn strategic(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        }
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match (value, merge_key(&here)) {
            (Value::Null, _) => {
                object.remove(key);
            }
            (Value::Array(items), Some(merge_key)) => {
                let list = object.entry(key.clone()).or_insert(json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let list = list.as_array_mut().unwrap();
                for item in items {
                    let position = list.iter().position(|old| old[merge_key] == item[merge_key]);
                    match (position, item["$patch"].as_str()) {
                        (Some(i), Some("delete")) => {
                            list.remove(i);
                        }
                        (None, Some("delete")) => {}
                        (Some(i), _) => strategic(&mut list[i], item, &here),
                        (None, _) => list.push(item.clone()),
                    }
                }
            }
            (value, _) => strategic(object.entry(key.clone()).or_insert(Value::Null), value, &here),
        }
    }
}
