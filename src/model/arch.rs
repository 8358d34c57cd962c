//! CPU architectures, named the way systemd names them (`x86-64`, `arm64`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An architecture bakery builds images for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// systemd's name, used in `ARCHITECTURE=` and image file names.
    pub fn systemd_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Go's name (`GOARCH`), used by most upstream release URLs.
    pub fn goarch(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`).
    pub fn uname(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }
}

/// An architecture name bakery does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {0:?}: valid are x86-64 and arm64 (amd64, x86_64 and aarch64 are accepted)")]
pub struct UnknownArch(String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86-64" | "x86_64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.systemd_name())
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.systemd_name())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_go_and_kernel_names() {
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("x86-64".parse::<Arch>().unwrap().to_string(), "x86-64");
        assert_eq!(Arch::Arm64.goarch(), "arm64");
    }

    #[test]
    fn unknown_arch_lists_the_valid_ones() {
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("riscv64") && err.contains("x86-64") && err.contains("arm64"), "{err}");
    }
}
