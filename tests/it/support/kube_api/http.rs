//! The wire: HTTP/1.1 requests read from a connection, JSON answers written back, and routing
//! of a request to what serves it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

use super::store::{create_event, list_or_watch, patch_event, patch_node, status};
use super::watch::{WatchSpec, stream_watch};
use super::{Request, Shared, State};

/// An answer: status and JSON body, or a watch to stream.
pub(super) enum Answer {
    Json(u16, Value),
    Watch(WatchSpec),
}

pub(super) struct Incoming {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) content_type: String,
    pub(super) body: Vec<u8>,
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

pub(super) fn serve(stream: TcpStream, shared: &Shared) {
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
