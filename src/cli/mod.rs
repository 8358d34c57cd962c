//! The command line: clap definitions, merging flags with environment and config, and the
//! glue that runs each command. Results go to stdout (through [`out!`] and [`outln!`], never
//! `println!`), logs and progress to stderr.
#![deny(clippy::print_stdout)]

/// `print!` that drops the text (instead of panicking) when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!($($arg)*)) };
}

/// `println!` that drops the text (instead of panicking) when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

mod butane;
mod create;
mod docs;
mod inspect;
mod list;
pub mod logging;
mod node;
mod output;
mod release;
mod rollout;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Settings};
use crate::error::bad_input;
use crate::model::Mirrors;
use crate::model::mirror::MirrorRule;
use crate::pipeline::cache::Cache;
use crate::recipe::Catalog;

/// Turns upstream release binaries into systemd-sysext images.
#[derive(Debug, Parser)]
#[command(name = "bakery", version, propagate_version = true, max_term_width = 100, help_expected = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no progress
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Configuration file [default: ./bakery.toml when present]
    #[arg(long, value_name = "FILE", global = true, env = "BAKERY_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)
    #[arg(long = "mirror", value_name = "FROM=TO", global = true)]
    pub mirrors: Vec<MirrorRule>,
    /// Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]
    #[arg(long, value_name = "DIR", global = true, env = "BAKERY_CACHE_DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,
    /// A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)
    #[arg(long = "extensions-dir", value_name = "DIR", global = true)]
    pub extensions_dirs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the sysext image EXT-VERSION-ARCH.raw and update SHA256SUMS
    Create(create::CreateArgs),
    /// Show what an image holds and whether it is valid
    Inspect(inspect::InspectArgs),
    /// List the known extensions, or an extension's upstream versions
    List(list::ListArgs),
    /// Index a directory of images for systemd-sysupdate: SHA256SUMS, signature, transfer files
    Release(release::ReleaseArgs),
    /// Print a Butane (or Ignition) config that provisions a Flatcar node from a release
    Butane(butane::ButaneArgs),
    /// On a node: stage, activate, inspect and roll back extension images
    Node(node::NodeArgs),
    /// Roll an extension version out across a cluster: the controller, and its rollouts' progress
    Rollout(rollout::RolloutArgs),
    /// Check what bakery needs on this host, with a fix for each problem
    Doctor(node::DoctorArgs),
    /// Print shell completions (bash, zsh, fish)
    Completions(docs::CompletionsArgs),
    /// Print the manual page (or write all pages into a directory)
    Manpage(docs::ManpageArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Create(args) => create::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(args),
        Command::List(args) => list::run(&cli.global, args),
        Command::Release(args) => release::run(args),
        Command::Butane(args) => butane::run(&cli.global, args),
        Command::Node(args) => node::run(&cli.global, args),
        Command::Rollout(args) => rollout::run(args),
        Command::Doctor(args) => node::run_doctor(&cli.global, args),
        Command::Completions(args) => docs::run_completions(args),
        Command::Manpage(args) => docs::run_manpage(args),
    }
}

impl Global {
    /// Merges config file, environment and flags.
    pub fn settings(&self) -> Result<Settings> {
        let config = Config::load(self.config.as_deref())?;
        let mut rules = config.mirror_rules()?;
        if let Some(env) = std::env::var("BAKERY_MIRRORS").ok().filter(|v| !v.trim().is_empty()) {
            for rule in env.split(',').filter(|r| !r.trim().is_empty()) {
                rules.push(rule.parse().map_err(|e| bad_input(format!("BAKERY_MIRRORS: {e}")))?);
            }
        }
        rules.extend(self.mirrors.iter().cloned());
        let mut catalog = Catalog::builtin();
        for dir in config.file.extensions_dirs.iter().chain(&self.extensions_dirs) {
            catalog.add_dir(dir)?;
        }
        // services run without HOME
        let cache_dir = self
            .cache_dir
            .clone()
            .or_else(|| config.file.cache_dir.clone())
            .or_else(Cache::default_root)
            .unwrap_or_else(|| PathBuf::from("/var/cache/bakery"));
        let (retry, limits) = config.download()?;
        Ok(Settings {
            catalog,
            mirrors: Mirrors::new(rules),
            cache_dir,
            progress_bars: !self.quiet && crate::util::stderr_is_terminal(),
            progress_interval: progress_interval()?,
            retry,
            limits,
            config,
        })
    }
}

/// `BAKERY_PROGRESS_INTERVAL_MS`: milliseconds between two progress lines when stderr is not a
/// terminal (0: at every step).
fn progress_interval() -> Result<std::time::Duration> {
    const VAR: &str = "BAKERY_PROGRESS_INTERVAL_MS";
    match std::env::var(VAR).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(crate::pipeline::progress::DEFAULT_INTERVAL),
        Some(value) => value
            .trim()
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|_| bad_input(format!("{VAR}={value:?}: expected a number of milliseconds"))),
    }
}

/// A channel that turns true at the first SIGTERM or SIGINT, logged as `"{signal}: {what}"`, after
/// `on_stop` ran: long-running commands (`node watch`, `rollout controller`) stop at their next
/// safe point instead of at once. Call it inside the runtime.
fn stop_on_signal(
    what: &'static str,
    on_stop: impl FnOnce() + Send + 'static,
) -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{which}: {what}");
        on_stop();
        stop_tx.send_replace(true);
    });
    Ok(stop)
}

/// Runs `work` on the process's tokio runtime until it ends or SIGINT/SIGTERM arrives. On a
/// signal the cancel flag is set at once (synchronous work such as template rendering checks it),
/// the work is dropped, which removes its temporary files, and the error says so.
fn until_interrupted<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        // On a worker thread, so the flag is set even while `work` blocks this thread.
        let signalled = tokio::spawn(async move {
            let signal = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            crate::util::cancel::request_by(signal);
        });
        tokio::select! {
            result = work => match crate::util::cancel::requested() {
                // work that noticed the flag ends with whatever error it saw; the signal wins
                true if result.is_err() => Err(crate::util::cancel::interrupted()),
                _ => result,
            },
            _ = signalled => Err(crate::util::cancel::interrupted()),
        }
    });
    // Dropping the runtime's tasks removes their temporary files; blocking work sees the
    // cancel flag and ends within moments.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `help_expected` makes clap's debug assertions (above) enforce this too.
    #[test]
    fn every_argument_of_every_command_has_help_text() {
        fn walk(command: &clap::Command, path: &str) {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                let help = arg.get_help().or(arg.get_long_help()).map(|h| h.to_string()).unwrap_or_default();
                assert!(!help.trim().is_empty(), "{path}: {} has no help text", arg.get_id());
            }
            for sub in command.get_subcommands() {
                assert!(sub.get_about().is_some(), "{path} {} has no about", sub.get_name());
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut command = Cli::command();
        command.build();
        walk(&command, "bakery");
    }

    #[test]
    fn help_fits_80_columns() {
        let command = Cli::command();
        let mut paths: Vec<Vec<String>> = vec![vec![]];
        for sub in command.get_subcommands() {
            paths.push(vec![sub.get_name().to_string()]);
            for nested in sub.get_subcommands() {
                paths.push(vec![sub.get_name().to_string(), nested.get_name().to_string()]);
            }
        }
        assert!(paths.len() > 15, "{paths:?}");
        for path in paths {
            let mut args = vec!["bakery".to_string()];
            args.extend(path.iter().cloned());
            args.push("--help".into());
            let err = Cli::command().term_width(80).try_get_matches_from(&args).unwrap_err();
            let help = err.render().to_string();
            assert!(help.contains("Usage:"), "{help}");
            for line in help.lines() {
                assert!(line.chars().count() <= 80, "{path:?}: {line:?}");
            }
        }
    }
}
