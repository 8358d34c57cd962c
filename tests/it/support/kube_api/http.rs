//! The wire: HTTP/1.1 requests read from a connection (kube-rs's hyper and kubectl), routed to
//! discovery or to a resource, and answered with JSON (objects and lists serialized after the
//! lock is released) or a chunked watch stream.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::errors::ApiError;
use super::list::{ListAnswer, list};
use super::resources::{ResourceType, aggregated, core_versions, group_document, group_list, resource_list};
use super::selector::Filter;
use super::store::key;
use super::table;
use super::watch::{Start, Stream, partial, register, stream};
use super::write::{Action, Op, PatchBody};
use super::{Request, Shared, View};

/// An answer, serialized once the lock is released.
pub(super) enum Answer {
    Json(u16, Value),
    /// An object (as PartialObjectMetadata when asked for metadata only).
    Object(u16, Arc<Value>, bool),
    List(ListAnswer),
    /// Aggregated discovery, with its own content type.
    Discovery(Value),
    /// Server-side printing of these objects.
    Table(ResourceType, Value, Vec<Arc<Value>>),
    Watch(Stream),
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        Answer::Json(error.code, error.status)
    }
}

pub(super) struct Incoming {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: Vec<u8>,
}

impl Incoming {
    fn flag(&self, name: &str) -> bool {
        self.query.get(name).is_some_and(|v| v == "true" || v == "1")
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Who asks: the User-Agent, or `unknown` (kube-rs sends none unless configured to).
    fn client(&self) -> String {
        if self.user_agent.is_empty() { "unknown".into() } else { self.user_agent.clone() }
    }

    /// The field manager: `fieldManager`, else the User-Agent up to its first `/`.
    fn manager(&self) -> Option<String> {
        self.param("fieldManager")
            .map(str::to_string)
            .or_else(|| self.user_agent.split('/').next().filter(|p| !p.is_empty()).map(str::to_string))
    }

    fn media_type(&self) -> &str {
        self.content_type.split(';').next().unwrap_or_default().trim()
    }
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
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    Some(Incoming {
        method,
        path: path.to_string(),
        query,
        content_type: header("content-type"),
        accept: header("accept"),
        user_agent: header("user-agent"),
        body,
    })
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

/// The request body as JSON (apply patches may be YAML); None when there is none.
fn parse_body(request: &Incoming) -> Option<Result<Value, String>> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(if request.media_type() == "application/apply-patch+yaml" {
        let text = String::from_utf8_lossy(&request.body);
        serde_saphyr::from_str::<Value>(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&request.body).map_err(|e| e.to_string())
    })
}

pub(super) fn serve(connection: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    let mut writer = connection;
    while let Some(request) = read_request(&mut reader) {
        let body = parse_body(&request);
        let recorded = body.as_ref().and_then(|b| b.as_ref().ok()).cloned();
        let answer = {
            let mut view = shared.state.lock().unwrap();
            let answer = route(&mut view, &request, body);
            let status = match &answer {
                Answer::Json(code, _) | Answer::Object(code, _, _) => *code,
                Answer::List(_) | Answer::Discovery(_) | Answer::Table(..) | Answer::Watch(_) => 200,
            };
            if matches!(answer, Answer::Watch(_)) {
                view.watching += 1;
                view.watches_started += 1;
            }
            view.requests.push(Request {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                content_type: request.content_type.clone(),
                user_agent: request.user_agent.clone(),
                accept: request.accept.clone(),
                body: recorded,
                status,
            });
            answer
        };
        shared.changed.notify_all();
        let (code, content_type, body) = match answer {
            Answer::Watch(watch) => {
                if stream(&mut writer, shared, watch) {
                    continue;
                }
                return;
            }
            Answer::Json(code, value) => (code, "application/json", serde_json::to_vec(&value).unwrap()),
            Answer::Object(code, object, false) => (code, "application/json", serde_json::to_vec(&*object).unwrap()),
            Answer::Object(code, object, true) => {
                (code, "application/json", serde_json::to_vec(&partial(&object)).unwrap())
            }
            Answer::List(list) => (200, "application/json", list.to_bytes()),
            Answer::Table(ty, metadata, items) => {
                (200, "application/json", serde_json::to_vec(&table::table(&ty, &metadata, &items)).unwrap())
            }
            Answer::Discovery(value) => (
                200,
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                serde_json::to_vec(&value).unwrap(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            reason(code),
            body.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&body)).is_err() {
            return;
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
        500 => "Internal Server Error",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn not_found(path: &str) -> Answer {
    ApiError::new(404, "NotFound", &format!("the server could not find the requested resource ({path})")).into()
}

fn route(view: &mut View, request: &Incoming, body: Option<Result<Value, String>>) -> Answer {
    let key = (request.method.clone(), request.path.clone());
    if let Some(left) = view.conflicts.get_mut(&key).filter(|n| **n > 0) {
        *left -= 1;
        return ApiError::new(409, "Conflict", "Operation cannot be fulfilled: the object has been modified").into();
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let aggregated_wanted = request.accept.contains("as=APIGroupDiscoveryList");
    let types: Vec<&ResourceType> = view.store.collections.iter().map(|c| &c.ty).collect();
    let document = match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["version"]) => {
            Some(json!({"major": "1", "minor": "32", "gitVersion": "v1.32.3", "platform": "linux/amd64"}))
        }
        ("GET", ["api"]) if aggregated_wanted => return Answer::Discovery(aggregated(&types, true)),
        ("GET", ["apis"]) if aggregated_wanted => return Answer::Discovery(aggregated(&types, false)),
        ("GET", ["api"]) => Some(core_versions()),
        ("GET", ["apis"]) => Some(group_list(&types)),
        ("GET", ["api", "v1"]) => resource_list(&types, "", "v1"),
        ("GET", ["apis", group]) => group_document(&types, group),
        ("GET", ["apis", group, version]) => resource_list(&types, group, version),
        (_, ["api", ..]) | (_, ["apis", ..]) => return resource(view, request, &segments, body),
        _ => None,
    };
    match document {
        Some(document) => Answer::Json(200, document),
        None => not_found(&request.path),
    }
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`: `[namespaces/NS/]PLURAL[/NAME[/status]]`.
fn resource(view: &mut View, request: &Incoming, segments: &[&str], body: Option<Result<Value, String>>) -> Answer {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return not_found(&request.path),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return not_found(&request.path),
    };
    let Some(c) = view.store.served(group, version, plural) else { return not_found(&request.path) };
    let ty = view.store.collections[c].ty.clone();
    if subresource.as_deref().is_some_and(|s| s != "status" || !ty.status_subresource)
        || (namespace.is_some() && !ty.namespaced)
    {
        return not_found(&request.path);
    }
    let Some(name) = name else {
        return match request.method.as_str() {
            "GET" => collection(view, c, &ty, namespace.as_deref(), request),
            "POST" => match body {
                Some(Ok(object)) => execute(view, request, c, namespace, String::new(), None, Action::Create(object)),
                Some(Err(e)) => ApiError::bad_request(&format!("the object does not parse: {e}")).into(),
                None => ApiError::bad_request("the request has no body").into(),
            },
            _ => ApiError::method_not_allowed().into(),
        };
    };
    if ty.namespaced && namespace.is_none() {
        return not_found(&request.path);
    }
    let parsed = |body: Option<Result<Value, String>>| match body {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(ApiError::bad_request(&format!("the body does not parse: {e}"))),
        None => Err(ApiError::bad_request("the request has no body")),
    };
    let action = match request.method.as_str() {
        "GET" => {
            let metadata_only = request.accept.contains("as=PartialObjectMetadata");
            let collection = &view.store.collections[c];
            return match collection.objects.get(&key(namespace.as_deref(), &name)) {
                Some(object) if table::wanted(&request.accept) => {
                    let metadata = json!({ "resourceVersion": object["metadata"]["resourceVersion"] });
                    Answer::Table(ty, metadata, vec![object.clone()])
                }
                Some(object) => Answer::Object(200, object.clone(), metadata_only),
                None => ApiError::not_found(&ty, &name).into(),
            };
        }
        "PUT" => match parsed(body) {
            Ok(object) => Action::Replace(object),
            Err(e) => return e.into(),
        },
        "DELETE" => Action::Delete(body.and_then(Result::ok).unwrap_or(Value::Null)),
        "PATCH" => {
            let patch = match parsed(body) {
                Ok(patch) => patch,
                Err(e) => return e.into(),
            };
            match request.media_type() {
                "application/merge-patch+json" => Action::Patch(PatchBody::Merge(patch)),
                "application/strategic-merge-patch+json" => Action::Patch(PatchBody::Strategic(patch)),
                "application/json-patch+json" => Action::Patch(PatchBody::Json(patch)),
                "application/apply-patch+yaml" => {
                    if request.param("fieldManager").is_none() {
                        return ApiError::invalid(
                            "PatchOptions",
                            "meta.k8s.io",
                            "",
                            "fieldManager",
                            "Required value: is required for apply patch",
                        )
                        .into();
                    }
                    Action::Patch(PatchBody::Apply { body: patch, force: request.flag("force") })
                }
                other => {
                    return ApiError::unsupported_media_type(&format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (not {other:?})"
                    ))
                    .into();
                }
            }
        }
        _ => return ApiError::method_not_allowed().into(),
    };
    execute(view, request, c, namespace, name, subresource, action)
}

fn execute(
    view: &mut View,
    request: &Incoming,
    resource: usize,
    namespace: Option<String>,
    name: String,
    subresource: Option<String>,
    action: Action,
) -> Answer {
    if let Some(force) = request.param("force")
        && force == "true"
        && !matches!(action, Action::Patch(PatchBody::Apply { .. }))
    {
        return ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        )
        .into();
    }
    let op = Op {
        resource,
        namespace,
        name,
        subresource,
        action,
        client: request.client(),
        manager: request.manager(),
        dry_run: request.param("dryRun") == Some("All"),
    };
    match view.store.execute(op) {
        Ok(done) => Answer::Object(done.code, done.object, false),
        Err(error) => error.into(),
    }
}

/// GET on a collection: a list, or a watch with `watch=true`.
fn collection(view: &mut View, c: usize, ty: &ResourceType, namespace: Option<&str>, request: &Incoming) -> Answer {
    let filter =
        match Filter::parse(namespace, request.param("labelSelector"), request.param("fieldSelector"), &ty.kind) {
            Ok(filter) => filter,
            Err(e) => return e.into(),
        };
    if !request.flag("watch") {
        let metadata_only = request.accept.contains("as=PartialObjectMetadataList");
        return match list(view, c, &filter, &request.query, metadata_only) {
            Ok(list) if table::wanted(&request.accept) => Answer::Table(ty.clone(), list.metadata, list.items),
            Ok(list) => Answer::List(list),
            Err(e) => e.into(),
        };
    }
    let invalid = |field: &str, message: &str| -> Answer {
        ApiError::invalid("ListOptions", "meta.k8s.io", "", field, message).into()
    };
    let initial = request.flag("sendInitialEvents");
    let bookmarks = request.flag("allowWatchBookmarks");
    let matching = request.param("resourceVersionMatch");
    if initial && !bookmarks {
        return invalid(
            "allowWatchBookmarks",
            "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        );
    }
    if initial && matching != Some("NotOlderThan") {
        return invalid(
            "resourceVersionMatch",
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        );
    }
    if !initial && matching.is_some() {
        return invalid(
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        );
    }
    let start = match request.param("resourceVersion") {
        _ if initial => Start::Stream,
        None | Some("0") => Start::Now,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Start::After(rv),
            Err(_) => return ApiError::bad_request(&format!("invalid resource version: {rv:?}")).into(),
        },
    };
    let timeout = request.param("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(290);
    let (id, rx) = register(view, c, filter, start, bookmarks, false);
    Answer::Watch(Stream {
        c,
        id,
        rx,
        timeout: Duration::from_secs(timeout),
        metadata_only: request.accept.contains("as=PartialObjectMetadata"),
        kind: ty.kind.clone(),
        api_version: ty.api_version(),
    })
}
