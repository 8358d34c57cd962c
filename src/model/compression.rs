//! Image formats and their compression choices, with the levels bakery uses (mksquashfs's
//! defaults for SquashFS; sysext-bakery's `lz4hc,12` for EROFS).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The filesystem an image is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// Every kernel and systemd reads it.
    #[default]
    Squashfs,
    /// Linux 5.13+ with lz4/lz4hc (64 KiB physical clusters), 5.4+ uncompressed; carries a
    /// filesystem UUID (what overlayfs wants); mkosi's default for sysexts.
    Erofs,
}

impl Format {
    /// The compressions this format can be written with, the default first.
    pub fn compressions(self) -> &'static [Compression] {
        match self {
            Format::Squashfs => &[Compression::Gzip, Compression::Zstd, Compression::Xz, Compression::Lz4],
            Format::Erofs => {
                &[Compression::Lz4hc, Compression::Lz4, Compression::Zstd, Compression::Lzma, Compression::None]
            }
        }
    }

    pub fn default_compression(self) -> Compression {
        self.compressions()[0]
    }

    /// `compression` when this format can be written with it, else an error listing the choices.
    pub fn check(self, compression: Compression) -> Result<Compression, UnsupportedCompression> {
        if self.compressions().contains(&compression) {
            Ok(compression)
        } else {
            Err(UnsupportedCompression { format: self, compression })
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown format {0:?}: valid are squashfs, erofs")]
pub struct UnknownFormat(String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "squashfs" => Ok(Format::Squashfs),
            "erofs" => Ok(Format::Erofs),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
        })
    }
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The compressor for data (and, in SquashFS, metadata) blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compression {
    /// zlib level 9: every kernel with SquashFS reads it (SquashFS's default).
    Gzip,
    /// zstd level 15 (mksquashfs's default): SquashFS on Linux 4.14+, EROFS on about 6.10+.
    Zstd,
    /// xz preset 6: smallest SquashFS, slowest.
    Xz,
    /// lz4: fastest to read, largest. EROFS (64 KiB physical clusters) on Linux 5.13+.
    Lz4,
    /// lz4hc level 12, EROFS's default (sysext-bakery's): lz4's read speed, smaller; Linux 5.13+.
    Lz4hc,
    /// MicroLZMA preset 6 (EROFS, Linux 5.16+): smallest EROFS.
    Lzma,
    /// Stored uncompressed (EROFS).
    None,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown compression {0:?}: valid are gzip, zstd, xz, lz4 (squashfs); lz4hc, lz4, zstd, lzma, none (erofs)")]
pub struct UnknownCompression(String);

#[derive(Debug, thiserror::Error)]
#[error("{format} images cannot be compressed with {compression}: valid are {}", list(.format.compressions()))]
pub struct UnsupportedCompression {
    pub format: Format,
    pub compression: Compression,
}

fn list(compressions: &[Compression]) -> String {
    compressions.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            "lz4" => Ok(Compression::Lz4),
            "lz4hc" => Ok(Compression::Lz4hc),
            "lzma" => Ok(Compression::Lzma),
            "none" => Ok(Compression::None),
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
            Compression::Lz4hc => "lz4hc",
            Compression::Lzma => "lzma",
            Compression::None => "none",
        })
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_takes_its_own_compressions_and_names_them_when_not() {
        assert_eq!(Format::Squashfs.default_compression(), Compression::Gzip);
        assert_eq!(Format::Erofs.default_compression(), Compression::Lz4hc);
        assert!(Format::Erofs.check(Compression::Zstd).is_ok());
        let err = Format::Squashfs.check(Compression::Lz4hc).unwrap_err().to_string();
        assert_eq!(err, "squashfs images cannot be compressed with lz4hc: valid are gzip, zstd, xz, lz4");
        let err = Format::Erofs.check(Compression::Gzip).unwrap_err().to_string();
        assert_eq!(err, "erofs images cannot be compressed with gzip: valid are lz4hc, lz4, zstd, lzma, none");
        for format in [Format::Squashfs, Format::Erofs] {
            assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
            for c in format.compressions() {
                assert_eq!(c.to_string().parse::<Compression>().unwrap(), *c);
            }
        }
    }
}
