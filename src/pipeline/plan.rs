//! Plan: the image's tree (path → directory, file or symlink) from the resolved build and the
//! fetched artifacts, plus the extension-release file and the manifest. Pure.

use std::collections::BTreeMap;

use anyhow::Result;

use super::extract::EntryKind;
use super::fetch::Fetched;
use super::resolve::{Resolved, ResolvedExtract, ResolvedInstall};
use crate::error::bad_input;
use crate::model::extension_release::STRICT_XATTR;
use crate::model::manifest::{self, ManifestArtifact};
use crate::model::tree::{Content, Node, Tree, Xattr};
use crate::model::{ExtensionRelease, ImagePath, Manifest, Sha256};
use crate::recipe::Mode;

/// The planned image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub tree: Tree,
}

/// Lays out the image of `resolved` from what `fetched` holds. `generator` names the tool.
pub fn plan(resolved: &Resolved, fetched: &Fetched, generator: &str) -> Result<Planned> {
    let mut tree = Tree::default();
    let mut manifest_artifacts = Vec::new();
    for artifact in &resolved.artifacts {
        let got = fetched
            .artifacts
            .get(&artifact.name)
            .ok_or_else(|| anyhow::anyhow!("artifact {} was not fetched", artifact.name))?;
        let origin = format!("artifact {}", artifact.name);
        let mut installs = Vec::new();
        match &artifact.install {
            ResolvedInstall::File { path, mode } => {
                let content = Content::Blob { sha256: got.sha256, size: got.size };
                tree.add(path.clone(), Node::File { content, mode: *mode, xattrs: vec![] }, &origin)?;
                installs.push(path.to_string());
            }
            ResolvedInstall::Extract { rules, .. } => {
                let index = got
                    .archive
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("artifact {} was not unpacked", artifact.name))?;
                for rule in rules {
                    let picked = pick(&artifact.name, rule, &index.entries)?;
                    for (path, node) in picked {
                        installs.push(path.to_string());
                        tree.add(path, node, &origin)?;
                    }
                }
            }
        }
        manifest_artifacts.push(ManifestArtifact {
            name: artifact.name.clone(),
            url: artifact.url.clone(),
            sha256: got.sha256.to_string(),
            size: got.size,
            installs,
        });
    }
    for file in &resolved.files {
        let content = Content::Inline(file.content.clone());
        tree.add(file.path.clone(), Node::File { content, mode: file.mode, xattrs: vec![] }, &file.origin)?;
    }

    let release = ExtensionRelease {
        os: resolved.os.clone(),
        architecture: resolved.arch,
        sysext_id: resolved.extension.clone(),
        sysext_version_id: resolved.version.clone(),
        reload_manager: resolved.reload_manager,
    };
    let strict = Xattr { name: STRICT_XATTR.to_string(), value: b"false".to_vec() };
    let release_file = Node::File {
        content: Content::Inline(release.render().into_bytes()),
        mode: Mode::regular(),
        xattrs: vec![strict],
    };
    tree.add(
        ImagePath::parse(&ExtensionRelease::path(&resolved.extension)).expect("a valid path"),
        release_file,
        "bakery",
    )?;

    let manifest = Manifest {
        schema: manifest::SCHEMA,
        extension: resolved.extension.to_string(),
        version: resolved.version.to_string(),
        arch: resolved.arch.to_string(),
        os: resolved.os.to_string(),
        options: resolved.options.clone(),
        reload_manager: resolved.reload_manager,
        restart_units: resolved.restart_units.clone(),
        health: resolved.health.clone(),
        artifacts: manifest_artifacts,
        files: file_digests(&tree),
        setuid: setuid_paths(&tree),
        generator: generator.to_string(),
    };
    let manifest_file =
        Node::File { content: Content::Inline(manifest.to_json().into_bytes()), mode: Mode::regular(), xattrs: vec![] };
    tree.add(ImagePath::parse(&manifest::path(&resolved.extension)).expect("a valid path"), manifest_file, "bakery")?;
    Ok(Planned { tree })
}

/// The digest of every regular file planned so far (all but the manifest, which comes last).
fn file_digests(tree: &Tree) -> BTreeMap<String, Sha256> {
    let digest = |content: &Content| match content {
        Content::Blob { sha256, .. } => *sha256,
        Content::Inline(bytes) => Sha256::of(bytes),
    };
    tree.nodes()
        .filter_map(|(path, node)| match node {
            Node::File { content, .. } => Some((path.as_str().to_string(), digest(content))),
            _ => None,
        })
        .collect()
}

/// Files and directories whose planned mode is setuid or setgid.
fn setuid_paths(tree: &Tree) -> Vec<String> {
    tree.nodes()
        .filter(|(_, node)| match node {
            Node::File { mode, .. } | Node::Dir { mode } => mode.0 & 0o6000 != 0,
            Node::Symlink { .. } => false,
        })
        .map(|(path, _)| path.as_str().to_string())
        .collect()
}

/// The archive entries a rule selects, at their image paths.
fn pick(
    artifact: &str,
    rule: &ResolvedExtract,
    entries: &[super::extract::ArchiveEntry],
) -> Result<Vec<(ImagePath, Node)>> {
    let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let compile = |patterns: &[String]| -> Result<Vec<glob::Pattern>> {
        patterns
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| bad_input(format!("artifact {artifact}: invalid glob {p:?}: {e}")))
            })
            .collect()
    };
    let (include, exclude) = (compile(&rule.include)?, compile(&rule.exclude)?);
    let mut picked = Vec::new();
    for entry in entries {
        if matches!(entry.kind, EntryKind::Dir) {
            continue;
        }
        let selected = include.iter().any(|p| p.matches_with(&entry.path, options))
            && !exclude.iter().any(|p| p.matches_with(&entry.path, options));
        if !selected {
            continue;
        }
        let rest: Vec<&str> = entry.path.split('/').skip(rule.strip_components).collect();
        if rest.is_empty() {
            continue;
        }
        let path = rule.to.join(&rest.join("/")).map_err(|e| bad_input(format!("artifact {artifact}: {e}")))?;
        let node = match &entry.kind {
            EntryKind::File { sha256, size, mode } => Node::File {
                content: Content::Blob { sha256: *sha256, size: *size },
                mode: rule.mode.unwrap_or(Mode(*mode & 0o777)),
                xattrs: vec![],
            },
            EntryKind::Symlink { target } => Node::Symlink { target: target.clone() },
            EntryKind::Other { what } => {
                return Err(bad_input(format!(
                    "artifact {artifact}: archive entry {} is a {what}, which an image cannot hold",
                    entry.path
                )));
            }
            EntryKind::Dir => unreachable!("skipped above"),
        };
        picked.push((path, node));
    }
    if picked.is_empty() {
        let listed: Vec<&str> = entries.iter().take(12).map(|e| e.path.as_str()).collect();
        return Err(bad_input(format!(
            "artifact {artifact}: no archive entry matches include {:?} exclude {:?} (the archive has {}{})",
            rule.include,
            rule.exclude,
            listed.join(", "),
            if entries.len() > listed.len() { ", ..." } else { "" }
        )));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> ImagePath {
        ImagePath::parse(p).unwrap()
    }

    fn file() -> Node {
        Node::File { content: Content::Inline(b"x".to_vec()), mode: Mode::regular(), xattrs: vec![] }
    }

    #[test]
    fn adding_creates_parents_and_refuses_conflicts() {
        let mut tree = Tree::default();
        tree.add(path("usr/bin/kubelet"), file(), "artifact kubelet").unwrap();
        assert_eq!(tree.get("usr/bin"), Some(&Node::Dir { mode: Mode(0o755) }));
        let err = tree.add(path("usr/bin/kubelet"), file(), "artifact other").unwrap_err().to_string();
        assert!(err.contains("artifact other") && err.contains("artifact kubelet"), "{err}");
        let err = tree.add(path("usr/bin/kubelet/x"), file(), "artifact third").unwrap_err().to_string();
        assert!(err.contains("is a file"), "{err}");
    }

    #[test]
    fn extract_rules_filter_strip_and_override_modes() {
        let entry = |p: &str, mode| super::super::extract::ArchiveEntry {
            path: p.into(),
            kind: EntryKind::File { sha256: Sha256::of(p.as_bytes()), size: 1, mode },
        };
        let entries = vec![entry("bridge", 0o755), entry("LICENSE", 0o644), entry("sub/x", 0o700)];
        let rule = ResolvedExtract {
            include: vec!["*".into()],
            exclude: vec!["LICENSE".into()],
            strip_components: 0,
            to: path("usr/local/bin/cni"),
            mode: Some(Mode(0o755)),
        };
        let picked = pick("cni", &rule, &entries).unwrap();
        let paths: Vec<String> = picked.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(paths, ["/usr/local/bin/cni/bridge"], "'*' does not cross '/' and LICENSE is excluded");

        let rule = ResolvedExtract {
            include: vec!["sub/*".into()],
            exclude: vec![],
            strip_components: 1,
            to: path("usr/bin"),
            mode: None,
        };
        let picked = pick("x", &rule, &entries).unwrap();
        assert_eq!(picked[0].0.as_str(), "usr/bin/x");
        assert!(matches!(picked[0].1, Node::File { mode: Mode(0o700), .. }));

        let rule = ResolvedExtract {
            include: vec!["nothing*".into()],
            exclude: vec![],
            strip_components: 0,
            to: path("usr/bin"),
            mode: None,
        };
        let err = pick("cni", &rule, &entries).unwrap_err().to_string();
        assert!(err.contains("no archive entry matches") && err.contains("bridge"), "{err}");
    }
}
