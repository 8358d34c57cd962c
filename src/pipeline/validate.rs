//! Validate: findings about an image's tree, before packing (`create`) and after (`inspect`).
//! A finding is not a failure: callers decide what to refuse. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::extension_release::{self, STRICT_XATTR};
use crate::model::tree::{Content, Node, Tree};
use crate::model::{Arch, ImagePath};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

impl Finding {
    fn error(path: Option<&ImagePath>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, path: path.map(|p| p.to_string()), message: message.into() }
    }

    fn warning(path: Option<&ImagePath>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, path: path.map(|p| p.to_string()), message: message.into() }
    }
}

impl Finding {
    /// The finding without its severity: `/etc/x: outside /usr and /opt: ...`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("{path}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.describe())
    }
}

/// One entry as validation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: ImagePath,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    Dir {
        mode: u16,
    },
    File {
        mode: u16,
        size: u64,
        /// The digest of the file's bytes, when known (read images; planned blobs).
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<crate::model::Sha256>,
    },
    Symlink {
        target: String,
    },
}

/// An extension-release file found in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseFile {
    /// The `<name>` of `extension-release.<name>`.
    pub name: String,
    pub text: String,
    /// Carries `user.extension-release.strict=false`.
    pub relaxed: bool,
}

/// What an image holds, as far as validation is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageView {
    pub entries: Vec<Entry>,
    pub releases: Vec<ReleaseFile>,
}

impl ImageView {
    /// The view of a planned tree.
    pub fn of_tree(tree: &Tree) -> Self {
        let mut view = ImageView::default();
        for (path, node) in tree.nodes() {
            let kind = match node {
                Node::Dir { mode } => EntryKind::Dir { mode: mode.0 },
                Node::File { content, mode, xattrs } => {
                    if let Some(name) = release_name(path) {
                        let text = match content {
                            Content::Inline(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                            Content::Blob { .. } => String::new(),
                        };
                        let relaxed = xattrs.iter().any(|x| x.name == STRICT_XATTR && x.value == b"false");
                        view.releases.push(ReleaseFile { name: name.to_string(), text, relaxed });
                    }
                    EntryKind::File {
                        mode: mode.0,
                        size: content.size(),
                        sha256: match content {
                            Content::Blob { sha256, .. } => Some(*sha256),
                            Content::Inline(bytes) => Some(crate::model::Sha256::of(bytes)),
                        },
                    }
                }
                Node::Symlink { target } => EntryKind::Symlink { target: target.clone() },
            };
            view.entries.push(Entry { path: path.clone(), kind });
        }
        view
    }
}

/// `Some(name)` for `usr/lib/extension-release.d/extension-release.<name>`.
pub fn release_name(path: &ImagePath) -> Option<&str> {
    let rest = path.as_str().strip_prefix(extension_release::DIR)?.strip_prefix('/')?;
    rest.strip_prefix("extension-release.").filter(|n| !n.is_empty() && !n.contains('/'))
}

/// What the image is supposed to be (from the request, or from its file name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub name: Option<String>,
    pub version: Option<String>,
    pub arch: Option<Arch>,
    /// The file name includes the version, so the strict xattr is needed.
    pub versioned_file_name: bool,
}

/// Every finding for `view`, errors first.
pub fn check(view: &ImageView, expect: &Expect) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Per top-level directory outside /usr and /opt: its first file, else the directory itself.
    let mut outside: BTreeMap<&str, &ImagePath> = BTreeMap::new();
    for entry in &view.entries {
        let path = &entry.path;
        let top = path.top();
        if top != "usr" && top != "opt" {
            let is_dir = matches!(entry.kind, EntryKind::Dir { .. });
            let reported_dir = outside.get(top).is_some_and(|p| p.as_str() == top);
            if !outside.contains_key(top) || (reported_dir && !is_dir) {
                outside.insert(top, path);
            }
        }
        match &entry.kind {
            EntryKind::Symlink { target } if target.is_empty() || target.len() > 4095 || target.contains('\0') => {
                findings.push(Finding::error(Some(path), format!("a symlink target of {} bytes", target.len())));
            }
            EntryKind::Symlink { target } => {
                if let Some(problem) = symlink_problem(path, target) {
                    findings.push(Finding::error(Some(path), format!("symlink to {target:?} {problem}")));
                }
            }
            EntryKind::File { mode, .. } | EntryKind::Dir { mode } => {
                if mode & 0o6000 != 0 {
                    findings.push(Finding::warning(Some(path), format!("mode {mode:04o} is setuid/setgid")));
                }
                if mode & 0o002 != 0 {
                    findings.push(Finding::warning(Some(path), format!("mode {mode:04o} is world-writable")));
                }
            }
        }
    }
    for path in outside.values() {
        findings.push(Finding::error(Some(path), "outside /usr and /opt: systemd-sysext does not merge it"));
    }
    if !view.entries.iter().any(|e| matches!(e.kind, EntryKind::File { .. }) && release_name(&e.path).is_none()) {
        findings.push(Finding::warning(None, "the image holds no files besides its extension-release"));
    }
    check_release(view, expect, &mut findings);
    findings.sort_by(|a, b| (a.severity, &a.path).cmp(&(b.severity, &b.path)));
    findings
}

fn check_release(view: &ImageView, expect: &Expect, findings: &mut Vec<Finding>) {
    let dir = ImagePath::parse(extension_release::DIR).expect("a valid path");
    if view.releases.is_empty() {
        findings.push(Finding::error(Some(&dir), "no extension-release file: systemd-sysext refuses the image"));
        return;
    }
    if view.releases.len() > 1 {
        let names: Vec<&str> = view.releases.iter().map(|r| r.name.as_str()).collect();
        findings.push(Finding::warning(Some(&dir), format!("several extension-release files: {}", names.join(", "))));
    }
    let release = match &expect.name {
        Some(name) => match view.releases.iter().find(|r| &r.name == name) {
            Some(release) => release,
            None => {
                findings.push(Finding::error(
                    Some(&dir),
                    format!("extension-release.{name} is missing (the image is named for {name})"),
                ));
                return;
            }
        },
        None => &view.releases[0],
    };
    let path = dir.join(&format!("extension-release.{}", release.name)).expect("a valid path");
    let fields: BTreeMap<String, String> = match extension_release::parse_env(&release.text) {
        Ok(fields) => fields,
        Err(e) => {
            findings.push(Finding::error(Some(&path), format!("unreadable: {e}")));
            return;
        }
    };
    match fields.get("ID").map(String::as_str) {
        None | Some("") => {
            findings.push(Finding::error(Some(&path), "ID= is missing: systemd-sysext refuses the image"))
        }
        Some("_any") => {}
        Some(id) if !fields.contains_key("SYSEXT_LEVEL") && !fields.contains_key("VERSION_ID") => {
            findings.push(Finding::error(Some(&path), format!("ID={id} needs SYSEXT_LEVEL= or VERSION_ID=")));
        }
        Some(_) => {}
    }
    match (fields.get("ARCHITECTURE"), expect.arch) {
        (None, _) => findings
            .push(Finding::warning(Some(&path), "ARCHITECTURE= is missing: the image merges on every architecture")),
        (Some(arch), _) if arch.parse::<Arch>().is_err() => {
            findings
                .push(Finding::error(Some(&path), format!("ARCHITECTURE={arch} is not an architecture bakery knows")));
        }
        (Some(arch), Some(expected)) if arch.parse::<Arch>().ok() != Some(expected) => {
            findings.push(Finding::error(
                Some(&path),
                format!("ARCHITECTURE={arch}, but the image is named for {expected}"),
            ));
        }
        _ => {}
    }
    if let Some(id) = fields.get("SYSEXT_ID").filter(|id| **id != release.name) {
        findings.push(Finding::warning(
            Some(&path),
            format!("SYSEXT_ID={id} differs from the file's name {}", release.name),
        ));
    }
    if let (Some(version), Some(expected)) = (fields.get("SYSEXT_VERSION_ID"), &expect.version)
        && version != expected
    {
        let message = format!("SYSEXT_VERSION_ID={version}, but the image is named for {expected}");
        findings.push(Finding::error(Some(&path), message));
    }
    if !release.relaxed {
        let message = format!("no {STRICT_XATTR}=false xattr: the image merges only when named {}.raw", release.name);
        if expect.versioned_file_name {
            findings.push(Finding::error(Some(&path), message));
        } else {
            findings.push(Finding::warning(Some(&path), message));
        }
    }
}

/// Why a symlink at `path` pointing to `target` is not acceptable, if it is not.
fn symlink_problem(path: &ImagePath, target: &str) -> Option<&'static str> {
    let parent = path.parent();
    let mut parts: Vec<&str> = match &parent {
        Some(parent) if !target.starts_with('/') => parent.components().collect(),
        _ => Vec::new(),
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Some("escapes the image root");
                }
            }
            other => parts.push(other),
        }
    }
    match parts.first() {
        Some(&"usr") | Some(&"opt") => None,
        _ => Some("points outside /usr and /opt"),
    }
}

/// Only the errors.
pub fn errors(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| f.severity == Severity::Error).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry { path: ImagePath::parse(path).unwrap(), kind }
    }

    fn view(entries: Vec<Entry>, release: &str, relaxed: bool) -> ImageView {
        ImageView { entries, releases: vec![ReleaseFile { name: "k".into(), text: release.into(), relaxed }] }
    }

    fn expect() -> Expect {
        Expect {
            name: Some("k".into()),
            version: Some("v1.0.0".into()),
            arch: Some(Arch::X86_64),
            versioned_file_name: true,
        }
    }

    const GOOD: &str = "ID=_any\nARCHITECTURE=x86-64\nSYSEXT_ID=k\nSYSEXT_VERSION_ID=v1.0.0\n";

    #[test]
    fn a_good_image_has_no_findings() {
        let v = view(vec![entry("usr/bin/k", EntryKind::File { mode: 0o755, size: 1, sha256: None })], GOOD, true);
        assert_eq!(check(&v, &expect()), vec![]);
    }

    #[test]
    fn paths_outside_usr_and_opt_and_escaping_links_are_errors() {
        let v = view(
            vec![
                entry("etc/passwd", EntryKind::File { mode: 0o644, size: 1, sha256: None }),
                entry("etc/shadow", EntryKind::File { mode: 0o644, size: 1, sha256: None }),
                entry("usr/bin/a", EntryKind::Symlink { target: "/etc/passwd".into() }),
                entry("usr/bin/b", EntryKind::Symlink { target: "../../../x".into() }),
                entry("usr/bin/c", EntryKind::Symlink { target: "../lib/ok".into() }),
                entry("opt/d", EntryKind::Symlink { target: "/usr/bin/c".into() }),
            ],
            GOOD,
            true,
        );
        let found: Vec<String> = errors(&check(&v, &expect())).iter().map(|f| f.to_string()).collect();
        assert_eq!(
            found,
            [
                "error: /etc/passwd: outside /usr and /opt: systemd-sysext does not merge it",
                "error: /usr/bin/a: symlink to \"/etc/passwd\" points outside /usr and /opt",
                "error: /usr/bin/b: symlink to \"../../../x\" escapes the image root",
            ]
        );
    }

    #[test]
    fn release_mismatches_are_errors() {
        let file = entry("usr/bin/k", EntryKind::File { mode: 0o755, size: 1, sha256: None });
        let bad = "ID=_any\nARCHITECTURE=arm64\nSYSEXT_VERSION_ID=v2\n";
        let messages: Vec<String> =
            check(&view(vec![file.clone()], bad, false), &expect()).iter().map(|f| f.message.clone()).collect();
        assert!(messages.iter().any(|m| m.contains("ARCHITECTURE=arm64")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("SYSEXT_VERSION_ID=v2")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("xattr")), "{messages:?}");
        let none = ImageView { entries: vec![file], releases: vec![] };
        assert!(check(&none, &expect())[0].message.contains("no extension-release"));
    }
}
