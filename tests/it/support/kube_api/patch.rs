//! Patch bodies as kube-rs and kubectl send them: JSON merge patch (RFC 7386), strategic merge
//! patch (built-in kinds only; lists with a merge key merge item by item, `$patch: delete` and
//! `replace`, `$deleteFromPrimitiveList`, `$retainKeys`; `$setElementOrder` is accepted and
//! ignored) and JSON patch (RFC 6902: add, remove, replace, move, copy, test). Server-side apply
//! lives in `apply.rs`.

use serde_json::{Value, json};

use super::resources::{ResourceType, builtins};

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

/// A strategic merge patch on a Node (`path` is where `patch` sits, "" for the root).
pub fn strategic(target: &mut Value, patch: &Value, path: &str) {
    let nodes = builtins().into_iter().find(|t| t.kind == "Node").unwrap();
    strategic_in(&nodes, target, patch, path);
}

/// Primitive lists whose patch strategy is merge (a patch adds to them).
fn merges_primitives(path: &str) -> bool {
    path == "metadata.finalizers"
}

/// A strategic merge patch on an object of kind `ty`.
pub(super) fn strategic_in(ty: &ResourceType, target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = Value::Object(patch.clone());
            replaced.as_object_mut().unwrap().remove("$patch");
            *target = replaced;
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        object.retain(|k, _| keep.iter().any(|w| w == k) || patch.contains_key(k));
    }
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) = (object.get_mut(list), value.as_array()) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match (value, ty.list_key(&here)) {
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
                        (Some(i), _) => strategic_in(ty, &mut list[i], item, &here),
                        (None, _) => list.push(item.clone()),
                    }
                }
            }
            (Value::Array(items), None) if merges_primitives(&here) => {
                let list = object.entry(key.clone()).or_insert(json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let list = list.as_array_mut().unwrap();
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
            }
            (value, _) => {
                let slot = object.entry(key.clone()).or_insert(Value::Null);
                strategic_in(ty, slot, value, &here);
                if slot.is_null() {
                    object.remove(key);
                }
            }
        }
    }
}

/// RFC 6902 JSON patch; an error says which operation failed (the server answers 422).
pub(super) fn json_patch(target: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations.as_array().ok_or("a JSON patch is a list of operations")?;
    for (i, op) in operations.iter().enumerate() {
        let path = op["path"].as_str().ok_or_else(|| format!("operation {i}: no path"))?;
        let name = op["op"].as_str().unwrap_or_default();
        let value = || op.get("value").cloned().ok_or_else(|| format!("operation {i} ({name}): no value"));
        let from = || op["from"].as_str().ok_or_else(|| format!("operation {i} ({name}): no from"));
        let result = match name {
            "add" => add(target, path, value()?),
            "remove" => remove(target, path).map(drop),
            "replace" => remove(target, path).and_then(|_| add(target, path, value()?)),
            "move" => {
                let moved = remove(target, from()?)?;
                add(target, path, moved)
            }
            "copy" => {
                let copied = pointer(target, from()?)?.clone();
                add(target, path, copied)
            }
            "test" => {
                let found = pointer(target, path)?;
                if *found == value()? { Ok(()) } else { Err(format!("testing value {path} failed")) }
            }
            other => Err(format!("unexpected kind of operation: {other:?}")),
        };
        result.map_err(|e| format!("operation {i} ({name} {path}): {e}"))?;
    }
    Ok(())
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| format!("{path:?} is not a JSON pointer"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn pointer<'a>(target: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut at = target;
    for token in tokens(path)? {
        at = match at {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{path} does not exist"))?;
    }
    Ok(at)
}

fn parent<'a>(target: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut tokens = tokens(path)?;
    let last = tokens.pop().ok_or("the root cannot be the target")?;
    let mut at = target;
    for token in tokens {
        at = match at {
            Value::Object(map) => map.get_mut(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("the parent of {path} does not exist"))?;
    }
    Ok((at, last))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = parent(target, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i <= items.len() => {
                items.insert(i, value);
                Ok(())
            }
            _ => Err(format!("index {last} is out of bounds")),
        },
        _ => Err(format!("the parent of {path} is not a container")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = parent(target, path)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(|| format!("{path} does not exist")),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(format!("index {last} is out of bounds")),
        },
        _ => Err(format!("{path} does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patches_add_remove_replace_move_copy_and_test() {
        let mut doc = json!({"metadata": {"finalizers": ["a"], "labels": {"x/y": "1"}}, "spec": {"n": 1}});
        let ops = json!([
            {"op": "test", "path": "/spec/n", "value": 1},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
            {"op": "replace", "path": "/spec/n", "value": 2},
            {"op": "remove", "path": "/metadata/labels/x~1y"},
            {"op": "copy", "from": "/spec/n", "path": "/spec/m"},
            {"op": "move", "from": "/spec/m", "path": "/spec/k"},
        ]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(doc, json!({"metadata": {"finalizers": ["a", "b"], "labels": {}}, "spec": {"n": 2, "k": 2}}));
        let failed = json_patch(&mut doc, &json!([{"op": "test", "path": "/spec/n", "value": 1}])).unwrap_err();
        assert!(failed.contains("testing value /spec/n failed"), "{failed}");
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/spec/nope"}])).is_err());
    }

    #[test]
    fn strategic_merges_finalizers_and_honours_patch_directives() {
        let nodes = builtins().into_iter().find(|t| t.kind == "Node").unwrap();
        let mut node = json!({"metadata": {"finalizers": ["a"]}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "podCIDR": "x"}});
        let patch = json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                           "spec": {"taints": [{"key": "k", "$patch": "delete"}], "$retainKeys": ["taints"]}});
        strategic_in(&nodes, &mut node, &patch, "");
        assert_eq!(node, json!({"metadata": {"finalizers": ["b"]}, "spec": {"taints": []}}));
    }
}
