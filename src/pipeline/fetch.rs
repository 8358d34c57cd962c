//! Fetch: downloads every artifact into the cache, verifying its sha256 while streaming.
//! Bounded parallelism, bounded retries with backoff for transient failures, and nothing enters
//! the cache unverified. A second build of the same inputs makes no request at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cache::Cache;
use super::checksum;
use super::extract::{self, ArchiveIndex};
use super::resolve::{Resolved, ResolvedArtifact, ResolvedChecksum, ResolvedInstall};
use crate::error::ChecksumMismatch;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::util::human_bytes;

/// How many downloads run at once.
pub const PARALLEL_DOWNLOADS: usize = 4;
/// Largest checksum file or small document read into memory.
const SMALL_LIMIT: u64 = 4 * 1024 * 1024;

/// Retries for connection errors, timeouts and 5xx answers.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, first_delay: Duration::from_millis(500) }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        self.first_delay * 2u32.pow(attempt.saturating_sub(1).min(6))
    }
}

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

/// HTTP access with the crate's TLS and redirect policy.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl Http {
    pub fn new(retry: RetryPolicy) -> Result<Self> {
        // ring is the crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            let downgrade =
                attempt.url().scheme() == "http" && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                let message = format!("refusing redirect from https to plain http ({})", attempt.url());
                attempt.error(message)
            } else if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("bakery/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .redirect(redirect)
            .retry(reqwest::retry::never())
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self { client, retry })
    }

    /// GETs a small document (checksum files, listings) with retries.
    pub async fn get_small(&self, url: &str) -> Result<Vec<u8>> {
        self.with_retries(url, || async {
            let mut response = self.send(url).await?;
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Failure::transient(anyhow!(e.without_url()).context("reading the answer")))?
            {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > SMALL_LIMIT {
                    return Err(Failure::permanent(anyhow!("answer larger than {}", human_bytes(SMALL_LIMIT))));
                }
            }
            Ok(body)
        })
        .await
        .with_context(|| format!("fetching {url}"))
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let response = self.client.get(url).send().await.map_err(|e| Failure::transient(anyhow!(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(Failure::transient(anyhow!("HTTP {status}")))
        } else {
            Err(Failure::permanent(anyhow!("HTTP {status}")))
        }
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failure { error, transient }) if transient && tries < self.retry.attempts => {
                    let delay = self.retry.delay(tries);
                    tracing::warn!(
                        "{url}: {error:#}; retrying in {:.1} s ({tries}/{})",
                        delay.as_secs_f64(),
                        self.retry.attempts - 1
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(Failure { error, transient }) => {
                    return Err(if transient && tries > 1 {
                        error.context(format!("giving up after {tries} attempts"))
                    } else {
                        error
                    });
                }
            }
        }
    }

    /// Streams `url` into a cache temp file, hashing as it goes, and commits it if the digest is
    /// `expected`. Returns the size.
    async fn download_verified(&self, cache: &Cache, url: &str, expected: &Sha256, bar: &ProgressBar) -> Result<u64> {
        self.with_retries(url, || async {
            let mut response = self.send(url).await?;
            bar.set_length(response.content_length().unwrap_or(0));
            bar.set_position(0);
            let tmp = cache.temp_file().map_err(Failure::permanent)?;
            let file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| Failure::permanent(anyhow!(e)))?);
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            let mut hasher = Hasher::default();
            let mut size = 0u64;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Failure::transient(anyhow!(e.without_url()).context("reading the download")))?
            {
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Failure::permanent(anyhow!(e).context("writing to the cache")))?;
                size += chunk.len() as u64;
                bar.set_position(size);
            }
            out.flush().await.map_err(|e| Failure::permanent(anyhow!(e)))?;
            let actual = hasher.finish();
            if actual != *expected {
                let mismatch = ChecksumMismatch { expected: expected.to_string(), actual: actual.to_string() };
                return Err(Failure::permanent(anyhow!(mismatch)));
            }
            cache.commit_blob(tmp, expected).map_err(Failure::permanent)?;
            Ok(size)
        })
        .await
    }
}

/// An attempt's failure, and whether trying again may help.
struct Failure {
    error: anyhow::Error,
    transient: bool,
}

impl Failure {
    fn transient(error: anyhow::Error) -> Self {
        Self { error, transient: true }
    }

    fn permanent(error: anyhow::Error) -> Self {
        Self { error, transient: false }
    }
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
            (
                artifact.name.clone(),
                fetched.with_context(|| format!("fetching {} from {}", artifact.name, artifact.fetch_url)),
            )
        });
    }
    let mut fetched = Fetched::default();
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a download task panicked")?;
        fetched.artifacts.insert(name, result?);
    }
    summarize(&fetched, started.elapsed());
    Ok(fetched)
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
        None => (http.download_verified(cache, &artifact.fetch_url, &expected, bar).await?, false),
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
