//! The protective MBR and the primary GPT of a disk image, read strictly: header and entry
//! CRCs, the header's own bounds, every partition inside the usable area, none overlapping.
//!
//! A small parser rather than `gptman`: the reader needs only these checks on a bounded
//! window of a file, never a block device or a writer, and `gptman` would bring its own
//! error types, `bincode` and ioctl code for what is about 150 lines here.

use anyhow::{Result, bail, ensure};

use crate::image::read::Span;

/// The sector size DDIs use here (UAPI.3 allows 4096 too; a 4096-byte GPT is looked for there).
const SECTOR_SIZES: [u64; 2] = [512, 4096];
/// Most entries a GPT may declare, and the entry sizes accepted.
const MAX_ENTRIES: u32 = 1024;
const ENTRY_SIZE: u32 = 128;

/// One used GPT entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based, as `sfdisk` and systemd count.
    pub number: u32,
    /// Lowercase hyphenated.
    pub type_uuid: String,
    pub uuid: String,
    pub label: String,
    /// Bytes from the start of the image.
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub sector_size: u64,
    pub entries: Vec<Entry>,
}

/// Reads the protective MBR and the primary GPT of `image`.
pub fn read(image: &Span) -> Result<Table> {
    let mbr = image.read_vec(0, 512)?;
    ensure!(mbr[510..512] == [0x55, 0xaa], "no MBR boot signature at offset 510");
    ensure!(
        (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xee),
        "the MBR has no protective partition (type 0xee): not a GPT disk image"
    );
    for sector_size in SECTOR_SIZES {
        if image.len() >= sector_size * 2 && image.read_vec(sector_size, 8)? == b"EFI PART" {
            return read_header(image, sector_size);
        }
    }
    bail!("no GPT header (\"EFI PART\") at LBA 1 for 512- or 4096-byte sectors")
}

fn read_header(image: &Span, sector: u64) -> Result<Table> {
    let head = image.read_vec(sector, 92)?;
    let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    ensure!(u32_at(8) == 0x0001_0000, "GPT revision {:#x}, expected 1.0", u32_at(8));
    let header_size = u32_at(12);
    ensure!(header_size == 92, "GPT header size {header_size}, expected 92");
    let mut zeroed = head.clone();
    zeroed[16..20].fill(0);
    let crc = crc32fast::hash(&zeroed);
    ensure!(crc == u32_at(16), "GPT header CRC {:#010x}, computed {crc:#010x}", u32_at(16));
    ensure!(u64_at(24) == 1, "the primary GPT header says it is at LBA {}, not 1", u64_at(24));
    let sectors = image.len() / sector;
    let (first, last) = (u64_at(40), u64_at(48));
    let (entries_lba, count, entry_size) = (u64_at(72), u32_at(80), u32_at(84));
    ensure!(entry_size == ENTRY_SIZE, "GPT entry size {entry_size}, expected {ENTRY_SIZE}");
    ensure!(count <= MAX_ENTRIES, "the GPT declares {count} entries, more than {MAX_ENTRIES}");
    let table_bytes = count as u64 * entry_size as u64;
    let table_end = entries_lba + table_bytes.div_ceil(sector);
    ensure!(
        entries_lba >= 2 && table_end <= first,
        "the GPT entry array (LBA {entries_lba}..{table_end}) overlaps the usable area from LBA {first}"
    );
    ensure!(
        first <= last && last < sectors,
        "usable LBAs {first}..={last} are not inside the image ({sectors} sectors)"
    );
    let table = image.read_vec(entries_lba * sector, table_bytes as usize)?;
    let crc = crc32fast::hash(&table);
    ensure!(crc == u32_at(88), "GPT entry array CRC {:#010x}, computed {crc:#010x}", u32_at(88));

    let mut entries = Vec::new();
    for (i, raw) in table.chunks_exact(ENTRY_SIZE as usize).enumerate() {
        if raw[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let (start, end) = (
            u64::from_le_bytes(raw[32..40].try_into().expect("8 bytes")),
            u64::from_le_bytes(raw[40..48].try_into().expect("8 bytes")),
        );
        let number = i as u32 + 1;
        ensure!(
            first <= start && start <= end && end <= last,
            "partition {number} (LBA {start}..={end}) is not inside the usable LBAs {first}..={last}"
        );
        let units: Vec<u16> =
            raw[56..128].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
        let label =
            String::from_utf16(&units).map_err(|_| anyhow::anyhow!("partition {number}: label is not UTF-16"))?;
        entries.push(Entry {
            number,
            type_uuid: guid(&raw[..16]),
            uuid: guid(&raw[16..32]),
            label,
            offset: start * sector,
            size: (end - start + 1) * sector,
        });
    }
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.offset);
    for pair in sorted.windows(2) {
        ensure!(
            pair[0].offset + pair[0].size <= pair[1].offset,
            "partitions {} and {} overlap",
            pair[0].number,
            pair[1].number
        );
    }
    Ok(Table { sector_size: sector, entries })
}

/// A GPT GUID (mixed-endian on disk) as the lowercase hyphenated text.
pub fn guid(raw: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        raw[3],
        raw[2],
        raw[1],
        raw[0],
        raw[5],
        raw[4],
        raw[7],
        raw[6],
        raw[8],
        raw[9],
        raw[10..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A UUID stored in text order (the veritysetup superblock's) as the lowercase hyphenated text.
pub fn guid_be(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}
