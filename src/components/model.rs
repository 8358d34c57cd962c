//! The component format, parsed from `&str`: the release map (`releases.yaml`), a component's
//! metadata (`<name>/component.yaml`) with its install and uninstall steps, and the sub-version
//! rules (`~N`: the release's version with revision N).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ExtName;

/// `releases.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMap {
    #[serde(default)]
    pub releases: BTreeMap<String, Release>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub components: Vec<ReleaseEntry>,
}

/// One component of a release.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEntry {
    pub name: String,
    /// Exact, or `~N` for the release's version with revision N.
    pub version: String,
    /// Only nodes with one of these roles; none: every node.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `<name>/component.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Version (without `~N`) or `*` → steps.
    pub versions: BTreeMap<String, Steps>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    #[serde(default)]
    pub install: Vec<Step>,
    #[serde(default)]
    pub uninstall: Vec<Step>,
}

/// One step, as written: every string is a template.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Step {
    File(FileStep),
    Template(FileStep),
    Directory(DirectoryStep),
    Absent(AbsentStep),
    Link(LinkStep),
    Extension(ExtensionStep),
    Service(ServiceStep),
    Script(ScriptStep),
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileStep {
    /// Relative to the component's folder.
    pub source: String,
    pub dest: String,
    #[serde(default = "file_mode")]
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryStep {
    pub path: String,
    #[serde(default = "directory_mode")]
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AbsentStep {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkStep {
    pub path: String,
    pub target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionStep {
    pub name: String,
    #[serde(default = "extension_version")]
    pub version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStep {
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub state: Option<ServiceState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    pub run: String,
    #[serde(default = "script_timeout")]
    pub timeout: u64,
}

fn file_mode() -> String {
    "0644".into()
}

fn directory_mode() -> String {
    "0755".into()
}

fn extension_version() -> String {
    "{{ base_version }}".into()
}

fn script_timeout() -> u64 {
    60
}

/// A mode written as an octal string (`"0644"`).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if (3..=4).contains(&digits.len()) && mode <= 0o7777 => Ok(mode),
        _ => Err(format!("mode {text:?} is not an octal string such as \"0644\"")),
    }
}

/// Parses `releases.yaml`; errors carry line and column.
pub fn parse_releases(text: &str) -> Result<ReleaseMap, String> {
    let map: ReleaseMap = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    for (version, release) in &map.releases {
        for entry in &release.components {
            entry.name.parse::<ExtName>().map_err(|e| format!("release {version}: {e}"))?;
            if entry.version.trim().is_empty() {
                return Err(format!("release {version}: {} has an empty version", entry.name));
            }
        }
    }
    Ok(map)
}

/// Parses a `component.yaml` for the folder `name`.
pub fn parse_component(name: &str, text: &str) -> Result<Component, String> {
    let component: Component = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if component.name != name {
        return Err(format!("name: {:?} does not match its folder {name:?}", component.name));
    }
    for (version, steps) in &component.versions {
        for step in steps.install.iter().chain(&steps.uninstall) {
            let mode = match step {
                Step::File(f) | Step::Template(f) => Some(&f.mode),
                Step::Directory(d) => Some(&d.mode),
                _ => None,
            };
            if let Some(mode) = mode {
                parse_mode(mode).map_err(|e| format!("versions[{version}]: {e}"))?;
            }
        }
    }
    Ok(component)
}

/// A component version from the release map: `~N` becomes `<release>~N`.
pub fn expand(version: &str, release: &str) -> String {
    match version.strip_prefix('~') {
        Some(revision) => format!("{release}~{revision}"),
        None => version.to_string(),
    }
}

/// `v1.32.1~2` → (`v1.32.1`, Some(`2`)).
pub fn split_revision(version: &str) -> (&str, Option<&str>) {
    match version.rsplit_once('~') {
        Some((base, revision)) if !base.is_empty() && !revision.is_empty() => (base, Some(revision)),
        _ => (version, None),
    }
}

impl Component {
    /// The steps for `version`: its base version's entry, else `*`.
    pub fn steps(&self, version: &str) -> Result<&Steps, String> {
        let (base, _) = split_revision(version);
        self.versions.get(base).or_else(|| self.versions.get("*")).ok_or_else(|| {
            let known: Vec<&str> = self.versions.keys().map(String::as_str).collect();
            format!("component {} has no version {base} (it has {})", self.name, known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_versions_expand_from_the_release_and_look_up_without_the_revision() {
        assert_eq!(expand("~2", "v1.32.1"), "v1.32.1~2");
        assert_eq!(expand("1.4", "v1.32.1"), "1.4");
        assert_eq!(split_revision("v1.32.1~2"), ("v1.32.1", Some("2")));
        assert_eq!(split_revision("v1.32.1"), ("v1.32.1", None));
        assert_eq!(split_revision("~"), ("~", None));
        let component = parse_component(
            "k",
            "name: k\nversions:\n  v1.32.1:\n    install: [{ directory: { path: /a } }]\n  \"*\":\n    install: []\n",
        )
        .unwrap();
        assert_eq!(component.steps("v1.32.1~2").unwrap().install.len(), 1, "looked up without ~2");
        assert_eq!(component.steps("v1.33.0~1").unwrap().install.len(), 0, "the * entry");
        // systemd's order: revisions order within a version, and a version's revisions before it
        use crate::model::version::compare;
        use std::cmp::Ordering::*;
        assert_eq!(compare("v1.32.1~2", "v1.32.1~10"), Less);
        assert_eq!(compare("v1.32.1~2", "v1.32.2~1"), Less);
        assert_eq!(compare("v1.32.1~2", "v1.32.1"), Less);
    }

    #[test]
    fn steps_parse_with_defaults_and_typos_are_errors() {
        let text = r#"name: demo
versions:
  "*":
    install:
      - template: { source: demo.conf, dest: "/etc/demo/{{ component }}.conf" }
      - service: { name: demo.service, enabled: true, state: restarted }
      - script: { run: "echo hi" }
      - extension: { name: demo }
    uninstall:
      - absent: { path: /etc/demo, recursive: true }
"#;
        let component = parse_component("demo", text).unwrap();
        let steps = component.steps("1").unwrap();
        assert_eq!(
            steps.install[0],
            Step::Template(FileStep {
                source: "demo.conf".into(),
                dest: "/etc/demo/{{ component }}.conf".into(),
                mode: "0644".into()
            })
        );
        assert_eq!(steps.install[2], Step::Script(ScriptStep { run: "echo hi".into(), timeout: 60 }));
        assert_eq!(
            steps.install[3],
            Step::Extension(ExtensionStep { name: "demo".into(), version: "{{ base_version }}".into() })
        );
        let typo = parse_component(
            "demo",
            "name: demo\nversions:\n  \"*\":\n    install: [{ file: { source: a, dset: /b } }]\n",
        );
        assert!(typo.unwrap_err().contains("dset"));
        let mode = parse_component(
            "demo",
            "name: demo\nversions:\n  \"*\":\n    install: [{ directory: { path: /a, mode: \"755x\" } }]\n",
        );
        assert!(mode.unwrap_err().contains("755x"));
        let wrong = parse_component("other", "name: demo\nversions: {}\n").unwrap_err();
        assert!(wrong.contains("does not match its folder"), "{wrong}");
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        for bad in ["", "9", "08", "0o", "12345", "rw-r--r--"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
