//! The SquashFS xattr table, which backhand does not write: key/value lists in metadata blocks,
//! an id table pointing at them, and a header with the id table's block index.

use std::collections::HashMap;

use anyhow::{Result, bail};

use super::format::{Codec, MetadataWriter};

/// Name prefixes SquashFS stores as a type number.
const PREFIXES: [(&str, u16); 3] = [("user.", 0), ("trusted.", 1), ("security.", 2)];

/// Collects the xattr sets of an image; identical sets share one id.
#[derive(Default)]
pub struct XattrTable {
    sets: Vec<Vec<(String, Vec<u8>)>>,
    ids: HashMap<Vec<(String, Vec<u8>)>, u32>,
}

impl XattrTable {
    /// The id of this set of `(full name, value)` pairs.
    pub fn add(&mut self, mut set: Vec<(String, Vec<u8>)>) -> Result<u32> {
        set.sort();
        for (name, _) in &set {
            if split_prefix(name).is_none() {
                bail!("xattr {name:?} has no user., trusted. or security. prefix");
            }
        }
        if let Some(id) = self.ids.get(&set) {
            return Ok(*id);
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        Ok(id)
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Appends the table to `out`, which starts at absolute offset `base` in the image, and
    /// returns the absolute offset of the table's header (the superblock's `xattr_table`).
    pub fn write(&self, codec: &Codec, base: u64, out: &mut Vec<u8>) -> Result<u64> {
        let kv_start = base + out.len() as u64;
        let mut kv = MetadataWriter::new(codec);
        let mut ids = Vec::with_capacity(self.sets.len() * 16);
        for set in &self.sets {
            let reference = kv.reference();
            let mut size = 0u32;
            for (name, value) in set {
                let (kind, short) = split_prefix(name).expect("checked in add");
                kv.write(&kind.to_le_bytes())?;
                kv.write(&(short.len() as u16).to_le_bytes())?;
                kv.write(short.as_bytes())?;
                kv.write(&(value.len() as u32).to_le_bytes())?;
                kv.write(value)?;
                size += name.len() as u32 + 1 + value.len() as u32;
            }
            ids.extend_from_slice(&reference.to_le_bytes());
            ids.extend_from_slice(&(set.len() as u32).to_le_bytes());
            ids.extend_from_slice(&size.to_le_bytes());
        }
        let (kv_bytes, _) = kv.finish()?;
        out.extend_from_slice(&kv_bytes);
        let ids_start = base + out.len() as u64;
        let mut id_writer = MetadataWriter::new(codec);
        id_writer.write(&ids)?;
        let (id_bytes, id_blocks) = id_writer.finish()?;
        out.extend_from_slice(&id_bytes);
        let header = base + out.len() as u64;
        out.extend_from_slice(&kv_start.to_le_bytes());
        out.extend_from_slice(&(self.sets.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for block in id_blocks {
            out.extend_from_slice(&(ids_start + block as u64).to_le_bytes());
        }
        Ok(header)
    }
}

fn split_prefix(name: &str) -> Option<(u16, &str)> {
    PREFIXES.iter().find_map(|(prefix, kind)| name.strip_prefix(prefix).filter(|s| !s.is_empty()).map(|s| (*kind, s)))
}

/// Reads the xattr set `id` from an image (for `inspect`).
pub fn read_set(
    reader: &mut (impl std::io::Read + std::io::Seek),
    compressor: u16,
    xattr_table: u64,
    id: u32,
) -> Result<Vec<(String, Vec<u8>)>> {
    use super::format::{METADATA_SIZE, read_metadata_block};
    use std::io::SeekFrom;

    let mut header = [0u8; 16];
    reader.seek(SeekFrom::Start(xattr_table))?;
    reader.read_exact(&mut header)?;
    let kv_start = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if id >= count {
        bail!("xattr id {id} out of range ({count} sets)");
    }
    let per_block = (METADATA_SIZE / 16) as u32;
    let mut pointer = [0u8; 8];
    reader.seek(SeekFrom::Start(xattr_table + 16 + 8 * (id / per_block) as u64))?;
    reader.read_exact(&mut pointer)?;
    let (block, _) = read_metadata_block(reader, compressor, u64::from_le_bytes(pointer))?;
    let at = ((id % per_block) * 16) as usize;
    let entry = block.get(at..at + 16).ok_or_else(|| anyhow::anyhow!("xattr id {id} beyond its block"))?;
    let reference = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
    let pairs = u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes"));

    let mut stream = MetadataStream {
        reader,
        compressor,
        position: kv_start + (reference >> 16),
        data: Vec::new(),
        cursor: (reference & 0xffff) as usize,
    };
    let mut out = Vec::new();
    for _ in 0..pairs {
        let head = stream.take(4)?;
        let kind = u16::from_le_bytes([head[0], head[1]]) & 0xff;
        let name_len = u16::from_le_bytes([head[2], head[3]]) as usize;
        let name = String::from_utf8_lossy(&stream.take(name_len)?).into_owned();
        let value_len = u32::from_le_bytes(stream.take(4)?.try_into().expect("4 bytes")) as usize;
        let value = stream.take(value_len)?;
        let prefix = PREFIXES.iter().find(|(_, k)| *k == kind).map(|(p, _)| *p).unwrap_or("unknown.");
        out.push((format!("{prefix}{name}"), value));
    }
    Ok(out)
}

/// Bytes of consecutive metadata blocks, read on demand.
struct MetadataStream<'r, R> {
    reader: &'r mut R,
    compressor: u16,
    position: u64,
    data: Vec<u8>,
    cursor: usize,
}

impl<R: std::io::Read + std::io::Seek> MetadataStream<'_, R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.data.len() < self.cursor + n {
            let (block, next) = super::format::read_metadata_block(self.reader, self.compressor, self.position)?;
            self.data.extend_from_slice(&block);
            self.position = next;
        }
        let bytes = self.data[self.cursor..self.cursor + n].to_vec();
        self.cursor += n;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;

    #[test]
    fn identical_sets_share_an_id_and_read_back() {
        let codec = Codec::new(Compression::Gzip, 131072);
        let mut table = XattrTable::default();
        let strict = vec![("user.extension-release.strict".to_string(), b"false".to_vec())];
        assert_eq!(table.add(strict.clone()).unwrap(), 0);
        assert_eq!(table.add(vec![("security.selinux".into(), b"x".to_vec())]).unwrap(), 1);
        assert_eq!(table.add(strict.clone()).unwrap(), 0);
        assert!(table.add(vec![("bogus".into(), vec![])]).is_err());

        let mut image = vec![0u8; 10];
        let header = table.write(&codec, 0, &mut image).unwrap();
        let mut cursor = std::io::Cursor::new(image);
        assert_eq!(read_set(&mut cursor, 1, header, 0).unwrap(), strict);
        assert_eq!(read_set(&mut cursor, 1, header, 1).unwrap(), vec![("security.selinux".to_string(), b"x".to_vec())]);
    }
}
