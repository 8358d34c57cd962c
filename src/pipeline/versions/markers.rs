//! Marker files: one URL per "newest version" question (dl.k8s.io's `stable.txt` and
//! `stable-1.31.txt`). Listing walks the minors down from the newest until one is missing.

use anyhow::{Result, anyhow};
use serde_json::json;

use super::{Minor, Release, exact, looks_prerelease, minor_of};
use crate::model::{ExtVersion, Mirrors};
use crate::pipeline::http::{Http, HttpStatus};
use crate::pipeline::render::Renderer;
use crate::recipe::{Markers, VersionSpec};

/// How far `list` walks down the minors at most.
const MAX_MINORS: u64 = 101;

/// The newest stable version.
pub async fn stable(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    markers: &Markers,
) -> Result<ExtVersion> {
    let version = read(http, mirrors, spec, subject, &markers.stable).await?;
    version.ok_or_else(|| anyhow!("{}: upstream has no such marker (HTTP 404)", markers.stable))
}

/// The newest stable version of `minor`, or `None` when upstream has no marker for it.
pub async fn minor(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    markers: &Markers,
    minor: Minor,
) -> Result<Option<ExtVersion>> {
    let url =
        Renderer::default().render("the minor marker URL", &markers.minor, json!({ "minor": minor.to_string() }))?;
    let version = read(http, mirrors, spec, subject, &url).await?;
    match version {
        Some(version) if minor_of(spec, version.as_str()) != Some(minor) => {
            Err(anyhow!("{url}: names {version}, which is not a {minor} version"))
        }
        other => Ok(other),
    }
}

/// The newest stable patch of every minor, newest first, plus the newest pre-release when the
/// recipe names a `latest` marker.
pub async fn list(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    markers: &Markers,
) -> Result<Vec<Release>> {
    let mut releases = newest_patches(http, mirrors, spec, subject, markers, MAX_MINORS).await?;
    if let Some(latest) = &markers.latest
        && let Some(version) = read(http, mirrors, spec, subject, latest).await?
    {
        let prerelease = looks_prerelease(spec, version.as_str());
        releases.push(Release { version: version.to_string(), prerelease });
    }
    Ok(releases)
}

/// The newest stable patch of each of the `count` newest minors, newest first: the stable
/// marker names the newest minor, then the minor markers walk down until one is missing.
pub async fn newest_patches(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    markers: &Markers,
    count: u64,
) -> Result<Vec<Release>> {
    let newest = stable(http, mirrors, spec, subject, markers).await?;
    let top = minor_of(spec, newest.as_str()).ok_or_else(|| anyhow!("{}: {newest} has no minor", markers.stable))?;
    let mut releases = Vec::new();
    for step in 0..count.min(top.minor + 1) {
        let wanted = Minor { major: top.major, minor: top.minor - step };
        match minor(http, mirrors, spec, subject, markers, wanted).await? {
            Some(version) => releases.push(Release { version: version.to_string(), prerelease: false }),
            None => break,
        }
    }
    Ok(releases)
}

/// Reads one marker: `None` on 404, an error naming the URL when it holds something else.
async fn read(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    url: &str,
) -> Result<Option<ExtVersion>> {
    let fetch_url = mirrors.resolve(url)?;
    let body = match http.get_small(&fetch_url).await {
        Ok(body) => body,
        Err(e) if HttpStatus::find(&e).is_some_and(|s| s.status == 404) => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&body);
    let token = text.trim();
    let version =
        (!token.is_empty() && !token.contains(char::is_whitespace)).then(|| exact(spec, subject, token).ok()).flatten();
    match version {
        Some(version) => Ok(Some(version)),
        None => Err(anyhow!(
            "{fetch_url}: expected a version such as {}1.2.3, got {}",
            spec.prefix,
            super::github::snippet(&body)
        )),
    }
}
