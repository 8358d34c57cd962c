//! Label selectors (`metav1.LabelSelector`) as the API server evaluates them, pure: parsed once
//! (operators checked), then matched against a Node's labels.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The label is one of the values.
    In(String, BTreeSet<String>),
    /// The label is absent, or none of the values.
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A checked label selector: `matchLabels` as `In` requirements of one value, then
/// `matchExpressions`. An empty selector matches every Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Checks `selector` (None: every Node). Errors name the requirement at fault, as
    /// `spec.nodeSelector.matchExpressions[1]: ...`.
    pub fn parse(selector: Option<&LabelSelector>) -> Result<Self, String> {
        let Some(selector) = selector else { return Ok(Self::default()) };
        let mut out = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            out.push(Requirement::In(key.clone(), BTreeSet::from([value.clone()])));
        }
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("spec.nodeSelector.matchExpressions[{i}]");
            let key = expression.key.clone();
            if key.is_empty() {
                return Err(format!("{at}: the key is empty"));
            }
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!("{at}: {} needs at least one value", expression.operator));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!("{at}: {} takes no values", expression.operator));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(format!("{at}: unknown operator {other:?} (In, NotIn, Exists or DoesNotExist)"));
                }
            };
            out.push(requirement);
        }
        Ok(Self(out))
    }

    /// Whether a Node with `labels` is selected: every requirement holds.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(match_labels: &[(&str, &str)], expressions: Vec<LabelSelectorRequirement>) -> Selector {
        let raw = LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        };
        Selector::parse(Some(&raw)).unwrap()
    }

    /// The selector table: (selector, labels, selected).
    #[test]
    fn matching_table() {
        let worker = labels(&[("node-role.kubernetes.io/worker", ""), ("zone", "a")]);
        let control = labels(&[("node-role.kubernetes.io/control-plane", ""), ("zone", "b")]);
        let bare = labels(&[]);
        let cases = [
            (Selector::parse(None).unwrap(), &bare, true),
            (selector(&[], vec![]), &worker, true),
            (selector(&[("zone", "a")], vec![]), &worker, true),
            (selector(&[("zone", "a")], vec![]), &control, false),
            (selector(&[("zone", "a")], vec![]), &bare, false),
            (selector(&[], vec![expr("zone", "In", &["a", "c"])]), &worker, true),
            (selector(&[], vec![expr("zone", "In", &["a", "c"])]), &control, false),
            (selector(&[], vec![expr("zone", "NotIn", &["b"])]), &worker, true),
            (selector(&[], vec![expr("zone", "NotIn", &["b"])]), &control, false),
            (selector(&[], vec![expr("zone", "NotIn", &["b"])]), &bare, true),
            (selector(&[], vec![expr("node-role.kubernetes.io/worker", "Exists", &[])]), &worker, true),
            (selector(&[], vec![expr("node-role.kubernetes.io/worker", "Exists", &[])]), &control, false),
            (selector(&[], vec![expr("node-role.kubernetes.io/control-plane", "DoesNotExist", &[])]), &worker, true),
            (selector(&[], vec![expr("node-role.kubernetes.io/control-plane", "DoesNotExist", &[])]), &control, false),
            // all requirements hold, labels and expressions together
            (selector(&[("zone", "a")], vec![expr("node-role.kubernetes.io/worker", "Exists", &[])]), &worker, true),
            (selector(&[("zone", "b")], vec![expr("node-role.kubernetes.io/worker", "Exists", &[])]), &control, false),
        ];
        for (i, (selector, labels, expected)) in cases.iter().enumerate() {
            assert_eq!(selector.matches(labels), *expected, "case {i}: {selector:?} on {labels:?}");
        }
    }

    #[test]
    fn malformed_requirements_name_their_place() {
        let bad = |e: LabelSelectorRequirement| {
            let raw = LabelSelector { match_labels: None, match_expressions: Some(vec![expr("ok", "Exists", &[]), e]) };
            Selector::parse(Some(&raw)).unwrap_err()
        };
        assert_eq!(bad(expr("zone", "In", &[])), "spec.nodeSelector.matchExpressions[1]: In needs at least one value");
        assert_eq!(
            bad(expr("zone", "Exists", &["a"])),
            "spec.nodeSelector.matchExpressions[1]: Exists takes no values"
        );
        assert_eq!(
            bad(expr("zone", "Gt", &["1"])),
            "spec.nodeSelector.matchExpressions[1]: unknown operator \"Gt\" (In, NotIn, Exists or DoesNotExist)"
        );
        assert_eq!(bad(expr("", "Exists", &[])), "spec.nodeSelector.matchExpressions[1]: the key is empty");
    }
}
