//! Paths inside an image (`usr/bin/kubelet`): relative, normalised, never escaping the root.

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

/// A normalised path below the image root. Displayed with a leading `/`.
///
/// Ordered component by component (`usr/a/b` < `usr/a-b`), the order SquashFS writers sort in.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    /// Parses a path from a recipe or an archive. A leading `/`, `.` and empty components are
    /// dropped; `..`, NUL, newline and backslash are refused (they could escape the image root,
    /// or read differently elsewhere), as are names over 255 bytes and paths over 4095 (what the
    /// kernel and SquashFS hold). This is bakery's one path rule: archive entries, recipe
    /// sources and repository files all go through it.
    pub fn parse(path: &str) -> Result<Self, String> {
        Self::parse_relative(path.trim_start_matches('/'))?
            .ok_or_else(|| format!("path {path:?} names the image root, not a file"))
    }

    /// [`ImagePath::parse`] for a path that must be relative; `None` when it names the root
    /// (`./`).
    pub fn parse_relative(path: &str) -> Result<Option<Self>, String> {
        if path.starts_with('/') {
            return Err(format!("path {path:?} is absolute"));
        }
        if let Some(c) = path.chars().find(|c| matches!(c, '\0' | '\n' | '\\')) {
            return Err(format!("path {path:?} contains {c:?}"));
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(format!("path {path:?} escapes the image root ('..')")),
                long if long.len() > 255 => return Err(format!("path {path:?} has a name over 255 bytes")),
                other => parts.push(other),
            }
        }
        let joined = parts.join("/");
        if joined.len() > 4095 {
            let start: String = path.chars().take(40).collect();
            return Err(format!("path {start:?}... is longer than 4095 bytes"));
        }
        Ok((!parts.is_empty()).then_some(Self(joined)))
    }

    /// `self/rel`, with the same rules as [`ImagePath::parse`] for `rel`.
    pub fn join(&self, rel: &str) -> Result<Self, String> {
        Self::parse(&format!("{}/{rel}", self.0))
    }

    /// The path without the leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The first component (`usr` for `usr/bin/kubelet`).
    pub fn top(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    pub fn parent(&self) -> Option<ImagePath> {
        self.0.rsplit_once('/').map(|(parent, _)| ImagePath(parent.to_string()))
    }

    /// Every ancestor directory, outermost first (`usr`, `usr/bin` for `usr/bin/kubelet`).
    pub fn ancestors(&self) -> Vec<ImagePath> {
        let mut out = Vec::new();
        let mut current = self.parent();
        while let Some(path) = current {
            current = path.parent();
            out.push(path);
        }
        out.reverse();
        out
    }
}

impl Ord for ImagePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl Serialize for ImagePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(ImagePath::parse("/usr//bin/./kubelet").unwrap().as_str(), "usr/bin/kubelet");
        assert_eq!(ImagePath::parse("usr/local/bin/cni/").unwrap().as_str(), "usr/local/bin/cni");
        assert!(ImagePath::parse("usr/../../etc/passwd").unwrap_err().contains("escapes"));
        assert!(ImagePath::parse("/").is_err());
        assert!(ImagePath::parse("usr/lib").unwrap().join("../x").is_err());
        for bad in ["usr/a\\b", "usr/a\nb", "usr/a\0b", "/abs"] {
            assert!(ImagePath::parse_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ImagePath::parse_relative("./").unwrap(), None);
        assert_eq!(ImagePath::parse_relative("./a//b/").unwrap().unwrap().as_str(), "a/b");
        assert!(ImagePath::parse(&"a/".repeat(2100)).unwrap_err().contains("4095"));
        assert!(ImagePath::parse(&"x".repeat(256)).unwrap_err().contains("255"));
    }

    #[test]
    fn orders_by_component_like_squashfs() {
        let a = ImagePath::parse("usr/a/b").unwrap();
        let b = ImagePath::parse("usr/a-b").unwrap();
        assert!(a < b, "component order puts usr/a/... before usr/a-b");
        assert!(a.as_str() > b.as_str(), "plain string order would not");
    }

    #[test]
    fn ancestors_outermost_first() {
        let p = ImagePath::parse("usr/bin/kubelet").unwrap();
        let names: Vec<String> = p.ancestors().iter().map(|a| a.as_str().to_string()).collect();
        assert_eq!(names, ["usr", "usr/bin"]);
        assert_eq!(p.top(), "usr");
        assert_eq!(p.file_name(), "kubelet");
    }
}
