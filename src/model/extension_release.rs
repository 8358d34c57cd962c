//! The extension-release file systemd-sysext checks before merging an image, and the os-release
//! style `KEY=VALUE` format it shares with `/etc/os-release`.

use std::collections::BTreeMap;

use super::{Arch, ExtName, ExtVersion, OsTarget};

/// Directory of extension-release files inside an image.
pub const DIR: &str = "usr/lib/extension-release.d";
/// The xattr that lets an image merge under a file name other than `<ext>.raw`.
pub const STRICT_XATTR: &str = "user.extension-release.strict";

/// `usr/lib/extension-release.d/extension-release.<ext>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionRelease {
    pub os: OsTarget,
    pub architecture: Arch,
    pub sysext_id: ExtName,
    pub sysext_version_id: ExtVersion,
    /// `EXTENSION_RELOAD_MANAGER=1`: systemd reloads units after merging (systemd 255+).
    pub reload_manager: bool,
}

impl ExtensionRelease {
    /// Path of the file inside the image.
    pub fn path(name: &ExtName) -> String {
        format!("{DIR}/extension-release.{name}")
    }

    /// The SYSEXT_LEVEL written with an explicit `ID=` (the level Flatcar and Fedora ship).
    pub const SYSEXT_LEVEL: &'static str = "1.0";

    pub fn render(&self) -> String {
        let mut out = format!("ID={}\n", self.os);
        if matches!(self.os, OsTarget::Id(_)) {
            out.push_str(&format!("SYSEXT_LEVEL={}\n", Self::SYSEXT_LEVEL));
        }
        out.push_str(&format!("ARCHITECTURE={}\n", self.architecture));
        out.push_str(&format!("SYSEXT_ID={}\n", self.sysext_id));
        out.push_str(&format!("SYSEXT_VERSION_ID={}\n", self.sysext_version_id));
        if self.reload_manager {
            out.push_str("EXTENSION_RELOAD_MANAGER=1\n");
        }
        out
    }
}

/// Parses os-release style text (`KEY=VALUE`, optional quotes, `#` comments).
/// The error names the 1-based line.
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = index + 1;
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {lineno}: expected KEY=VALUE, got {raw:?}"))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {lineno}: invalid key {key:?}"));
        }
        out.insert(key.to_string(), unquote(value.trim()).map_err(|e| format!("line {lineno}: {e}"))?);
    }
    Ok(out)
}

fn unquote(value: &str) -> Result<String, String> {
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Ok(value.to_string()),
    };
    let inner = value[1..].strip_suffix(quote).ok_or_else(|| format!("unterminated quote in {value:?}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && quote == '"' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(os: OsTarget) -> ExtensionRelease {
        ExtensionRelease {
            os,
            architecture: Arch::X86_64,
            sysext_id: "kubernetes".parse().unwrap(),
            sysext_version_id: "v1.32.0".parse().unwrap(),
            reload_manager: true,
        }
    }

    #[test]
    fn renders_any_without_sysext_level() {
        assert_eq!(
            release(OsTarget::Any).render(),
            "ID=_any\nARCHITECTURE=x86-64\nSYSEXT_ID=kubernetes\nSYSEXT_VERSION_ID=v1.32.0\nEXTENSION_RELOAD_MANAGER=1\n"
        );
    }

    #[test]
    fn renders_os_with_sysext_level_and_parses_back() {
        let text = release(OsTarget::Id("flatcar".into())).render();
        let map = parse_env(&text).unwrap();
        assert_eq!(map["ID"], "flatcar");
        assert_eq!(map["SYSEXT_LEVEL"], "1.0");
        assert_eq!(map["ARCHITECTURE"], "x86-64");
    }

    #[test]
    fn parses_quotes_comments_and_names_bad_lines() {
        let map = parse_env("# c\nNAME=\"Flatcar \\\"CL\\\"\"\nID='flatcar'\n\n").unwrap();
        assert_eq!(map["NAME"], "Flatcar \"CL\"");
        assert_eq!(map["ID"], "flatcar");
        assert_eq!(parse_env("ID=x\nnonsense\n").unwrap_err(), "line 2: expected KEY=VALUE, got \"nonsense\"");
    }
}
