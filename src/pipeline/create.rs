//! `bakery create`: the whole pipeline for one image, from recipe to published file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::cache::Cache;
use super::fetch::{self, Progress};
use super::http::Http;
use super::inputs::{self, Inputs};
use super::plan::{self, Planned};
use super::progress::{self, PackProgress};
use super::publish::{self, Published};
use super::resolve::{self, Request, Resolved};
use super::validate::{self, Expect, Finding, ImageView};
use super::versions::{self, Wanted};
use crate::config::Settings;
use crate::ddi::sign::Signer;
use crate::error::bad_input;
use crate::image::pack::{self, PackOptions, PackStats};
use crate::model::Sha256;
use crate::recipe::{RECIPE_FILE, Recipe};
use crate::util::{atomic, human_bytes};

/// The tool that builds images, as recorded in manifests.
pub const GENERATOR: &str = concat!("bakery ", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct CreateJob {
    pub request: Request,
    pub output: PathBuf,
    pub force: bool,
    /// Wrap the filesystem in a signed dm-verity DDI (`--ddi`) signed with this key.
    pub ddi: Option<Arc<Signer>>,
}

/// A built and published image, or one that was up to date.
#[derive(Clone, Debug)]
pub struct Built {
    pub resolved: Resolved,
    pub published: Published,
    /// `None` when the image was already built from the same inputs (nothing was packed).
    pub pack: Option<PackStats>,
    pub warnings: Vec<Finding>,
}

/// Resolves `request` (what `--dry-run` prints). The network is used only to look up `latest`
/// or `X.Y` versions; exact versions resolve offline.
pub async fn resolve(settings: &Settings, http: &Http, request: &Request) -> Result<Resolved> {
    let source = settings.catalog.get(&request.extension)?;
    let recipe = source.recipe()?;
    let request = exact_request(settings, http, &recipe, request).await?;
    resolve::resolve(source, &recipe, &request, &settings.mirrors)
}

/// `request` with `latest` and `X.Y` (of the extension and of version-valued options) replaced
/// by the exact versions upstream's source names; each replacement is logged.
pub async fn exact_request(settings: &Settings, http: &Http, recipe: &Recipe, request: &Request) -> Result<Request> {
    let mut exact = request.clone();
    let name = recipe.name.as_str();
    let wanted = versions::wanted(&recipe.version, name, &request.version)?;
    if !matches!(wanted, Wanted::Exact(_)) {
        let version = versions::pick(http, &settings.mirrors, &recipe.version, name, &wanted).await?;
        tracing::info!("{name} {} is {version}", request.version);
        exact.version = version.to_string();
    }
    for (key, value) in &mut exact.options {
        let Some(spec) = recipe.options.get(key).and_then(|o| o.version.as_ref()) else { continue };
        let subject = format!("option {key}");
        let wanted = versions::wanted(spec, &subject, value)?;
        let version = versions::pick(http, &settings.mirrors, spec, &subject, &wanted).await?;
        if !matches!(wanted, Wanted::Exact(_)) {
            tracing::info!("{subject} {value} is {version}");
        }
        *value = version.to_string();
    }
    Ok(exact)
}

/// When a download was missing (404) and the source says the version does not exist upstream,
/// says so with the nearest versions it lists. Otherwise the error stands: it names the URL
/// that was missing (one `.sha256` of an existing version, say).
async fn explain_missing(
    settings: &Settings,
    http: &Http,
    recipe: &Recipe,
    resolved: &Resolved,
    error: anyhow::Error,
) -> anyhow::Error {
    let missing = fetch::AllNotFound::is_missing(&error);
    if !missing {
        return error;
    }
    let (name, version) = (recipe.name.as_str(), resolved.version.as_str());
    let spec = &recipe.version;
    if !matches!(versions::exists(http, &settings.mirrors, spec, name, version).await, Ok(Some(false))) {
        return error;
    }
    let near = match versions::list(http, &settings.mirrors, spec, name).await {
        Ok(releases) => format!("; nearest versions: {}", versions::near(&releases, version).join(", ")),
        Err(_) => String::new(),
    };
    bad_input(format!("{name} {version} does not exist upstream{near} ({})", crate::error::describe(&error)))
}

/// Builds and publishes one image.
pub async fn create(settings: &Settings, job: &CreateJob) -> Result<Built> {
    let started = Instant::now();
    let http = settings.http()?;
    let source = settings.catalog.get(&job.request.extension)?;
    let recipe = source.recipe()?;
    let request = exact_request(settings, &http, &recipe, &job.request).await?;
    let resolved = resolve::resolve(source, &recipe, &request, &settings.mirrors)?;
    let dest = job.output.join(&resolved.image);
    publish::prepare_output(&job.output)?;
    let recipe_yaml = source.file(RECIPE_FILE).unwrap_or_default();
    let cache = Cache::open(&settings.cache_dir)?;
    if dest.exists() && !job.force {
        let ddi = job.ddi.as_ref().map(|s| s.fingerprint());
        let published = up_to_date(&http, &cache, recipe_yaml, &resolved, ddi, &job.output, &dest).await?;
        tracing::info!(
            "{} is up to date: built from the same inputs ({:.2} s)",
            resolved.image,
            started.elapsed().as_secs_f64()
        );
        return Ok(Built { resolved, published, pack: None, warnings: Vec::new() });
    }
    tracing::info!("building {} from the {} recipe", resolved.image, resolved.recipe);

    let fetched = match fetch::fetch_all(&http, &cache, &resolved, &Progress::new(settings.progress_bars)).await {
        Ok(fetched) => fetched,
        Err(error) => return Err(explain_missing(settings, &http, &recipe, &resolved, error).await),
    };

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
    let digests: BTreeMap<String, Sha256> =
        fetched.artifacts.iter().map(|(name, a)| (name.clone(), a.sha256)).collect();
    let mut inputs = Inputs::of(&resolved, recipe_yaml, digests, GENERATOR);
    // The filesystem of a DDI is the plain image's, byte for byte: its UUID (and the DDI's salt
    // and disk GUID) come from the inputs without the signing certificate.
    let seed = inputs.digest();
    let uuid = pack::uuid_of(&seed);
    inputs.ddi = job.ddi.as_ref().map(|s| s.fingerprint());
    let options = PackOptions::new(resolved.format, resolved.compression, resolved.source_date_epoch, uuid);
    // The temporary image belongs to this future: if it is dropped (interrupted), the file is
    // removed even while the packing thread still holds a handle to it.
    let tmp = atomic::temp_beside(&dest)?;
    let mut file = tmp.as_file().try_clone().context("opening the temporary image")?;
    // Like the temporary image, the progress display belongs to this future: dropped on an
    // error or an interruption, it clears the bar at once (declared after `tmp`, it goes first).
    let display = match settings.progress_bars {
        true => progress::Display::Bar,
        false => progress::Display::Lines { interval: settings.progress_interval },
    };
    let (progress, reporter) = PackProgress::new(display);
    let pack = tokio::task::spawn_blocking({
        let (dest, cache) = (dest.clone(), cache.clone());
        move || {
            let first = std::cell::Cell::new(true);
            let report = |done, total| {
                if first.replace(false) {
                    crate::util::failpoint::pause("create:packing");
                }
                reporter.update(done, total);
            };
            pack::pack(&tree, &|digest| cache.blob_path(digest), &options, &mut file, &report)
                .with_context(|| format!("packing {}", dest.display()))
        }
    })
    .await
    .context("the packing task panicked")??;
    progress.finish();
    let tmp = match &job.ddi {
        None => tmp,
        Some(signer) => {
            let (dest, signer, arch) = (dest.clone(), signer.clone(), resolved.arch);
            tokio::task::spawn_blocking(move || wrap_ddi(tmp, &dest, arch, seed.as_bytes(), &signer))
                .await
                .context("the DDI task panicked")??
        }
    };
    let pack_time = pack_started.elapsed();
    let published = tokio::task::spawn_blocking({
        let (output, image, force) = (job.output.clone(), resolved.image.clone(), job.force);
        move || {
            crate::util::failpoint::pause("create:packed");
            publish::publish(&output, &image, tmp, force)
        }
    })
    .await
    .context("the publishing task panicked")??;
    if let Err(e) = inputs::record(&cache, &published.sha256, &inputs) {
        tracing::warn!("could not record the inputs of {}: {}", resolved.image, crate::error::describe(&e));
    }
    tracing::info!(
        "wrote {} ({}, {} {} compressed in {:.1} s; {:.1} s in all)",
        published.image.display(),
        human_bytes(published.size),
        resolved.format,
        resolved.compression,
        pack_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(Built { resolved, published, pack: Some(pack), warnings })
}

/// The DDI of the packed filesystem `fs`, in a new temporary file beside `dest` (`fs` is removed).
fn wrap_ddi(
    fs: tempfile::NamedTempFile,
    dest: &Path,
    arch: crate::model::Arch,
    seed: &[u8; 32],
    signer: &Signer,
) -> Result<tempfile::NamedTempFile> {
    let started = Instant::now();
    let ddi = atomic::temp_beside(dest)?;
    let mut out = ddi.as_file().try_clone().context("opening the temporary DDI")?;
    let mut file = fs.as_file().try_clone().context("opening the packed filesystem")?;
    let written = crate::ddi::write::write(&mut file, arch, seed, signer, &mut out)
        .with_context(|| format!("writing the DDI {}", dest.display()))?;
    tracing::info!(
        "wrapped in a signed DDI (root hash {}, {}, signed by {}) in {:.1} s",
        written.root_hash,
        human_bytes(written.size),
        signer.cert_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ddi)
}

/// The existing image `dest`, when SHA256SUMS lists it and this cache recorded that it was
/// built from the same inputs as `resolved` (artifact digests from the cached checksum files:
/// no request when they are all cached). Otherwise a usage error saying why it stays.
async fn up_to_date(
    http: &Http,
    cache: &Cache,
    recipe_yaml: &[u8],
    resolved: &Resolved,
    ddi: Option<String>,
    output: &Path,
    dest: &Path,
) -> Result<Published> {
    let keep = |why: String| bad_input(format!("{} already exists{why} (use --force to replace it)", dest.display()));
    let path = dest.to_path_buf();
    let (sha256, size) =
        tokio::task::spawn_blocking(move || publish::hash_file(&path)).await.context("the hashing task panicked")??;
    let sums = publish::read_sums(output)?;
    if sums.get(&resolved.image) != Some(&sha256) {
        return Err(keep(format!(" and {} does not list it with its digest", publish::SUMS_FILE)));
    }
    let Some(recorded) = inputs::recorded(cache, &sha256) else {
        return Err(keep(", built before or elsewhere: the cache has no record of its inputs".to_string()));
    };
    let (digests, fetched) = inputs::expected_digests(http, cache, resolved)
        .await
        .with_context(|| format!("checking whether {} is up to date", resolved.image))?;
    let current = Inputs { ddi, ..Inputs::of(resolved, recipe_yaml, digests, GENERATOR) };
    if current != recorded {
        let differences = current.differences(&recorded);
        return Err(keep(format!(" and was built from other inputs: {}", differences.join(", "))));
    }
    // They match the digests of a build that verified its downloads against them.
    for (url, bytes) in fetched {
        cache.store_checksum_file(&url, &bytes)?;
    }
    Ok(Published { image: dest.to_path_buf(), sha256, size, sums: output.join(publish::SUMS_FILE) })
}
