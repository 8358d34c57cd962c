//! Steps rendered for one node: every template filled in from the node's metadata and the
//! component's version, files read from the component, paths checked. The result is data
//! ([`Action`]) that the plan shows, the records keep (uninstall steps) and apply executes.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalog::Wanted;
use super::model::{self, ServiceState, Step};
use super::template::Templates;
use crate::error::bad_input;
use crate::model::Arch;

/// A step ready to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Action {
    File {
        dest: String,
        mode: u32,
        #[serde(with = "b64")]
        contents: Vec<u8>,
    },
    Directory {
        path: String,
        mode: u32,
    },
    Absent {
        path: String,
        recursive: bool,
    },
    Link {
        path: String,
        target: String,
    },
    Extension {
        name: String,
        version: String,
    },
    Service {
        name: String,
        enabled: Option<bool>,
        state: Option<ServiceState>,
    },
    Script {
        run: String,
        timeout: u64,
    },
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl Action {
    /// The service this action restarts at the end of the run.
    pub fn restarts(&self) -> Option<&str> {
        match self {
            Action::Service { name, state: Some(ServiceState::Restarted), .. } => Some(name),
            _ => None,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Action::File { dest, mode, contents } => {
                let digest = crate::model::Sha256::of(contents).to_string();
                format!("file {dest} ({mode:04o}, {} bytes, sha256 {})", contents.len(), &digest[..12])
            }
            Action::Directory { path, mode } => format!("directory {path} ({mode:04o})"),
            Action::Absent { path, recursive: true } => format!("absent {path} (recursively)"),
            Action::Absent { path, .. } => format!("absent {path}"),
            Action::Link { path, target } => format!("link {path} -> {target}"),
            Action::Extension { name, version } => format!("extension {name} {version}"),
            Action::Service { name, enabled, state } => {
                let mut parts = Vec::new();
                if let Some(enabled) = enabled {
                    parts.push(if *enabled { "enabled" } else { "disabled" }.to_string());
                }
                if let Some(state) = state {
                    parts.push(format!("{state:?}").to_lowercase());
                }
                format!("service {name} ({})", parts.join(", "))
            }
            Action::Script { run, timeout } => format!("script {run:?} (timeout {timeout} s)"),
        }
    }
}

/// What templates see for one component on one node.
pub struct Scope<'a> {
    pub metadata: &'a Value,
    pub release: &'a str,
    pub arch: Arch,
    pub role: &'a str,
}

/// The install and uninstall actions of `wanted` on this node.
pub fn render(templates: &Templates, wanted: &Wanted, scope: &Scope) -> Result<(Vec<Action>, Vec<Action>)> {
    let (base, revision) = model::split_revision(&wanted.version);
    let context = json!({
        "metadata": scope.metadata,
        "release": scope.release,
        "component": wanted.name,
        "version": wanted.version,
        "base_version": base,
        "revision": revision,
        "arch": scope.arch.to_string(),
        "goarch": scope.arch.goarch(),
        "role": scope.role,
    });
    let steps = wanted.loaded.component.steps(&wanted.version).map_err(bad_input)?;
    let mut out = (Vec::new(), Vec::new());
    for (phase, steps, actions) in
        [("install", &steps.install, &mut out.0), ("uninstall", &steps.uninstall, &mut out.1)]
    {
        for (index, step) in steps.iter().enumerate() {
            let at = format!("{}/component.yaml {phase}[{index}]", wanted.name);
            actions.push(action(templates, wanted, step, &context, &at)?);
        }
    }
    Ok(out)
}

fn action(templates: &Templates, wanted: &Wanted, step: &Step, context: &Value, at: &str) -> Result<Action> {
    let text = |field: &str, value: &str| templates.render(&format!("{at}.{field}"), value, context);
    let path = |field: &str, value: &str| -> Result<String> {
        let rendered = text(field, value)?;
        let ok = rendered.starts_with('/') && !rendered.split('/').any(|p| p == "..") && !rendered.contains('\0');
        if ok {
            Ok(rendered)
        } else {
            Err(bad_input(format!("{at}.{field}: {rendered:?} is not an absolute path without ..")))
        }
    };
    let mode = |value: &str| model::parse_mode(value).map_err(|e| bad_input(format!("{at}.mode: {e}")));
    Ok(match step {
        Step::File(file) | Step::Template(file) => {
            let source = wanted.loaded.files.get(&file.source).ok_or_else(|| {
                bad_input(format!(
                    "{at}.source: {} has no file {} ({})",
                    wanted.name, file.source, wanted.loaded.origin
                ))
            })?;
            let contents = if matches!(step, Step::Template(_)) {
                let source = std::str::from_utf8(source)
                    .map_err(|_| bad_input(format!("{at}.source: {} is not UTF-8 text", file.source)))?;
                templates.render(&format!("{}/{}", wanted.name, file.source), source, context)?.into_bytes()
            } else {
                source.clone()
            };
            Action::File { dest: path("dest", &file.dest)?, mode: mode(&file.mode)?, contents }
        }
        Step::Directory(dir) => Action::Directory { path: path("path", &dir.path)?, mode: mode(&dir.mode)? },
        Step::Absent(absent) => Action::Absent { path: path("path", &absent.path)?, recursive: absent.recursive },
        Step::Link(link) => Action::Link { path: path("path", &link.path)?, target: text("target", &link.target)? },
        Step::Extension(ext) => {
            let name = text("name", &ext.name)?;
            name.parse::<crate::model::ExtName>().map_err(|e| bad_input(format!("{at}.name: {e}")))?;
            let version = text("version", &ext.version)?;
            version.parse::<crate::model::ExtVersion>().map_err(|e| bad_input(format!("{at}.version: {e}")))?;
            Action::Extension { name, version }
        }
        Step::Service(service) => {
            let name = text("name", &service.name)?;
            if !name.contains('.') || name.contains('/') {
                return Err(bad_input(format!("{at}.name: {name:?} is not a unit name such as kubelet.service")));
            }
            Action::Service { name, enabled: service.enabled, state: service.state }
        }
        Step::Script(script) => Action::Script { run: text("run", &script.run)?, timeout: script.timeout },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::catalog::Catalog;
    use crate::components::repository::Files;

    fn wanted(yaml: &str, files: &[(&str, &str)]) -> Wanted {
        let mut repo: Files = files.iter().map(|(p, t)| (format!("demo/{p}"), t.as_bytes().to_vec())).collect();
        repo.insert("demo/component.yaml".into(), yaml.as_bytes().to_vec());
        repo.insert(
            "releases.yaml".into(),
            b"releases:\n  v1.2.3:\n    components: [{ name: demo, version: \"~2\" }]\n".to_vec(),
        );
        Catalog::layer(vec![("t".into(), repo)]).unwrap().resolve("v1.2.3", "worker").unwrap().remove(0)
    }

    #[test]
    fn steps_render_with_metadata_version_and_arch() {
        let yaml = r#"name: demo
versions:
  "*":
    install:
      - template: { source: demo.conf, dest: "/etc/demo/{{ base_version }}.conf", mode: "0600" }
      - extension: { name: demo }
      - service: { name: "demo@{{ revision }}.service", enabled: true, state: restarted }
      - script: { run: "echo {{ goarch }} {{ role }}", timeout: 5 }
    uninstall:
      - absent: { path: "/etc/demo/{{ base_version }}.conf" }
"#;
        let demo = wanted(yaml, &[("demo.conf", "dns={{ metadata.dns }} release={{ release }} v={{ version }}\n")]);
        let metadata = json!({"dns": "10.96.0.10"});
        let scope = Scope { metadata: &metadata, release: "v1.2.3", arch: Arch::X86_64, role: "worker" };
        let (install, uninstall) = render(&Templates::default(), &demo, &scope).unwrap();
        assert_eq!(
            install[0],
            Action::File {
                dest: "/etc/demo/v1.2.3.conf".into(),
                mode: 0o600,
                contents: b"dns=10.96.0.10 release=v1.2.3 v=v1.2.3~2\n".to_vec()
            }
        );
        assert_eq!(install[1], Action::Extension { name: "demo".into(), version: "v1.2.3".into() });
        assert_eq!(install[2].restarts(), Some("demo@2.service"));
        assert_eq!(install[3], Action::Script { run: "echo amd64 worker".into(), timeout: 5 });
        assert_eq!(uninstall, [Action::Absent { path: "/etc/demo/v1.2.3.conf".into(), recursive: false }]);
        // the records keep actions as JSON, contents in base64
        let json = serde_json::to_value(&install[0]).unwrap();
        assert_eq!(json["kind"], "file");
        assert_eq!(serde_json::from_value::<Action>(json).unwrap(), install[0]);
    }

    #[test]
    fn bad_renders_name_the_step() {
        let missing = wanted(
            "name: demo\nversions:\n  \"*\":\n    install: [{ template: { source: t, dest: /etc/t } }]\n",
            &[("t", "a\n{{ metadata.cluster.dns }}\n")],
        );
        let metadata = json!({});
        let scope = Scope { metadata: &metadata, release: "v1.2.3", arch: Arch::X86_64, role: "worker" };
        let err = render(&Templates::default(), &missing, &scope).unwrap_err().to_string();
        assert!(err.starts_with("demo/t:2:") && err.contains("metadata.cluster"), "{err}");
        let escaping = wanted(
            "name: demo\nversions:\n  \"*\":\n    install: [{ directory: { path: \"/etc/../{{ release }}\" } }]\n",
            &[],
        );
        let err = render(&Templates::default(), &escaping, &scope).unwrap_err().to_string();
        assert!(err.contains("install[0].path") && err.contains("not an absolute path without .."), "{err}");
    }
}
