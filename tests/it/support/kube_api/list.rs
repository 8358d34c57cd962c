//! Lists: selected objects in key order, paginated with `limit` and `continue` (pages come from
//! the snapshot of the first one, as etcd serves them at the list's revision; a token the server
//! no longer has is a 410 `Expired`), `metadata.remainingItemCount` when no selector is used,
//! the list's resourceVersion, items without `apiVersion`/`kind` for built-in kinds (with them
//! for custom resources), and metadata-only lists (`PartialObjectMetadataList`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::View;
use super::errors::ApiError;
use super::selector::Filter;
use super::store::Store;
use super::watch::partial;

/// The pages of one list, kept for its continue tokens.
pub(super) struct Snapshot {
    pub rv: u64,
    pub items: Arc<Vec<(String, Arc<Value>)>>,
}

/// Snapshots kept for continue tokens; older ones expire.
const SNAPSHOTS: usize = 64;

/// A list answer, read under the lock and serialized after it.
pub(super) struct ListAnswer {
    pub kind: String,
    pub api_version: String,
    pub metadata: Value,
    pub items: Vec<Arc<Value>>,
    pub keep_types: bool,
    pub metadata_only: bool,
}

const EXPIRED_TOKEN: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn token(rv: u64, start: &str, snapshot: u64) -> String {
    let text = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}"), "snapshot": snapshot });
    STANDARD.encode(text.to_string())
}

fn parse_token(token: &str) -> Option<(u64, String, u64)> {
    let bytes = STANDARD.decode(token).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let start = value["start"].as_str()?.trim_end_matches('\u{0}').to_string();
    Some((value["rv"].as_u64()?, start, value["snapshot"].as_u64()?))
}

/// One page of collection `c` for `filter`.
pub(super) fn list(
    view: &mut View,
    c: usize,
    filter: &Filter,
    query: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Result<ListAnswer, ApiError> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::bad_request(&format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let (rv, items, position) = match query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => {
            let (rv, start, id) = parse_token(token)
                .ok_or_else(|| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
            let snapshot =
                view.snapshots.get(&id).filter(|s| s.rv == rv).ok_or_else(|| ApiError::expired(EXPIRED_TOKEN))?;
            let position = snapshot.items.partition_point(|(key, _)| *key < start);
            (rv, snapshot.items.clone(), position)
        }
        None => {
            check_list_version(&view.store, query)?;
            let collection = &view.store.collections[c];
            let items: Vec<(String, Arc<Value>)> = collection
                .objects
                .iter()
                .filter(|(_, o)| filter.matches(o))
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
            (view.store.rv, Arc::new(items), 0)
        }
    };
    let end = if limit == 0 { items.len() } else { (position + limit).min(items.len()) };
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if end < items.len() {
        view.next_snapshot += 1;
        let id = view.next_snapshot;
        view.snapshots.insert(id, Snapshot { rv, items: items.clone() });
        while view.snapshots.len() > SNAPSHOTS {
            let oldest = *view.snapshots.keys().next().unwrap();
            view.snapshots.remove(&oldest);
        }
        metadata["continue"] = json!(token(rv, &items[end].0, id));
        if !filter.selects() {
            metadata["remainingItemCount"] = json!(items.len() - end);
        }
    }
    let ty = &view.store.collections[c].ty;
    Ok(ListAnswer {
        kind: format!("{}List", ty.kind),
        api_version: ty.api_version(),
        metadata,
        items: items[position..end].iter().map(|(_, o)| o.clone()).collect(),
        keep_types: !ty.builtin,
        metadata_only,
    })
}

impl ListAnswer {
    /// The JSON body, written without copying the objects into one value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.items.len() * 2048);
        let (kind, api_version) = if self.metadata_only {
            ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string())
        } else {
            (self.kind.clone(), self.api_version.clone())
        };
        out.extend_from_slice(b"{\"kind\":");
        serde_json::to_writer(&mut out, &kind).unwrap();
        out.extend_from_slice(b",\"apiVersion\":");
        serde_json::to_writer(&mut out, &api_version).unwrap();
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut out, &self.metadata).unwrap();
        out.extend_from_slice(b",\"items\":[");
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if self.metadata_only {
                serde_json::to_writer(&mut out, &partial(item)).unwrap();
                continue;
            }
            let Some(map) = item.as_object() else { continue };
            out.push(b'{');
            let mut first = true;
            for (key, value) in map {
                if !self.keep_types && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out, key).unwrap();
                out.push(b':');
                serde_json::to_writer(&mut out, value).unwrap();
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// `Ok` for a list's resourceVersion parameters, else the answer the server gives.
fn check_list_version(store: &Store, query: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let rv = query.get("resourceVersion").filter(|v| !v.is_empty());
    let matching = query.get("resourceVersionMatch").filter(|v| !v.is_empty());
    match (rv, matching.map(String::as_str)) {
        (None, Some(_)) => Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (None, None) => Ok(()),
        (Some(rv), matching) => {
            let Ok(n) = rv.parse::<u64>() else {
                return Err(ApiError::bad_request(&format!("invalid resource version: {rv:?}")));
            };
            if n > store.rv {
                let mut error =
                    ApiError::new(504, "Timeout", &format!("Too large resource version: {n}, current: {}", store.rv));
                error.status["details"] = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1});
                return Err(error);
            }
            match matching {
                Some("Exact") if n != store.rv => {
                    Err(ApiError::expired(&format!("The resourceVersion for the provided list is too old: {n}")))
                }
                Some("Exact") | Some("NotOlderThan") | None => Ok(()),
                Some(other) => Err(ApiError::bad_request(&format!("unsupported resourceVersionMatch {other:?}"))),
            }
        }
    }
}
