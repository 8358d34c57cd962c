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

/// Parses a transfer file; errors name the 1-based line.
pub fn parse(text: &str) -> Result<Transfer, String> {
    let mut transfer = Transfer { verify: true, ..Transfer::default() };
    let mut section: Option<&str> = None;
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
        target.values.entry(key.to_string()).or_default().push(value.to_string());
        if current == "Transfer" && key == "Verify" {
            transfer.verify =
                parse_bool(value).ok_or_else(|| format!("line {lineno}: Verify={value} is not a boolean"))?;
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
    Ok(transfer)
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
}
