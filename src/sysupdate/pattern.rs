//! systemd-sysupdate match patterns (`kubernetes-@v-%a.raw`): `@v` is the version, `%a` the
//! architecture. bakery writes only these two, so these are the ones it reads; anything else is
//! refused by name rather than misread.

use std::fmt;

use crate::model::Arch;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Version,
}

/// A parsed pattern with `%a` already replaced by an architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    parts: Vec<Part>,
}

/// The characters systemd-sysupdate accepts in a version (`@v`).
pub fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ".,_+-".contains(c)
}

impl Pattern {
    /// Parses `pattern`, expanding `%a` to `arch` and `%%` to `%`.
    pub fn parse(pattern: &str, arch: Arch) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek().copied()) {
                ('%', Some('a')) => literal.push_str(arch.systemd_name()),
                ('%', Some('%')) => literal.push('%'),
                ('@', Some('v')) => {
                    if parts.last() == Some(&Part::Version) && literal.is_empty() {
                        return Err(format!("{pattern:?}: two @v in a row"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Version);
                }
                ('@', Some('@')) => literal.push('@'),
                ('%' | '@', Some(other)) => {
                    return Err(format!("{pattern:?}: {c}{other} is not supported (only @v and %a)"));
                }
                ('%' | '@', None) => return Err(format!("{pattern:?}: a lone {c} at the end")),
                (c, _) => {
                    literal.push(c);
                    continue;
                }
            }
            chars.next();
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.contains(&Part::Version) {
            return Err(format!("{pattern:?}: a pattern needs @v"));
        }
        Ok(Self { text: pattern.to_string(), parts })
    }

    /// The version `name` carries, if it matches.
    pub fn matches(&self, name: &str) -> Option<String> {
        match_parts(&self.parts, name).filter(|v| !v.is_empty())
    }

    /// The file name for `version`.
    pub fn render(&self, version: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.as_str(),
                Part::Version => version,
            })
            .collect()
    }
}

fn match_parts(parts: &[Part], name: &str) -> Option<String> {
    match parts.split_first() {
        None => name.is_empty().then(String::new),
        Some((Part::Literal(text), rest)) => match_parts(rest, name.strip_prefix(text.as_str())?),
        Some((Part::Version, rest)) => {
            // Longest version first, as file names like name-v1.2.3-rc.1-x86-64.raw need.
            let run = name.find(|c: char| !is_version_char(c)).unwrap_or(name.len());
            (1..=run).rev().find_map(|end| match_parts(rest, &name[end..]).map(|_| name[..end].to_string()))
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `kubernetes-@v-%a.raw`: every version of an extension.
pub fn extension_pattern(name: &str) -> String {
    format!("{name}-@v-%a.raw")
}

/// `kubernetes-v1.32.@v-%a.raw`: patch releases of one minor only.
pub fn minor_pattern(name: &str, minor_prefix: &str) -> String {
    format!("{name}-{minor_prefix}@v-%a.raw")
}

/// The minor of a version as text, dot included: `v1.32.3` → `v1.32.`.
pub fn minor_prefix(version: &str) -> Option<String> {
    let start = version.find(|c: char| c.is_ascii_digit())?;
    let rest = &version[start..];
    let mut dots = rest.match_indices('.').map(|(i, _)| i);
    let (first, second) = (dots.next()?, dots.next()?);
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (numeric(&rest[..first]) && numeric(&rest[first + 1..second])).then(|| version[..start + second + 1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_versions_between_literals_even_with_dashes() {
        let pattern = Pattern::parse("kubernetes-@v-%a.raw", Arch::X86_64).unwrap();
        assert_eq!(pattern.matches("kubernetes-v1.32.0-x86-64.raw").as_deref(), Some("v1.32.0"));
        assert_eq!(pattern.matches("kubernetes-v1.33.0-rc.1-x86-64.raw").as_deref(), Some("v1.33.0-rc.1"));
        assert_eq!(pattern.matches("kubernetes-v1.32.0-arm64.raw"), None, "other arch");
        assert_eq!(pattern.matches("kubernetes--x86-64.raw"), None, "empty version");
        assert_eq!(pattern.matches("kubernetes-v1~1-x86-64.raw"), None, "~ is not a sysupdate version char");
        assert_eq!(pattern.render("v1.32.1"), "kubernetes-v1.32.1-x86-64.raw");
    }

    #[test]
    fn minor_patterns_follow_patches_only() {
        let text = minor_pattern("kubernetes", &minor_prefix("v1.32.3").unwrap());
        assert_eq!(text, "kubernetes-v1.32.@v-%a.raw");
        let pattern = Pattern::parse(&text, Arch::Arm64).unwrap();
        assert_eq!(pattern.matches("kubernetes-v1.32.10-arm64.raw").as_deref(), Some("10"));
        assert_eq!(pattern.matches("kubernetes-v1.33.0-arm64.raw"), None);
        assert_eq!(minor_prefix("3.5.17").as_deref(), Some("3.5."));
        assert_eq!(minor_prefix("v1"), None);
    }

    #[test]
    fn unsupported_specifiers_are_refused() {
        assert!(Pattern::parse("x-@u.raw", Arch::X86_64).unwrap_err().contains("@u"));
        assert!(Pattern::parse("x-%w.raw", Arch::X86_64).unwrap_err().contains("%w"));
        assert!(Pattern::parse("x.raw", Arch::X86_64).unwrap_err().contains("needs @v"));
        assert_eq!(Pattern::parse("100%%-@v", Arch::X86_64).unwrap().render("1"), "100%-1");
    }
}
