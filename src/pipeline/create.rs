//! `bakery create`: the whole pipeline for one image, from recipe to published file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use super::cache::Cache;
use super::fetch::{self, Http, Progress};
use super::plan::{self, Planned};
use super::publish::{self, Published};
use super::resolve::{self, Request, Resolved};
use super::validate::{self, Expect, Finding, ImageView};
use crate::config::Settings;
use crate::error::bad_input;
use crate::squashfs::{self, PackOptions, PackStats};
use crate::util::{atomic, human_bytes};

/// The tool that builds images, as recorded in manifests.
pub const GENERATOR: &str = concat!("bakery ", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct CreateJob {
    pub request: Request,
    pub output: PathBuf,
    pub force: bool,
}

/// A built and published image.
#[derive(Clone, Debug)]
pub struct Built {
    pub published: Published,
    pub pack: PackStats,
    pub warnings: Vec<Finding>,
}

/// Resolves `request` without any network access (what `--dry-run` prints).
pub fn resolve(settings: &Settings, request: &Request) -> Result<Resolved> {
    let source = settings.catalog.get(&request.extension)?;
    let recipe = source.recipe()?;
    resolve::resolve(source, &recipe, request, &settings.mirrors)
}

/// Builds and publishes one image.
pub async fn create(settings: &Settings, job: &CreateJob) -> Result<Built> {
    let started = Instant::now();
    let resolved = resolve(settings, &job.request)?;
    let dest = job.output.join(&resolved.image);
    if dest.exists() && !job.force {
        return Err(bad_input(format!("{} already exists (use --force to replace it)", dest.display())));
    }
    tracing::info!("building {} from the {} recipe", resolved.image, resolved.recipe);

    let cache = Cache::open(&settings.cache_dir)?;
    let http = Http::new(settings.retry)?;
    let fetched = fetch::fetch_all(&http, &cache, &resolved, &Progress::new(settings.progress_bars)).await?;

    let Planned { tree, .. } = plan::plan(&resolved, &fetched, GENERATOR)?;
    let expect = Expect {
        name: Some(resolved.extension.to_string()),
        version: Some(resolved.version.to_string()),
        arch: Some(resolved.arch),
        versioned_file_name: true,
    };
    let findings = validate::check(&ImageView::of_tree(&tree), &expect);
    let errors = validate::errors(&findings);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|f| f.describe()).collect();
        return Err(bad_input(format!("the planned image is invalid:\n  {}", list.join("\n  "))));
    }
    let warnings: Vec<Finding> = findings.into_iter().collect();
    for warning in &warnings {
        tracing::warn!("{warning}");
    }

    std::fs::create_dir_all(&job.output).with_context(|| format!("creating {}", job.output.display()))?;
    let pack_started = Instant::now();
    let options = PackOptions::new(resolved.compression, resolved.source_date_epoch);
    // The temporary image belongs to this future: if it is dropped (interrupted), the file is
    // removed even while the packing thread still holds a handle to it.
    let tmp = atomic::temp_beside(&dest)?;
    let mut file = tmp.as_file().try_clone().context("opening the temporary image")?;
    let pack = tokio::task::spawn_blocking({
        let (dest, cache) = (dest.clone(), cache.clone());
        move || {
            squashfs::pack(&tree, &|digest| cache.blob_path(digest), &options, &mut file)
                .with_context(|| format!("packing {}", dest.display()))
        }
    })
    .await
    .context("the packing task panicked")??;
    let pack_time = pack_started.elapsed();
    let published = tokio::task::spawn_blocking({
        let output = job.output.clone();
        let image = resolved.image.clone();
        move || publish::publish(&output, &image, tmp)
    })
    .await
    .context("the publishing task panicked")??;
    tracing::info!(
        "wrote {} ({}, {} compressed in {:.1} s; {:.1} s in all)",
        published.image.display(),
        human_bytes(published.size),
        resolved.compression,
        pack_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(Built { published, pack, warnings })
}
