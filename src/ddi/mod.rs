//! Signed dm-verity Discoverable Disk Images (UAPI.3 DDI, UAPI.2 partition types): the
//! filesystem image (SquashFS or EROFS) in a GPT with its verity hash tree and a signature
//! partition. Writing (`write`, `verity`, `gpt`, `sign`) is the build side's; reading and
//! verifying (`read`) serves `inspect`, `release` and the node.
//!
//! Shared by both sides: the partition type UUIDs per architecture and the signature
//! partition's JSON.

pub mod read;

use serde::{Deserialize, Serialize};

use crate::model::Arch;

pub mod gpt;
pub mod sign;
pub mod verity;
pub mod write;

/// The three partition types of a sysext DDI for one architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionTypes {
    pub root: &'static str,
    pub verity: &'static str,
    pub signature: &'static str,
}

/// The root, root-verity and root-verity-sig partition types of the Discoverable Partitions
/// Specification for `arch`.
pub fn partition_types(arch: Arch) -> PartitionTypes {
    match arch {
        Arch::X86_64 => PartitionTypes {
            root: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
            verity: "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
            signature: "41092b05-9fc8-4523-994f-2def0408b176",
        },
        Arch::Arm64 => PartitionTypes {
            root: "b921b045-1df0-41c3-af44-4c6f280d3fae",
            verity: "df3300ce-d69f-4c92-978c-9bfb0f38d820",
            signature: "6db69de6-29f4-4758-a7a5-962190f00ce3",
        },
    }
}

/// The signature partition's JSON, NUL-padded to a multiple of 4096 bytes on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureJson {
    /// The verity root hash, lowercase hex.
    pub root_hash: String,
    /// Base64 of the DER PKCS#7 signature over the `root_hash` string.
    pub signature: String,
    /// sha256 of the signing certificate's DER, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
}
