//! `bakery.toml`: built-in defaults < the file (`--config`, else `./bakery.toml`) < `BAKERY_*`
//! environment < flags. Unknown keys are errors naming the key, file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::bad_input;
use crate::model::mirror::MirrorRule;

/// The file read when `--config` is not given.
pub const DEFAULT_FILE: &str = "bakery.toml";

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Download cache (default `$XDG_CACHE_HOME/bakery`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Folders of extra or replacement recipes.
    #[serde(default)]
    pub extensions_dirs: Vec<PathBuf>,
    /// URL-prefix rewrites: `"https://dl.k8s.io" = "http://127.0.0.1:8080/dl.k8s.io"`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    #[serde(default)]
    pub create: CreateConfig,
}

/// Defaults for `bakery create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    #[serde(default)]
    pub output: Option<PathBuf>,
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
}

/// A loaded configuration and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub file: ConfigFile,
}

impl Config {
    /// Reads `explicit`, or `./bakery.toml` when present, or nothing. Relative paths inside the
    /// file are taken relative to the file's directory.
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config {}", path.display()))
            .map_err(|e| bad_input(crate::error::describe(&e)))?;
        let mut file = parse(&text).map_err(|e| bad_input(format!("{}:{e}", path.display())))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let relative = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        file.cache_dir.as_mut().map(relative);
        file.extensions_dirs.iter_mut().for_each(relative);
        file.create.output.as_mut().map(relative);
        Ok(Self { path: Some(path), file })
    }

    /// The `[mirrors]` table as rules, errors naming the file.
    pub fn mirror_rules(&self) -> Result<Vec<MirrorRule>> {
        let origin = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        self.file
            .mirrors
            .iter()
            .map(|(from, to)| MirrorRule::new(from, to).map_err(|e| bad_input(format!("{origin}: [mirrors]: {e}"))))
            .collect()
    }
}

/// Parses config TOML; the error starts with `LINE:COLUMN: `.
pub fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let location = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                format!("{line}:{column}: ")
            })
            .unwrap_or_else(|| " ".into());
        format!("{location}{}", e.message())
    })
}

/// Everything a command needs after config, environment and flags are merged.
#[derive(Clone, Debug)]
pub struct Settings {
    pub catalog: crate::recipe::Catalog,
    pub mirrors: crate::model::Mirrors,
    pub cache_dir: PathBuf,
    /// Draw progress bars (stderr is a terminal and not `--quiet`).
    pub progress_bars: bool,
    pub retry: crate::pipeline::http::RetryPolicy,
    pub config: Config,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_example_config_parses() {
        let text = include_str!("../bakery.toml");
        parse(text).unwrap();
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let err = parse("cache_dir = \"/x\"\n[create]\nouput = \"dist\"\n").unwrap_err();
        assert!(err.starts_with("3:1:") && err.contains("ouput"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bakery.toml");
        std::fs::write(
            &path,
            "extensions_dirs = [\"local\"]\n[mirrors]\n\"https://dl.k8s.io\" = \"http://127.0.0.1:1/k8s\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.file.extensions_dirs, [dir.path().join("local")]);
        assert_eq!(config.mirror_rules().unwrap()[0].to, "http://127.0.0.1:1/k8s");
    }
}
