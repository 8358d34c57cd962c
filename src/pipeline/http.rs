//! HTTP for every network edge: TLS (rustls, ring), no https→http redirects, bounded retries
//! with backoff for connection errors, timeouts and 5xx answers, and errors that name the URL.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;
use reqwest::header::HeaderMap;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use crate::error::ChecksumMismatch;
use crate::model::Sha256;
use crate::model::digest::Hasher;
use crate::util::human_bytes;

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

/// HTTP access with the crate's TLS and redirect policy.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl Http {
    pub fn new(retry: RetryPolicy) -> Result<Self> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_root_certificates(root_certificates())
            .with_no_client_auth();
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
            .tls_backend_preconfigured(tls)
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self { client, retry })
    }

    /// GETs a small document (checksum files, listings) with retries.
    pub async fn get_small(&self, url: &str) -> Result<Vec<u8>> {
        Ok(self.get(url, &[]).await?.body)
    }

    /// GETs a small document with extra request headers; the answer's headers come back too.
    pub async fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<Document> {
        self.with_retries(url, || async {
            let mut response = self.send(url, headers).await?;
            let headers = response.headers().clone();
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
            Ok(Document { headers, body })
        })
        .await
        .with_context(|| format!("fetching {url}"))
    }

    async fn send(&self, url: &str, headers: &[(&str, String)]) -> Result<reqwest::Response, Failure> {
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| Failure::transient(anyhow!(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let transient = status.is_server_error() || status.as_u16() == 408;
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let error = anyhow!(HttpStatus { status: status.as_u16(), reason: status.to_string(), headers, body });
        Err(Failure { error, transient })
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
                        "{url}: {}; retrying in {:.1} s ({tries}/{})",
                        crate::error::describe(&error),
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
    /// Streams `url` into a fresh temporary file from `temp_file`, hashing as it goes, and
    /// returns the file with its size once its digest is `expected`. Callers rename it into place.
    pub async fn download_verified(
        &self,
        url: &str,
        expected: &Sha256,
        temp_file: &(dyn Fn() -> Result<NamedTempFile> + Sync),
        bar: &ProgressBar,
    ) -> Result<(NamedTempFile, u64)> {
        self.with_retries(url, || async {
            let mut response = self.send(url, &[]).await?;
            bar.set_length(response.content_length().unwrap_or(0));
            bar.set_position(0);
            let tmp = temp_file().map_err(Failure::permanent)?;
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
                    .map_err(|e| Failure::permanent(anyhow!(e).context("writing the download")))?;
                size += chunk.len() as u64;
                bar.set_position(size);
            }
            out.flush().await.map_err(|e| Failure::permanent(anyhow!(e)))?;
            let actual = hasher.finish();
            if actual != *expected {
                let mismatch = ChecksumMismatch { expected: expected.to_string(), actual: actual.to_string() };
                return Err(Failure::permanent(anyhow!(mismatch)));
            }
            Ok((tmp, size))
        })
        .await
    }
}

/// The system's CA certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the usual locations), or the
/// Mozilla roots built into bakery where the system has none (a static binary in an empty root).
fn root_certificates() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::debug!("no CA certificates on the system; using the ones built into bakery");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// A small document and the headers it came with.
#[derive(Clone, Debug)]
pub struct Document {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An HTTP error status; callers branch on it (404: no such version, 403/429: rate limited).
#[derive(Debug, thiserror::Error)]
#[error("HTTP {reason}")]
pub struct HttpStatus {
    pub status: u16,
    /// `404 Not Found`
    pub reason: String,
    pub headers: HeaderMap,
    /// The answer's body (error pages explain themselves).
    pub body: String,
}

impl HttpStatus {
    /// The status error in `error`'s chain, if any.
    pub fn find(error: &anyhow::Error) -> Option<&HttpStatus> {
        error.chain().find_map(|cause| cause.downcast_ref::<HttpStatus>())
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
