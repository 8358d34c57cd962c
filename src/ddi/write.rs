//! Writes a DDI: the filesystem image at 1 MiB, its verity hash partition and the signature
//! partition after it (4096-aligned), then the GPT. Every byte follows from the filesystem,
//! the seed (the build's inputs digest) and the key: the salt and the disk GUID from the seed,
//! the data and verity partition UUIDs from the root hash (the first and last 128 bits, as
//! systemd pairs them), the signature partition's from the root hash too.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::gpt::{self, Partition};
use super::sign::Signer;
use super::verity::{self, BLOCK};
use super::{SignatureJson, partition_types};
use crate::model::Arch;

/// Where the first partition starts (like systemd-repart and sfdisk).
pub const FIRST_OFFSET: u64 = 1 << 20;

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub root_hash: String,
    pub partitions: Vec<Partition>,
    pub size: u64,
}

/// sha256 of `label` and `bytes`: one derived value per purpose.
fn derive(label: &str, bytes: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(label.as_bytes()).chain_update([0]).chain_update(bytes).finalize().into()
}

/// A version 8 UUID from derived bytes.
fn uuid8(digest: [u8; 32]) -> [u8; 16] {
    let mut uuid: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

fn align(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Writes the DDI of the filesystem image `fs` into `out` (an empty file).
pub fn write(fs: &mut File, arch: Arch, seed: &[u8; 32], signer: &Signer, out: &mut File) -> Result<Written> {
    let fs_len = fs.metadata().context("reading the filesystem image's size")?.len();
    let data_blocks = fs_len.div_ceil(BLOCK as u64).max(1);
    let data_size = data_blocks * BLOCK as u64;
    let salt = derive("bakery ddi verity salt", seed);

    // One pass over the filesystem: copied into the root partition while it is hashed.
    fs.seek(SeekFrom::Start(0))?;
    out.seek(SeekFrom::Start(FIRST_OFFSET))?;
    let padded = BufReader::with_capacity(1 << 20, &mut *fs).chain(std::io::repeat(0)).take(data_size);
    let mut tee = Tee { inner: padded, copy: BufWriter::with_capacity(1 << 20, &mut *out) };
    let mut tree = verity::hash_tree(&mut tee, data_blocks, &salt).context("hashing the filesystem image")?;
    tee.copy.flush().context("writing the root partition")?;
    drop(tee);

    let root_hash = verity::hex(&tree.root_hash);
    let data_uuid: [u8; 16] = tree.root_hash[..16].try_into().expect("16 bytes");
    let verity_uuid: [u8; 16] = tree.root_hash[16..].try_into().expect("16 bytes");
    tree.set_uuid(verity_uuid);
    let signature_uuid = uuid8(derive("bakery ddi signature partition", &tree.root_hash));

    let signature = signer.sign(root_hash.as_bytes()).context("signing the root hash")?;
    let json = SignatureJson {
        root_hash: root_hash.clone(),
        signature: base64::engine::general_purpose::STANDARD.encode(&signature),
        certificate_fingerprint: Some(signer.fingerprint()),
    };
    let mut sig_bytes = serde_json::to_vec(&json)?;
    sig_bytes.resize(align(sig_bytes.len() as u64, BLOCK as u64) as usize, 0);

    let types = partition_types(arch);
    let name = format!("root-{}", arch.systemd_name());
    let verity_offset = FIRST_OFFSET + data_size;
    let sig_offset = align(verity_offset + tree.hash_area.len() as u64, BLOCK as u64);
    let end = sig_offset + sig_bytes.len() as u64;
    let size = align(end + gpt::BACKUP_SECTORS * gpt::SECTOR, BLOCK as u64);
    let partitions = vec![
        Partition {
            type_uuid: gpt::parse_uuid(types.root)?,
            uuid: data_uuid,
            name: name.clone(),
            offset: FIRST_OFFSET,
            size: data_size,
            attributes: gpt::READ_ONLY,
        },
        Partition {
            type_uuid: gpt::parse_uuid(types.verity)?,
            uuid: verity_uuid,
            name: format!("{name}-verity"),
            offset: verity_offset,
            size: tree.hash_area.len() as u64,
            attributes: gpt::READ_ONLY,
        },
        Partition {
            type_uuid: gpt::parse_uuid(types.signature)?,
            uuid: signature_uuid,
            name: format!("{name}-verity-sig"),
            offset: sig_offset,
            size: sig_bytes.len() as u64,
            attributes: gpt::READ_ONLY,
        },
    ];
    out.seek(SeekFrom::Start(verity_offset))?;
    out.write_all(&tree.hash_area).context("writing the verity partition")?;
    out.seek(SeekFrom::Start(sig_offset))?;
    out.write_all(&sig_bytes).context("writing the signature partition")?;
    out.set_len(size).context("sizing the DDI")?;
    gpt::write_table(out, uuid8(derive("bakery ddi disk", seed)), &partitions)?;
    out.sync_all().context("syncing the DDI")?;
    Ok(Written { root_hash, partitions, size })
}

/// A reader that writes what it reads to `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}
