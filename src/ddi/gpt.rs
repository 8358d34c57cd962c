//! The GPT around a DDI's partitions (gptman): 512-byte sectors, a protective MBR, the disk
//! GUID given (derived from the inputs), UUIDs in GPT's mixed-endian encoding.

use std::fs::File;

use anyhow::{Context, Result, anyhow};

/// Logical sector size of the table.
pub const SECTOR: u64 = 512;
/// The backup table at the end of the disk: 32 sectors of entries and the header.
pub const BACKUP_SECTORS: u64 = 33;
/// GPT attribute bit 60: read-only (UAPI.2).
pub const READ_ONLY: u64 = 1 << 60;

/// One partition, its offset and size in bytes (sector multiples).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub type_uuid: [u8; 16],
    pub uuid: [u8; 16],
    pub name: String,
    pub offset: u64,
    pub size: u64,
    pub attributes: u64,
}

/// A UUID string's 16 bytes in the order it is written (RFC 9562).
pub fn parse_uuid(text: &str) -> Result<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    anyhow::ensure!(hex.len() == 32, "{text:?} is not a UUID");
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| anyhow!("{text:?} is not a UUID"))?;
    }
    Ok(out)
}

/// `uuid` (RFC byte order) as GPT stores it: the first three fields little-endian.
pub fn mixed_endian(uuid: [u8; 16]) -> [u8; 16] {
    let mut out = uuid;
    out[..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

/// Writes the protective MBR and the primary and backup tables into `file`, which already has
/// its final size.
pub fn write_table(file: &mut File, disk_guid: [u8; 16], partitions: &[Partition]) -> Result<()> {
    let mut gpt = gptman::GPT::new_from(file, SECTOR, mixed_endian(disk_guid)).context("laying out the GPT")?;
    for (i, p) in partitions.iter().enumerate() {
        gpt[i as u32 + 1] = gptman::GPTPartitionEntry {
            partition_type_guid: mixed_endian(p.type_uuid),
            unique_partition_guid: mixed_endian(p.uuid),
            starting_lba: p.offset / SECTOR,
            ending_lba: (p.offset + p.size) / SECTOR - 1,
            attribute_bits: p.attributes,
            partition_name: p.name.as_str().into(),
        };
    }
    gpt.write_into(file).context("writing the GPT")?;
    gptman::GPT::write_protective_mbr_into(file, SECTOR).context("writing the protective MBR")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_endian_swaps_the_first_three_fields() {
        let uuid = parse_uuid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709").unwrap();
        assert_eq!(mixed_endian(uuid)[..8], [0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d]);
        assert_eq!(mixed_endian(uuid)[8..], uuid[8..]);
        assert!(parse_uuid("4f68bce3").is_err());
    }
}
