//! Components and node bootstrap: a node described as versioned components (files, templates,
//! services, scripts, sysext images) that a release lists, installed and upgraded declaratively.
//!
//! repository (where components come from) → catalog (layered, a release resolved for a role)
//! → metadata and template (what templates see) → render (steps for this node) → plan (pure:
//! what changes) → apply (act, record as each completes).

pub mod apply;
pub mod catalog;
pub mod metadata;
pub mod model;
pub mod plan;
pub mod render;
pub mod repository;
pub mod template;

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use self::catalog::Catalog;
use self::plan::{Plan, Rendered};
use self::repository::RepoSpec;
use self::template::Templates;
use crate::model::Mirrors;
use crate::node::config::NodeConfig;
use crate::node::observe::Host;
use crate::node::records::Records;
use crate::pipeline::http::Http;

/// What to bootstrap.
pub struct Request<'a> {
    pub release: &'a str,
    /// The node's role; else the metadata's `role`, else `worker`.
    pub role: Option<&'a str>,
    pub metadata: metadata::Source<'a>,
    pub sets: &'a [String],
    /// Repositories on top of the built-in one and the node config's.
    pub repositories: &'a [String],
}

/// The built-in repository, the node config's, then the request's, loaded.
pub async fn catalog(config: &NodeConfig, extra: &[String], http: &Http, mirrors: &Mirrors) -> Result<Catalog> {
    let mut specs = vec![RepoSpec::BuiltIn];
    for text in config.components.iter().chain(extra) {
        specs.push(text.parse()?);
    }
    let mut layers = Vec::new();
    for spec in specs {
        let files = repository::load(&spec, http, mirrors).await.with_context(|| format!("components {spec}"))?;
        layers.push((spec.to_string(), files));
    }
    Catalog::layer(layers)
}

/// Everything up to the plan: nothing on the node changes.
pub async fn prepare(
    root: &Path,
    config: &NodeConfig,
    http: &Http,
    mirrors: &Mirrors,
    request: &Request<'_>,
) -> Result<Plan> {
    let catalog = catalog(config, request.repositories, http, mirrors).await?;
    let metadata = metadata::load(root, request.metadata.clone(), request.sets, http, mirrors).await?;
    let role = match request.role {
        Some(role) => role.to_string(),
        None => metadata.get("role").and_then(Value::as_str).unwrap_or("worker").to_string(),
    };
    let host = Host::read(root)?;
    let scope = render::Scope { metadata: &metadata, release: request.release, arch: host.arch, role: &role };
    let templates = Templates::default();
    let mut wanted = Vec::new();
    for component in catalog.resolve(request.release, &role)? {
        let (install, uninstall) = render::render(&templates, &component, &scope)?;
        wanted.push(Rendered { name: component.name, version: component.version, install, uninstall });
    }
    let records = Records::load(root)?;
    Ok(plan::plan(request.release, &role, &records.components, &records.pending_restarts, wanted))
}
