//! Server-side apply with field ownership, as far as a controller can tell: every write records
//! which manager set which fields (per manager, operation and subresource); an apply conflicts
//! (409, `FieldManagerConflict` causes) when it changes a field another manager owns unless
//! `force=true`, and removes the fields its manager applied before and no longer applies when
//! nobody else owns them. Lists are atomic except the ones with a merge key (`list_maps`), whose
//! items are owned one field at a time. Not modelled: `metadata.managedFields` in the objects
//! served (ownership is kept beside them), versions of managed fields, and the `Update` managers'
//! names derived from user agents (a write without `fieldManager` is owned by its client name).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::errors::ApiError;
use super::resources::ResourceType;

/// A field: segments such as `.metadata`, `.labels`, `.role` or `[type="Ready"]`.
pub(super) type FieldPath = Vec<String>;

/// An owner of fields: the manager, whether by apply, and the subresource ("" or "status").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Manager {
    pub name: String,
    pub apply: bool,
    pub subresource: String,
}

/// Who owns which fields of one object.
#[derive(Clone, Debug, Default)]
pub(super) struct Ownership(BTreeMap<Manager, BTreeSet<FieldPath>>);

/// Fields servers set, which no manager owns.
fn system_field(path: &[String]) -> bool {
    match path {
        [top] => top == ".apiVersion" || top == ".kind",
        [meta, field, ..] if meta == ".metadata" => matches!(
            field.as_str(),
            ".name"
                | ".namespace"
                | ".uid"
                | ".resourceVersion"
                | ".generation"
                | ".creationTimestamp"
                | ".managedFields"
                | ".deletionTimestamp"
                | ".deletionGracePeriodSeconds"
        ),
        _ => false,
    }
}

/// Whether a write to `subresource` may touch `path` (the status subresource owns `.status`).
fn in_scope(ty: &ResourceType, subresource: &str, path: &[String]) -> bool {
    let status = path.first().is_some_and(|p| p == ".status");
    match subresource {
        "status" => status,
        _ => !(ty.status_subresource && status),
    }
}

/// Every field of `value` (leaves, atomic lists, and the fields of keyed list items).
pub(super) fn fields(ty: &ResourceType, value: &Value) -> Vec<(FieldPath, Value)> {
    let mut out = Vec::new();
    walk(ty, value, &mut Vec::new(), "", &mut out);
    out.retain(|(p, _)| !system_field(p));
    out
}

fn walk(ty: &ResourceType, value: &Value, path: &mut FieldPath, dotted: &str, out: &mut Vec<(FieldPath, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, sub) in map {
                path.push(format!(".{key}"));
                let here = if dotted.is_empty() { key.clone() } else { format!("{dotted}.{key}") };
                walk(ty, sub, path, &here, out);
                path.pop();
            }
        }
        Value::Array(items) if ty.list_key(dotted).is_some() => {
            let key = ty.list_key(dotted).unwrap();
            for item in items {
                path.push(format!("[{key}={}]", item[key]));
                walk(ty, item, path, dotted, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

/// The fields that differ between `before` and `after` (at `path`): set or changed in `after`,
/// or gone from it.
fn diff(
    ty: &ResourceType,
    before: &Value,
    after: &Value,
    path: &mut FieldPath,
    dotted: &str,
    changed: &mut Vec<FieldPath>,
    removed: &mut Vec<FieldPath>,
) {
    if before == after {
        return;
    }
    let all = |value: &Value, path: &mut FieldPath, dotted: &str, out: &mut Vec<FieldPath>| {
        let mut found = Vec::new();
        walk(ty, value, path, dotted, &mut found);
        out.extend(found.into_iter().map(|(p, _)| p));
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) if !b.is_empty() && !a.is_empty() => {
            for (key, old) in b {
                let here = if dotted.is_empty() { key.clone() } else { format!("{dotted}.{key}") };
                path.push(format!(".{key}"));
                match a.get(key) {
                    Some(new) => diff(ty, old, new, path, &here, changed, removed),
                    None => all(old, path, &here, removed),
                }
                path.pop();
            }
            for (key, new) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                let here = if dotted.is_empty() { key.clone() } else { format!("{dotted}.{key}") };
                path.push(format!(".{key}"));
                all(new, path, &here, changed);
                path.pop();
            }
        }
        (Value::Array(b), Value::Array(a)) if ty.list_key(dotted).is_some() => {
            let key = ty.list_key(dotted).unwrap();
            for old in b {
                path.push(format!("[{key}={}]", old[key]));
                match a.iter().find(|new| new[key] == old[key]) {
                    Some(new) => diff(ty, old, new, path, dotted, changed, removed),
                    None => all(old, path, dotted, removed),
                }
                path.pop();
            }
            for new in a.iter().filter(|new| !b.iter().any(|old| old[key] == new[key])) {
                path.push(format!("[{key}={}]", new[key]));
                all(new, path, dotted, changed);
                path.pop();
            }
        }
        (before, after) => {
            if !before.is_null() {
                all(before, path, dotted, removed);
            }
            if !after.is_null() {
                all(after, path, dotted, changed);
            }
        }
    }
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = value;
    for segment in path {
        at = step(at, segment)?;
    }
    Some(at)
}

fn step<'a>(at: &'a Value, segment: &str) -> Option<&'a Value> {
    if let Some(key) = segment.strip_prefix('.') {
        return at.get(key);
    }
    let (key, wanted) = item_key(segment)?;
    at.as_array()?.iter().find(|item| item[key.as_str()] == wanted)
}

fn item_key(segment: &str) -> Option<(String, Value)> {
    let inner = segment.strip_prefix('[')?.strip_suffix(']')?;
    let (key, value) = inner.split_once('=')?;
    Some((key.to_string(), serde_json::from_str(value).ok()?))
}

/// Removes the field at `path`, and the maps and lists it leaves empty; removing the key of a
/// keyed list item removes the item.
fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(key) = last.strip_prefix('.') else { return };
    if let Some((item, list_path)) = parents.split_last()
        && let Some((k, v)) = item_key(item)
        && k == key
    {
        let emptied = match get_mut(value, list_path) {
            Some(Value::Array(items)) => {
                items.retain(|i| i[k.as_str()] != v);
                items.is_empty()
            }
            _ => false,
        };
        if emptied {
            remove(value, list_path);
        }
        return;
    }
    let emptied = match get_mut(value, parents) {
        Some(Value::Object(map)) => {
            map.remove(key);
            map.is_empty()
        }
        _ => false,
    };
    if emptied && parents.last().is_some_and(|p| p.starts_with('.')) {
        remove(value, parents);
    }
}

fn get_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut at = value;
    for segment in path {
        at = if let Some(key) = segment.strip_prefix('.') {
            at.get_mut(key)?
        } else {
            let (key, wanted) = item_key(segment)?;
            at.as_array_mut()?.iter_mut().find(|item| item[key.as_str()] == wanted)?
        };
    }
    Some(at)
}

/// Merges an applied configuration: maps field by field, keyed lists item by item, anything else
/// replaced; a null removes.
fn merge_applied(ty: &ResourceType, target: &mut Value, applied: &Value, dotted: &str) {
    match applied {
        Value::Object(map) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().unwrap();
            for (key, sub) in map {
                let here = if dotted.is_empty() { key.clone() } else { format!("{dotted}.{key}") };
                if sub.is_null() {
                    object.remove(key);
                } else {
                    merge_applied(ty, object.entry(key.clone()).or_insert(Value::Null), sub, &here);
                }
            }
        }
        Value::Array(items) if ty.list_key(dotted).is_some() => {
            let key = ty.list_key(dotted).unwrap();
            if !target.is_array() {
                *target = json!([]);
            }
            let list = target.as_array_mut().unwrap();
            for item in items {
                match list.iter_mut().find(|old| old[key] == item[key]) {
                    Some(old) => merge_applied(ty, old, item, dotted),
                    None => list.push(item.clone()),
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Ownership {
    /// Records a write that is not an apply: the fields it changed or added now belong to
    /// `manager` alone; the ones it removed to nobody. Only the parts that differ are walked.
    pub fn update(&mut self, ty: &ResourceType, manager: &str, subresource: &str, before: &Value, after: &Value) {
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        diff(ty, before, after, &mut Vec::new(), "", &mut changed, &mut removed);
        changed.retain(|p| !system_field(p));
        removed.retain(|p| !system_field(p));
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        for set in self.0.values_mut() {
            for path in changed.iter().chain(&removed) {
                set.remove(path);
            }
        }
        if !changed.is_empty() {
            let owner = Manager { name: manager.into(), apply: false, subresource: subresource.into() };
            self.0.entry(owner).or_default().extend(changed);
        }
        self.0.retain(|_, set| !set.is_empty());
    }

    /// Applies `applied` for `manager` on `current` (None: the object does not exist yet) and
    /// returns the result, or a 409 naming the conflicts.
    pub fn apply(
        &mut self,
        ty: &ResourceType,
        manager: &str,
        subresource: &str,
        force: bool,
        current: &Value,
        applied: &Value,
    ) -> Result<Value, ApiError> {
        let me = Manager { name: manager.into(), apply: true, subresource: subresource.into() };
        let wanted: Vec<(FieldPath, Value)> =
            fields(ty, applied).into_iter().filter(|(p, _)| in_scope(ty, subresource, p)).collect();
        let mut conflicts = Vec::new();
        for (path, value) in &wanted {
            if get(current, path).is_none_or(|now| now == value) {
                continue;
            }
            for (owner, set) in &self.0 {
                if *owner != me && set.contains(path) {
                    conflicts.push((owner.name.clone(), path.concat()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflict_error(ty, &conflicts));
        }
        let mut result = current.clone();
        let mut scoped = applied.clone();
        if let Some(map) = scoped.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
            match subresource {
                "status" => map.retain(|k, _| k == "status"),
                _ if ty.status_subresource => {
                    map.remove("status");
                }
                _ => {}
            }
        }
        merge_applied(ty, &mut result, &scoped, "");
        let wanted_paths: BTreeSet<FieldPath> = wanted.into_iter().map(|(p, _)| p).collect();
        if force {
            for (owner, set) in self.0.iter_mut() {
                if *owner != me {
                    set.retain(|p| !wanted_paths.contains(p));
                }
            }
        }
        let before = self.0.remove(&me).unwrap_or_default();
        for dropped in before.difference(&wanted_paths) {
            let owned_elsewhere = self.0.values().any(|set| set.contains(dropped));
            if !owned_elsewhere {
                remove(&mut result, dropped);
            }
        }
        self.0.insert(me, wanted_paths);
        self.0.retain(|_, set| !set.is_empty());
        Ok(result)
    }

    /// The managers and how many fields each owns, for tests: `(name, apply, subresource)`.
    pub fn summary(&self) -> Vec<(String, bool, String, usize)> {
        self.0.iter().map(|(m, set)| (m.name.clone(), m.apply, m.subresource.clone(), set.len())).collect()
    }
}

fn conflict_error(ty: &ResourceType, conflicts: &[(String, String)]) -> ApiError {
    let api_version = ty.api_version();
    let described: Vec<String> =
        conflicts.iter().map(|(who, field)| format!("conflict with \"{who}\" using {api_version}: {field}")).collect();
    let message = if conflicts.len() == 1 {
        format!("Apply failed with 1 conflict: {}", described[0])
    } else {
        format!("Apply failed with {} conflicts: {}", conflicts.len(), described.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, field)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{who}\" using {api_version}"), "field": field})
        })
        .collect();
    let mut error = ApiError::new(409, "Conflict", &message);
    error.status["details"] = json!({ "causes": causes });
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::kube_api::resources::builtins;

    fn nodes() -> ResourceType {
        builtins().into_iter().find(|t| t.kind == "Node").unwrap()
    }

    #[test]
    fn an_apply_conflicts_with_another_managers_field_unless_forced() {
        let ty = nodes();
        let mut owners = Ownership::default();
        let before = json!({"metadata": {"name": "n"}});
        let after = json!({"metadata": {"name": "n", "annotations": {"a": "admin"}}});
        owners.update(&ty, "kubectl", "", &before, &after);
        let applied =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "annotations": {"a": "ctl"}}});
        let error = owners.apply(&ty, "controller", "", false, &after, &applied).unwrap_err();
        assert_eq!(error.code, 409);
        assert_eq!(
            error.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .metadata.annotations.a"
        );
        assert_eq!(error.status["details"]["causes"][0]["field"], ".metadata.annotations.a");
        let forced = owners.apply(&ty, "controller", "", true, &after, &applied).unwrap();
        assert_eq!(forced["metadata"]["annotations"]["a"], "ctl");
        // the same value is shared, not a conflict
        let same = json!({"metadata": {"name": "n", "annotations": {"a": "ctl"}}});
        owners.apply(&ty, "other", "", false, &forced, &same).unwrap();
    }

    #[test]
    fn fields_an_apply_no_longer_names_are_removed_unless_someone_else_owns_them() {
        let ty = nodes();
        let mut owners = Ownership::default();
        let empty = json!({"metadata": {"name": "n"}});
        let taint = |key: &str| json!({"key": key, "effect": "NoSchedule"});
        let first = json!({"metadata": {"name": "n", "labels": {"a": "1", "b": "2"}},
                           "spec": {"taints": [taint("x"), taint("y")]}});
        let one = owners.apply(&ty, "m", "", false, &empty, &first).unwrap();
        assert_eq!(one["spec"]["taints"].as_array().unwrap().len(), 2);
        let second = json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {"taints": [taint("x")]}});
        let two = owners.apply(&ty, "m", "", false, &one, &second).unwrap();
        assert_eq!(two["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(two["spec"]["taints"], json!([taint("x")]));
        // a label someone else changed since stays when the applier drops it
        let after = json!({"metadata": {"name": "n", "labels": {"a": "9"}}, "spec": two["spec"]});
        owners.update(&ty, "kubectl", "", &two, &after);
        let three = owners.apply(&ty, "m", "", false, &after, &json!({"metadata": {"name": "n"}})).unwrap();
        assert_eq!(three["metadata"]["labels"], json!({"a": "9"}), "kubectl owns a now");
        assert!(three.get("spec").is_none(), "m's taints are gone, and the emptied spec: {three}");
        // a status apply through the main resource is ignored: Nodes have a status subresource
        let status = json!({"metadata": {"name": "n"}, "status": {"phase": "x"}});
        assert!(owners.apply(&ty, "m", "", false, &three, &status).unwrap().get("status").is_none());
        assert_eq!(owners.apply(&ty, "m", "status", false, &three, &status).unwrap()["status"]["phase"], "x");
    }
}
