//! Upstream versions: listed from the recipe's source (GitHub releases, marker files, a fixed
//! list), ordered the way systemd orders versions, and `latest` / `X.Y` resolved to an exact
//! version. Exact versions never touch the network.

pub mod github;
pub mod markers;

use std::fmt;

use anyhow::Result;
use serde::Serialize;

use super::http::Http;
use crate::error::bad_input;
use crate::model::version::compare;
use crate::model::{ExtVersion, Mirrors};
use crate::recipe::{Markers, VersionScheme, VersionSource, VersionSpec};

/// One upstream version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: String,
    pub prerelease: bool,
}

/// `MAJOR.MINOR` of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Minor {
    pub major: u64,
    pub minor: u64,
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What a user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    Exact(ExtVersion),
    /// The newest stable version.
    Latest,
    /// The newest stable patch of a minor (`1.31`).
    Minor(Minor),
}

/// Parses `input` (`latest`, `1.31`, `v1.31`, or an exact version) for `subject` (`kubernetes`,
/// `option cni_version`).
pub fn wanted(spec: &VersionSpec, subject: &str, input: &str) -> Result<Wanted> {
    if input == "latest" {
        return Ok(Wanted::Latest);
    }
    let bare = input.strip_prefix(spec.prefix.as_str()).unwrap_or(input);
    if let Some((major, minor)) = bare.split_once('.')
        && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
    {
        return Ok(Wanted::Minor(Minor { major, minor }));
    }
    exact(spec, subject, input).map(Wanted::Exact)
}

/// An exact version in the spec's format; the prefix is added when left out (`1.32.0`).
pub fn exact(spec: &VersionSpec, subject: &str, input: &str) -> Result<ExtVersion> {
    let prefix = spec.prefix.as_str();
    let with_prefix =
        if !prefix.is_empty() && !input.starts_with(prefix) && input.starts_with(|c: char| c.is_ascii_digit()) {
            format!("{prefix}{input}")
        } else {
            input.to_string()
        };
    let version: ExtVersion = with_prefix.parse().map_err(|e| bad_input(format!("{e}")))?;
    if spec.scheme == VersionScheme::Semver {
        let number = version.as_str().strip_prefix(prefix);
        if number.is_none_or(|n| semver::Version::parse(n).is_err()) {
            let hint = if spec.source.is_some() { ", or latest, or a minor such as 1.2" } else { "" };
            return Err(bad_input(format!(
                "malformed version {input:?}: {subject} versions are exact, like {prefix}1.2.3 or {prefix}1.2.3-rc.1{hint}"
            )));
        }
    }
    Ok(version)
}

/// The minor of `version` (`v1.32.3` → 1.32), if it has one.
pub fn minor_of(spec: &VersionSpec, version: &str) -> Option<Minor> {
    let bare = version.strip_prefix(spec.prefix.as_str())?;
    let mut parts = bare.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(Minor { major, minor })
}

/// Whether `version` is a pre-release by its shape (`-rc.1`, `-beta.0`, `~rc1`).
pub fn looks_prerelease(spec: &VersionSpec, version: &str) -> bool {
    let bare = version.strip_prefix(spec.prefix.as_str()).unwrap_or(version);
    match spec.scheme {
        VersionScheme::Semver => semver::Version::parse(bare).map(|v| !v.pre.is_empty()).unwrap_or(false),
        VersionScheme::Any => {
            bare.contains('~') || bare.split(['-', '.']).any(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()))
        }
    }
}

/// Whether a version of any extension looks like a pre-release: a semver pre-release after the
/// leading letters (`v1.33.0-rc.1`), or `~`.
pub fn looks_prerelease_any(version: &str) -> bool {
    let bare = version.trim_start_matches(|c: char| !c.is_ascii_digit());
    match semver::Version::parse(bare) {
        Ok(v) => !v.pre.is_empty(),
        Err(_) => {
            bare.contains('~')
                || bare.split(['-', '.']).skip(1).any(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()))
        }
    }
}

/// Sorts newest first (systemd's order) and drops duplicates.
pub fn sort_newest_first(releases: &mut Vec<Release>) {
    releases.sort_by(|a, b| compare(&b.version, &a.version).then_with(|| b.version.cmp(&a.version)));
    releases.dedup_by(|a, b| a.version == b.version);
}

/// Every upstream version the source lists, newest first, pre-releases marked. Marker files
/// with a GitHub repository list that repository's releases (the markers know one patch a minor).
pub async fn list(http: &Http, mirrors: &Mirrors, spec: &VersionSpec, subject: &str) -> Result<Vec<Release>> {
    let source = spec.source.as_ref().ok_or_else(|| no_source(subject))?;
    let mut releases = match source {
        VersionSource::Github(repo) | VersionSource::Markers(Markers { github: Some(repo), .. }) => {
            github_list(http, mirrors, spec, subject, repo).await?
        }
        VersionSource::Markers(markers) => markers::list(http, mirrors, spec, subject, markers).await?,
        VersionSource::List(list) => list
            .iter()
            .map(|v| {
                let version = exact(spec, subject, v)?.to_string();
                Ok(Release { prerelease: looks_prerelease(spec, &version), version })
            })
            .collect::<Result<_>>()?,
    };
    sort_newest_first(&mut releases);
    Ok(releases)
}

/// The releases of GitHub `repo` whose tags are versions of `spec`.
async fn github_list(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    repo: &str,
) -> Result<Vec<Release>> {
    let mut releases = Vec::new();
    for (tag, prerelease) in github::releases(http, mirrors, repo).await? {
        // Tags of other things in the same repository (api/v1.8.0) do not parse.
        if exact(spec, subject, &tag).is_ok() {
            let prerelease = prerelease || looks_prerelease(spec, &tag);
            releases.push(Release { version: tag, prerelease });
        }
    }
    Ok(releases)
}

/// The newest stable release of each of the `count` newest minors, newest first: from the
/// marker files when the source has them (one small file a minor), else from the whole list.
pub async fn newest_per_minor(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    count: usize,
) -> Result<Vec<(Minor, Release)>> {
    let releases = match spec.source.as_ref() {
        Some(VersionSource::Markers(markers)) => {
            markers::newest_patches(http, mirrors, spec, subject, markers, count as u64).await?
        }
        _ => list(http, mirrors, spec, subject).await?,
    };
    Ok(latest_per_minor(spec, &releases, count))
}

/// Whether `version` exists by the source's own account: `Some(false)` only when the source
/// says it does not (a complete list without it, or a minor marker naming an older newest
/// patch), `None` when the source cannot tell (a marker cannot list the older patches).
pub async fn exists(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    version: &str,
) -> Result<Option<bool>> {
    let Some(source) = spec.source.as_ref() else { return Ok(None) };
    if let VersionSource::Markers(markers) = source
        && markers.github.is_none()
    {
        let Some(minor) = minor_of(spec, version) else { return Ok(Some(false)) };
        return Ok(match markers::minor(http, mirrors, spec, subject, markers, minor).await? {
            None => Some(false),
            Some(newest) if compare(version, newest.as_str()).is_gt() => Some(false),
            Some(newest) if newest.as_str() == version => Some(true),
            Some(_) => None,
        });
    }
    let releases = list(http, mirrors, spec, subject).await?;
    Ok(Some(releases.iter().any(|r| r.version == version)))
}

/// The upstream URLs `spec`'s version source may read (marker templates unrendered): a
/// version lookup goes through the same mirror rules as the downloads.
pub fn source_urls(spec: &VersionSpec) -> Vec<String> {
    match &spec.source {
        Some(VersionSource::Github(repo)) => vec![github::releases_url(repo)],
        Some(VersionSource::Markers(markers)) => {
            let mut urls = vec![markers.stable.clone(), markers.minor.clone()];
            urls.extend(markers.latest.clone());
            urls.extend(markers.github.as_deref().map(github::releases_url));
            urls
        }
        Some(VersionSource::List(_)) | None => Vec::new(),
    }
}

/// The exact version `wanted` means, looked up in the source when it is not exact.
pub async fn pick(
    http: &Http,
    mirrors: &Mirrors,
    spec: &VersionSpec,
    subject: &str,
    wanted: &Wanted,
) -> Result<ExtVersion> {
    if let Wanted::Exact(version) = wanted {
        return Ok(version.clone());
    }
    let source = spec.source.as_ref().ok_or_else(|| no_source(subject))?;
    if let VersionSource::Markers(markers) = source {
        return match wanted {
            Wanted::Minor(minor) => match markers::minor(http, mirrors, spec, subject, markers, *minor).await? {
                Some(version) => Ok(version),
                None => {
                    let newest = newest_per_minor(http, mirrors, spec, subject, 6).await?;
                    Err(unknown_minor(subject, *minor, &newest))
                }
            },
            _ => markers::stable(http, mirrors, spec, subject, markers).await,
        };
    }
    let releases = list(http, mirrors, spec, subject).await?;
    let stable = releases.iter().filter(|r| !r.prerelease);
    let found = match wanted {
        Wanted::Minor(minor) => stable.clone().find(|r| minor_of(spec, &r.version) == Some(*minor)),
        _ => stable.clone().next(),
    };
    match (found, wanted) {
        (Some(release), _) => exact(spec, subject, &release.version),
        (None, Wanted::Minor(minor)) => Err(unknown_minor(subject, *minor, &latest_per_minor(spec, &releases, 6))),
        (None, _) => Err(bad_input(format!("{subject}: the version source lists no stable version"))),
    }
}

fn no_source(subject: &str) -> anyhow::Error {
    bad_input(format!("{subject} has no version source in its recipe: give an exact version"))
}

fn unknown_minor(subject: &str, minor: Minor, newest: &[(Minor, Release)]) -> anyhow::Error {
    let minors: Vec<String> = newest.iter().map(|(m, _)| m.to_string()).collect();
    bad_input(format!("{subject} has no stable release {minor} upstream (newest minors: {})", minors.join(", ")))
}

/// The newest stable release of each of the `count` newest minors, newest first.
pub fn latest_per_minor(spec: &VersionSpec, releases: &[Release], count: usize) -> Vec<(Minor, Release)> {
    let mut out: Vec<(Minor, Release)> = Vec::new();
    for release in releases.iter().filter(|r| !r.prerelease) {
        let Some(minor) = minor_of(spec, &release.version) else { continue };
        if !out.iter().any(|(m, _)| *m == minor) {
            out.push((minor, release.clone()));
        }
    }
    out.sort_by_key(|(minor, _)| std::cmp::Reverse(*minor));
    out.truncate(count);
    out
}

/// Up to five stable versions nearest to `version` in order (for "did you mean").
pub fn near(releases: &[Release], version: &str) -> Vec<String> {
    let stable: Vec<&Release> = releases.iter().filter(|r| !r.prerelease).collect();
    let position = stable.iter().position(|r| compare(&r.version, version).is_le()).unwrap_or(stable.len());
    let start = position.saturating_sub(2);
    stable.iter().skip(start).take(5).map(|r| r.version.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VersionSpec {
        VersionSpec { prefix: "v".into(), ..VersionSpec::default() }
    }

    fn releases(versions: &[&str]) -> Vec<Release> {
        let mut out: Vec<Release> = versions
            .iter()
            .map(|v| Release { version: v.to_string(), prerelease: looks_prerelease(&spec(), v) })
            .collect();
        sort_newest_first(&mut out);
        out
    }

    #[test]
    fn wanted_understands_latest_minors_and_exact_versions() {
        assert_eq!(wanted(&spec(), "k", "latest").unwrap(), Wanted::Latest);
        assert_eq!(wanted(&spec(), "k", "1.31").unwrap(), Wanted::Minor(Minor { major: 1, minor: 31 }));
        assert_eq!(wanted(&spec(), "k", "v1.31").unwrap(), Wanted::Minor(Minor { major: 1, minor: 31 }));
        assert_eq!(wanted(&spec(), "k", "1.31.2").unwrap(), Wanted::Exact("v1.31.2".parse().unwrap()));
        assert!(wanted(&spec(), "k", "1.31.x").is_err());
        assert!(wanted(&spec(), "k", "newest").is_err());
    }

    #[test]
    fn lists_sort_newest_first_with_prereleases_marked() {
        let list = releases(&["v1.31.9", "v1.32.0", "v1.32.10", "v1.33.0-rc.1", "v1.32.9", "v1.32.0"]);
        let versions: Vec<&str> = list.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1.33.0-rc.1", "v1.32.10", "v1.32.9", "v1.32.0", "v1.31.9"]);
        assert!(list[0].prerelease && !list[1].prerelease);
    }

    #[test]
    fn latest_per_minor_skips_prereleases_and_keeps_the_window() {
        let list = releases(&["v1.30.14", "v1.31.9", "v1.31.10", "v1.32.3", "v1.33.0-rc.1", "v1.29.1"]);
        let latest: Vec<String> =
            latest_per_minor(&spec(), &list, 3).iter().map(|(m, r)| format!("{m}={}", r.version)).collect();
        assert_eq!(latest, ["1.32=v1.32.3", "1.31=v1.31.10", "1.30=v1.30.14"]);
    }

    #[test]
    fn near_versions_surround_the_missing_one() {
        let list = releases(&["v1.32.3", "v1.32.2", "v1.32.1", "v1.32.0", "v1.31.9", "v1.31.8"]);
        assert_eq!(near(&list, "v1.32.99"), ["v1.32.3", "v1.32.2", "v1.32.1", "v1.32.0", "v1.31.9"]);
        assert_eq!(near(&list, "v1.31.85"), ["v1.32.1", "v1.32.0", "v1.31.9", "v1.31.8"]);
    }
}
