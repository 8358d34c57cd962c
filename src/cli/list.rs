//! `bakery list [EXT]`: the known extensions, or one extension's upstream versions.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Global;
use crate::error::bad_input;
use crate::pipeline::versions::{self, Release};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// An extension: list its upstream versions, newest first
    #[arg(value_name = "EXT")]
    pub extension: Option<String>,
    /// Only the newest patch of each supported minor (what a daily build makes)
    #[arg(long, requires = "extension")]
    pub latest: bool,
    /// Include pre-releases
    #[arg(long, requires = "extension")]
    pub pre: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Known {
    name: String,
    description: String,
    origin: String,
}

#[derive(Serialize)]
struct LatestOfMinor {
    minor: String,
    version: String,
}

pub fn run(global: &Global, args: &ListArgs) -> Result<()> {
    let settings = global.settings()?;
    let Some(name) = &args.extension else {
        let mut known = Vec::new();
        let mut broken = Vec::new();
        for source in settings.catalog.sources() {
            match source.recipe() {
                Ok(recipe) => known.push(Known {
                    name: source.name.clone(),
                    description: recipe.description,
                    origin: source.origin.to_string(),
                }),
                Err(e) => broken.push(crate::error::describe(&e)),
            }
        }
        out!("{}", if args.json { json(&known)? } else { table(&known) })?;
        if !broken.is_empty() {
            return Err(bad_input(format!("invalid recipes:\n  {}", broken.join("\n  "))));
        }
        return Ok(());
    };
    let recipe = settings.catalog.get(name)?.recipe()?;
    let spec = &recipe.version;
    if args.latest {
        let newest = super::until_interrupted(async {
            let http = settings.http()?;
            versions::newest_per_minor(&http, &settings.mirrors, spec, name, spec.supported_minors).await
        })?;
        let latest: Vec<LatestOfMinor> = newest
            .into_iter()
            .map(|(minor, release)| LatestOfMinor { minor: minor.to_string(), version: release.version })
            .collect();
        let text: String = latest.iter().map(|l| format!("{}\n", l.version)).collect();
        out!("{}", if args.json { json(&latest)? } else { text })?;
        return Ok(());
    }
    let releases = super::until_interrupted(async {
        let http = settings.http()?;
        versions::list(&http, &settings.mirrors, spec, name).await
    })?;
    let shown: Vec<&Release> = releases.iter().filter(|r| args.pre || !r.prerelease).collect();
    let text: String = shown.iter().map(|r| format!("{}\n", r.version)).collect();
    out!("{}", if args.json { json(&shown)? } else { text })?;
    Ok(())
}

fn json(value: &impl Serialize) -> Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Aligned columns: name, origin, description.
fn table(known: &[Known]) -> String {
    let name_width = known.iter().map(|k| k.name.len()).max().unwrap_or(0).max(4);
    let origin_width = known.iter().map(|k| k.origin.len()).max().unwrap_or(0).max(6);
    let mut out = format!("{:name_width$}  {:origin_width$}  DESCRIPTION\n", "NAME", "ORIGIN");
    for k in known {
        out.push_str(&format!("{:name_width$}  {:origin_width$}  {}\n", k.name, k.origin, k.description));
    }
    out
}
