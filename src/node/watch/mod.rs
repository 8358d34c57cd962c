//! `bakery node watch`: follows the upgrade targets operators set on this Node
//! (`target.bakery.dev/<ext>`), stages and activates them with the node update and refresh
//! paths, and reports back on the Node (annotations, the `BakeryUpToDate` condition, Events).
//!
//! One loop: read the latest Node (a watcher task keeps it current), decide (pure, `agent`),
//! act. Stopping is honoured at safe points only: while waiting, or while downloading (the
//! partial file is removed); an activation, once its link is flipped, runs to its verdict.

pub mod agent;
pub mod metrics;

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;

use self::agent::{Memory, Next, Retry};
use self::metrics::Metrics;
use super::config::NodeConfig;
use super::records::{Outcome, Records};
use super::systemd::Systemd;
use super::update;
use crate::cluster::api::{EventKind, NodeApi, annotations};
use crate::cluster::contract::{self, CORDONED, Report, State, Targets};
use crate::error::describe;
use crate::model::Mirrors;
use crate::pipeline::http::Http;

/// How often the records are read again without a Node change (a manual refresh shows up).
const RESYNC: Duration = Duration::from_secs(60);

/// Everything the agent works with.
pub struct Agent<'a, S: Systemd> {
    pub root: &'a Path,
    pub config: &'a NodeConfig,
    pub http: &'a Http,
    pub mirrors: &'a Mirrors,
    /// None with `--root`: units are not restarted.
    pub systemd: Option<&'a S>,
    pub api: NodeApi,
    pub metrics: Metrics,
    /// The latest Node, kept current by [`follow`].
    pub nodes: watch::Receiver<Option<Node>>,
    /// True once SIGTERM or SIGINT arrived.
    pub stop: watch::Receiver<bool>,
}

/// Whether the loop goes on.
enum Step {
    Continue,
    Stop,
}

/// Keeps `nodes` current with the API's view of the Node, forever (errors are logged and the
/// watcher backs off and re-lists).
pub async fn follow(api: &NodeApi, nodes: watch::Sender<Option<Node>>) {
    let mut stream = pin!(api.watch());
    let mut failing = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(node) => {
                if failing {
                    tracing::info!("watching Node {} again", api.name());
                    failing = false;
                }
                nodes.send_replace(Some(node));
            }
            Err(e) => {
                tracing::warn!("cannot watch Node {}: {}", api.name(), describe(&e.into()));
                notify_status(&format!("cannot watch Node {}; retrying", api.name()));
                failing = true;
            }
        }
    }
}

impl<S: Systemd> Agent<'_, S> {
    /// Runs until stopped.
    pub async fn run(mut self) -> Result<()> {
        let mut memory = Memory::default();
        let mut state = State::Idle;
        let retry = Retry { attempts: self.config.retries, backoff: Duration::from_secs(self.config.retry_backoff) };
        notify_status(&format!("waiting for Node {}", self.api.name()));
        loop {
            if *self.stop.borrow() {
                break;
            }
            let Some(node) = self.nodes.borrow_and_update().clone() else {
                if self.wait(None).await {
                    break;
                }
                continue;
            };
            let targets = contract::targets(&annotations(&node));
            let records = match Records::load(self.root) {
                Ok(records) => records,
                Err(e) => {
                    let message = format!("cannot read the records: {}", describe(&e));
                    tracing::error!("{message}");
                    state = self.enter(state, State::Failed)?;
                    self.report(&targets, &Records::default(), state, message).await;
                    if self.wait(None).await {
                        break;
                    }
                    continue;
                }
            };
            let pending = contract::pending(&targets, &active(&records));
            let bad = agent::proven_bad(&records);
            let now = Instant::now();
            match agent::next(&pending, &bad, &memory, now) {
                Next::Upgrade { extension, version, attempt } => {
                    let step = self.upgrade(&mut state, &mut memory, retry, &extension, &version, attempt).await?;
                    if let Step::Stop = step {
                        break;
                    }
                }
                next => {
                    let (summary, mut message) = agent::summary(&pending, &bad, &memory, now);
                    let mut to = summary;
                    if to == State::Idle
                        && let Some((key, why)) = targets.invalid.first()
                    {
                        to = State::Failed;
                        message = format!("{key}: {why}; ignored");
                    }
                    if message.is_empty() {
                        message = describe_active(&records);
                    }
                    // a Node this agent cordoned and left so (a run stopped mid-upgrade)
                    if to != State::Failed && annotations(&node).contains_key(CORDONED) {
                        self.uncordon().await;
                    }
                    state = self.enter(state, to)?;
                    self.report(&targets, &records, state, message).await;
                    let due = match next {
                        Next::WaitUntil(at) => Some(at),
                        _ => None,
                    };
                    if self.wait(due).await {
                        break;
                    }
                }
            }
        }
        notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("stopped");
        Ok(())
    }

    /// Stages, activates and reports one target. The caller reports the outcome's summary.
    async fn upgrade(
        &mut self,
        state: &mut State,
        memory: &mut Memory,
        retry: Retry,
        ext: &str,
        version: &str,
        attempt: u32,
    ) -> Result<Step> {
        let targets = self.targets();
        *state = self.enter(*state, State::Staging)?;
        let message = format!("staging {ext} {version} (attempt {attempt} of {})", retry.attempts);
        tracing::info!("{message}");
        self.report_now(&targets, *state, message).await;

        let staged = {
            let stage = update::stage_exact(self.root, self.config, self.http, self.mirrors, ext, version);
            tokio::select! {
                result = stage => result,
                () = stopped(self.stop.clone()) => {
                    let message = format!("stopped while staging {ext} {version}; the next start resumes it");
                    tracing::info!("{message}");
                    self.report_now(&targets, *state, message).await;
                    return Ok(Step::Stop);
                }
                () = superseded(self.nodes.clone(), ext.to_string(), version.to_string()) => {
                    tracing::info!("{ext}: the target changed while {version} was staging; dropping it");
                    return Ok(Step::Continue);
                }
            }
        };
        let prepared = match staged {
            Ok(prepared) => prepared,
            Err(e) => {
                self.failed_attempt(memory, retry, ext, version, &e).await;
                return Ok(Step::Continue);
            }
        };
        let what = if prepared.downloaded { "downloaded and verified" } else { "already there, verified" };
        self.event(EventKind::Staged, &format!("{ext} {version} staged as {} ({what})", prepared.image.display()))
            .await;

        // the safe point before activation
        if *self.stop.borrow() {
            let message = format!("stopped before activating {ext} {version}; the next start resumes it");
            self.report_now(&targets, *state, message).await;
            return Ok(Step::Stop);
        }
        if self.targets().wanted.get(ext).is_none_or(|t| t != version) {
            tracing::info!("{ext}: the target changed after {version} was staged; not activating it");
            return Ok(Step::Continue);
        }
        if self.config.cordon {
            match self.api.cordon().await {
                Ok(true) => tracing::info!("cordoned Node {}", self.api.name()),
                Ok(false) => tracing::info!("Node {} was already cordoned; leaving that as it is", self.api.name()),
                Err(e) => {
                    self.failed_attempt(memory, retry, ext, version, &e).await;
                    return Ok(Step::Continue);
                }
            }
        }

        *state = self.enter(*state, State::Activating)?;
        self.report_now(&targets, *state, format!("activating {ext} {version}")).await;
        let result = prepared.activate(self.root, self.config, self.systemd).await;
        self.metrics.refreshed();
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                self.failed_attempt(memory, retry, ext, version, &e).await;
                return Ok(Step::Continue);
            }
        };
        let line = report.lines.iter().find(|l| l.extension == ext);
        let message = line.map(|l| format!("{ext}: {}", l.message)).unwrap_or_else(|| format!("{ext}: not linked"));
        match line.map(|l| &l.outcome) {
            Some(Outcome::Activated | Outcome::Unchanged) => {
                memory.done(ext);
                self.metrics.upgrade(ext, "activated");
                self.uncordon().await;
                self.event(EventKind::Activated, &message).await;
            }
            Some(Outcome::RolledBack) => {
                memory.give_up(ext, version, State::RolledBack, &message);
                self.metrics.upgrade(ext, "rolled_back");
                self.uncordon().await;
                self.event(EventKind::RolledBack, &message).await;
            }
            Some(Outcome::Failed | Outcome::Refused) | None => {
                memory.give_up(ext, version, State::Failed, &message);
                self.metrics.upgrade(ext, "failed");
                self.event(EventKind::Failed, &message).await;
            }
        }
        Ok(Step::Continue)
    }

    /// A failed attempt: a permanent failure (bad input, a checksum mismatch, a 404, TLS) gives
    /// up at once, a transient one is retried with backoff until the attempts are used up.
    async fn failed_attempt(&self, memory: &mut Memory, retry: Retry, ext: &str, version: &str, error: &anyhow::Error) {
        let text = describe(error);
        tracing::warn!("{ext} {version}: {text}");
        let gave_up = if crate::error::persistence(error) == crate::error::Persistence::Permanent {
            Some(memory.give_up(ext, version, State::Failed, &format!("{ext} {version}: {text}")))
        } else {
            memory.failed(ext, version, &text, retry, Instant::now())
        };
        if let Some(gave_up) = gave_up {
            self.metrics.upgrade(ext, "failed");
            self.event(EventKind::Failed, &gave_up.message).await;
        }
    }

    /// Moves the state machine, refusing a transition it does not have.
    fn enter(&self, from: State, to: State) -> Result<State> {
        if !agent::allowed(from, to) {
            bail!("internal error: node watch cannot go from {} to {}", from.as_str(), to.as_str());
        }
        self.metrics.state(to);
        Ok(to)
    }

    fn targets(&self) -> Targets {
        self.nodes.borrow().as_ref().map(|n| contract::targets(&annotations(n))).unwrap_or_default()
    }

    /// Reports with the records as they are now.
    async fn report_now(&self, targets: &Targets, state: State, message: String) {
        let records = Records::load(self.root).unwrap_or_default();
        self.report(targets, &records, state, message).await;
    }

    /// Writes `state` and `message` (and the active versions) on the Node; an API failure is
    /// logged, and the next change reports again.
    async fn report(&self, targets: &Targets, records: &Records, state: State, message: String) {
        notify_status(&format!("{}: {message}", state.as_str()));
        let report = Report { active: active(records), state, message };
        if let Err(e) = self.api.report(targets, &report).await {
            tracing::warn!("{}", describe(&e));
        }
    }

    /// Uncordons the Node if this agent cordoned it (failed runs stay cordoned: the node may be
    /// broken, and a person decides).
    async fn uncordon(&self) {
        match self.api.uncordon().await {
            Ok(true) => tracing::info!("uncordoned Node {}", self.api.name()),
            Ok(false) => {}
            Err(e) => tracing::warn!("{}", describe(&e)),
        }
    }

    async fn event(&self, kind: EventKind, note: &str) {
        let Some(node) = self.nodes.borrow().clone() else { return };
        if let Err(e) = self.api.event(&node, kind, note).await {
            tracing::warn!("{}", describe(&e));
        }
    }

    /// Waits for a Node change, the resync interval, `due`, or a stop; true when stopping.
    async fn wait(&mut self, due: Option<Instant>) -> bool {
        let due = due.map(tokio::time::Instant::from_std);
        let retry = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.nodes.changed() => {
                if changed.is_err() {
                    // the watcher ended: only the resync and a stop remain
                    std::future::pending::<()>().await;
                }
            }
            () = tokio::time::sleep(RESYNC) => {}
            () = retry => {}
            () = stopped(self.stop.clone()) => {}
        }
        *self.stop.borrow()
    }
}

/// Each extension's active version, from the records.
fn active(records: &Records) -> BTreeMap<String, String> {
    records
        .extensions
        .iter()
        .filter_map(|(ext, r)| r.active.as_ref().map(|a| (ext.clone(), a.version.clone())))
        .collect()
}

fn describe_active(records: &Records) -> String {
    let list: Vec<String> = active(records).into_iter().map(|(e, v)| format!("{e} {v}")).collect();
    if list.is_empty() { "no extensions active".into() } else { format!("active: {}", list.join(", ")) }
}

/// Resolves once stopping was asked for.
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the Node's target for `ext` is no longer `version`.
async fn superseded(mut nodes: watch::Receiver<Option<Node>>, ext: String, version: String) {
    let changed = nodes.wait_for(|node| {
        let target = node.as_ref().map(|n| contract::targets(&annotations(n)).wanted.get(&ext).cloned());
        target.is_some_and(|t| t.as_deref() != Some(version.as_str()))
    });
    if changed.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Tells systemd (`Type=notify`); a no-op outside a notify service.
pub fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

fn notify_status(text: &str) {
    notify(&[sd_notify::NotifyState::Status(text)]);
}
