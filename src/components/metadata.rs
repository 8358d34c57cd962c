//! The node's metadata, what component templates read: a JSON or YAML file (default
//! `/etc/bakery/metadata.json`, written by Ignition), or an HTTP(S) endpoint (retried, with
//! timeouts; plain http only to loopback and link-local addresses, where cloud metadata services
//! answer, or through a mirror), then `--set key.path=value` overrides.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::error::bad_input;
use crate::model::Mirrors;
use crate::pipeline::http::Http;

/// The default metadata file, under the node's root.
pub const FILE: &str = "etc/bakery/metadata.json";

/// Where the metadata comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// `<root>/etc/bakery/metadata.json` when it exists, else nothing.
    Default,
    File(&'a Path),
    Url(&'a str),
}

/// Parses JSON or YAML text into an object; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Value> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| bad_input(format!("{origin}: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| bad_input(format!("{origin}: {e}")))?
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(bad_input(format!("{origin}: the metadata must be an object (key: value)"))),
    }
}

/// Sets `path` (dotted, `cluster.dns`) to `value` (a string), creating objects on the way.
pub fn set(metadata: &mut Value, assignment: &str) -> Result<()> {
    let (path, value) =
        assignment.split_once('=').ok_or_else(|| bad_input(format!("--set {assignment:?}: expected KEY=VALUE")))?;
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad_input(format!("--set {assignment:?}: {path:?} is not a key path such as cluster.dns")));
    }
    let mut here = metadata;
    for (index, key) in keys.iter().enumerate() {
        if !here.is_object() {
            let prefix = keys[..index].join(".");
            return Err(bad_input(format!("--set {assignment:?}: {prefix} is not an object")));
        }
        let object = here.as_object_mut().expect("checked above");
        if index + 1 == keys.len() {
            object.insert(key.to_string(), Value::String(value.to_string()));
            return Ok(());
        }
        here = object.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Whether plain http to `url` is allowed: a loopback or link-local address.
fn local_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => host == "localhost",
    }
}

/// Loads the metadata from `source` and applies the `sets`.
pub async fn load(root: &Path, source: Source<'_>, sets: &[String], http: &Http, mirrors: &Mirrors) -> Result<Value> {
    let mut metadata = match source {
        Source::Default => {
            let path = root.join(FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => parse(&text, &path.display().to_string())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Source::File(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            parse(&text, &path.display().to_string())?
        }
        Source::Url(url) => {
            let fetch = if local_http(url) { url.to_string() } else { mirrors.resolve(url)? };
            let bytes = http.get_small(&fetch).await.context("fetching the node metadata")?;
            let text = String::from_utf8(bytes).map_err(|_| bad_input(format!("{url}: the metadata is not UTF-8")))?;
            parse(&text, url)?
        }
    };
    for assignment in sets {
        set(&mut metadata, assignment)?;
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_yaml_parse_into_objects() {
        assert_eq!(parse("{\"a\": {\"b\": 1}}", "m").unwrap(), json!({"a": {"b": 1}}));
        assert_eq!(parse("a:\n  b: x\n", "m").unwrap(), json!({"a": {"b": "x"}}));
        assert_eq!(parse("", "m").unwrap(), json!({}));
        let err = parse("- 1\n", "meta.yaml").unwrap_err().to_string();
        assert!(err.starts_with("meta.yaml:") && err.contains("object"), "{err}");
        let err = parse("{\"a\": ", "meta.json").unwrap_err().to_string();
        assert!(err.starts_with("meta.json:"), "{err}");
    }

    #[test]
    fn sets_override_nested_keys() {
        let mut metadata = json!({"cluster": {"dns": "10.0.0.10"}, "flat": "x"});
        set(&mut metadata, "cluster.dns=10.96.0.10").unwrap();
        set(&mut metadata, "join.token=abc.def=ghi").unwrap();
        assert_eq!(metadata, json!({"cluster": {"dns": "10.96.0.10"}, "flat": "x", "join": {"token": "abc.def=ghi"}}));
        assert!(set(&mut metadata, "flat.below=1").unwrap_err().to_string().contains("flat is not an object"));
        assert!(set(&mut metadata, "novalue").is_err());
        assert!(set(&mut metadata, "a..b=1").is_err());
    }

    #[test]
    fn plain_http_only_to_local_metadata_services() {
        assert!(local_http("http://169.254.169.254/latest/meta-data"));
        assert!(local_http("http://127.0.0.1:8080/m.json"));
        assert!(local_http("http://[fe80::1]/m"));
        assert!(!local_http("http://metadata.example/m"));
        assert!(!local_http("http://10.0.0.1/m"));
        assert!(!local_http("https://127.0.0.1/m"));
    }
}
