//! Label and field selectors as lists and watches take them (`labelSelector=`, `fieldSelector=`),
//! with the API server's semantics: `key!=v` and `key notin (...)` also match objects without
//! the label; a field selector names only the fields the kind supports.

use std::borrow::Cow;

use serde_json::Value;

use super::errors::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Exists(String),
    Absent(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_outside_parens(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(requirement(part)?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, labels: &Value) -> bool {
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Greater(k, n) => get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > *n),
            Requirement::Less(k, n) => get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l < *n),
        })
    }
}

fn split_outside_parens(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    !name.is_empty()
        && name.len() <= 63
        && key.split('/').count() <= 2
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("unable to parse requirement: {part:?}: {why}");
    let key_ok = |key: &str| if valid_key(key) { Ok(key.to_string()) } else { Err(bad("invalid label key")) };
    let value_ok = |value: &str| {
        let value = value.trim();
        if valid_value(value) { Ok(value.to_string()) } else { Err(bad("invalid label value")) }
    };
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key_ok(key.trim())?));
    }
    for (op, set_in) in [(" notin ", false), (" in ", true)] {
        if let Some((key, rest)) = part.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad("a set needs parentheses"))?;
            let values = inner.split(',').map(value_ok).collect::<Result<Vec<_>, _>>()?;
            let key = key_ok(key.trim())?;
            return Ok(if set_in { Requirement::In(key, values) } else { Requirement::NotIn(key, values) });
        }
    }
    for op in ["!=", "==", "=", ">", "<"] {
        if let Some((key, value)) = part.split_once(op) {
            let key = key_ok(key.trim())?;
            return match op {
                "!=" => Ok(Requirement::NotEquals(key, value_ok(value)?)),
                "==" | "=" => Ok(Requirement::Equals(key, value_ok(value)?)),
                _ => {
                    let n = value
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| bad("for 'gt', 'lt' operators, the value must be an integer"))?;
                    Ok(if op == ">" { Requirement::Greater(key, n) } else { Requirement::Less(key, n) })
                }
            };
        }
    }
    Ok(Requirement::Exists(key_ok(part)?))
}

/// A field selector: `field=value`, `field==value`, `field!=value`, comma-joined.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `text`, accepting only the fields `kind` supports (as the real server does).
    pub fn parse(text: &str, kind: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !supported_field(kind, field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// The name this selector pins (`metadata.name=N`), if any.
    pub fn name(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| (field_value(object, field) == value.as_str()) == *equal)
    }
}

fn supported_field(kind: &str, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || (kind == "Node" && field == "spec.unschedulable")
        || (kind == "Event"
            && matches!(
                field,
                "reason" | "type" | "reportingController" | "regarding.kind" | "regarding.name" | "regarding.uid"
            ))
}

/// A field as the field selector compares it: text, `false` for an unset boolean.
fn field_value<'a>(object: &'a Value, field: &str) -> Cow<'a, str> {
    let mut at = object;
    for part in field.split('.') {
        at = &at[part];
    }
    match at {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Null if field == "spec.unschedulable" => Cow::Borrowed("false"),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// What a list or watch selects: both selectors, and the namespace (None: all).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// From a request's `labelSelector` and `fieldSelector`, refusing what does not parse (400).
    pub fn parse(
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
        kind: &str,
    ) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(labels.unwrap_or_default()).map_err(|e| ApiError::bad_request(&e))?;
        let fields = FieldSelector::parse(fields.unwrap_or_default(), kind).map_err(|e| ApiError::bad_request(&e))?;
        Ok(Filter { namespace: namespace.map(str::to_string), labels, fields })
    }

    /// Whether a selector other than the namespace is set (lists then omit remainingItemCount).
    pub fn selects(&self) -> bool {
        !self.labels.0.is_empty() || !self.fields.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        self.namespace.as_deref().is_none_or(|ns| metadata["namespace"] == ns)
            && self.labels.matches(&metadata["labels"])
            && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_follow_the_api_servers_semantics() {
        let labels = json!({"role": "worker", "zone": "a", "tier": "3"});
        let cases = [
            ("", true),
            ("role=worker", true),
            ("role==worker", true),
            ("role!=worker", false),
            ("missing!=x", true),
            ("role in (worker, control)", true),
            ("role notin (worker)", false),
            ("missing notin (worker)", true),
            ("missing in (worker)", false),
            ("role", true),
            ("!role", false),
            ("!missing", true),
            ("role=worker,zone in (a,b)", true),
            ("role=worker,zone in (b)", false),
            ("tier>2", true),
            ("tier<2", false),
        ];
        for (selector, expected) in cases {
            assert_eq!(LabelSelector::parse(selector).unwrap().matches(&labels), expected, "{selector}");
        }
        assert!(LabelSelector::parse("role in worker").is_err());
        assert!(LabelSelector::parse("ro le=x").is_err());
        assert!(LabelSelector::parse("role=a b").is_err());
    }

    #[test]
    fn field_selectors_name_supported_fields_only() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(FieldSelector::parse("metadata.name=n1", "Node").unwrap().matches(&node));
        assert!(FieldSelector::parse("spec.unschedulable=false", "Node").unwrap().matches(&node));
        assert!(!FieldSelector::parse("metadata.name!=n1", "Node").unwrap().matches(&node));
        assert_eq!(
            FieldSelector::parse("spec.podCIDR=x", "Node").unwrap_err(),
            "field label not supported: spec.podCIDR"
        );
    }
}
