//! `SHA256SUMS` in `sha256sum` format, the strict flavour systemd-sysupdate accepts: one
//! `<hex>  <name>` line per file, two spaces, no subdirectories, sorted, final newline.

use std::collections::BTreeMap;

use super::Sha256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: BTreeMap<String, Sha256>,
}

impl Sha256Sums {
    /// Parses a SHA256SUMS file. `*name` (binary mode) is accepted and normalised; anything
    /// sysupdate would reject is an error naming the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let lineno = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let (hex, name) =
                line.split_once(' ').ok_or_else(|| format!("line {lineno}: expected \"<sha256>  <file>\""))?;
            let name = name.strip_prefix(' ').or_else(|| name.strip_prefix('*')).unwrap_or(name);
            let digest: Sha256 = hex.parse().map_err(|e| format!("line {lineno}: {e}"))?;
            check_name(name).map_err(|e| format!("line {lineno}: {e}"))?;
            entries.insert(name.to_string(), digest);
        }
        Ok(Self { entries })
    }

    pub fn insert(&mut self, name: &str, digest: Sha256) -> Result<(), String> {
        check_name(name)?;
        self.entries.insert(name.to_string(), digest);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<Sha256> {
        self.entries.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&Sha256> {
        self.entries.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Sha256)> {
        self.entries.iter()
    }

    pub fn render(&self) -> String {
        self.entries.iter().map(|(name, digest)| format!("{digest}  {name}\n")).collect()
    }
}

/// A file name a line may carry: one plain name in the directory itself, never `.` or `..`
/// (sysupdate resolves a line's name beside `SHA256SUMS`, and drops the whole file for one bad
/// line).
pub fn check_name(name: &str) -> Result<(), String> {
    let special = name == "." || name == "..";
    if special || name.is_empty() || name.contains('/') || name.chars().any(|c| c.is_control()) || name.trim() != name {
        return Err(format!("{name:?} is not a plain file name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3a94a8fe5ccb19ba61c4c0873";
    const B: &str = "00000000000000000000000000000000000000000000000000000000000000b2";

    #[test]
    fn merges_sorted_with_two_spaces() {
        let mut sums = Sha256Sums::parse(&format!("{A} *z.raw\n{B}  a.raw\n")).unwrap();
        sums.insert("m.raw", A.parse().unwrap()).unwrap();
        sums.insert("a.raw", A.parse().unwrap()).unwrap();
        assert_eq!(sums.render(), format!("{A}  a.raw\n{A}  m.raw\n{A}  z.raw\n"));
    }

    #[test]
    fn rejects_what_sysupdate_would_discard() {
        assert!(Sha256Sums::parse("nonsense\n").unwrap_err().starts_with("line 1"));
        assert!(Sha256Sums::parse(&format!("{A}  dir/x.raw\n")).is_err());
        assert!(Sha256Sums::parse(&format!("{B}  ok\nxyz  y\n")).unwrap_err().starts_with("line 2"));
    }

    #[test]
    fn dot_and_dot_dot_are_not_file_names() {
        for name in ["..", ".", "../x.raw", "a/../b", "/x.raw", " x.raw"] {
            let err = Sha256Sums::parse(&format!("{A}  ok.raw\n{B}  {name}\n")).unwrap_err();
            assert_eq!(err, format!("line 2: {name:?} is not a plain file name"), "{name}");
            assert!(Sha256Sums::default().insert(name, A.parse().unwrap()).is_err(), "{name}");
        }
        let mut sums = Sha256Sums::parse(&format!("{A}  .hidden.raw\n")).unwrap();
        assert_eq!(sums.remove(".hidden.raw"), Some(A.parse().unwrap()));
        assert_eq!(sums.render(), "");
    }
}
