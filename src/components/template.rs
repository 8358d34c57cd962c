//! Templates in components: minijinja, strict (a missing key fails naming the key, the template
//! and the line), no escaping, with the filters people expect from Helm's Sprig: `default`,
//! `quote`, `indent` and `nindent` (every line), `b64enc`, `sha256sum`, `toYaml`, and the
//! functions `dig(keys.., default, map)`, `semverCompare(constraint, version)` and
//! `versionCompare(a, b)` (systemd's order).

use base64::Engine;
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use crate::pipeline::render::{render_bounded, strict_environment};

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = strict_environment();
        env.add_filter("quote", quote);
        env.add_filter("indent", indent);
        env.add_filter("nindent", nindent);
        env.add_filter("b64enc", b64enc);
        env.add_filter("sha256sum", sha256sum);
        env.add_filter("toYaml", to_yaml);
        env.add_function("semverCompare", semver_compare);
        env.add_function("versionCompare", version_compare);
        env.add_function("dig", dig);
        Self { env }
    }
}

impl Templates {
    /// Renders `source`; `name` identifies it in errors (`kubelet-config/config.yaml`).
    pub fn render<C: Serialize>(&self, name: &str, source: &str, context: &C) -> anyhow::Result<String> {
        render_bounded(&self.env, name, source, Value::from(minijinja::value::Serde(context)))
    }
}

/// A filter's input as text; an undefined one is an error (strict mode does not stop custom
/// filters from receiving it).
fn text(value: &Value, filter: &str) -> Result<String, Error> {
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, format!("{filter} of an undefined value")));
    }
    Ok(match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    })
}

/// `"text"` with `\` and `"` escaped, as Sprig's quote (Go's %q for ordinary text).
fn quote(value: Value) -> Result<String, Error> {
    Ok(serde_json::to_string(&text(&value, "quote")?).expect("a string serialises"))
}

/// Every line indented by `width` spaces (Sprig's indent, unlike Jinja's, indents the first),
/// refused when the result could not be written anyway (past the output cap).
fn indent(value: Value, width: usize) -> Result<String, Error> {
    let text = text(&value, "indent")?;
    let lines = text.matches('\n').count() + 1;
    let size = lines.checked_mul(width).and_then(|pad| pad.checked_add(text.len()));
    if size.is_none_or(|size| size > crate::pipeline::render::MAX_OUTPUT) {
        return Err(Error::new(ErrorKind::InvalidOperation, format!("indent({width}) of {lines} lines is too large")));
    }
    let pad = " ".repeat(width);
    Ok(text.split('\n').map(|line| format!("{pad}{line}")).collect::<Vec<_>>().join("\n"))
}

/// A newline, then [`indent`].
fn nindent(value: Value, width: usize) -> Result<String, Error> {
    Ok(format!("\n{}", indent(value, width)?))
}

fn b64enc(value: Value) -> Result<String, Error> {
    Ok(base64::engine::general_purpose::STANDARD.encode(text(&value, "b64enc")?))
}

fn sha256sum(value: Value) -> Result<String, Error> {
    Ok(crate::model::Sha256::of(text(&value, "sha256sum")?.as_bytes()).to_string())
}

/// YAML for a value, without a trailing newline (Sprig's toYaml).
fn to_yaml(value: Value) -> Result<String, Error> {
    if value.kind() == ValueKind::Undefined {
        return Err(Error::new(ErrorKind::UndefinedError, "toYaml of an undefined value"));
    }
    let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let yaml = serde_saphyr::to_string(&json).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(yaml.trim_end_matches('\n').to_string())
}

/// A semver version from `v1.32.3~2`-style text (no `v`, no `~N` revision).
fn semver_of(text: &str) -> Result<semver::Version, Error> {
    let (base, _) = super::model::split_revision(text.trim());
    let bare = base.strip_prefix('v').unwrap_or(base);
    semver::Version::parse(bare)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("{text:?} is not a semantic version: {e}")))
}

/// Whether `version` meets `constraint` (`">=1.32.0"`, `"~1.32"`, `"^1"`), as Sprig's semverCompare.
fn semver_compare(constraint: String, version: String) -> Result<bool, Error> {
    let requirement = semver::VersionReq::parse(&constraint.replace(" ", "").replace(",", ", "))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("constraint {constraint:?}: {e}")))?;
    Ok(requirement.matches(&semver_of(&version)?))
}

/// Sprig's `dig("node", "name", "default", metadata)`: the value at a key path, or the default
/// where any key on the way is missing (strict mode fails `metadata.node.name` when `node` is).
fn dig(args: minijinja::value::Rest<Value>) -> Result<Value, Error> {
    let usage = || {
        Error::new(
            ErrorKind::InvalidOperation,
            "dig takes keys, a default and a map: dig(\"a\", \"b\", \"default\", map)",
        )
    };
    let [keys @ .., default, map] = args.0.as_slice() else { return Err(usage()) };
    if keys.is_empty() {
        return Err(usage());
    }
    let mut here = map.clone();
    for key in keys {
        match here.get_item(key) {
            Ok(next) if !next.is_undefined() && !next.is_none() => here = next,
            _ => return Ok(default.clone()),
        }
    }
    Ok(here)
}

/// -1, 0 or 1 in systemd's version order.
fn version_compare(a: String, b: String) -> i32 {
    match crate::model::version::compare(&a, &b) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str) -> anyhow::Result<String> {
        let context = json!({
            "metadata": {"cluster": {"dns": "10.96.0.10", "labels": {"zone": "a", "tier": "gpu"}}, "note": "say \"hi\""},
            "version": "v1.32.3~2",
        });
        Templates::default().render("t.yaml", source, &context)
    }

    #[test]
    fn sprig_filters() {
        assert_eq!(render("{{ metadata.cluster.domain | default('cluster.local') }}").unwrap(), "cluster.local");
        assert_eq!(render("{{ metadata.note | quote }}").unwrap(), r#""say \"hi\"""#);
        assert_eq!(render("a:{{ 'x\ny' | indent(2) }}").unwrap(), "a:  x\n  y");
        assert_eq!(render("a:{{ 'x\ny' | nindent(2) }}").unwrap(), "a:\n  x\n  y");
        assert_eq!(render("{{ 'bakery' | b64enc }}").unwrap(), "YmFrZXJ5");
        assert_eq!(
            render("{{ 'abc' | sha256sum }}").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(render("{{ metadata.cluster.labels | toYaml }}").unwrap(), "tier: gpu\nzone: a");
        let check = "{% if semverCompare(c, v) %}yes{% else %}no{% endif %}";
        assert_eq!(render(&check.replace("c, v", "'>=1.32.0', version")).unwrap(), "yes");
        assert_eq!(render(&check.replace("c, v", "'<1.32', 'v1.32.3'")).unwrap(), "no");
        assert_eq!(render("{{ versionCompare(version, 'v1.32.3~10') }}").unwrap(), "-1");
        assert_eq!(render("{{ dig('cluster', 'dns', 'none', metadata) }}").unwrap(), "10.96.0.10");
        assert_eq!(render("{{ dig('node', 'name', 'none', metadata) }}").unwrap(), "none");
        assert!(render("{{ dig(metadata) }}").is_err());
        let err = render("{{ ('x\n' * 100000) | indent(1000000) }}").unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn a_missing_key_names_the_key_and_the_template() {
        let err = render("ok\ndns: {{ metadata.cluster.domain }}\n").unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:2:") && err.contains("metadata.cluster.domain"), "{err}");
        for filter in ["toYaml", "quote", "indent(2)", "nindent(2)", "b64enc", "sha256sum"] {
            let err = render(&format!("{{{{ metadata.cluster.zone | {filter} }}}}")).unwrap_err().to_string();
            assert!(err.contains("undefined"), "{filter}: {err}");
        }
    }
}
