//! The types of `recipe.yaml`, with the checks that need only the recipe itself.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::model::{Arch, ExtName};

/// One extension's recipe (`recipe.yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Must equal the folder name.
    pub name: ExtName,
    /// One line shown by `bakery list`.
    pub description: String,
    #[serde(default)]
    pub homepage: Option<String>,
    /// What a version of this extension looks like, and where the versions are listed.
    #[serde(default)]
    pub version: VersionSpec,
    /// Supported architectures and the upstream name of each (`{{ upstream_arch }}`).
    /// Default: both, named like Go (`amd64`, `arm64`).
    #[serde(default)]
    pub arches: Option<BTreeMap<Arch, String>>,
    /// Build options with defaults, overridable with `--set NAME=VALUE`.
    #[serde(default)]
    pub options: BTreeMap<String, RecipeOption>,
    /// Write `EXTENSION_RELOAD_MANAGER=1` so systemd reloads units after a merge.
    #[serde(default)]
    pub reload_manager: bool,
    /// Units a node must restart when this extension's version changes.
    #[serde(default)]
    pub restart_units: Vec<String>,
    /// Per restarted unit, what healthy means (`kubelet.service: { unless_missing: PATH }`).
    #[serde(default)]
    pub health: BTreeMap<String, crate::model::manifest::HealthRule>,
    /// Upstream downloads.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Static files from `files/`.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// minijinja templates from `templates/`.
    #[serde(default)]
    pub templates: Vec<FileSpec>,
}

/// The accepted shape of versions and where upstream lists them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// Text before the numbers (`v` for `v1.32.0`); added when a user leaves it out.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub scheme: VersionScheme,
    /// Where `list`, `latest` and `X.Y` look versions up. Without it only exact versions work.
    #[serde(default)]
    pub source: Option<VersionSource>,
    /// How many of the newest minors `list --latest` shows (upstream's support window).
    #[serde(default = "three")]
    pub supported_minors: usize,
}

impl Default for VersionSpec {
    fn default() -> Self {
        Self { prefix: String::new(), scheme: VersionScheme::default(), source: None, supported_minors: three() }
    }
}

fn three() -> usize {
    3
}

/// Where upstream versions are listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VersionSource {
    /// GitHub releases of `owner/repo` (drafts never, pre-releases with `--pre`).
    Github(String),
    /// Marker files holding one version each (dl.k8s.io's `stable.txt`, `stable-1.31.txt`).
    Markers(Markers),
    /// A fixed list, for sources without an index.
    List(Vec<String>),
}

/// URLs of marker files; `minor` is a template with `{{ minor }}` (`1.31`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Markers {
    /// The newest stable version.
    pub stable: String,
    /// The newest stable version of one minor.
    pub minor: String,
    /// The newest version, pre-releases included (for `--pre`).
    #[serde(default)]
    pub latest: Option<String>,
    /// GitHub `owner/repo` whose releases `list` shows: every patch, where the markers know only
    /// the newest of each minor. The markers still answer `latest`, `X.Y` and `list --latest`.
    #[serde(default)]
    pub github: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionScheme {
    /// `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]` after the prefix.
    #[default]
    Semver,
    /// Anything systemd-sysupdate can match in a file name.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeOption {
    /// Pinned default: never "latest at build time".
    pub default: String,
    #[serde(default)]
    pub description: String,
    /// For options that are versions of something: their format and source, so `latest` and
    /// `X.Y` resolve (`--cni-version latest`).
    #[serde(default)]
    pub version: Option<VersionSpec>,
}

/// One upstream download.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    /// URL template (the real upstream; mirrors rewrite it).
    pub url: String,
    pub checksum: Checksum,
    /// Install the download itself as one file.
    #[serde(default)]
    pub install: Option<InstallFile>,
    /// Or unpack it: one rule or a list of rules.
    #[serde(default, deserialize_with = "one_or_many")]
    pub extract: Vec<ExtractRule>,
}

/// Where the expected digest comes from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksum {
    /// URL template of a checksum file; `{{ url }}` is the artifact's URL, `{{ file }}` its name.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub format: Option<ChecksumFormat>,
    /// Or the digest itself (template), for sources without checksum files.
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumFormat {
    /// The file holds the hex digest alone (`dl.k8s.io/.../kubelet.sha256`).
    Digest,
    /// `sha256sum` lines `<hex>  <file name>`; the line for the artifact's file name is used.
    Sha256sum,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallFile {
    /// Image path template (`usr/bin/kubelet`).
    pub path: String,
    #[serde(default = "Mode::executable")]
    pub mode: Mode,
}

/// Unpacks matching archive entries below a directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractRule {
    /// Archive format; inferred from the URL (`.tgz`, `.tar.gz`, `.tar.xz`, `.tar.zst`, `.tar`).
    #[serde(default)]
    pub format: Option<ArchiveFormat>,
    /// Globs over entry paths (leading `./` removed); `*` stays within one path component.
    #[serde(default = "match_everything")]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Leading path components dropped before joining with `to`.
    #[serde(default)]
    pub strip_components: usize,
    /// Image directory template the entries go to.
    pub to: String,
    /// Mode for every extracted file; default: the archive's mode without setuid/setgid/sticky.
    #[serde(default)]
    pub mode: Option<Mode>,
}

fn match_everything() -> Vec<String> {
    vec!["**".to_string()]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum ArchiveFormat {
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.xz")]
    TarXz,
    #[serde(rename = "tar.zst")]
    TarZst,
}

impl ArchiveFormat {
    /// The format a URL's file name suggests.
    pub fn from_url(url: &str) -> Option<Self> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        [
            (".tar.gz", Self::TarGz),
            (".tgz", Self::TarGz),
            (".tar.xz", Self::TarXz),
            (".tar.zst", Self::TarZst),
            (".tar", Self::Tar),
        ]
        .into_iter()
        .find_map(|(suffix, format)| path.ends_with(suffix).then_some(format))
    }
}

/// A static file or a template.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Path below `files/` or `templates/`.
    pub source: String,
    /// Image path template.
    pub path: String,
    #[serde(default = "Mode::regular")]
    pub mode: Mode,
}

/// A permission mode, written in recipes as an octal string (`"0755"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct Mode(pub u16);

impl Mode {
    pub fn executable() -> Self {
        Mode(0o755)
    }

    pub fn regular() -> Self {
        Mode(0o644)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u16::from_str_radix(digits, 8) {
            Ok(mode) if !digits.is_empty() && digits.len() <= 4 && mode <= 0o7777 => Ok(Mode(mode)),
            _ => Err(format!("invalid mode {s:?}: use an octal string such as \"0755\"")),
        }
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl From<Mode> for String {
    fn from(mode: Mode) -> String {
        mode.to_string()
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(s) => Mode::parse(&s).map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "mode {n} must be quoted as an octal string (\"0{n}\"), so YAML cannot read it as decimal"
            ))),
        }
    }
}

fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl Recipe {
    /// The architectures this recipe builds, with their upstream names.
    pub fn arch_names(&self) -> BTreeMap<Arch, String> {
        match &self.arches {
            Some(map) => map.clone(),
            None => Arch::ALL.iter().map(|a| (*a, a.goarch().to_string())).collect(),
        }
    }

    /// Checks that need only the recipe: returns every problem found, one line each.
    pub fn check(&self, folder_name: &str, has_file: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.as_str() != folder_name {
            problems.push(format!("name {:?} differs from its folder {folder_name:?}", self.name.as_str()));
        }
        for option in self.options.keys() {
            let valid = option.starts_with(|c: char| c.is_ascii_lowercase())
                && option.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                problems.push(format!("option name {option:?} must be lowercase letters, digits and '_'"));
            }
        }
        for unit in &self.restart_units {
            let valid = unit.contains('.') && !unit.contains('/') && !unit.chars().any(char::is_whitespace);
            if !valid {
                problems.push(format!("restart_units: {unit:?} is not a unit name"));
            }
        }
        for (unit, rule) in &self.health {
            if !self.restart_units.contains(unit) {
                problems.push(format!("health: {unit:?} is not one of restart_units"));
            }
            if let Some(path) = &rule.unless_missing
                && (!path.starts_with('/') || path.split('/').any(|p| p == ".."))
            {
                problems.push(format!("health: {unit}: unless_missing {path:?} is not an absolute path"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for artifact in &self.artifacts {
            let name = &artifact.name;
            if !names.insert(name.as_str()) {
                problems.push(format!("artifact {name:?} is defined twice"));
            }
            match (&artifact.install, artifact.extract.is_empty()) {
                (Some(_), false) => problems.push(format!("artifact {name:?} has both install and extract")),
                (None, true) => problems.push(format!("artifact {name:?} needs install or extract")),
                _ => {}
            }
            let checksum = &artifact.checksum;
            match (&checksum.url, &checksum.sha256) {
                (Some(_), None) if checksum.format.is_none() => problems
                    .push(format!("artifact {name:?}: checksum.url needs checksum.format (digest or sha256sum)")),
                (Some(_), None) | (None, Some(_)) => {}
                _ => problems.push(format!("artifact {name:?}: checksum needs exactly one of url or sha256")),
            }
            for rule in &artifact.extract {
                if rule.format.is_none() && ArchiveFormat::from_url(&artifact.url).is_none() {
                    problems.push(format!("artifact {name:?}: extract.format is needed, the URL does not tell"));
                }
                for pattern in rule.include.iter().chain(&rule.exclude) {
                    if let Err(e) = glob::Pattern::new(pattern) {
                        problems.push(format!("artifact {name:?}: invalid glob {pattern:?}: {e}"));
                    }
                }
            }
        }
        for (kind, dir, specs) in
            [("files", super::FILES_DIR, &self.files), ("templates", super::TEMPLATES_DIR, &self.templates)]
        {
            for spec in specs {
                match super::catalog::clean_relative(&spec.source) {
                    Some(source) if has_file(&format!("{dir}/{source}")) => {}
                    Some(source) => {
                        problems.push(format!("{kind}: {dir}/{source} does not exist in the recipe folder"))
                    }
                    None => problems.push(format!("{kind}: source {:?} escapes the recipe folder", spec.source)),
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_rules_name_restarted_units_and_absolute_paths() {
        let recipe = |health: &str| -> Recipe {
            let text = format!(
                "name: demo\ndescription: d\nrestart_units: [demo.service]\nhealth:\n{health}\nartifacts: []\n"
            );
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        let good = recipe("  demo.service: { require: active, unless_missing: /var/lib/demo/config }");
        assert_eq!(good.check("demo", &|_| true), Vec::<String>::new());
        let problems = recipe("  other.service: { require: none }\n  demo.service: { unless_missing: etc/x }")
            .check("demo", &|_| true);
        assert_eq!(
            problems,
            [
                "health: demo.service: unless_missing \"etc/x\" is not an absolute path",
                "health: \"other.service\" is not one of restart_units"
            ]
        );
        let typo: Result<Recipe, _> =
            serde_saphyr::from_str("name: demo\ndescription: d\nhealth:\n  demo.service: { requires: active }\n");
        assert!(typo.is_err(), "unknown health keys are refused");
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(Mode::parse("0755").unwrap(), Mode(0o755));
        assert_eq!(Mode::parse("644").unwrap(), Mode(0o644));
        assert!(Mode::parse("0999").is_err());
        assert!(Mode::parse("17777").is_err());
        assert_eq!(Mode(0o644).to_string(), "0644");
    }

    #[test]
    fn archive_format_follows_the_url() {
        assert_eq!(ArchiveFormat::from_url("https://x/cni-plugins-linux-amd64-v1.6.2.tgz"), Some(ArchiveFormat::TarGz));
        assert_eq!(ArchiveFormat::from_url("https://x/a.tar.zst?x=1"), Some(ArchiveFormat::TarZst));
        assert_eq!(ArchiveFormat::from_url("https://x/kubelet"), None);
    }
}
