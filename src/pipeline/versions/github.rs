//! GitHub releases through the REST API: every page (following `Link: rel="next"`), drafts
//! skipped, a token sent when `GITHUB_TOKEN`/`GH_TOKEN` is set, and a clear message when the
//! rate limit is hit.

use anyhow::{Result, anyhow};
use serde::Deserialize;

use crate::model::Mirrors;
use crate::pipeline::http::{Http, HttpStatus};

/// Pages followed at most (100 releases each).
const MAX_PAGES: usize = 50;

#[derive(Deserialize)]
struct ApiRelease {
    tag_name: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
}

/// The first page of `repo`'s releases (`owner/name`).
pub fn releases_url(repo: &str) -> String {
    format!("https://api.github.com/repos/{repo}/releases?per_page=100")
}

/// `(tag, prerelease)` of every published release of `repo` (`owner/name`).
pub async fn releases(http: &Http, mirrors: &Mirrors, repo: &str) -> Result<Vec<(String, bool)>> {
    let mut url = releases_url(repo);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        if !seen.insert(url.clone()) {
            break;
        }
        let fetch_url = mirrors.resolve(&url)?;
        let document = http.get(&fetch_url, &headers(&fetch_url)).await.map_err(|e| rate_limited(e, &fetch_url))?;
        let page: Vec<ApiRelease> = serde_json::from_slice(&document.body).map_err(|e| {
            anyhow!("{fetch_url}: expected a JSON array of GitHub releases, got {} ({e})", snippet(&document.body))
        })?;
        out.extend(page.into_iter().filter(|r| !r.draft).map(|r| (r.tag_name, r.prerelease)));
        match next_link(&document.headers) {
            Some(next) => url = next,
            None => return Ok(out),
        }
    }
    Ok(out)
}

/// The API's recommended headers, and the token where it is safe to send.
fn headers(fetch_url: &str) -> Vec<(&'static str, String)> {
    let mut headers =
        vec![("Accept", "application/vnd.github+json".to_string()), ("X-GitHub-Api-Version", "2022-11-28".to_string())];
    let token =
        ["GITHUB_TOKEN", "GH_TOKEN"].iter().find_map(|name| std::env::var(name).ok().filter(|t| !t.trim().is_empty()));
    if let Some(token) = token.filter(|_| token_safe_for(fetch_url)) {
        headers.push(("Authorization", format!("Bearer {}", token.trim())));
    }
    headers
}

/// A token goes over https, or plain http to this machine (a local mirror), never elsewhere.
fn token_safe_for(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| url.starts_with(p))
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Turns GitHub's rate-limit answer into advice.
fn rate_limited(error: anyhow::Error, url: &str) -> anyhow::Error {
    let Some(status) = HttpStatus::find(&error) else { return error };
    let header = |name: &str| status.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let exhausted = header("x-ratelimit-remaining").as_deref() == Some("0") || status.body.contains("rate limit");
    if !(status.status == 403 || status.status == 429) || !exhausted {
        return error;
    }
    let reset = header("x-ratelimit-reset").and_then(|r| r.parse::<u64>().ok()).map(|epoch| {
        let day = epoch % 86_400;
        format!("; it resets at {:02}:{:02} UTC", day / 3600, day % 3600 / 60)
    });
    let has_token = std::env::var_os("GITHUB_TOKEN").is_some() || std::env::var_os("GH_TOKEN").is_some();
    let advice = if has_token {
        "the token in GITHUB_TOKEN/GH_TOKEN is exhausted too".to_string()
    } else {
        "set GITHUB_TOKEN (or GH_TOKEN) to a GitHub token to raise the limit from 60 to 5,000 requests an hour"
            .to_string()
    };
    anyhow!("GitHub API rate limit exceeded for {url} (HTTP {}): {advice}{}", status.reason, reset.unwrap_or_default())
}

/// The start of an unexpected answer, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let kind = if text.starts_with('<') { "HTML " } else { "" };
    let cut: String = text.chars().take(60).collect();
    let ellipsis = if text.chars().count() > 60 { "..." } else { "" };
    if text.is_empty() { "an empty answer".to_string() } else { format!("{kind}{cut:?}{ellipsis}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn follows_rel_next_in_link_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/repositories/1/releases?per_page=100&page=3>; rel=\"next\", \
                 <https://api.github.com/repositories/1/releases?per_page=100&page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/repositories/1/releases?per_page=100&page=3")
        );
        headers.insert("link", HeaderValue::from_static("<https://x/releases?page=1>; rel=\"prev\""));
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn tokens_stay_off_plain_http_except_loopback() {
        assert!(token_safe_for("https://api.github.com/repos/a/b/releases"));
        assert!(token_safe_for("http://127.0.0.1:8080/api.github.com/repos/a/b"));
        assert!(!token_safe_for("http://mirror.example/api.github.com/repos/a/b"));
    }

    #[test]
    fn snippets_say_html_and_cut() {
        assert_eq!(snippet(b"<!DOCTYPE html>\n<html>"), "HTML \"<!DOCTYPE html> <html>\"");
        assert_eq!(snippet(b""), "an empty answer");
        assert!(snippet(&[b'a'; 100]).ends_with("..."));
    }
}
