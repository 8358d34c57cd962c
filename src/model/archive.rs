//! What an unpacked archive holds: the index the cache keeps per archive and the plan reads.

use serde::{Deserialize, Serialize};

use super::Sha256;

/// Everything an archive holds, in archive order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveIndex {
    pub entries: Vec<ArchiveEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    /// Normalised relative path (no leading `./`).
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    File {
        sha256: Sha256,
        size: u64,
        mode: u16,
    },
    Symlink {
        target: String,
    },
    Dir,
    /// Devices, fifos and the like: never installed.
    Other {
        what: String,
    },
}
