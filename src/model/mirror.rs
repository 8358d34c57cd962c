//! Mirrors: URL-prefix rewrites applied to every download and API call.
//!
//! Recipes always name real upstream URLs; a mirror (`https://dl.k8s.io=http://127.0.0.1:8080/k8s`)
//! redirects them. Plain `http://` is only ever fetched as a mirror target.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::bad_input;

/// One `FROM=TO` prefix rewrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirrorRule {
    pub from: String,
    pub to: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid mirror {0:?}: expected FROM=TO with http(s) URLs, e.g. https://dl.k8s.io=http://127.0.0.1:8080/dl.k8s.io"
)]
pub struct InvalidMirror(String);

impl MirrorRule {
    pub fn new(from: &str, to: &str) -> Result<Self, InvalidMirror> {
        let is_url = |s: &str| s.starts_with("https://") || s.starts_with("http://");
        if !is_url(from) || !is_url(to) {
            return Err(InvalidMirror(format!("{from}={to}")));
        }
        Ok(Self { from: from.to_string(), to: to.to_string() })
    }

    /// The rewritten URL, if `url` starts with this rule's prefix at a path boundary.
    fn apply(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.from)?;
        let at_boundary = self.from.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#']);
        if !at_boundary {
            return None;
        }
        let to = self.to.trim_end_matches('/');
        let rest = if self.from.ends_with('/') { format!("/{rest}") } else { rest.to_string() };
        Some(format!("{to}{rest}"))
    }
}

impl FromStr for MirrorRule {
    type Err = InvalidMirror;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s.split_once('=').ok_or_else(|| InvalidMirror(s.to_string()))?;
        Self::new(from.trim(), to.trim())
    }
}

impl fmt::Display for MirrorRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.from, self.to)
    }
}

/// The configured mirrors; the longest matching prefix wins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mirrors {
    rules: Vec<MirrorRule>,
}

impl Mirrors {
    /// Rules in precedence order: a later rule for the same `from` replaces an earlier one.
    pub fn new(rules: impl IntoIterator<Item = MirrorRule>) -> Self {
        let mut merged: Vec<MirrorRule> = Vec::new();
        for rule in rules {
            merged.retain(|r| r.from != rule.from);
            merged.push(rule);
        }
        merged.sort_by(|a, b| b.from.len().cmp(&a.from.len()).then_with(|| a.from.cmp(&b.from)));
        Self { rules: merged }
    }

    pub fn rules(&self) -> &[MirrorRule] {
        &self.rules
    }

    /// The URL to fetch for `upstream`: rewritten by the first matching mirror, and refused when it
    /// would be plain http without a mirror having been configured for it.
    pub fn resolve(&self, upstream: &str) -> anyhow::Result<String> {
        if let Some(url) = self.rules.iter().find_map(|rule| rule.apply(upstream)) {
            return Ok(url);
        }
        if upstream.starts_with("https://") {
            Ok(upstream.to_string())
        } else if upstream.starts_with("http://") {
            Err(bad_input(format!(
                "refusing plain http URL {upstream}: bakery fetches http only from a configured mirror (--mirror FROM=TO)"
            )))
        } else {
            Err(bad_input(format!("unsupported URL {upstream:?}: only https (or a mirror) is fetched")))
        }
    }

    /// The rules whose FROM matches none of `upstreams` (the URLs a plan fetches): a rule
    /// written the wrong way round (`TO=FROM`) is one.
    pub fn unused(&self, upstreams: &[&str]) -> Vec<&MirrorRule> {
        self.rules.iter().filter(|rule| !upstreams.iter().any(|url| rule.apply(url).is_some())).collect()
    }

    /// Warns about each [`Mirrors::unused`] rule, naming it.
    pub fn warn_unused(&self, upstreams: &[&str]) {
        for rule in self.unused(upstreams) {
            let swapped = upstreams.iter().any(|url| url.starts_with(&rule.to));
            let hint = if swapped {
                " (FROM and TO look swapped: FROM is the upstream prefix, e.g. https://dl.k8s.io=http://mirror/k8s)"
            } else {
                " (FROM is the upstream prefix the recipe names, e.g. https://dl.k8s.io)"
            };
            tracing::warn!("mirror rule {rule} matches no URL of this build{hint}");
        }
    }

    /// [`Mirrors::resolve`] for a URL whose content a verified signature covers (a release with
    /// `Verify=yes`, as systemd-sysupdate accepts it): plain http is then allowed without a mirror.
    pub fn resolve_signed(&self, upstream: &str) -> anyhow::Result<String> {
        match self.rules.iter().find_map(|rule| rule.apply(upstream)) {
            Some(url) => Ok(url),
            None if upstream.starts_with("http://") => Ok(upstream.to_string()),
            None => self.resolve(upstream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(rules: &[&str]) -> Mirrors {
        Mirrors::new(rules.iter().map(|r| r.parse().unwrap()))
    }

    #[test]
    fn rewrites_by_longest_prefix_at_path_boundaries() {
        let m =
            mirrors(&["https://dl.k8s.io=http://127.0.0.1:1/k8s", "https://dl.k8s.io/release=http://127.0.0.1:1/rel/"]);
        assert_eq!(m.resolve("https://dl.k8s.io/x").unwrap(), "http://127.0.0.1:1/k8s/x");
        assert_eq!(m.resolve("https://dl.k8s.io/release/v1").unwrap(), "http://127.0.0.1:1/rel/v1");
        assert_eq!(m.resolve("https://dl.k8s.io.evil.example/x").unwrap(), "https://dl.k8s.io.evil.example/x");
    }

    #[test]
    fn rules_matching_no_url_are_unused() {
        let m = mirrors(&["http://127.0.0.1:1/k8s=https://dl.k8s.io", "https://github.com=http://127.0.0.1:1/gh"]);
        let urls = ["https://dl.k8s.io/release/v1/kubelet", "https://github.com/x/y"];
        let unused: Vec<String> = m.unused(&urls).iter().map(|r| r.to_string()).collect();
        assert_eq!(unused, ["http://127.0.0.1:1/k8s=https://dl.k8s.io"]);
    }

    #[test]
    fn later_rules_replace_earlier_ones_for_the_same_prefix() {
        let m = mirrors(&["https://a.example=http://one", "https://a.example=http://two"]);
        assert_eq!(m.resolve("https://a.example/f").unwrap(), "http://two/f");
    }

    #[test]
    fn plain_http_only_through_a_mirror() {
        let m = mirrors(&["http://legacy.example=https://safe.example"]);
        assert!(m.resolve("http://other.example/f").is_err());
        assert_eq!(m.resolve("http://legacy.example/f").unwrap(), "https://safe.example/f");
        assert_eq!(m.resolve_signed("http://other.example/f").unwrap(), "http://other.example/f", "signed");
        assert_eq!(m.resolve_signed("http://legacy.example/f").unwrap(), "https://safe.example/f");
        assert!(m.resolve_signed("ftp://other.example/f").is_err());
        assert!(Mirrors::default().resolve("ftp://x/y").is_err());
    }

    #[test]
    fn rejects_rules_without_urls() {
        assert!("dl.k8s.io=mirror".parse::<MirrorRule>().is_err());
        assert!("https://a".parse::<MirrorRule>().is_err());
    }
}
