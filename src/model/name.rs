//! Extension names: the `<ext>` in `<ext>-<version>-<arch>.raw` and `extension-release.<ext>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid extension name: ASCII letters, digits, `-` and `_`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtName(String);

impl ExtName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid extension name {0:?}: use letters, digits, '-' and '_', starting with a letter or digit")]
pub struct InvalidName(String);

impl FromStr for ExtName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid { Ok(Self(s.to_string())) } else { Err(InvalidName(s.to_string())) }
    }
}

impl fmt::Display for ExtName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ExtName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExtName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sysext_style_names_and_rejects_paths() {
        assert!("cni-plugins".parse::<ExtName>().is_ok());
        assert!("cilium_cli2".parse::<ExtName>().is_ok());
        for bad in ["", "../etc", "a/b", "-x", "kube.rnetes", "x y"] {
            assert!(bad.parse::<ExtName>().is_err(), "{bad}");
        }
    }
}
