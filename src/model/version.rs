//! Extension versions as they appear in image file names (`v1.32.0`).
//!
//! Only characters systemd-sysupdate can match in a file name are allowed (letters, digits,
//! `.`, `_`, `+`, `-`); recipes add their own format on top (see `recipe::VersionFormat`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version string safe to put in an image file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtVersion(String);

impl ExtVersion {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed version {0:?}: {1}")]
pub struct MalformedVersion(pub String, pub &'static str);

impl FromStr for ExtVersion {
    type Err = MalformedVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| MalformedVersion(s.to_string(), why);
        if s.is_empty() || s.len() > 128 {
            return Err(err("a version has 1 to 128 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(err("a version starts with a letter or digit"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c)) {
            return Err(err("a version may only contain letters, digits and . _ + - (what systemd-sysupdate matches)"));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for ExtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ExtVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExtVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_release_versions() {
        for ok in ["v1.32.0", "1.7.24", "v1.33.0-rc.1", "3.5.17+build_2"] {
            assert_eq!(ok.parse::<ExtVersion>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_what_sysupdate_cannot_match_or_paths() {
        for bad in ["", "v1.32.0~rc1", "v1^2", "../v1", "v1/2", "v 1", ".v1"] {
            assert!(bad.parse::<ExtVersion>().is_err(), "{bad}");
        }
    }
}
