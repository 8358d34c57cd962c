//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, what `kubectl
//! get` asks for): custom resources get Name plus their CRD's `additionalPrinterColumns`
//! (JSONPath cells typed string, integer, number, boolean or date, dates shown as ages like
//! kubectl's), or Name and Age without any; Nodes get NAME STATUS ROLES AGE VERSION; Leases NAME
//! HOLDER AGE; anything else NAME AGE. Rows carry the object's metadata
//! (`PartialObjectMetadata`), as with the default `includeObject=Metadata`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::watch::partial;

/// Whether the client asks for a Table (kubectl lists it first, JSON after).
pub(super) fn wanted(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let parts: Vec<&str> = first.split(';').map(str::trim).collect();
        parts.contains(&"as=Table") && parts.contains(&"g=meta.k8s.io") && parts.contains(&"v=v1")
    })
}

struct Column {
    name: String,
    type_: String,
    priority: i64,
    cell: Cell,
}

enum Cell {
    Name,
    Age,
    Path(String),
    NodeStatus,
    NodeRoles,
}

fn columns(ty: &ResourceType) -> Vec<Column> {
    let column =
        |name: &str, type_: &str, cell: Cell| Column { name: name.into(), type_: type_.into(), priority: 0, cell };
    let mut out = vec![column("Name", "string", Cell::Name)];
    match (ty.builtin, ty.kind.as_str()) {
        (false, _) if !ty.printer_columns.is_empty() => {
            out.extend(ty.printer_columns.iter().map(|c| Column {
                name: c.name.clone(),
                type_: c.type_.clone(),
                priority: c.priority,
                cell: Cell::Path(c.json_path.clone()),
            }));
        }
        (true, "Node") => {
            out.push(column("Status", "string", Cell::NodeStatus));
            out.push(column("Roles", "string", Cell::NodeRoles));
            out.push(column("Age", "string", Cell::Age));
            out.push(column("Version", "string", Cell::Path(".status.nodeInfo.kubeletVersion".into())));
        }
        (true, "Lease") => {
            out.push(column("Holder", "string", Cell::Path(".spec.holderIdentity".into())));
            out.push(column("Age", "string", Cell::Age));
        }
        _ => out.push(column("Age", "date", Cell::Age)),
    }
    out
}

/// The Table for `items` (a list's, or one object's).
pub(super) fn table(ty: &ResourceType, metadata: &Value, items: &[Arc<Value>]) -> Value {
    let columns = columns(ty);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            let format = if matches!(c.cell, Cell::Name) { "name" } else { "" };
            json!({ "name": c.name, "type": c.type_, "format": format, "description": "", "priority": c.priority })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, object)).collect();
            json!({ "cells": cells, "object": partial(object) })
        })
        .collect();
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows })
}

fn cell(column: &Column, object: &Value) -> Value {
    let metadata = &object["metadata"];
    match &column.cell {
        Cell::Name => metadata["name"].clone(),
        Cell::Age => json!(age(metadata["creationTimestamp"].as_str().unwrap_or_default())),
        Cell::NodeStatus => {
            let ready = object["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
            let mut status = match ready.map(|c| c["status"].as_str().unwrap_or_default()) {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if object["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            json!(status)
        }
        Cell::NodeRoles => {
            let roles: Vec<&str> = metadata["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            json!(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") })
        }
        Cell::Path(path) => match json_path(object, path) {
            None => Value::Null,
            Some(value) => match (column.type_.as_str(), value) {
                ("date", Value::String(time)) => json!(age(time)),
                ("string", Value::String(text)) => json!(text),
                ("string", other) => json!(other.to_string()),
                (_, other) => other.clone(),
            },
        },
    }
}

/// The simple JSONPath CRDs use: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`, `\.` in keys.
pub(super) fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut at = object;
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let selector = &inner[..end];
            rest = inner[end + 1..].strip_prefix('.').unwrap_or(&inner[end + 1..]);
            at = if let Some(filter) = selector.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                at.as_array()?.iter().find(|item| item[key.trim()].as_str() == Some(value))?
            } else {
                at.get(selector.parse::<usize>().ok()?)?
            };
            continue;
        }
        let mut key = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut consumed = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        key.push(next);
                    }
                }
                '.' | '[' => {
                    consumed = i;
                    break;
                }
                c => key.push(c),
            }
        }
        at = at.get(&key)?;
        rest = &rest[consumed..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(at)
}

/// An age as kubectl shows it (apimachinery's `HumanDuration`), from an RFC 3339 time.
fn age(time: &str) -> String {
    let Ok(then) = time.parse::<k8s_openapi::jiff::Timestamp>() else { return "<unknown>".into() };
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second();
    human(seconds)
}

fn human(seconds: i64) -> String {
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 { format!("{big}{unit}") } else { format!("{big}{unit}{small}{small_unit}") }
    };
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match seconds {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 120 => format!("{s}s"),
        _ if minutes < 10 => with(minutes, "m", seconds % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(hours / 24, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{}d", hours / 24),
        _ if hours < 24 * 365 * 8 => with(hours / 24 / 365, "y", (hours / 24) % 365, "d"),
        _ => format!("{}y", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_and_ages_read_like_kubectl() {
        let object = json!({"metadata": {"annotations": {"status.bakery.dev/demo": "v1"}},
                            "status": {"conditions": [{"type": "Ready", "reason": "A"}, {"type": "Halted", "reason": "Budget"}]}});
        assert_eq!(json_path(&object, r".metadata.annotations.status\.bakery\.dev/demo"), Some(&json!("v1")));
        assert_eq!(json_path(&object, r#".status.conditions[?(@.type=="Halted")].reason"#), Some(&json!("Budget")));
        assert_eq!(json_path(&object, ".status.conditions[0].type"), Some(&json!("Ready")));
        assert_eq!(json_path(&object, ".status.missing"), None);
        let ages: Vec<String> = [5, 150, 700, 4000, 30_000, 100_000, 200_000].iter().map(|s| human(*s)).collect();
        assert_eq!(ages, ["5s", "2m30s", "11m", "66m", "8h", "27h", "2d7h"]);
        assert!(wanted("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wanted("application/json"));
    }
}
