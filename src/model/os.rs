//! Which host OS an image is for: `_any` or an os-release `ID`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// `ID=` in the extension-release file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OsTarget {
    /// `ID=_any`: merges on every OS (no `SYSEXT_LEVEL` needed).
    #[default]
    Any,
    /// `ID=<id>` with `SYSEXT_LEVEL=1.0`: merges only where the host's os-release matches.
    Id(String),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid --os {0:?}: use _any or an os-release ID such as flatcar or debian (lowercase letters, digits, '.', '_', '-')"
)]
pub struct InvalidOs(String);

impl FromStr for OsTarget {
    type Err = InvalidOs;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "_any" {
            return Ok(OsTarget::Any);
        }
        let valid =
            !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if valid { Ok(OsTarget::Id(s.to_string())) } else { Err(InvalidOs(s.to_string())) }
    }
}

impl fmt::Display for OsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OsTarget::Any => f.write_str("_any"),
            OsTarget::Id(id) => f.write_str(id),
        }
    }
}

impl Serialize for OsTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_and_ids() {
        assert_eq!("_any".parse::<OsTarget>().unwrap(), OsTarget::Any);
        assert_eq!("flatcar".parse::<OsTarget>().unwrap(), OsTarget::Id("flatcar".into()));
        assert!("Flat Car".parse::<OsTarget>().is_err());
    }
}
