//! Objects and their resourceVersions: Nodes (get, list, patch) and Events (create, patch).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::State;
use super::http::{Answer, Incoming};
use super::patch::{apply_patch, patch_body};
use super::watch::WatchSpec;

/// Stores a Node with a new resourceVersion and records the change for watches.
pub(super) fn store(state: &mut State, name: &str, mut object: Value, kind: &'static str) {
    state.rv += 1;
    object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
    state.history.push((state.rv, kind, object.clone()));
    state.view.nodes.insert(name.to_string(), object);
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
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

pub(super) fn list_or_watch(state: &mut State, request: &Incoming) -> Answer {
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

pub(super) fn patch_node(state: &mut State, name: &str, request: &Incoming, subresource: bool) -> Answer {
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

pub(super) fn create_event(state: &mut State, namespace: &str, request: &Incoming) -> Answer {
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

pub(super) fn patch_event(state: &mut State, namespace: &str, name: &str, request: &Incoming) -> Answer {
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
