//! HTTP for every network edge: TLS (rustls, ring), bounded retries with backoff for transient
//! failures (reset connections, stalls, 5xx answers), no retry for permanent ones (TLS failures,
//! refused redirects, other 4xx answers), the [`Limits`] of `[download]` on every body, and
//! errors that name the URL. Redirects never go from https to plain http, nor from a plain-http
//! host to another one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;
use reqwest::Url;
use reqwest::header::HeaderMap;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use super::limits::{Exceeded, Limits, Meter};
use crate::error::{ChecksumMismatch, Persistence, permanent, transient};
use crate::model::Sha256;
use crate::model::digest::Hasher;

/// Largest checksum file or small document read into memory.
const SMALL_LIMIT: u64 = 4 * 1024 * 1024;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// Retries for transient failures.
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

/// HTTP access with the crate's TLS, redirect and retry policy and download limits.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
    limits: Limits,
}

impl Http {
    /// With the default [`Limits`].
    pub fn new(retry: RetryPolicy) -> Result<Self> {
        Self::with_limits(retry, Limits::default())
    }

    pub fn with_limits(retry: RetryPolicy, limits: Limits) -> Result<Self> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_root_certificates(root_certificates())
            .with_no_client_auth();
        let redirect =
            reqwest::redirect::Policy::custom(|attempt| match refuse_redirect(attempt.previous(), attempt.url()) {
                Some(reason) => attempt.error(reason),
                None => attempt.follow(),
            });
        let client = reqwest::Client::builder()
            .user_agent(concat!("bakery/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.stall_timeout.min(Duration::from_secs(30)))
            .redirect(redirect)
            .retry(reqwest::retry::never())
            .tls_backend_preconfigured(tls)
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self { client, retry, limits })
    }

    /// GETs a small document (checksum files, listings) with retries.
    pub async fn get_small(&self, url: &str) -> Result<Vec<u8>> {
        Ok(self.get(url, &[]).await?.body)
    }

    /// GETs a small document with extra request headers; the answer's headers come back too.
    pub async fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<Document> {
        self.within_deadline(self.with_retries(url, || async {
            let mut response = self.send(url, headers).await?;
            let headers = response.headers().clone();
            let mut meter = Meter::new(self.limits, None, SMALL_LIMIT, Instant::now());
            meter.announced(response.content_length()).map_err(limit)?;
            let mut body = Vec::new();
            while let Some(chunk) = next_chunk(&mut response, &mut meter).await? {
                body.extend_from_slice(&chunk);
            }
            Ok(Document { headers, body })
        }))
        .await
        .with_context(|| format!("fetching {url}"))
    }

    /// Streams `url` into a fresh temporary file from `temp_file`, hashing as it goes, and
    /// returns the file with its size once its digest is `expected`. Callers rename it into place.
    /// The body may be as large as `[download] max_size`.
    pub async fn download_verified(
        &self,
        url: &str,
        expected: &Sha256,
        temp_file: &(dyn Fn() -> Result<NamedTempFile> + Sync),
        bar: &ProgressBar,
    ) -> Result<(NamedTempFile, u64)> {
        self.download(url, expected, None, temp_file, bar).await
    }

    /// [`Http::download_verified`] for a body of `size` bytes when the source gives it (a
    /// manifest): a longer one fails at once.
    pub async fn download(
        &self,
        url: &str,
        expected: &Sha256,
        size: Option<u64>,
        temp_file: &(dyn Fn() -> Result<NamedTempFile> + Sync),
        bar: &ProgressBar,
    ) -> Result<(NamedTempFile, u64)> {
        self.within_deadline(self.with_retries(url, || async {
            let mut response = self.send(url, &[]).await?;
            let mut meter = Meter::new(self.limits, size, u64::MAX, Instant::now());
            meter.announced(response.content_length()).map_err(limit)?;
            bar.set_length(response.content_length().unwrap_or(0));
            bar.set_position(0);
            // Dropped on any failure (or when the deadline drops this future): removed.
            let tmp = temp_file().map_err(permanent)?;
            let file = tokio::fs::File::from_std(tmp.reopen().map_err(permanent)?);
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            let mut hasher = Hasher::default();
            while let Some(chunk) = next_chunk(&mut response, &mut meter).await? {
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| permanent(anyhow!(e).context("writing the download")))?;
                bar.set_position(meter.total());
            }
            out.flush().await.map_err(permanent)?;
            let actual = hasher.finish();
            if actual != *expected {
                let mismatch = ChecksumMismatch { expected: expected.to_string(), actual: actual.to_string() };
                return Err(permanent(mismatch));
            }
            Ok((tmp, meter.total()))
        }))
        .await
        .with_context(|| format!("downloading {url}"))
    }

    /// Sends a GET; the error is marked permanent or transient.
    async fn send(&self, url: &str, headers: &[(&str, String)]) -> Result<reqwest::Response> {
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let stall = self.limits.stall_timeout;
        let response = match tokio::time::timeout(stall, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(classify(e)),
            Err(_) => return Err(limit(Exceeded::Stalled { after: stall }).context("waiting for the answer")),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // 429 is not retried: GitHub answers a used-up rate limit so, and the reset is an hour away
        let retry = status.is_server_error() || status.as_u16() == 408;
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let error = HttpStatus { status: status.as_u16(), reason: status.to_string(), headers, body };
        Err(if retry { transient(error) } else { permanent(error) })
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts are used up.
    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let retry = crate::error::persistence(&error) == Persistence::Transient;
            if !retry || tries >= self.retry.attempts {
                return Err(if retry && tries > 1 {
                    error.context(format!("giving up after {tries} attempts"))
                } else {
                    error
                });
            }
            let delay = self.retry.delay(tries);
            tracing::warn!(
                "{url}: {}; retrying in {:.1} s ({tries}/{})",
                crate::error::describe(&error),
                delay.as_secs_f64(),
                self.retry.attempts - 1
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// `work`, failing permanently once `[download] deadline` has passed.
    async fn within_deadline<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let deadline = self.limits.deadline;
        tokio::time::timeout(deadline, work).await.unwrap_or_else(|_| Err(limit(Exceeded::Deadline { deadline })))
    }
}

/// The next piece of `response`'s body under `meter`'s limits; `None` at the end.
async fn next_chunk(response: &mut reqwest::Response, meter: &mut Meter) -> Result<Option<bytes::Bytes>> {
    loop {
        let wake = tokio::time::Instant::from_std(meter.next_check());
        match tokio::time::timeout_at(wake, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                meter.received(chunk.len() as u64, Instant::now()).map_err(limit)?;
                return Ok(Some(chunk));
            }
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(transient(anyhow!(e.without_url()).context("reading the answer"))),
            Err(_) => meter.check(Instant::now()).map_err(limit)?,
        }
    }
}

/// A broken limit, marked as its kind says.
fn limit(exceeded: Exceeded) -> anyhow::Error {
    if exceeded.transient() { transient(exceeded) } else { permanent(exceeded) }
}

/// A failed request: TLS failures and refused redirects are permanent; connection failures
/// and timeouts transient. The message is the cause in words ([`Unreachable`]); the full chain
/// of reqwest, hyper and hickory errors (Debug structs) goes to the debug log only.
fn classify(error: reqwest::Error) -> anyhow::Error {
    let host = error.url().and_then(|u| u.host_str()).unwrap_or("the host").to_string();
    tracing::debug!("{error:?}");
    let permanent_kind = is_tls(&error) || error.is_redirect() || error.is_builder();
    let unreachable = Unreachable::of(&error, &host);
    if permanent_kind { permanent(unreachable) } else { transient(unreachable) }
}

/// Why a request got no answer, in words.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    pub cause: Cause,
    pub message: String,
}

/// The kinds of [`Unreachable`], each with its own advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Dns,
    Refused,
    TimedOut,
    /// An https URL answered by a plain-http server.
    NotTls,
    Tls,
    Other,
}

impl Unreachable {
    fn of(error: &reqwest::Error, host: &str) -> Self {
        let (cause, message) = describe_request_error(error, host);
        Self { cause, message }
    }

    /// The first [`Unreachable`] in `error`'s chain.
    pub fn find(error: &anyhow::Error) -> Option<&Unreachable> {
        error.chain().find_map(|cause| cause.downcast_ref::<Unreachable>())
    }
}

impl Cause {
    /// What to try about it.
    pub fn advice(self) -> &'static str {
        match self {
            Cause::Dns => {
                "check DNS (/etc/resolv.conf), reach the hosts through a proxy (HTTPS_PROXY=http://proxy:3128), or fetch from a mirror (--mirror https://HOST=URL)"
            }
            Cause::Refused | Cause::TimedOut | Cause::Other => {
                "check that the host is reachable: set HTTPS_PROXY if this network needs a proxy, or fetch from a mirror (--mirror FROM=TO)"
            }
            Cause::NotTls => "a plain-http server needs an http:// URL: write the mirror's TO as http://...",
            Cause::Tls => {
                "the certificate is not trusted: point SSL_CERT_FILE or SSL_CERT_DIR at your CA certificates, or use a mirror"
            }
        }
    }
}

/// The cause of a failed request, walking reqwest's chain down to hickory, std I/O and rustls.
fn describe_request_error(error: &reqwest::Error, host: &str) -> (Cause, String) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(current) = cause {
        if let Some(tls) = rustls_error(current) {
            if matches!(tls, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) {
                return (
                    Cause::NotTls,
                    format!("TLS: {host} answered in plain http, not TLS (an https URL for a plain-http server)"),
                );
            }
            return (Cause::Tls, format!("TLS: {tls}"));
        }
        let text = current.to_string();
        if text == "tls handshake eof" {
            let message = format!("TLS: {host} closed the connection during the handshake (a plain-http server?)");
            return (Cause::NotTls, message);
        }
        // hyper-util wraps hickory's resolver error as "dns error: ..."; its text is a Debug struct
        if text.starts_with("dns error") {
            return (Cause::Dns, format!("DNS lookup of {host} failed"));
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return (Cause::Refused, format!("connection refused by {host}"));
                }
                std::io::ErrorKind::TimedOut => return (Cause::TimedOut, format!("connecting to {host} timed out")),
                std::io::ErrorKind::ConnectionReset => {
                    return (Cause::Other, format!("connection reset by {host}"));
                }
                _ => {}
            }
        }
        innermost = text;
        cause = current.source();
    }
    if error.is_timeout() {
        return (Cause::TimedOut, format!("{host} timed out"));
    }
    if error.is_connect() {
        return (Cause::Other, format!("could not connect to {host}: {innermost}"));
    }
    (Cause::Other, innermost)
}

/// The rustls error `error` is or carries (an I/O error may wrap it).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())?;
    rustls_error(inner)
}

/// Whether a rustls error is among `error`'s causes (an I/O error may carry it).
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if rustls_error(error).is_some() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Why a redirect to `next` after `previous` (oldest first) is refused, if it is: from https to
/// plain http, from a plain-http host to another plain-http host (a plain-http mirror names one
/// host; nothing vouches for another), or one too many.
pub fn refuse_redirect(previous: &[Url], next: &Url) -> Option<String> {
    let last = previous.last()?;
    if next.scheme() == "http" {
        if previous.iter().any(|u| u.scheme() == "https") {
            return Some(format!("refusing redirect from https to plain http ({next})"));
        }
        let origin = |u: &Url| (u.host_str().map(str::to_ascii_lowercase), u.port_or_known_default());
        if last.scheme() == "http" && origin(last) != origin(next) {
            let host = last.host_str().unwrap_or_default();
            return Some(format!("refusing redirect from plain http {host} to another host ({next})"));
        }
    }
    (previous.len() >= MAX_REDIRECTS).then(|| format!("too many redirects ({MAX_REDIRECTS})"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn redirects_stay_on_https_or_on_the_plain_http_host() {
        let next = |u: &str| Url::parse(u).unwrap();
        let refused = |from: &[&str], to: &str| refuse_redirect(&urls(from), &next(to));
        assert_eq!(refused(&["https://dl.k8s.io/a"], "https://cdn.dl.k8s.io/a"), None);
        assert_eq!(refused(&["http://127.0.0.1:8080/a"], "http://127.0.0.1:8080/b"), None);
        assert_eq!(refused(&["http://mirror/a"], "https://github.com/b"), None, "https vouches for itself");
        let downgrade = refused(&["https://dl.k8s.io/a"], "http://dl.k8s.io/a").unwrap();
        assert_eq!(downgrade, "refusing redirect from https to plain http (http://dl.k8s.io/a)");
        let elsewhere = refused(&["http://127.0.0.1:8080/a"], "http://localhost:8080/a").unwrap();
        assert!(elsewhere.contains("from plain http 127.0.0.1 to another host"), "{elsewhere}");
        assert!(refused(&["http://127.0.0.1:8080/a"], "http://127.0.0.1:9090/a").is_some(), "another port");
        let hops: Vec<String> = (0..10).map(|i| format!("https://x/{i}")).collect();
        let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
        assert_eq!(refused(&hops, "https://x/10").unwrap(), "too many redirects (10)");
    }
}
