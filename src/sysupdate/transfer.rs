//! Transfer files (sysupdate.d(5)): rendered from `sysupdate/` templates, and parsed strictly,
//! every key known, so a typo or an unsupported feature is an error naming its line.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::pipeline::render::Renderer;

/// The keys systemd-sysupdate knows, per section.
const KEYS: [(&str, &[&str]); 3] = [
    (
        "Transfer",
        &["MinVersion", "ProtectVersion", "Verify", "Features", "RequisiteFeatures", "ChangeLog", "AppStream"],
    ),
    ("Source", &["Type", "Path", "PathRelativeTo", "MatchPattern"]),
    (
        "Target",
        &[
            "Type",
            "Path",
            "PathRelativeTo",
            "MatchPattern",
            "MatchPartitionType",
            "PartitionUUID",
            "PartitionFlags",
            "PartitionNoAuto",
            "PartitionGrowFileSystem",
            "ReadOnly",
            "Mode",
            "TriesDone",
            "TriesLeft",
            "InstancesMax",
            "RemoveTemporary",
            "CurrentSymlink",
        ],
    ),
];

/// File suffix of transfer files: `.conf` (systemd ≤ 256) or `.transfer` (systemd ≥ 257).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suffix {
    #[default]
    Conf,
    Transfer,
}

impl Suffix {
    pub fn extension(self) -> &'static str {
        match self {
            Suffix::Conf => "conf",
            Suffix::Transfer => "transfer",
        }
    }

    pub fn other(self) -> Suffix {
        match self {
            Suffix::Conf => Suffix::Transfer,
            Suffix::Transfer => Suffix::Conf,
        }
    }
}

impl std::str::FromStr for Suffix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim_start_matches('.') {
            "conf" => Ok(Suffix::Conf),
            "transfer" => Ok(Suffix::Transfer),
            other => {
                Err(format!("unknown transfer suffix {other:?}: conf (systemd ≤ 256) or transfer (systemd ≥ 257)"))
            }
        }
    }
}

/// What a transfer file for an extension says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransferSpec {
    pub name: String,
    /// The release's base URL (`Source Path=`).
    pub base_url: String,
    /// `kubernetes-@v-%a.raw` or `kubernetes-v1.32.@v-%a.raw`.
    pub pattern: String,
    pub verify: bool,
    pub instances_max: u32,
    /// The comment on the first line.
    pub description: String,
}

impl TransferSpec {
    pub fn render(&self) -> anyhow::Result<String> {
        Renderer::default().render("sysupdate/extension.transfer", crate::assets::sysupdate("extension.transfer"), self)
    }
}

/// The transfer that matches nothing, for `/etc/sysupdate.d`.
pub fn noop() -> String {
    let text =
        Renderer::default().render("sysupdate/noop.transfer", crate::assets::sysupdate("noop.transfer"), json!({}));
    text.expect("the noop template renders")
}

/// A parsed transfer file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub verify: bool,
    pub source: Section,
    pub target: Section,
    pub transfer: Section,
}

/// One section's keys; `MatchPattern=` may repeat and hold several space-separated patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub values: BTreeMap<String, Vec<String>>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn patterns(&self) -> Vec<String> {
        let values = self.values.get("MatchPattern").cloned().unwrap_or_default();
        values.iter().flat_map(|v| v.split_whitespace().map(str::to_string)).collect()
    }
}

impl Transfer {
    /// `CurrentSymlink=` as a node path: a relative one is relative to the target's `Path=`,
    /// as systemd-sysupdate reads it.
    pub fn current_symlink(&self) -> Option<String> {
        let link = self.target.get("CurrentSymlink")?;
        if link.starts_with('/') {
            return Some(link.to_string());
        }
        Some(format!("{}/{link}", self.target.get("Path").unwrap_or("/").trim_end_matches('/')))
    }
}

/// Parses a transfer file; errors name the 1-based line.
pub fn parse(text: &str) -> Result<Transfer, String> {
    let mut transfer = Transfer { verify: true, ..Transfer::default() };
    let mut section: Option<&str> = None;
    // (section, line, value) of every Type=
    let mut types: Vec<(&str, usize, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = index + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = KEYS.iter().map(|(s, _)| *s).find(|s| *s == name);
            if section.is_none() {
                return Err(format!("line {lineno}: unknown section [{name}]"));
            }
            continue;
        }
        let Some(current) = section else {
            return Err(format!("line {lineno}: {line:?} is outside a section"));
        };
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {lineno}: expected KEY=VALUE, got {line:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        let known = KEYS.iter().find(|(s, _)| *s == current).map(|(_, keys)| *keys).unwrap_or_default();
        if !known.contains(&key) {
            return Err(format!("line {lineno}: unknown key {key} in [{current}]"));
        }
        let target = match current {
            "Transfer" => &mut transfer.transfer,
            "Source" => &mut transfer.source,
            _ => &mut transfer.target,
        };
        check_value(current, key, value).map_err(|why| format!("line {lineno}: [{current}] {key}={value}: {why}"))?;
        target.values.entry(key.to_string()).or_default().push(value.to_string());
        if current == "Transfer" && key == "Verify" {
            transfer.verify =
                parse_bool(value).ok_or_else(|| format!("line {lineno}: Verify={value} is not a boolean"))?;
        }
        if key == "Type" {
            types.push((current, lineno, value.to_string()));
        }
    }
    for (name, section) in [("Source", &transfer.source), ("Target", &transfer.target)] {
        for key in ["Type", "Path"] {
            if section.get(key).is_none() {
                return Err(format!("[{name}] has no {key}="));
            }
        }
    }
    if transfer.source.patterns().is_empty() {
        return Err("[Source] has no MatchPattern=".to_string());
    }
    // the last Type= of a section counts, as for every key
    let source_type = types.iter().rev().find(|t| t.0 == "Source").expect("checked above");
    if source_type.2 == "url-file" {
        let path = transfer.source.get("Path").unwrap_or_default();
        if !path.starts_with("https://") && !path.starts_with("http://") {
            return Err(format!("[Source] Path={path}: a url-file source needs an http or https URL"));
        }
    } else if let Err(why) = node_path(transfer.source.get("Path").unwrap_or_default()) {
        return Err(format!("[Source] Path: {why}"));
    }
    Ok(transfer)
}

/// What bakery refuses in one setting, as systemd-sysupdate does (257: `transfer_finalize()`)
/// or where it would misread it: unsupported types, paths that are not absolute and normalized
/// (a `..` would stage or link outside the node's root), `InstancesMax=` below 2.
fn check_value(section: &str, key: &str, value: &str) -> Result<(), String> {
    match (section, key) {
        ("Source", "Type") => match value {
            "url-file" | "regular-file" => Ok(()),
            "url-tar" | "tar" | "directory" | "subvolume" => {
                Err("bakery supports url-file sources (and regular-file for a transfer that matches nothing)".into())
            }
            _ => Err("not a source type (url-file, url-tar, tar, regular-file, directory, subvolume)".into()),
        },
        ("Target", "Type") => match value {
            "regular-file" => Ok(()),
            "partition" | "directory" | "subvolume" => Err("bakery supports regular-file targets".into()),
            _ => Err("not a target type (partition, regular-file, directory, subvolume)".into()),
        },
        ("Target", "Path") => node_path(value),
        ("Target", "CurrentSymlink") => {
            if value.split('/').any(|p| p == "..") {
                Err("a link path may not contain ..".into())
            } else if value.is_empty() {
                Err("empty".into())
            } else {
                Ok(())
            }
        }
        (_, "PathRelativeTo") if value != "root" => Err("bakery supports only root".into()),
        (_, "MatchPattern") if value.contains('/') => {
            Err("a pattern names a file in the release and in the target directory, so it has no /".into())
        }
        ("Target", "InstancesMax") => match value.parse::<u64>() {
            Ok(n) if n >= 2 => Ok(()),
            _ => Err("not a number of at least 2".into()),
        },
        ("Target", "Mode") => match u32::from_str_radix(value, 8) {
            Ok(mode) if mode <= 0o7777 => Ok(()),
            _ => Err("not an octal file mode".into()),
        },
        _ => Ok(()),
    }
}

/// An absolute path without `.`, `..` or empty components, as systemd's `path_is_normalized()`.
fn node_path(value: &str) -> Result<(), String> {
    let rest = value.strip_prefix('/').ok_or("not an absolute path")?;
    let bad = |p: &str| p.is_empty() || p == "." || p == "..";
    if value != "/" && rest.trim_end_matches('/').split('/').any(bad) {
        return Err("not a normalized path (no ., .. or empty components)".into());
    }
    Ok(())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TransferSpec {
        TransferSpec {
            name: "kubernetes".into(),
            base_url: "https://example.org/ext".into(),
            pattern: "kubernetes-v1.32.@v-%a.raw".into(),
            verify: true,
            instances_max: 3,
            description: "kubernetes v1.32 patch releases".into(),
        }
    }

    #[test]
    fn rendered_transfers_parse_back_with_their_exact_keys() {
        let transfer = parse(&spec().render().unwrap()).unwrap();
        assert!(transfer.verify);
        assert_eq!(transfer.source.get("Type"), Some("url-file"));
        assert_eq!(transfer.source.get("Path"), Some("https://example.org/ext"));
        assert_eq!(transfer.source.patterns(), ["kubernetes-v1.32.@v-%a.raw"]);
        assert_eq!(transfer.target.get("Path"), Some("/opt/extensions/kubernetes"));
        assert_eq!(transfer.target.get("CurrentSymlink"), Some("/etc/extensions/kubernetes.raw"));
        assert_eq!(transfer.target.get("InstancesMax"), Some("3"));
        let unverified = TransferSpec { verify: false, ..spec() };
        assert!(!parse(&unverified.render().unwrap()).unwrap().verify);
    }

    #[test]
    fn the_noop_transfer_parses() {
        let noop = parse(&noop()).unwrap();
        assert_eq!(noop.source.patterns(), ["invalid@v.raw"]);
        assert_eq!(noop.target.get("Path"), Some("/"));
        // systemd 257 prints a notice for a target without a pattern
        assert_eq!(noop.target.patterns(), ["invalid@v.raw"]);
    }

    #[test]
    fn unknown_keys_and_sections_name_the_line() {
        let err = parse("[Transfer]\nVerify=yes\n[Source]\nTyp=url-file\n").unwrap_err();
        assert_eq!(err, "line 4: unknown key Typ in [Source]");
        assert_eq!(parse("[Sauce]\n").unwrap_err(), "line 1: unknown section [Sauce]");
        assert!(parse("[Transfer]\nVerify=maybe\n").unwrap_err().contains("Verify=maybe"));
    }

    #[test]
    fn settings_bakery_would_misread_or_that_escape_are_refused_naming_line_and_value() {
        let good = spec().render().unwrap();
        // the file with `key=value` in `section`, and that line's number
        let with = |section: &str, key: &str, value: &str| {
            let start = good.lines().position(|l| l == format!("[{section}]")).unwrap();
            let line = start + good.lines().skip(start).position(|l| l.starts_with(&format!("{key}="))).unwrap();
            let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
            lines[line] = format!("{key}={value}");
            (parse(&(lines.join("\n") + "\n")), line + 1)
        };
        for (section, key, value, why) in [
            ("Source", "Type", "tar", "bakery supports url-file"),
            ("Source", "Type", "url-fiel", "not a source type"),
            ("Target", "Path", "/../..", "not a normalized path"),
            ("Target", "Path", "opt/extensions/kubernetes", "not an absolute path"),
            ("Target", "CurrentSymlink", "/../../etc/extensions/k.raw", "may not contain .."),
            ("Target", "InstancesMax", "-1", "at least 2"),
            ("Target", "InstancesMax", "1", "at least 2"),
            ("Target", "MatchPattern", "../kubernetes-@v-%a.raw", "has no /"),
        ] {
            let (parsed, line) = with(section, key, value);
            let err = parsed.unwrap_err();
            assert!(err.starts_with(&format!("line {line}: [")), "{key}={value}: {err}");
            assert!(err.contains(&format!("{key}={value}: ")) && err.contains(why), "{key}={value}: {err}");
        }
        let relative = "[Source]\nType=url-file\nPath=https://x\nMatchPattern=a@v\n[Target]\nType=regular-file\nPath=/\nCurrentSymlink=x.raw\n";
        let relative = parse(relative).unwrap();
        assert_eq!(relative.current_symlink().as_deref(), Some("/x.raw"), "relative to Path=, as in systemd");
        let spec = parse(&good).unwrap();
        assert_eq!(spec.current_symlink().as_deref(), Some("/etc/extensions/kubernetes.raw"));
        let not_a_url = "[Source]\nType=url-file\nPath=/srv\nMatchPattern=a@v\n[Target]\nType=regular-file\nPath=/\n";
        assert!(parse(not_a_url).unwrap_err().contains("needs an http or https URL"));
        assert_eq!(
            parse("[Target]\nType=partition\n").unwrap_err(),
            "line 2: [Target] Type=partition: bakery supports regular-file targets"
        );
    }
}
