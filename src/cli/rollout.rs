//! `bakery rollout controller | list | status`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kube::api::{Api, ListParams};

use crate::cluster::connect;
use crate::cluster::rollout::ExtensionRollout;
use crate::cluster::rollout::controller::{self, Options};
use crate::cluster::rollout::report::{self, Summary};
use crate::error::bad_input;

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Cluster credentials [default: KUBECONFIG, ~/.kube/config, then the in-cluster service account]
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Set Nodes' upgrade targets as ExtensionRollouts ask, within their budgets (one replica leads)
    ///
    /// Watches the ExtensionRollouts and the Nodes, and sets target.bakery.dev/<ext> on the
    /// Nodes each rollout may start now; `bakery node watch` on each Node does the rest. Of the
    /// replicas sharing the Lease bakery-rollout-controller, the one holding it acts and the
    /// others wait. All state is in the API server: a replica may be killed at any moment.
    Controller(ControllerArgs),
    /// The ExtensionRollouts: phase and Nodes updated, in flight, failed and pending
    List {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// One ExtensionRollout: phase, counts, the Nodes in flight and failed, conditions
    Status {
        /// The ExtensionRollout's name
        #[arg(value_name = "NAME")]
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// The leader-election Lease's namespace [default: the pod's own namespace, else default]
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in the Lease, unique among replicas [default: the hostname]
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long the leader's Lease lasts unrenewed (renewed every third of it), e.g. 15s or 1m
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = lease_duration)]
    pub lease_duration: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A Lease duration: whole seconds, at least 1 (`leaseDurationSeconds` is an integer).
fn lease_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = match text.trim().parse::<u64>() {
        Ok(seconds) => jiff::SignedDuration::from_secs(seconds as i64),
        Err(_) => text.trim().parse().map_err(|e| format!("{text:?} is not a duration such as 15s or 1m: {e}"))?,
    };
    let duration = Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))?;
    if duration.as_secs() < 1 || duration.subsec_nanos() != 0 {
        return Err(format!("{text:?}: a Lease lasts whole seconds, at least 1s"));
    }
    Ok(duration)
}

/// Where the pod's service account says it runs.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub fn run(args: &RolloutArgs) -> Result<()> {
    let source = connect::user_source(args.kubeconfig.as_deref())?;
    match &args.command {
        RolloutCommand::Controller(controller) => run_controller(&source, controller),
        RolloutCommand::List { json } => super::until_interrupted(async {
            let api: Api<ExtensionRollout> = Api::all(connect::client(&source, "rollout-list").await?);
            let list = api.list(&ListParams::default()).await.map_err(|e| served(e, "listing ExtensionRollouts"))?;
            let mut summaries: Vec<Summary> = list.items.iter().map(Summary::of).collect();
            summaries.sort_by(|a, b| a.name.cmp(&b.name));
            if *json {
                outln!("{}", serde_json::to_string_pretty(&summaries)?)
            } else {
                out!("{}", report::table(&summaries))
            }
        }),
        RolloutCommand::Status { name, json } => super::until_interrupted(async {
            let api: Api<ExtensionRollout> = Api::all(connect::client(&source, "rollout-status").await?);
            let what = format!("reading ExtensionRollout {name}");
            let rollout = api.get_opt(name).await.map_err(|e| served(e, &what))?;
            let rollout =
                rollout.ok_or_else(|| bad_input(format!("no ExtensionRollout {name:?} (see bakery rollout list)")))?;
            let summary = Summary::of(&rollout);
            if *json {
                outln!("{}", serde_json::to_string_pretty(&summary)?)
            } else {
                out!("{}", report::page(&summary))
            }
        }),
    }
}

/// An API error, saying so when the cluster does not serve the resource at all.
fn served(error: kube::Error, what: &str) -> anyhow::Error {
    let missing = matches!(&error, kube::Error::Api(s) if s.is_not_found());
    let error = anyhow::Error::new(error).context(what.to_string());
    if missing {
        error.context("the cluster does not serve extensionrollouts.bakery.dev: apply deploy/crd.yaml first")
    } else {
        error
    }
}

/// `rollout controller`: runs until SIGTERM or SIGINT (exit 0, the Lease released) or until
/// it loses the Lease (exit 1, so that its Deployment starts it again as a candidate).
fn run_controller(source: &connect::Source, args: &ControllerArgs) -> Result<()> {
    let identity = match args.identity.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        Some(identity) => identity.to_string(),
        None => connect::node_name(None).context("naming this replica (pass --identity)")?,
    };
    let namespace = match args.namespace.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(namespace) => namespace.to_string(),
        None => std::fs::read_to_string(POD_NAMESPACE_FILE)
            .map(|n| n.trim().to_string())
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    };
    let options = Options { namespace, identity, lease_duration: args.lease_duration, metrics_addr: args.metrics_addr };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let stop = super::stop_on_signal("stopping", || {})?;
        let client = connect::client(source, &format!("rollout-controller/{}", options.identity)).await?;
        tracing::info!(
            "rollout controller {} with credentials from {source}; Lease {}/{}",
            options.identity,
            options.namespace,
            controller::LEASE
        );
        controller::run(client, &options, stop).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_are_whole_seconds() {
        assert_eq!(lease_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(lease_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(lease_duration("4"), Ok(Duration::from_secs(4)));
        for bad in ["0s", "1.5s", "-3s", "soon"] {
            assert!(lease_duration(bad).is_err(), "{bad}");
        }
    }
}
