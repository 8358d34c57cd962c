//! `bakery completions SHELL` and `bakery manpage`: generated from the clap definition, so they
//! cannot drift from the program (the committed copies in contrib/ are checked by a test).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write bakery.1 and a page per subcommand (bakery-create.1, ...) into DIR instead of
    /// printing bakery.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut command = Cli::command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut command, "bakery", &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut command, "bakery", &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut command, "bakery", &mut out),
    }
    String::from_utf8(out).expect("completions are UTF-8")
}

/// Every manual page: `(file name, roff)`, the top-level page first.
pub fn manpages() -> Vec<(String, String)> {
    fn collect(command: &clap::Command, prefix: &str, out: &mut Vec<(String, String)>) {
        let name =
            if prefix.is_empty() { command.get_name().to_string() } else { format!("{prefix}-{}", command.get_name()) };
        let page = command.clone().display_name(name.clone());
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff).expect("rendering into memory");
        out.push((format!("{name}.1"), String::from_utf8(roff).expect("roff is UTF-8")));
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, &name, out);
        }
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut out = Vec::new();
    collect(&command, "", &mut out);
    out
}

pub fn run_completions(args: &CompletionsArgs) -> Result<()> {
    out!("{}", completions(args.shell))?;
    Ok(())
}

pub fn run_manpage(args: &ManpageArgs) -> Result<()> {
    let pages = manpages();
    match &args.dir {
        None => out!("{}", pages[0].1)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, roff) in pages {
                let path = dir.join(name);
                crate::util::atomic::write_atomic(&path, roff.as_bytes())?;
                outln!("{}", path.display())?;
            }
        }
    }
    Ok(())
}
