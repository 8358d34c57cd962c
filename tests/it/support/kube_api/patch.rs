//! Patch types: JSON merge patch, strategic merge patch, and apply (merged like a merge patch).

use serde_json::{Value, json};

use super::http::{Answer, Incoming};
use super::store::status;

/// The patch body as JSON (apply patches may be YAML).
pub(super) fn patch_body(request: &Incoming) -> Result<Value, Answer> {
    let parsed = if request.content_type.starts_with("application/apply-patch+yaml") {
        let text = String::from_utf8_lossy(&request.body);
        serde_saphyr::from_str::<Value>(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&request.body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| Answer::Json(400, status(400, "BadRequest", &format!("the patch does not parse: {e}"))))
}

pub(super) fn apply_patch(request: &Incoming, target: &mut Value, patch: &Value) -> Result<(), Answer> {
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
