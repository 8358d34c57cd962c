//! Resolve: recipe + request → every URL, checksum source, option and file of the image. Pure:
//! no network, so `--dry-run` prints exactly this.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};

use super::render::Renderer;
use crate::error::bad_input;
use crate::model::{Arch, Compression, ExtName, ExtVersion, Format, ImagePath, Mirrors, OsTarget, Sha256};
use crate::recipe::{ArchiveFormat, ChecksumFormat, FILES_DIR, Mode, RECIPE_FILE, Recipe, RecipeSource, TEMPLATES_DIR};

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub extension: String,
    pub version: String,
    pub arch: Arch,
    /// `--set NAME=VALUE` overrides, in command-line order.
    pub options: Vec<(String, String)>,
    pub os: OsTarget,
    pub format: Format,
    pub compression: Compression,
    /// Modification time of every entry (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u32,
}

/// The fully resolved build: the input of fetch and plan, and what `--dry-run` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resolved {
    pub extension: ExtName,
    pub version: ExtVersion,
    pub arch: Arch,
    pub os: OsTarget,
    /// `<ext>-<version>-<arch>.raw`
    pub image: String,
    pub format: Format,
    pub compression: Compression,
    pub source_date_epoch: u32,
    /// `built in` or the recipe folder.
    pub recipe: String,
    pub options: BTreeMap<String, String>,
    pub reload_manager: bool,
    pub restart_units: Vec<String>,
    pub health: BTreeMap<String, crate::model::manifest::HealthRule>,
    pub artifacts: Vec<ResolvedArtifact>,
    pub files: Vec<ResolvedFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResolvedArtifact {
    pub name: String,
    /// The upstream URL, as the recipe names it.
    pub url: String,
    /// What is actually fetched (after mirrors).
    pub fetch_url: String,
    pub checksum: ResolvedChecksum,
    pub install: ResolvedInstall,
}

impl ResolvedArtifact {
    /// The upstream URLs it fetches: the artifact's and its checksum file's.
    pub fn upstream_urls(&self) -> Vec<&str> {
        match &self.checksum {
            ResolvedChecksum::File { url, .. } => vec![self.url.as_str(), url.as_str()],
            ResolvedChecksum::Pinned { .. } => vec![self.url.as_str()],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ResolvedChecksum {
    /// A published checksum file.
    File {
        url: String,
        fetch_url: String,
        format: ChecksumFormat,
        /// The name to look up in `sha256sum`-style files.
        file_name: String,
    },
    /// A digest written in the recipe.
    Pinned { sha256: Sha256 },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ResolvedInstall {
    File { path: ImagePath, mode: Mode },
    Extract { format: ArchiveFormat, rules: Vec<ResolvedExtract> },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResolvedExtract {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub strip_components: usize,
    pub to: ImagePath,
    pub mode: Option<Mode>,
}

/// A static file or rendered template, content included.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResolvedFile {
    pub path: ImagePath,
    pub mode: Mode,
    /// `template kubelet.service` or `file containerd/config.toml`.
    pub origin: String,
    pub size: usize,
    pub sha256: Sha256,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// Resolves `request` against `recipe` (parsed from `source`).
pub fn resolve(source: &RecipeSource, recipe: &Recipe, request: &Request, mirrors: &Mirrors) -> Result<Resolved> {
    let version = super::versions::exact(&recipe.version, recipe.name.as_str(), &request.version)?;
    let arch_names = recipe.arch_names();
    let upstream_arch = arch_names.get(&request.arch).ok_or_else(|| {
        let supported: Vec<String> = arch_names.keys().map(|a| a.to_string()).collect();
        bad_input(format!("{} is not built for {}: supported are {}", recipe.name, request.arch, supported.join(", ")))
    })?;
    let options = effective_options(recipe, &request.options)?;
    let number = version.as_str().strip_prefix(recipe.version.prefix.as_str()).unwrap_or(version.as_str());
    let context = json!({
        "name": recipe.name.as_str(),
        "version": version.as_str(),
        "version_number": number,
        "arch": request.arch.systemd_name(),
        "goarch": request.arch.goarch(),
        "uname_arch": request.arch.uname(),
        "upstream_arch": upstream_arch,
        "os": request.os.to_string(),
        "options": options,
    });
    let renderer = Renderer::default();
    let recipe_path = source.display_path(RECIPE_FILE);
    let at = |what: String| format!("{recipe_path} {what}");

    let mut artifacts = Vec::new();
    for artifact in &recipe.artifacts {
        let field = |f: &str| at(format!("artifacts[{}].{f}", artifact.name));
        let url = renderer.render(&field("url"), &artifact.url, &context)?;
        let fetch_url = mirrors.resolve(&url)?;
        let file_name = url_file_name(&url);
        let mut artifact_context = context.clone();
        artifact_context["url"] = Value::from(url.as_str());
        artifact_context["file"] = Value::from(file_name.as_str());
        let checksum = match (&artifact.checksum.url, &artifact.checksum.sha256) {
            (Some(template), _) => {
                let checksum_url = renderer.render(&field("checksum.url"), template, &artifact_context)?;
                ResolvedChecksum::File {
                    fetch_url: mirrors.resolve(&checksum_url)?,
                    url: checksum_url,
                    format: artifact.checksum.format.expect("checked with the recipe"),
                    file_name: file_name.clone(),
                }
            }
            (None, Some(template)) => {
                let text = renderer.render(&field("checksum.sha256"), template, &artifact_context)?;
                let sha256 =
                    text.trim().parse().map_err(|e| bad_input(format!("{}: {e}", field("checksum.sha256"))))?;
                ResolvedChecksum::Pinned { sha256 }
            }
            (None, None) => unreachable!("checked with the recipe"),
        };
        let install = if let Some(install) = &artifact.install {
            let path = renderer.render(&field("install.path"), &install.path, &context)?;
            ResolvedInstall::File { path: image_path(&field("install.path"), &path)?, mode: install.mode }
        } else {
            let mut rules = Vec::new();
            let mut format = None;
            for rule in &artifact.extract {
                format = rule.format.or_else(|| ArchiveFormat::from_url(&url)).or(format);
                let to = renderer.render(&field("extract.to"), &rule.to, &context)?;
                rules.push(ResolvedExtract {
                    include: rule.include.clone(),
                    exclude: rule.exclude.clone(),
                    strip_components: rule.strip_components,
                    to: image_path(&field("extract.to"), &to)?,
                    mode: rule.mode,
                });
            }
            let format =
                format.ok_or_else(|| bad_input(format!("{}: cannot tell the archive format", field("extract"))))?;
            ResolvedInstall::Extract { format, rules }
        };
        artifacts.push(ResolvedArtifact { name: artifact.name.clone(), url, fetch_url, checksum, install });
    }
    // the version source counts: `latest`, `1.32` and a missing version's nearest ones are looked up
    let sources = super::versions::source_urls(&recipe.version);
    let mut upstreams: Vec<&str> = artifacts.iter().flat_map(ResolvedArtifact::upstream_urls).collect();
    upstreams.extend(sources.iter().map(String::as_str));
    mirrors.warn_unused(&upstreams);

    let mut files = Vec::new();
    for (dir, specs) in [(FILES_DIR, &recipe.files), (TEMPLATES_DIR, &recipe.templates)] {
        for spec in specs {
            let rel = format!("{dir}/{}", crate::recipe::catalog::clean_relative(&spec.source).unwrap_or_default());
            let raw = source.file(&rel).ok_or_else(|| bad_input(format!("{}: missing", source.display_path(&rel))))?;
            let content = if dir == TEMPLATES_DIR {
                let text = std::str::from_utf8(raw)
                    .map_err(|e| bad_input(format!("{}: not UTF-8: {e}", source.display_path(&rel))))?;
                renderer.render(&source.display_path(&rel), text, &context)?.into_bytes()
            } else {
                raw.to_vec()
            };
            let field = at(format!("{dir}[{}].path", spec.source));
            let path = renderer.render(&field, &spec.path, &context)?;
            let kind = if dir == TEMPLATES_DIR { "template" } else { "file" };
            files.push(ResolvedFile {
                path: image_path(&field, &path)?,
                mode: spec.mode,
                origin: format!("{kind} {}", spec.source),
                size: content.len(),
                sha256: Sha256::of(&content),
                content,
            });
        }
    }

    Ok(Resolved {
        image: format!("{}-{}-{}.raw", recipe.name, version, request.arch),
        extension: recipe.name.clone(),
        version,
        arch: request.arch,
        os: request.os.clone(),
        format: request.format,
        compression: request.compression,
        source_date_epoch: request.source_date_epoch,
        recipe: source.origin.to_string(),
        options,
        reload_manager: recipe.reload_manager,
        restart_units: recipe.restart_units.clone(),
        health: recipe.health.clone(),
        artifacts,
        files,
    })
}

/// Defaults overridden by `--set`; unknown names list the known ones.
fn effective_options(recipe: &Recipe, overrides: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut options: BTreeMap<String, String> =
        recipe.options.iter().map(|(k, v)| (k.clone(), v.default.clone())).collect();
    for (key, value) in overrides {
        if !options.contains_key(key) {
            let known: Vec<&str> = recipe.options.keys().map(String::as_str).collect();
            let known =
                if known.is_empty() { "it has none".to_string() } else { format!("known: {}", known.join(", ")) };
            return Err(bad_input(format!("unknown option {key:?} for {} ({known})", recipe.name)));
        }
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad_input(format!(
                "invalid value {value:?} for option {key}: it must be non-empty without spaces"
            )));
        }
        options.insert(key.clone(), value.clone());
    }
    Ok(options)
}

fn image_path(field: &str, path: &str) -> Result<ImagePath> {
    ImagePath::parse(path).map_err(|e| bad_input(format!("{field}: {e}")))
}

/// The last path segment of a URL (`kubelet`, `cni-plugins-linux-amd64-v1.6.2.tgz`).
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Catalog;

    fn request(version: &str, arch: Arch) -> Request {
        Request {
            extension: "kubernetes".into(),
            version: version.into(),
            arch,
            options: vec![],
            os: OsTarget::Any,
            format: Format::Squashfs,
            compression: Compression::Gzip,
            source_date_epoch: 0,
        }
    }

    fn resolve_kubernetes(request: &Request, mirrors: &Mirrors) -> Result<Resolved> {
        let catalog = Catalog::builtin();
        let source = catalog.get("kubernetes").unwrap();
        resolve(source, &source.recipe().unwrap(), request, mirrors)
    }

    #[test]
    fn kubernetes_resolves_upstream_urls_per_arch() {
        let resolved = resolve_kubernetes(&request("v1.32.0", Arch::Arm64), &Mirrors::default()).unwrap();
        assert_eq!(resolved.image, "kubernetes-v1.32.0-arm64.raw");
        let kubelet = &resolved.artifacts[0];
        assert_eq!(kubelet.url, "https://dl.k8s.io/release/v1.32.0/bin/linux/arm64/kubelet");
        assert_eq!(kubelet.fetch_url, kubelet.url);
        match &kubelet.checksum {
            ResolvedChecksum::File { url, format, .. } => {
                assert_eq!(url, "https://dl.k8s.io/release/v1.32.0/bin/linux/arm64/kubelet.sha256");
                assert_eq!(*format, ChecksumFormat::Digest);
            }
            other => panic!("{other:?}"),
        }
        let cni = resolved.artifacts.iter().find(|a| a.name == "cni-plugins").unwrap();
        let cni_version = &resolved.options["cni_version"];
        assert_eq!(
            cni.url,
            format!(
                "https://github.com/containernetworking/plugins/releases/download/{cni_version}/cni-plugins-linux-arm64-{cni_version}.tgz"
            )
        );
        assert!(resolved.files.iter().any(|f| f.path.as_str() == "usr/lib/systemd/system/kubelet.service"));
    }

    #[test]
    fn mirrors_and_options_apply() {
        let mirrors = Mirrors::new(["https://dl.k8s.io=http://127.0.0.1:9/k8s".parse().unwrap()]);
        let mut req = request("1.32.0", Arch::X86_64);
        req.options.push(("cni_version".into(), "v9.9.9".into()));
        let resolved = resolve_kubernetes(&req, &mirrors).unwrap();
        assert_eq!(resolved.version.as_str(), "v1.32.0", "the prefix is added");
        assert_eq!(resolved.artifacts[0].fetch_url, "http://127.0.0.1:9/k8s/release/v1.32.0/bin/linux/amd64/kubelet");
        assert!(resolved.artifacts[3].url.contains("/v9.9.9/cni-plugins-linux-amd64-v9.9.9.tgz"));
    }

    #[test]
    fn bad_versions_and_options_are_bad_input() {
        for bad in ["latest", "v1.32", "v1.32.0/../x", "vv1.2.3", "1.2.3.4"] {
            let err = resolve_kubernetes(&request(bad, Arch::X86_64), &Mirrors::default()).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{bad}: {err:#}");
            assert!(err.to_string().contains("version"), "{err:#}");
        }
        let mut req = request("v1.32.0", Arch::X86_64);
        req.options.push(("nope".into(), "1".into()));
        let err = resolve_kubernetes(&req, &Mirrors::default()).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("cni_version"), "{err}");
    }
}
