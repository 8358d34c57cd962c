//! Repositories layered into one catalog (later ones override a release of the same version and
//! a component of the same name, wholesale), and a release resolved for a node's role.

use std::collections::BTreeMap;

use anyhow::Result;

use super::model::{self, Component, Release};
use super::repository::Files;
use crate::error::bad_input;

/// A component with its files (paths relative to its folder) and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub component: Component,
    pub files: Files,
    pub origin: String,
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub releases: BTreeMap<String, (Release, String)>,
    pub components: BTreeMap<String, Loaded>,
}

/// One component a release wants on this node.
#[derive(Clone, Debug)]
pub struct Wanted {
    pub name: String,
    /// The full version (`~N` expanded).
    pub version: String,
    pub loaded: Loaded,
}

impl Catalog {
    /// Layers `(origin, files)` repositories, the first at the bottom.
    pub fn layer(repositories: Vec<(String, Files)>) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for (origin, files) in repositories {
            if let Some(bytes) = files.get("releases.yaml") {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| bad_input(format!("{origin}/releases.yaml: not UTF-8")))?;
                let map = model::parse_releases(text).map_err(|e| bad_input(format!("{origin}/releases.yaml: {e}")))?;
                for (version, release) in map.releases {
                    catalog.releases.insert(version, (release, origin.clone()));
                }
            }
            let mut folders: BTreeMap<String, Files> = BTreeMap::new();
            for (path, bytes) in &files {
                if let Some((folder, rest)) = path.split_once('/')
                    && !rest.is_empty()
                {
                    folders.entry(folder.to_string()).or_default().insert(rest.to_string(), bytes.clone());
                }
            }
            for (name, files) in folders {
                let Some(bytes) = files.get("component.yaml") else { continue };
                let where_ = format!("{origin}/{name}/component.yaml");
                let text = std::str::from_utf8(bytes).map_err(|_| bad_input(format!("{where_}: not UTF-8")))?;
                let component = model::parse_component(&name, text).map_err(|e| bad_input(format!("{where_}: {e}")))?;
                catalog.components.insert(name, Loaded { component, files, origin: origin.clone() });
            }
        }
        Ok(catalog)
    }

    /// The releases, oldest first in systemd's order.
    pub fn release_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self.releases.keys().cloned().collect();
        versions.sort_by(|a, b| crate::model::version::compare(a, b));
        versions
    }

    /// The components `release` wants on a node with `role`, in release order.
    pub fn resolve(&self, release: &str, role: &str) -> Result<Vec<Wanted>> {
        let Some((entries, origin)) = self.releases.get(release) else {
            return Err(bad_input(format!(
                "release {release} is not in the release map (it has {})",
                self.release_versions().join(", ")
            )));
        };
        let mut wanted = Vec::new();
        for entry in &entries.components {
            if !entry.tags.is_empty() && !entry.tags.iter().any(|t| t == role) {
                continue;
            }
            let loaded = self.components.get(&entry.name).ok_or_else(|| {
                bad_input(format!(
                    "release {release} (from {origin}) names component {}, which no repository has",
                    entry.name
                ))
            })?;
            let version = model::expand(&entry.version, release);
            loaded.component.steps(&version).map_err(|e| bad_input(format!("release {release}: {e}")))?;
            if wanted.iter().any(|w: &Wanted| w.name == entry.name) {
                return Err(bad_input(format!("release {release} lists {} twice", entry.name)));
            }
            wanted.push(Wanted { name: entry.name.clone(), version, loaded: loaded.clone() });
        }
        Ok(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect()
    }

    const COMPONENT: &str = "name: NAME\nversions:\n  \"*\":\n    install: []\n";

    #[test]
    fn layers_override_and_releases_resolve_by_role() {
        let base = files(&[
            (
                "releases.yaml",
                "releases:\n  v1.0.0:\n    components:\n      - { name: a, version: \"~1\" }\n      - { name: b, version: \"2\", tags: [worker] }\n",
            ),
            ("a/component.yaml", &COMPONENT.replace("NAME", "a")),
            ("b/component.yaml", &COMPONENT.replace("NAME", "b")),
        ]);
        let local = files(&[("a/component.yaml", "name: a\ndescription: local\nversions:\n  \"*\": {}\n")]);
        let catalog = Catalog::layer(vec![("built in".into(), base), ("local".into(), local)]).unwrap();
        assert_eq!(catalog.components["a"].component.description, "local");
        let worker: Vec<(String, String)> =
            catalog.resolve("v1.0.0", "worker").unwrap().into_iter().map(|w| (w.name, w.version)).collect();
        assert_eq!(worker, [("a".to_string(), "v1.0.0~1".to_string()), ("b".to_string(), "2".to_string())]);
        assert_eq!(catalog.resolve("v1.0.0", "control-plane").unwrap().len(), 1, "b is for workers");
        let err = catalog.resolve("v9", "worker").unwrap_err().to_string();
        assert!(err.contains("release v9 is not in the release map (it has v1.0.0)"), "{err}");
    }

    #[test]
    fn a_release_naming_an_unknown_component_is_an_error() {
        let repo = files(&[("releases.yaml", "releases:\n  r1:\n    components: [{ name: ghost, version: \"1\" }]\n")]);
        let catalog = Catalog::layer(vec![("repo".into(), repo)]).unwrap();
        let err = catalog.resolve("r1", "worker").unwrap_err().to_string();
        assert!(err.contains("component ghost, which no repository has"), "{err}");
        let broken = files(&[("x/component.yaml", "name: x\nversions: {}\nbogus: 1\n")]);
        let err = Catalog::layer(vec![("repo".into(), broken)]).unwrap_err().to_string();
        assert!(err.starts_with("repo/x/component.yaml:") && err.contains("bogus"), "{err}");
    }
}
