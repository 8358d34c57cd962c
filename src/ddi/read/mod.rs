//! Reading a DDI strictly: the GPT ([`gpt`]), the root, root-verity and root-verity-sig
//! partitions of one architecture, the UUIDs paired with the root hash, the hash tree
//! recomputed from the data ([`verity`]) and the signature checked against the node's
//! `verity.d` certificates ([`sig`]). What passes yields the verified filesystem bytes for
//! the filesystem's own strict reader (`crate::image::read::verify_span`).

pub mod gpt;
pub mod sig;
pub mod verity;

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde::Serialize;

use super::{SignatureJson, partition_types};
use crate::image::read::Span;
use crate::model::Arch;

/// Most bytes of a signature partition read.
const SIGNATURE_CAP: u64 = 1 << 20;

/// What a partition is to a DDI of its architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Root,
    RootVerity,
    RootVeritySig,
    Other,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Root => "root",
            Role::RootVerity => "root-verity",
            Role::RootVeritySig => "root-verity-sig",
            Role::Other => "other",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    pub number: u32,
    pub role: Role,
    pub type_uuid: String,
    pub uuid: String,
    pub label: String,
    pub offset: u64,
    pub size: u64,
}

/// The signer of a verified signature.
#[derive(Clone, Debug, Serialize)]
pub struct Signer {
    pub certificate: String,
    pub subject: String,
    pub fingerprint: String,
}

/// What the signature partition holds and whether a trusted certificate verifies it.
#[derive(Clone, Debug, Serialize)]
pub struct Signature {
    /// `certificateFingerprint` from the JSON, when there is one.
    pub claimed_fingerprint: Option<String>,
    /// Set when the signature verifies.
    pub signer: Option<Signer>,
    /// Why it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The signature is well formed but none of the trusted certificates made it.
    #[serde(skip)]
    pub unknown_signer: bool,
}

/// A DDI whose structure and hash tree are verified.
#[derive(Debug)]
pub struct Ddi {
    pub arch: Arch,
    pub sector_size: u64,
    pub partitions: Vec<Partition>,
    pub root_hash: String,
    pub verity: verity::Params,
    /// None: the image has no signature partition.
    pub signature: Option<Signature>,
    /// The root partition's verified bytes (the blocks the hash tree covers).
    pub data: Span,
}

/// Reads the DDI at `path` and verifies its GPT, hash tree and root hash, and its signature
/// against `trusted`. Structural faults and hash mismatches are errors; the signature's
/// outcome is reported in [`Ddi::signature`].
pub fn open(path: &Path, trusted: &[sig::Trusted]) -> Result<Ddi> {
    let image = Span::open(path)?;
    let table = gpt::read(&image)?;
    let arch = Arch::ALL
        .into_iter()
        .filter(|a| table.entries.iter().any(|e| e.type_uuid == partition_types(*a).root))
        .collect::<Vec<_>>();
    let arch = match arch[..] {
        [arch] => arch,
        [] => bail!("no root partition of a known architecture ({})", known_roots()),
        _ => bail!("root partitions of several architectures"),
    };
    let types = partition_types(arch);
    let partitions: Vec<Partition> = table
        .entries
        .iter()
        .map(|e| Partition {
            number: e.number,
            role: match e.type_uuid.as_str() {
                t if t == types.root => Role::Root,
                t if t == types.verity => Role::RootVerity,
                t if t == types.signature => Role::RootVeritySig,
                _ => Role::Other,
            },
            type_uuid: e.type_uuid.clone(),
            uuid: e.uuid.clone(),
            label: e.label.clone(),
            offset: e.offset,
            size: e.size,
        })
        .collect();
    let one = |role: Role| -> Result<Option<&Partition>> {
        let found: Vec<&Partition> = partitions.iter().filter(|p| p.role == role).collect();
        ensure!(found.len() <= 1, "{} {role} partitions ({arch}), expected one", found.len());
        Ok(found.first().copied())
    };
    let root = one(Role::Root)?.expect("the arch was chosen by its root partition");
    let hash = one(Role::RootVerity)?
        .with_context(|| format!("no root-verity partition ({arch}): bakery reads only verity DDIs"))?;
    let sig_part = one(Role::RootVeritySig)?;

    let data = image.sub(root.offset, root.size)?;
    let hash_span = image.sub(hash.offset, hash.size)?;
    let params = verity::superblock(&hash_span).context("root-verity partition")?;
    let root_hash = verity::check(&params, &data, &hash_span)?;
    let root_hex = sig::hex(&root_hash);
    let (want_root, want_verity) = (gpt::guid_be(&root_hash[..16]), gpt::guid_be(&root_hash[16..]));
    ensure!(
        root.uuid == want_root,
        "the root partition's UUID {} is not the first half of the root hash {root_hex} ({want_root})",
        root.uuid
    );
    ensure!(
        hash.uuid == want_verity,
        "the root-verity partition's UUID {} is not the second half of the root hash {root_hex} ({want_verity})",
        hash.uuid
    );
    let signature = match sig_part {
        None => None,
        Some(part) => Some(signature(&image.sub(part.offset, part.size)?, &root_hex, trusted)?),
    };
    let verified = image.sub(root.offset, params.data_blocks * params.data_block_size as u64)?;
    Ok(Ddi {
        arch,
        sector_size: table.sector_size,
        partitions,
        root_hash: root_hex,
        verity: params,
        signature,
        data: verified,
    })
}

/// Parses the signature partition (JSON, then NULs) and verifies it over `root_hex`.
fn signature(part: &Span, root_hex: &str, trusted: &[sig::Trusted]) -> Result<Signature> {
    ensure!(
        part.len() <= SIGNATURE_CAP,
        "the root-verity-sig partition has {} bytes, more than {SIGNATURE_CAP}",
        part.len()
    );
    let bytes = part.read_vec(0, part.len() as usize)?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    ensure!(
        bytes[end..].iter().all(|b| *b == 0),
        "the root-verity-sig partition has bytes after its JSON's NUL padding"
    );
    let json: SignatureJson =
        serde_json::from_slice(&bytes[..end]).context("the root-verity-sig partition is not the signature JSON")?;
    ensure!(
        json.root_hash == root_hex,
        "the signature partition's rootHash {} is not the root hash of the data {root_hex}",
        json.root_hash
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(json.signature.trim())
        .context("the signature partition's signature is not base64")?;
    let mut out = Signature {
        claimed_fingerprint: json.certificate_fingerprint.clone(),
        signer: None,
        rejected: None,
        unknown_signer: false,
    };
    match sig::verify(&der, root_hex.as_bytes(), trusted) {
        Ok(t) => {
            let signer = Signer {
                certificate: t.file.display().to_string(),
                subject: t.subject(),
                fingerprint: t.fingerprint(),
            };
            if let Some(claimed) = &json.certificate_fingerprint
                && claimed != &signer.fingerprint
            {
                out.rejected = Some(format!(
                    "certificateFingerprint {claimed} is not the fingerprint of the signer {} ({})",
                    signer.certificate, signer.fingerprint
                ));
            } else {
                out.signer = Some(signer);
            }
        }
        Err(sig::Rejection::Invalid(why)) => out.rejected = Some(why),
        Err(sig::Rejection::UnknownSigner(why)) => {
            out.rejected = Some(why);
            out.unknown_signer = true;
        }
    }
    Ok(out)
}

fn known_roots() -> String {
    Arch::ALL.iter().map(|a| format!("{a} {}", partition_types(*a).root)).collect::<Vec<_>>().join(", ")
}
