//! `bakery.toml`: built-in defaults < the file (`--config`, else `./bakery.toml`) < `BAKERY_*`
//! environment < flags. Unknown keys are errors naming the key, file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::bad_input;
use crate::model::mirror::MirrorRule;
use crate::pipeline::http::{Http, RetryPolicy};
use crate::pipeline::limits::Limits;

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
    #[serde(default)]
    pub download: DownloadConfig,
}

/// Limits on every download (`[download]`); see [`crate::pipeline::limits::Limits`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadConfig {
    /// Attempts at a download that fails transiently (reset, stall, 5xx).
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub stall_timeout: Option<Seconds>,
    #[serde(default)]
    pub min_speed: Option<ByteSize>,
    #[serde(default)]
    pub speed_window: Option<Seconds>,
    #[serde(default)]
    pub deadline: Option<Seconds>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

/// A positive number of seconds (`60`, `0.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Seconds)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a positive number of seconds, got {secs}")))
    }
}

/// A number of bytes: `1048576`, `"512 KiB"`, `"2 GiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(format!("{text:?} is not a size: use bytes or a number with B, KiB, MiB, GiB or TiB")),
        };
        let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a size: it needs a whole number"))?;
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl DownloadConfig {
    /// The retry policy and limits these settings give over the defaults.
    pub fn apply(
        &self,
        mut retry: RetryPolicy,
        mut limits: Limits,
    ) -> std::result::Result<(RetryPolicy, Limits), String> {
        if let Some(attempts) = self.attempts {
            if attempts == 0 {
                return Err("[download] attempts: at least 1".into());
            }
            retry.attempts = attempts;
        }
        let secs = |value: Option<Seconds>, default: Duration| value.map(|s| s.0).unwrap_or(default);
        limits.stall_timeout = secs(self.stall_timeout, limits.stall_timeout);
        limits.speed_window = secs(self.speed_window, limits.speed_window);
        limits.deadline = secs(self.deadline, limits.deadline);
        limits.min_speed = self.min_speed.map(|b| b.0).unwrap_or(limits.min_speed);
        limits.max_size = self.max_size.map(|b| b.0).unwrap_or(limits.max_size);
        if limits.max_size == 0 {
            return Err("[download] max_size: at least 1 byte".into());
        }
        Ok((retry, limits))
    }
}

/// Defaults for `bakery create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    #[serde(default)]
    pub output: Option<PathBuf>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    /// Build signed dm-verity DDIs (needs `sign_key` and `sign_cert`).
    #[serde(default)]
    pub ddi: Option<bool>,
    /// PEM private key that signs DDIs.
    #[serde(default)]
    pub sign_key: Option<PathBuf>,
    /// PEM certificate of `sign_key`'s public key.
    #[serde(default)]
    pub sign_cert: Option<PathBuf>,
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
        file.create.sign_key.as_mut().map(relative);
        file.create.sign_cert.as_mut().map(relative);
        Ok(Self { path: Some(path), file })
    }

    /// The retry policy and download limits of `[download]`, errors naming the file.
    pub fn download(&self) -> Result<(RetryPolicy, Limits)> {
        let origin = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        self.file
            .download
            .apply(RetryPolicy::default(), Limits::default())
            .map_err(|e| bad_input(format!("{origin}: {e}")))
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
    /// Off a terminal, the time between two progress lines (`BAKERY_PROGRESS_INTERVAL_MS`).
    pub progress_interval: std::time::Duration,
    pub retry: RetryPolicy,
    pub limits: Limits,
    pub config: Config,
}

impl Settings {
    /// An HTTP client with these retries and limits.
    pub fn http(&self) -> Result<Http> {
        Http::with_limits(self.retry, self.limits)
    }
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
    fn the_example_config_shows_the_download_defaults() {
        let text = include_str!("../bakery.toml");
        let section = text.split("[download]\n").nth(1).expect("bakery.toml has a [download] table");
        let shown: String = section
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = parse(&format!("[download]\n{shown}")).unwrap();
        assert_eq!(shown.lines().count(), 6, "every key: {shown}");
        let (retry, limits) = file
            .download
            .apply(
                RetryPolicy { attempts: 0, ..RetryPolicy::default() },
                Limits {
                    stall_timeout: Duration::ZERO,
                    min_speed: 0,
                    speed_window: Duration::ZERO,
                    deadline: Duration::ZERO,
                    max_size: 0,
                },
            )
            .unwrap();
        assert_eq!(retry.attempts, RetryPolicy::default().attempts);
        assert_eq!(limits, Limits::default());
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let err = parse("cache_dir = \"/x\"\n[create]\nouput = \"dist\"\n").unwrap_err();
        assert!(err.starts_with("3:1:") && err.contains("ouput"), "{err}");
    }

    #[test]
    fn download_limits_parse_with_units_and_refuse_nonsense() {
        let file = parse(
            "[download]\nattempts = 2\nstall_timeout = 0.5\nmin_speed = \"10 KiB\"\nspeed_window = 3\ndeadline = 60\nmax_size = 1000\n",
        )
        .unwrap();
        let (retry, limits) = file.download.apply(RetryPolicy::default(), Limits::default()).unwrap();
        assert_eq!(retry.attempts, 2);
        assert_eq!(limits.stall_timeout, Duration::from_millis(500));
        assert_eq!((limits.min_speed, limits.max_size), (10 * 1024, 1000));
        assert_eq!((limits.speed_window, limits.deadline), (Duration::from_secs(3), Duration::from_secs(60)));
        assert_eq!("2 GiB".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert!("2 GB".parse::<ByteSize>().unwrap_err().contains("KiB"));
        for bad in ["[download]\ndeadline = 0\n", "[download]\nmax_size = \"lots\"\n", "[download]\nstall = 1\n"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let zero = parse("[download]\nattempts = 0\n").unwrap();
        assert!(zero.download.apply(RetryPolicy::default(), Limits::default()).is_err());
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
