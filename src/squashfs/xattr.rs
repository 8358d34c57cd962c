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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;

    #[test]
    /// (The strict reader's tests read the table back.)
    fn identical_sets_share_an_id() {
        let codec = Codec::new(Compression::Gzip, 131072);
        let mut table = XattrTable::default();
        let strict = vec![("user.extension-release.strict".to_string(), b"false".to_vec())];
        assert_eq!(table.add(strict.clone()).unwrap(), 0);
        assert_eq!(table.add(vec![("security.selinux".into(), b"x".to_vec())]).unwrap(), 1);
        assert_eq!(table.add(strict.clone()).unwrap(), 0);
        assert!(table.add(vec![("bogus".into(), vec![])]).is_err());
        let mut image = vec![0u8; 10];
        assert!(table.write(&codec, 0, &mut image).unwrap() > 10);
    }
}
