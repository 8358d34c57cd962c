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

/// What the exit codes mean: [`crate::error::exit_code`], and clap's 2 for a usage error.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success, also when there was nothing to do (an image already built from the same inputs)."),
    ("1", "Failure: a download, a checksum mismatch, I/O, a failed check, a refused or rolled-back activation."),
    (
        "2",
        "Bad input: a usage error, an unknown extension or architecture, a malformed or unknown version, \
         a recipe or image error, an existing image kept without --force.",
    ),
    ("130", "Interrupted by SIGINT or SIGTERM; nothing was published and no temporary file is left."),
];

/// `node watch` honours a stop at its next safe point and ends well: exit 0, not 130.
const WATCH_STOPPED: &str = "Stopped by SIGINT or SIGTERM at the next safe point (a link is never left half \
                             switched), or the agent ended without an error.";

/// `rollout controller` stops on a signal and ends well too, releasing its Lease: exit 0.
const CONTROLLER_STOPPED: &str = "Stopped by SIGINT or SIGTERM (the leader Lease released, so another replica takes \
                                  over at once).";

/// `rollout controller`'s 1: besides the usual failures.
const CONTROLLER_LOST: &str = "Failure, or this replica lost the leader Lease (someone else holds it, or it could \
                               not be renewed for two thirds of --lease-duration): it stopped acting at once, and \
                               its Deployment starts it again as a candidate.";

/// The pages of the commands that download.
const NETWORK: &[&str] = &["create", "list", "node-update", "node-watch", "node-bootstrap", "doctor"];

/// The environment variables bakery reads, and the pages (command paths joined by `-`) they
/// belong on; none: every page. The top-level page lists them all.
pub const ENVIRONMENT: &[(&str, &str, &[&str])] = &[
    ("BAKERY_CONFIG", "The configuration file, as --config.", &[]),
    ("BAKERY_CACHE_DIR", "The download cache, as --cache-dir.", &[]),
    ("BAKERY_MIRRORS", "FROM=TO,... URL rewrites, added to those of bakery.toml and --mirror.", &[]),
    ("RUST_LOG", "Log filter (target=level,..., e.g. bakery=debug); overrides -v and -q.", &[]),
    (
        "BAKERY_PROGRESS_INTERVAL_MS",
        "Milliseconds between two progress lines while packing when stderr is not a terminal \
         (default 5000; 0: at every step).",
        &["create"],
    ),
    ("SOURCE_DATE_EPOCH", "Modification time of every entry in the image (default 0).", &["create"]),
    (
        "GITHUB_TOKEN, GH_TOKEN",
        "Sent as a bearer token to the GitHub API (over https or to a loopback mirror) when looking up \
         versions, which raises its rate limit.",
        &["create", "list"],
    ),
    (
        "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY",
        "Proxies for downloads (also in lower case), as curl reads them.",
        NETWORK,
    ),
    (
        "SSL_CERT_FILE, SSL_CERT_DIR",
        "CA certificates for https instead of the system ones (bakery's built-in roots when the system has none).",
        NETWORK,
    ),
    (
        "XDG_CACHE_HOME, HOME",
        "The default download cache is $XDG_CACHE_HOME/bakery, else $HOME/.cache/bakery, else /var/cache/bakery.",
        &["create"],
    ),
    ("GNUPGHOME", "The gpg keyring that --sign-key is looked up in.", &["release"]),
    (
        "KUBECONFIG",
        "Cluster credentials, when --kubeconfig is not given.",
        &["node-watch", "rollout-controller", "rollout-list", "rollout-status"],
    ),
    (
        "HOME",
        "The rollout commands read $HOME/.kube/config (as kubectl does) when neither --kubeconfig nor KUBECONFIG \
         names one.",
        &["rollout-controller", "rollout-list", "rollout-status"],
    ),
    ("NODE_NAME", "This Node's name, as --node-name.", &["node-watch"]),
    ("POD_NAMESPACE", "The leader-election Lease's namespace, as --namespace.", &["rollout-controller"]),
    ("POD_NAME", "This replica's name in the Lease, as --identity.", &["rollout-controller"]),
];

/// A few real commands per page: `(page, command, what it does)`. Every command parses (a test
/// checks), up to a shell redirection.
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    ("", "bakery list", "The extensions bakery knows."),
    ("", "bakery create kubernetes 1.32 x86-64 --output dist", "Build the newest Kubernetes 1.32 image into dist/."),
    (
        "",
        "bakery release dist --base-url https://example.org/ext --sign-key ops@example.org",
        "Publish dist/ for systemd-sysupdate.",
    ),
    ("", "bakery node refresh", "On a node: merge what is linked, restart changed units, roll back failures."),
    (
        "create",
        "bakery create kubernetes v1.32.0 x86-64",
        "Write kubernetes-v1.32.0-x86-64.raw and SHA256SUMS into the current directory.",
    ),
    (
        "create",
        "bakery create kubernetes latest --arch arm64 --output dist",
        "The newest release, for arm64, into dist/.",
    ),
    (
        "create",
        "bakery create kubernetes 1.32 x86-64 --cni-version v1.6.2 --compression zstd",
        "Another CNI plugins release and zstd compression.",
    ),
    (
        "create",
        "bakery create kubernetes v1.32.0 x86-64 --format erofs",
        "An EROFS image (lz4hc, level 12) by the same name: Linux 5.13+ mounts it.",
    ),
    (
        "create",
        "bakery create kubernetes v1.32.0 x86-64 --sysupdate --base-url https://example.org/ext",
        "Also write the transfer files for systemd-sysupdate.",
    ),
    (
        "create",
        "bakery create kubernetes v1.32.0 x86-64 --dry-run",
        "Print the resolved plan as JSON; download nothing.",
    ),
    ("inspect", "bakery inspect kubernetes-v1.32.0-x86-64.raw", "What the image holds and whether it is valid."),
    ("inspect", "bakery inspect --json kubernetes-v1.32.0-x86-64.raw", "The same as JSON."),
    ("list", "bakery list", "The known extensions."),
    ("list", "bakery list kubernetes --latest", "The newest patch of each supported Kubernetes minor."),
    ("list", "bakery list kubernetes --pre --json", "Every upstream version, pre-releases too, as JSON."),
    (
        "release",
        "bakery release dist --base-url https://example.org/ext --sign-key ops@example.org",
        "SHA256SUMS, SHA256SUMS.gpg and transfer files for the images in dist/.",
    ),
    (
        "release",
        "bakery release dist --base-url https://example.org/ext --allow-unsigned --transfer-suffix transfer",
        "Unsigned (transfer files say Verify=no), for systemd 257 or later.",
    ),
    (
        "butane",
        "bakery butane kubernetes v1.32.0 x86-64 --base-url https://example.org/ext --dir dist",
        "A Butane config for a Flatcar node that follows the v1.32 patch releases.",
    ),
    (
        "butane",
        "bakery butane kubernetes v1.32.0 --arch arm64 --base-url https://example.org/ext --dir dist --ignition",
        "The Ignition JSON instead, for arm64.",
    ),
    ("node", "bakery node status", "What is linked, merged, recorded and staged."),
    ("node", "bakery node update --activate", "Stage the newest images and merge them."),
    ("node-update", "bakery node update --activate", "Stage the newest image of every extension and merge it."),
    ("node-update", "bakery node update kubernetes", "Stage the newest Kubernetes image only."),
    ("node-refresh", "bakery node refresh", "Merge what is linked, restart changed units, roll back failures."),
    (
        "node-refresh",
        "bakery node refresh --root /mnt/node --json",
        "Check a mounted node root; systemd is left alone.",
    ),
    ("node-status", "bakery node status --json", "Linked, merged, recorded and staged versions as JSON."),
    ("node-rollback", "bakery node rollback kubernetes", "Link the previous Kubernetes image and refresh."),
    (
        "node-watch",
        "bakery node watch --metrics-addr 127.0.0.1:9101",
        "Follow this Node's upgrade targets; Prometheus metrics on port 9101.",
    ),
    (
        "node-bootstrap",
        "bakery node bootstrap --release v1.32.3 --dry-run",
        "What installing release v1.32.3 would change.",
    ),
    (
        "node-bootstrap",
        "bakery node bootstrap --release v1.32.3 --role control-plane",
        "Install it on a control-plane node.",
    ),
    ("rollout", "bakery rollout list", "The ExtensionRollouts and how far each has come."),
    ("rollout", "bakery rollout status kubernetes-v1.32.3", "One rollout: counts, Nodes in flight and failed."),
    (
        "rollout-controller",
        "bakery rollout controller --metrics-addr 0.0.0.0:9102",
        "Run a replica in the cluster (deploy/controller.yaml does), metrics on port 9102.",
    ),
    (
        "rollout-controller",
        "bakery rollout controller --kubeconfig admin.conf --namespace bakery-system --identity ops-laptop",
        "Run one from outside the cluster; it acts once it holds the Lease.",
    ),
    ("rollout-list", "bakery rollout list", "A line per rollout: phase, Nodes updated, in flight, failed, pending."),
    ("rollout-list", "bakery rollout list --json", "The same as JSON, with the Nodes and conditions."),
    (
        "rollout-status",
        "bakery rollout status kubernetes-v1.32.3",
        "Phase, counts, the Nodes in flight and failed, and the conditions.",
    ),
    ("rollout-status", "bakery rollout status kubernetes-v1.32.3 --json", "The same as JSON."),
    ("doctor", "bakery doctor", "Check this host, with a fix for each problem."),
    ("doctor", "bakery doctor --root /mnt/node --json", "Check a mounted root, as JSON."),
    ("completions", "bakery completions bash > /etc/bash_completion.d/bakery", "Install bash completions."),
    ("completions", "bakery completions zsh > ~/.zfunc/_bakery", "zsh completions (with ~/.zfunc in fpath)."),
    ("manpage", "bakery manpage --dir /usr/local/share/man/man1", "Install every page."),
    ("manpage", "bakery manpage > bakery.1", "Only this top-level page."),
];

/// EXIT STATUS, ENVIRONMENT and EXAMPLES of the page `path` (`""`, `create`, `node-watch`).
fn extra_sections(path: &str) -> String {
    use clap_mangen::roff::{Roff, bold, roman};
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        let meaning = match (path, *code) {
            ("node-watch", "0") => WATCH_STOPPED,
            ("node-watch", "130") => continue,
            ("rollout-controller", "0") => CONTROLLER_STOPPED,
            ("rollout-controller", "1") => CONTROLLER_LOST,
            ("rollout-controller", "130") => continue,
            _ => meaning,
        };
        roff.control("TP", []).text([bold(*code)]).text([roman(meaning)]);
    }
    let on_page = |pages: &[&str]| {
        path.is_empty() || pages.is_empty() || pages.iter().any(|p| *p == path || p.starts_with(&format!("{path}-")))
    };
    roff.control("SH", ["ENVIRONMENT"]);
    for (names, meaning, _) in ENVIRONMENT.iter().filter(|(_, _, pages)| on_page(pages)) {
        roff.control("TP", []).text([bold(*names)]).text([roman(*meaning)]);
    }
    let examples: Vec<_> = EXAMPLES.iter().filter(|(page, _, _)| *page == path).collect();
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (_, command, what) in examples {
            roff.control("TP", []).text([bold(*command)]).text([roman(*what)]);
        }
    }
    // without the preamble that defines the apostrophe string: the page begins with it
    let preamble = Roff::new().render().len();
    roff.render()[preamble..].to_string()
}

/// Every manual page: `(file name, roff)`, the top-level page first.
pub fn manpages() -> Vec<(String, String)> {
    fn collect(command: &clap::Command, prefix: &str, out: &mut Vec<(String, String)>) {
        let name =
            if prefix.is_empty() { command.get_name().to_string() } else { format!("{prefix}-{}", command.get_name()) };
        let page = command.clone().display_name(name.clone());
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff).expect("rendering into memory");
        let mut roff = String::from_utf8(roff).expect("roff is UTF-8");
        // before VERSION (every page has it: the version propagates), else at the end
        let path = name.strip_prefix("bakery").unwrap_or(&name).trim_start_matches('-');
        let at = roff.find("\n.SH VERSION").map_or(roff.len(), |i| i + 1);
        roff.insert_str(at, &extra_sections(path));
        out.push((format!("{name}.1"), roff));
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every page name (`""`, `create`, `node-watch`, ...), as `manpages` names them.
    fn pages() -> Vec<String> {
        fn walk(command: &clap::Command, prefix: &str, out: &mut Vec<String>) {
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let name =
                    if prefix.is_empty() { sub.get_name().to_string() } else { format!("{prefix}-{}", sub.get_name()) };
                out.push(name.clone());
                walk(sub, &name, out);
            }
        }
        let mut out = vec![String::new()];
        walk(&Cli::command(), "", &mut out);
        out
    }

    #[test]
    fn every_example_parses_and_every_page_has_examples() {
        let pages = pages();
        for (page, command, _) in EXAMPLES {
            assert!(pages.iter().any(|p| p == page), "{page:?} is not a page");
            let words: Vec<&str> = command.split(" > ").next().unwrap().split_whitespace().collect();
            let parsed = Cli::try_parse_from(&words).map_err(|e| e.render().to_string());
            assert!(parsed.is_ok(), "{command}: {}", parsed.unwrap_err());
            let path = page.replace('-', " ");
            assert!(command.starts_with(&format!("bakery {path}").trim_end().to_string()), "{command} on {page}");
        }
        for page in &pages {
            assert!(EXAMPLES.iter().any(|(p, _, _)| p == page), "no examples for {page:?}");
        }
    }

    #[test]
    fn environment_pages_exist() {
        let pages = pages();
        for (name, _, on) in ENVIRONMENT {
            for page in *on {
                assert!(pages.iter().any(|p| p == page), "{name}: {page:?} is not a page");
            }
        }
    }

    /// EXIT STATUS lists exactly the codes `exit_code` and clap give.
    #[test]
    fn exit_status_lists_the_codes_bakery_exits_with() {
        use crate::error::{Interrupted, bad_input, exit_code};
        let usage = Cli::try_parse_from(["bakery", "create"]).unwrap_err().exit_code();
        let codes = [
            0,
            exit_code(&anyhow::anyhow!("connection reset")),
            exit_code(&bad_input("unknown arch")),
            usage,
            exit_code(&anyhow::Error::new(Interrupted("SIGINT"))),
        ];
        let mut codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
        codes.dedup();
        let listed: Vec<&str> = EXIT_STATUS.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, listed);
    }

    #[test]
    fn every_page_has_exit_status_and_environment_before_version() {
        for (name, roff) in manpages() {
            let (exit, env, version) =
                (roff.find(".SH \"EXIT STATUS\""), roff.find(".SH ENVIRONMENT"), roff.find(".SH VERSION"));
            assert!(exit.is_some() && env.is_some() && exit < env && env < version, "{name}");
            assert!(roff.contains(".SH EXAMPLES"), "{name}");
            // node watch stops at a safe point and exits 0, the controller too
            let stops_well = ["bakery-node-watch.1", "bakery-rollout-controller.1"].contains(&name.as_str());
            assert_eq!(roff.contains("\\fB130\\fR"), !stops_well, "{name}");
            assert_eq!(roff.matches(".ie \\n(.g .ds Aq").count(), 1, "{name}: one preamble");
        }
    }
}
