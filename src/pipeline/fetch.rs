//! Fetch: downloads every artifact into the cache, verifying its sha256 while streaming.
//! Bounded parallelism, bounded retries with backoff for transient failures, and nothing enters
//! the cache unverified. A second build of the same inputs makes no request at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cache::Cache;
use super::checksum;
use super::extract::{self, ArchiveIndex};
use super::http::{Http, HttpStatus, Unreachable};
use super::resolve::{Resolved, ResolvedArtifact, ResolvedChecksum, ResolvedInstall};
use crate::error::Advice;
use crate::model::Sha256;
use crate::util::human_bytes;

/// How many downloads run at once.
pub const PARALLEL_DOWNLOADS: usize = 4;

/// One fetched artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedArtifact {
    pub sha256: Sha256,
    pub size: u64,
    /// For archives: what they hold.
    pub archive: Option<ArchiveIndex>,
    pub from_cache: bool,
}

/// Every artifact of a build, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub artifacts: BTreeMap<String, FetchedArtifact>,
}

/// Progress output: bars on a terminal, one summary line otherwise.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new(show_bars: bool) -> Self {
        Self { multi: show_bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    fn bar(&self, name: &str) -> ProgressBar {
        let Some(multi) = &self.multi else { return ProgressBar::hidden() };
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:28}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}",
        )
        .expect("a valid progress template")
        .progress_chars("=> ");
        multi.add(ProgressBar::new(0).with_style(style).with_prefix(name.to_string()))
    }
}

/// Fetches every artifact of `resolved` into `cache`.
pub async fn fetch_all(http: &Http, cache: &Cache, resolved: &Resolved, progress: &Progress) -> Result<Fetched> {
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(PARALLEL_DOWNLOADS));
    let mut tasks = JoinSet::new();
    for artifact in resolved.artifacts.clone() {
        let (http, cache, limit, bar) = (http.clone(), cache.clone(), limit.clone(), progress.bar(&artifact.name));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("the semaphore is never closed");
            let fetched = fetch_artifact(&http, &cache, &artifact, &bar).await;
            bar.finish_and_clear();
            (artifact.name.clone(), fetched.with_context(|| format!("fetching {}", artifact.name)))
        });
    }
    let mut fetched = Fetched::default();
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a download task panicked")?;
        match result {
            Ok(artifact) => {
                fetched.artifacts.insert(name, artifact);
            }
            Err(error) => failed.push((name, error)),
        }
    }
    if !failed.is_empty() {
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        return Err(failures(failed.into_iter().map(|(_, e)| e).collect(), resolved.artifacts.len()));
    }
    summarize(&fetched, started.elapsed());
    Ok(fetched)
}

/// Failed downloads as one error: one line per artifact (its URL and the cause in words), then
/// what to try. One failure keeps its own chain (callers look into it: a 404 is a missing
/// version); among several, an interruption or bad input decides what the error is.
fn failures(mut errors: Vec<anyhow::Error>, total: usize) -> anyhow::Error {
    let advice: std::collections::BTreeSet<&str> = errors.iter().filter_map(advice).collect();
    let error = if errors.len() == 1 {
        errors.pop().expect("one error")
    } else if let Some(i) = errors.iter().position(|e| crate::error::exit_code(e) == 130) {
        return errors.swap_remove(i);
    } else {
        let bad = errors.iter().any(|e| crate::error::exit_code(e) == 2);
        let permanent = errors.iter().all(|e| crate::error::persistence(e) == crate::error::Persistence::Permanent);
        let mut text = format!("{} of {total} downloads failed:", errors.len());
        for error in &errors {
            text.push_str(&format!("\n  {}", crate::error::describe(error)));
        }
        let all_missing = errors.iter().all(|e| HttpStatus::find(e).is_some_and(|s| s.status == 404));
        match (bad, permanent) {
            (true, _) => crate::error::bad_input(text),
            (false, true) if all_missing => crate::error::permanent(AllNotFound(text)),
            (false, true) => crate::error::permanent(anyhow!(text)),
            (false, false) => crate::error::transient(anyhow!(text)),
        }
    };
    if advice.is_empty() {
        return error;
    }
    error.context(Advice(advice.into_iter().map(str::to_string).collect()))
}

/// Several downloads failed, every one with 404: as one 404 does, this may mean the version does
/// not exist upstream (the caller asks the version source).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AllNotFound(String);

impl AllNotFound {
    /// Whether `error` is a 404, or several downloads that all got one.
    pub fn is_missing(error: &anyhow::Error) -> bool {
        HttpStatus::find(error).is_some_and(|s| s.status == 404) || error.chain().any(|c| c.is::<AllNotFound>())
    }
}

/// What to try about one failed download, when bakery knows.
fn advice(error: &anyhow::Error) -> Option<&'static str> {
    if let Some(unreachable) = Unreachable::find(error) {
        return Some(unreachable.cause.advice());
    }
    match HttpStatus::find(error)?.status {
        404 => Some("check the version (bakery list EXT) and, with --mirror, that the mirror holds the file"),
        403 | 429 => Some("the server is rate limiting: wait, or fetch from a mirror (--mirror FROM=TO)"),
        _ => None,
    }
}

async fn fetch_artifact(
    http: &Http,
    cache: &Cache,
    artifact: &ResolvedArtifact,
    bar: &ProgressBar,
) -> Result<FetchedArtifact> {
    let (expected, checksum_file) = match &artifact.checksum {
        ResolvedChecksum::Pinned { sha256 } => (*sha256, None),
        ResolvedChecksum::File { fetch_url, format, file_name, .. } => {
            let (bytes, cached) = match cache.checksum_file(fetch_url) {
                Some(bytes) => (bytes, true),
                None => (http.get_small(fetch_url).await.context("fetching its checksum")?, false),
            };
            let text = String::from_utf8_lossy(&bytes);
            let digest =
                checksum::parse(&text, *format, file_name).map_err(|e| anyhow!("checksum file {fetch_url}: {e}"))?;
            (digest, (!cached).then(|| (fetch_url.clone(), bytes)))
        }
    };
    let (size, from_cache) = match cache.blob_size(&expected) {
        Some(size) => (size, true),
        None => {
            let (tmp, size) =
                http.download_verified(&artifact.fetch_url, &expected, &|| cache.temp_file(), bar).await?;
            cache.commit_blob(tmp, &expected)?;
            (size, false)
        }
    };
    if let Some((url, bytes)) = checksum_file {
        cache.store_checksum_file(&url, &bytes)?;
    }
    let archive = match &artifact.install {
        ResolvedInstall::File { .. } => None,
        ResolvedInstall::Extract { format, .. } => Some(match cache.archive_index(&expected) {
            Some(index) => index,
            None => {
                let (unpack_cache, format) = (cache.clone(), *format);
                let index = tokio::task::spawn_blocking(move || extract::unpack(&unpack_cache, &expected, format))
                    .await
                    .context("the unpacking task panicked")??;
                cache.store_archive_index(&expected, &index)?;
                index
            }
        }),
    };
    Ok(FetchedArtifact { sha256: expected, size, archive, from_cache })
}

fn summarize(fetched: &Fetched, elapsed: Duration) {
    let total = fetched.artifacts.len();
    if total == 0 {
        return;
    }
    let downloaded: Vec<&FetchedArtifact> = fetched.artifacts.values().filter(|a| !a.from_cache).collect();
    if downloaded.is_empty() {
        tracing::info!("fetched {total} artifacts: all from cache");
        return;
    }
    let bytes: u64 = downloaded.iter().map(|a| a.size).sum();
    let secs = elapsed.as_secs_f64().max(0.001);
    tracing::info!(
        "fetched {total} artifacts: {} downloaded ({} in {secs:.1} s, {}/s), {} from cache",
        downloaded.len(),
        human_bytes(bytes),
        human_bytes((bytes as f64 / secs) as u64),
        total - downloaded.len()
    );
}
