//! Directory blocks: 12-byte entries (nid, name offset, file type) at the start of each block,
//! names after them. The kernel looks names up by binary search, first over the blocks' first
//! names and then inside a block, so the names must be sorted across the whole directory (with
//! `.` and `..` in their place) and unique, or some entries are hidden.

use anyhow::{Result, ensure};

/// The entries of a directory (`bytes`, its whole content) other than `.` and `..`, which must
/// name `nid` and `parent`: (name, nid, file type), in order.
pub(super) fn entries(bytes: &[u8], block: usize, nid: u64, parent: u64) -> Result<Vec<(String, u64, u8)>> {
    let mut out = Vec::new();
    let mut last: Option<&[u8]> = None;
    let (mut dot, mut dotdot) = (false, false);
    for (n, chunk) in bytes.chunks(block).enumerate() {
        let at = |i: usize| format!("block {n}, entry {i}");
        ensure!(chunk.len() >= 12, "block {n} is too short for a directory entry");
        let first = u16::from_le_bytes([chunk[8], chunk[9]]) as usize;
        ensure!(
            first >= 12 && first.is_multiple_of(12) && first < chunk.len(),
            "block {n}: the first name offset {first} is not after whole entries inside the block"
        );
        let count = first / 12;
        for i in 0..count {
            let e = &chunk[i * 12..i * 12 + 12];
            let child = u64::from_le_bytes(e[0..8].try_into()?);
            let name_at = u16::from_le_bytes([e[8], e[9]]) as usize;
            let file_type = e[10];
            let name_end = if i + 1 < count {
                u16::from_le_bytes([chunk[i * 12 + 20], chunk[i * 12 + 21]]) as usize
            } else {
                let rest = chunk.get(name_at..).unwrap_or_default();
                name_at + rest.iter().position(|b| *b == 0).unwrap_or(rest.len())
            };
            ensure!(
                name_at >= first && name_end > name_at && name_end <= chunk.len() && name_end - name_at <= 255,
                "{}: a name from {name_at} to {name_end}",
                at(i)
            );
            let name = &chunk[name_at..name_end];
            let shown = String::from_utf8_lossy(name);
            if let Some(previous) = last {
                ensure!(previous < name, "{}: the names are not sorted (at {shown:?})", at(i));
            }
            last = Some(name);
            ensure!((1..8).contains(&file_type), "the entry {shown:?} has an invalid type {file_type}");
            match name {
                b"." => {
                    ensure!(!dot && child == nid && file_type == 2, "a wrong or second `.` entry");
                    dot = true;
                }
                b".." => {
                    ensure!(!dotdot && child == parent && file_type == 2, "a `..` entry that does not name the parent");
                    dotdot = true;
                }
                _ => {
                    ensure!(!name.iter().any(|b| matches!(b, b'/' | 0)), "the name {shown:?} is not a file name");
                    let name =
                        std::str::from_utf8(name).map_err(|_| anyhow::anyhow!("the name {shown:?} is not UTF-8"))?;
                    out.push((name.to_string(), child, file_type));
                }
            }
        }
    }
    ensure!(dot && dotdot, "the directory lacks its `.` or `..` entry");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One directory block of `names` (sorted by the caller, or not) with nids 10, 11, ...
    pub(crate) fn block(names: &[&str], size: usize) -> Vec<u8> {
        let mut out = vec![0u8; size];
        let mut at = names.len() * 12;
        for (i, name) in names.iter().enumerate() {
            let nid = match *name {
                "." => 1,
                ".." => 2,
                _ => 10 + i as u64,
            };
            out[i * 12..i * 12 + 8].copy_from_slice(&nid.to_le_bytes());
            out[i * 12 + 8..i * 12 + 10].copy_from_slice(&(at as u16).to_le_bytes());
            out[i * 12 + 10] = if name.starts_with('.') || name.starts_with('d') { 2 } else { 1 };
            out[at..at + name.len()].copy_from_slice(name.as_bytes());
            at += name.len();
        }
        out.truncate(size.min(at.max(size)));
        out
    }

    #[test]
    fn sorted_names_with_dot_entries() {
        let listed = entries(&block(&[".", "..", "a", "dir", "file"], 4096), 4096, 1, 2).unwrap();
        let names: Vec<_> = listed.iter().map(|(n, nid, t)| (n.as_str(), *nid, *t)).collect();
        assert_eq!(names, [("a", 12, 1), ("dir", 13, 2), ("file", 14, 1)]);
    }

    #[test]
    fn unsorted_duplicate_or_misdirected_entries_are_refused() {
        let e = entries(&block(&[".", "..", "b", "a"], 4096), 4096, 1, 2).unwrap_err().to_string();
        assert!(e.contains("not sorted (at \"a\")"), "{e}");
        let e = entries(&block(&[".", "..", "a", "a"], 4096), 4096, 1, 2).unwrap_err().to_string();
        assert!(e.contains("not sorted"), "{e}");
        let e = entries(&block(&[".", "..", "a"], 4096), 4096, 1, 3).unwrap_err().to_string();
        assert!(e.contains("does not name the parent"), "{e}");
        let e = entries(&block(&["..", "a"], 4096), 4096, 1, 2).unwrap_err().to_string();
        assert!(e.contains("lacks its `.`"), "{e}");
        let mut bad = block(&[".", "..", "a"], 4096);
        bad[8 + 24] = 200;
        assert!(entries(&bad, 4096, 1, 2).is_err());
    }

    #[test]
    fn names_sort_across_blocks() {
        let mut two = block(&[".", "..", "m"], 4096);
        two.extend_from_slice(&block(&["b"], 100));
        let e = entries(&two, 4096, 1, 2).unwrap_err().to_string();
        assert!(e.contains("block 1, entry 0: the names are not sorted"), "{e}");
    }
}
