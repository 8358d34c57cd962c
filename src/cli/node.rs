//! `bakery node update | refresh | status | rollback`.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};

use super::Global;
use crate::cluster::api::NodeApi;
use crate::cluster::connect;
use crate::components::{self, metadata};
use crate::error::bad_input;
use crate::node::config::NodeConfig;
use crate::node::records::Outcome;
use crate::node::refresh::{self, Report, Timing};
use crate::node::systemd::Bus;
use crate::node::watch::{self, Agent, metrics::Metrics};
use crate::node::{doctor, status, update};

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's root directory; other than / (a mounted image, a test root) systemd is left alone
    #[arg(long, value_name = "DIR", default_value = "/", global = true)]
    pub root: PathBuf,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Stage the newest image the transfer files (or the node config) follow, like systemd-sysupdate
    Update {
        /// Only this extension
        #[arg(value_name = "EXT")]
        extension: Option<String>,
        /// Refresh afterwards
        #[arg(long)]
        activate: bool,
    },
    /// Validate and merge what is linked, restart changed units, check them, roll back failures
    Refresh,
    /// Linked, merged, recorded and staged versions, and unit states
    Status,
    /// Link an extension back to its previous image and refresh
    Rollback {
        /// The extension to roll back, e.g. kubernetes
        #[arg(value_name = "EXT")]
        extension: String,
    },
    /// Follow the upgrade targets set on this Node (target.bakery.dev/<ext>) and report back
    Watch(WatchArgs),
    /// Install a release's components (files, services, scripts, images) where they changed
    ///
    /// Files, directories, links and images are written inside --root: every path, and every
    /// link on the way to it, resolves there as on the booted node, never outside it. A
    /// component's `script` steps run on this host, not inside --root (their working directory
    /// and BAKERY_ROOT are the root): only use components you trust with the host.
    Bootstrap(BootstrapArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The release to install, e.g. v1.32.3
    #[arg(long, value_name = "VERSION")]
    pub release: String,
    /// This node's role; components tagged for others are skipped [default: metadata's role, else worker]
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Node metadata, JSON or YAML [default: /etc/bakery/metadata.json when present]
    #[arg(long, value_name = "FILE", conflicts_with = "metadata_url")]
    pub metadata: Option<PathBuf>,
    /// Fetch the node metadata from this URL (https, or http to a link-local or loopback address)
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// Override a metadata key (a dotted path), e.g. cluster.dns=10.96.0.10 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// A components repository over the built-in one: DIR, https://BASE, FILE.zip or URL.zip#sha256=HEX
    #[arg(long = "components", value_name = "REPO")]
    pub components: Vec<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Cluster credentials [default: KUBECONFIG, in-cluster, then /etc/kubernetes/kubelet.conf]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// This Node's name [default: the hostname, lowercased]
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A `--root` that is not an existing directory is refused before anything is created in it.
fn check_root(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(bad_input(format!("--root {}: not a directory", root.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(bad_input(format!("--root {}: no such directory", root.display())))
        }
        Err(e) => Err(bad_input(format!("--root {}: {}", root.display(), crate::util::io_reason(&e)))),
    }
}

pub fn run(global: &Global, args: &NodeArgs) -> Result<()> {
    let root = args.root.as_path();
    check_root(root)?;
    let config = NodeConfig::load(root)?;
    if let NodeCommand::Watch(watch) = &args.command {
        return run_watch(global, root, &config, watch);
    }
    super::until_interrupted(async {
        let mut no_bus = None;
        let bus = match root == Path::new("/") {
            false => None,
            true => match Bus::connect().await {
                Ok(bus) => Some(bus),
                // status shows what it can read without systemd, and says what it could not
                Err(e) if matches!(args.command, NodeCommand::Status) => {
                    no_bus = Some(status::NotRead { what: status::UNITS, why: crate::error::describe(&e) });
                    None
                }
                Err(e) => return Err(e),
            },
        };
        match &args.command {
            NodeCommand::Update { extension, activate } => {
                let settings = global.settings()?;
                let http = settings.http()?;
                let staged = update::update(root, &config, &http, &settings.mirrors, extension.as_deref()).await?;
                if args.json {
                    outln!("{}", serde_json::to_string_pretty(&staged)?)?;
                } else {
                    for s in &staged {
                        match (&s.image, s.downloaded) {
                            (Some(image), true) => outln!("{}: staged {image}", s.extension)?,
                            (Some(image), false) => outln!("{}: {image} is already staged", s.extension)?,
                            (None, _) => outln!("{}: the release has nothing {} matches", s.extension, s.source)?,
                        }
                    }
                    if staged.is_empty() {
                        outln!("nothing to do: {}", update::nothing_followed(&config))?;
                    }
                }
                if *activate {
                    let report = refresh::refresh(root, &config, bus.as_ref(), Timing::from_config(&config)).await?;
                    return finish(&report, args.json);
                }
                Ok(())
            }
            NodeCommand::Refresh => {
                let report = refresh::refresh(root, &config, bus.as_ref(), Timing::from_config(&config)).await?;
                finish(&report, args.json)
            }
            NodeCommand::Status => {
                let mut statuses = status::status(root, bus.as_ref()).await;
                statuses.not_read.extend(no_bus);
                if args.json {
                    outln!("{}", serde_json::to_string_pretty(&statuses)?)?;
                } else {
                    out!("{}", status::render(&statuses))?;
                }
                Ok(())
            }
            NodeCommand::Rollback { extension } => {
                let report = status::rollback(root, &config, extension, bus.as_ref()).await?;
                finish(&report, args.json)
            }
            NodeCommand::Watch(_) => unreachable!("handled above"),
            NodeCommand::Bootstrap(bootstrap) => {
                let settings = global.settings()?;
                let http = settings.http()?;
                let source = match (&bootstrap.metadata, &bootstrap.metadata_url) {
                    (Some(path), _) => metadata::Source::File(path),
                    (None, Some(url)) => metadata::Source::Url(url),
                    (None, None) => metadata::Source::Default,
                };
                let request = components::Request {
                    release: &bootstrap.release,
                    role: bootstrap.role.as_deref(),
                    metadata: source,
                    sets: &bootstrap.sets,
                    repositories: &bootstrap.components,
                };
                let plan = components::prepare(root, &config, &http, &settings.mirrors, &request).await?;
                if bootstrap.dry_run {
                    if args.json {
                        outln!("{}", serde_json::to_string_pretty(&plan)?)?;
                    } else {
                        out!("{}", components::plan::describe(&plan))?;
                    }
                    return Ok(());
                }
                eprint!("{}", components::plan::describe(&plan));
                let node = components::apply::Node {
                    root,
                    config: &config,
                    http: &http,
                    mirrors: &settings.mirrors,
                    systemd: bus.as_ref(),
                };
                let done = components::apply::apply(&node, &plan).await?;
                if args.json {
                    outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "done": done }))?)?;
                } else {
                    for d in &done {
                        outln!("{} {}: {}", d.component, d.version, d.steps.join("; "))?;
                    }
                    if !plan.restarts.is_empty() {
                        outln!("restarted: {}", plan.restarts.join(", "))?;
                    }
                    if plan.is_empty() {
                        outln!("release {}: nothing to do", plan.release)?;
                    }
                }
                Ok(())
            }
        }
    })
}

/// `node watch`: its own signal handling, as a stop is honoured at safe points rather than at once.
fn run_watch(global: &Global, root: &Path, config: &NodeConfig, args: &WatchArgs) -> Result<()> {
    let settings = global.settings()?;
    let name = connect::node_name(args.node_name.as_deref())?;
    let source = connect::source(args.kubeconfig.as_deref(), root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let stop = super::stop_on_signal("stopping at the next safe point", || {
            watch::notify(&[sd_notify::NotifyState::Stopping]);
        })?;
        let client = connect::client(&source, "node-watch").await?;
        tracing::info!("watching Node {name} with credentials from {source}");
        let bus = if root == Path::new("/") { Some(Bus::connect().await?) } else { None };
        let http = settings.http()?;
        let metrics = Metrics::default();
        let _server = match args.metrics_addr {
            Some(addr) => Some(metrics.clone().serve(addr, root.to_path_buf()).await?),
            None => None,
        };
        let api = NodeApi::new(client.clone(), &name);
        let (nodes_tx, nodes) = tokio::sync::watch::channel(None);
        let follower = NodeApi::new(client, &name);
        let watcher = tokio::spawn(async move { watch::follow(&follower, nodes_tx).await });
        watch::notify(&[sd_notify::NotifyState::Ready]);
        let agent = Agent {
            root,
            config,
            http: &http,
            mirrors: &settings.mirrors,
            systemd: bus.as_ref(),
            api,
            metrics,
            nodes,
            stop,
        };
        let result = agent.run().await;
        watcher.abort();
        result
    })
}

/// Prints a refresh report; failures make the command fail naming them (what went wrong with
/// each is in its line and in the log above, once).
fn finish(report: &Report, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else {
        for line in &report.lines {
            outln!("{}: {:?}: {}", line.extension, line.outcome, line.message)?;
        }
        if report.lines.is_empty() {
            let dirs = crate::node::observe::LINK_DIRS.map(|d| format!("/{d}"));
            outln!("nothing to do: no links in {}", dirs.join(" and "))?;
        }
    }
    let failures: Vec<String> = report
        .failures()
        .iter()
        .map(|l| {
            let outcome = match l.outcome {
                Outcome::RolledBack => "rolled back",
                Outcome::Refused => "refused",
                _ => "failed",
            };
            format!("{} ({outcome})", l.extension)
        })
        .collect();
    if failures.is_empty() { Ok(()) } else { Err(anyhow!("not activated: {}", failures.join(", "))) }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The host's root directory
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `bakery doctor`: exits 1 when a check fails.
pub fn run_doctor(global: &Global, args: &DoctorArgs) -> Result<()> {
    check_root(&args.root)?;
    let settings = global.settings()?;
    let config = NodeConfig::load(&args.root)?;
    let checks = super::until_interrupted(async {
        let http = settings.http()?;
        Ok(doctor::doctor(&args.root, &config, &http, &settings.mirrors).await)
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&checks)?)?;
    } else {
        out!("{}", doctor::render(&checks))?;
    }
    let failed: Vec<&str> =
        checks.iter().filter(|c| c.status == doctor::Status::Fail).map(|c| c.check.as_str()).collect();
    if failed.is_empty() { Ok(()) } else { Err(anyhow!("failed checks: {}", failed.join(", "))) }
}
