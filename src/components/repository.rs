//! Where components come from: the built-in `components/` (embedded), a local directory, an
//! HTTP(S) base URL (whose `SHA256SUMS` lists and pins every file), or a ZIP archive (local, or
//! by URL with a sha256 pin). Each is read whole into memory as relative path → bytes; a path
//! that would escape the repository (`..`, absolute, a symlink) is an error naming it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;

use crate::error::bad_input;
use crate::model::{Mirrors, Sha256};
use crate::pipeline::http::Http;

/// A repository's files: relative path → bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The most a repository may hold, unpacked, and how many files.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
const MAX_FILES: usize = 10_000;

/// Where a repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoSpec {
    BuiltIn,
    Dir(PathBuf),
    /// A base URL with `SHA256SUMS` listing every file.
    Http(String),
    ZipFile {
        path: PathBuf,
        sha256: Option<Sha256>,
    },
    ZipUrl {
        url: String,
        sha256: Sha256,
    },
}

impl FromStr for RepoSpec {
    type Err = anyhow::Error;

    /// `DIR`, `FILE.zip[#sha256=HEX]`, `https://host/base/`, `https://host/c.zip#sha256=HEX`.
    fn from_str(text: &str) -> Result<Self> {
        let (location, pin) = match text.split_once("#sha256=") {
            Some((location, hex)) => {
                let digest = hex.parse::<Sha256>().map_err(|e| bad_input(format!("components {text:?}: {e}")))?;
                (location, Some(digest))
            }
            None => (text, None),
        };
        let remote = location.starts_with("https://") || location.starts_with("http://");
        match (remote, location.ends_with(".zip"), pin) {
            (true, true, Some(sha256)) => Ok(RepoSpec::ZipUrl { url: location.to_string(), sha256 }),
            (true, true, None) => Err(bad_input(format!(
                "components {text:?}: a ZIP by URL needs its sha256 pinned: {location}#sha256=HEX"
            ))),
            (true, false, None) => Ok(RepoSpec::Http(location.trim_end_matches('/').to_string())),
            (true, false, Some(_)) => Err(bad_input(format!(
                "components {text:?}: a repository URL is pinned by its SHA256SUMS, not #sha256="
            ))),
            (false, true, sha256) => Ok(RepoSpec::ZipFile { path: PathBuf::from(location), sha256 }),
            (false, false, None) => Ok(RepoSpec::Dir(PathBuf::from(location))),
            (false, false, Some(_)) => Err(bad_input(format!("components {text:?}: only a ZIP takes a #sha256= pin"))),
        }
    }
}

impl std::fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoSpec::BuiltIn => write!(f, "built in"),
            RepoSpec::Dir(path) => write!(f, "{}", path.display()),
            RepoSpec::Http(url) => write!(f, "{url}"),
            RepoSpec::ZipFile { path, .. } => write!(f, "{}", path.display()),
            RepoSpec::ZipUrl { url, .. } => write!(f, "{url}"),
        }
    }
}

/// A relative path inside a repository (a trailing `/`, marking a directory, is kept), or why
/// it is not one: the one path rule, [`crate::model::ImagePath::parse_relative`].
pub fn safe_path(name: &str) -> std::result::Result<String, String> {
    match crate::model::ImagePath::parse_relative(name) {
        Ok(Some(path)) if name.ends_with('/') => Ok(format!("{}/", path.as_str())),
        Ok(Some(path)) => Ok(path.as_str().to_string()),
        Ok(None) => Err(format!("{name:?} names the repository itself, not a file")),
        Err(e) => Err(format!("{name:?} escapes the repository or is not a plain relative path: {e}")),
    }
}

/// Reads a whole repository.
pub async fn load(spec: &RepoSpec, http: &Http, mirrors: &Mirrors) -> Result<Files> {
    let files = match spec {
        RepoSpec::BuiltIn => {
            crate::assets::components().iter().map(|(path, bytes)| (path.to_string(), bytes.to_vec())).collect()
        }
        RepoSpec::Dir(dir) => read_dir(dir)?,
        RepoSpec::ZipFile { path, sha256 } => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if let Some(expected) = sha256 {
                let actual = Sha256::of(&bytes);
                if actual != *expected {
                    return Err(bad_input(format!("{}: sha256 {actual}, pinned {expected}", path.display())));
                }
            }
            read_zip(&bytes).with_context(|| format!("reading the ZIP {}", path.display()))?
        }
        RepoSpec::ZipUrl { url, sha256 } => {
            let fetch = mirrors.resolve(url)?;
            let temp = || tempfile::NamedTempFile::new().context("creating a temporary file");
            let (file, _) = http.download_verified(&fetch, sha256, &temp, &ProgressBar::hidden()).await?;
            let bytes = std::fs::read(file.path())?;
            read_zip(&bytes).with_context(|| format!("reading the ZIP {url}"))?
        }
        RepoSpec::Http(base) => read_http(base, http, mirrors).await?,
    };
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Files> {
    if !dir.is_dir() {
        return Err(bad_input(format!("components {}: no such directory", dir.display())));
    }
    let mut files = Files::new();
    let mut total = 0u64;
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under its root");
        let Some(rel) = rel.to_str().filter(|r| !r.is_empty()) else { continue };
        if entry.path_is_symlink() {
            return Err(bad_input(format!("components {}: {rel} is a symlink", dir.display())));
        }
        if entry.file_type().is_file() {
            total += entry.metadata()?.len();
            if total > MAX_BYTES || files.len() >= MAX_FILES {
                return Err(bad_input(format!("components {}: more than 64 MiB or 10000 files", dir.display())));
            }
            let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
            files.insert(rel.to_string(), bytes);
        }
    }
    Ok(files)
}

/// The files of a ZIP archive; an entry that escapes the tree, a link, or too much data is an error.
pub fn read_zip(bytes: &[u8]) -> Result<Files> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad_input(format!("{e}")))?;
    if archive.len() > MAX_FILES {
        return Err(bad_input(format!("{} entries (at most {MAX_FILES})", archive.len())));
    }
    let mut files = Files::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| bad_input(format!("entry {index}: {e}")))?;
        let name = entry.name().map_err(|e| bad_input(format!("entry {index}: {e}")))?.to_string();
        let path = safe_path(&name).map_err(|e| bad_input(format!("entry {e}")))?;
        if entry.is_symlink() {
            return Err(bad_input(format!("entry {name:?} is a symlink")));
        }
        if entry.is_dir() {
            continue;
        }
        total += entry.size();
        if total > MAX_BYTES {
            return Err(bad_input("more than 64 MiB unpacked"));
        }
        let mut data = Vec::with_capacity(entry.size().min(MAX_BYTES) as usize);
        entry.by_ref().take(MAX_BYTES + 1).read_to_end(&mut data).with_context(|| format!("unpacking {name}"))?;
        files.insert(path, data);
    }
    Ok(files)
}

/// `SHA256SUMS` at the base, then every file it lists, each checked against it.
async fn read_http(base: &str, http: &Http, mirrors: &Mirrors) -> Result<Files> {
    let sums_url = format!("{base}/SHA256SUMS");
    let text = http.get_small(&mirrors.resolve(&sums_url)?).await.context("a components repository lists its files")?;
    let text = String::from_utf8(text).map_err(|_| anyhow!("{sums_url}: not UTF-8"))?;
    let mut files = Files::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (hex, name) = line
            .split_once("  ")
            .ok_or_else(|| bad_input(format!("{sums_url}:{}: expected \"<sha256>  <path>\"", number + 1)))?;
        let expected: Sha256 = hex.parse().map_err(|e| bad_input(format!("{sums_url}:{}: {e}", number + 1)))?;
        let path = safe_path(name).map_err(|e| bad_input(format!("{sums_url}:{}: {e}", number + 1)))?;
        if files.len() >= MAX_FILES {
            return Err(bad_input(format!("{sums_url}: more than {MAX_FILES} files")));
        }
        let url = format!("{base}/{path}");
        let bytes = http.get_small(&mirrors.resolve(&url)?).await?;
        let actual = Sha256::of(&bytes);
        if actual != expected {
            return Err(anyhow!(crate::error::ChecksumMismatch {
                expected: expected.to_string(),
                actual: actual.to_string()
            }))
            .with_context(|| format!("fetching {url}"));
        }
        files.insert(path, bytes);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn specs_name_dirs_urls_and_pinned_zips() {
        let hex = "ab".repeat(32);
        assert_eq!("comps".parse::<RepoSpec>().unwrap(), RepoSpec::Dir("comps".into()));
        assert_eq!("https://x.example/c/".parse::<RepoSpec>().unwrap(), RepoSpec::Http("https://x.example/c".into()));
        assert!(matches!(
            format!("c.zip#sha256={hex}").parse::<RepoSpec>().unwrap(),
            RepoSpec::ZipFile { sha256: Some(_), .. }
        ));
        assert!(matches!(
            format!("https://x/c.zip#sha256={hex}").parse::<RepoSpec>().unwrap(),
            RepoSpec::ZipUrl { .. }
        ));
        let unpinned = "https://x/c.zip".parse::<RepoSpec>().unwrap_err().to_string();
        assert!(unpinned.contains("needs its sha256 pinned"), "{unpinned}");
        assert!("dir#sha256=00".parse::<RepoSpec>().is_err());
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(safe_path("./demo/component.yaml").unwrap(), "demo/component.yaml");
        assert_eq!(safe_path("demo/").unwrap(), "demo/");
        assert_eq!(safe_path("a//b").unwrap(), "a/b");
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\\..\\b", ""] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
    }

    /// The archive, recipe and repository normalisers are one rule: they accept and refuse the
    /// same paths and agree on the result.
    #[test]
    fn every_normaliser_follows_the_one_path_rule() {
        for raw in ["a//b", "./a/./b/", "a/../b", "/a", "a\\b", "a\nb", "a\0b", ".", "a/b"] {
            let rule = crate::model::ImagePath::parse_relative(raw).ok().flatten().map(|p| p.as_str().to_string());
            let archive = crate::pipeline::extract::normalize_entry(raw).ok().flatten();
            let recipe = crate::recipe::catalog::clean_relative(raw);
            let repository = safe_path(raw).ok().map(|p| p.trim_end_matches('/').to_string());
            assert_eq!((&archive, &recipe, &repository), (&rule, &rule, &rule), "{raw:?}");
        }
    }

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            writer.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn zips_unpack_and_escaping_entries_are_refused() {
        let files =
            read_zip(&zip(&[("demo/component.yaml", b"name: demo\n"), ("releases.yaml", b"releases: {}\n")])).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["demo/component.yaml", "releases.yaml"]);
        let err = read_zip(&zip(&[("demo/../../etc/evil", b"x")])).unwrap_err().to_string();
        assert!(err.contains("demo/../../etc/evil") && err.contains("escapes"), "{err}");
    }
}
