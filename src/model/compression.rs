//! SquashFS compression choices and their levels (the same defaults as mksquashfs).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The compressor for data and metadata blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// zlib level 9: every kernel with SquashFS reads it.
    #[default]
    Gzip,
    /// zstd level 15 (mksquashfs's default): smaller, needs Linux 4.14+.
    Zstd,
    /// xz preset 6: smallest, slowest.
    Xz,
    /// lz4: fastest to read, largest.
    Lz4,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown compression {0:?}: valid are gzip, zstd, xz, lz4")]
pub struct UnknownCompression(String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            "lz4" => Ok(Compression::Lz4),
            other => Err(UnknownCompression(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
        })
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
