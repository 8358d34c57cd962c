//! `bakery rollout controller`: leader election, then one loop over watches of the Nodes and
//! the ExtensionRollouts (no polling). Every change that arrives (a burst at once) and every
//! `requeue_at` that comes due makes it decide each rollout on the cache (`decide`), set the
//! target on the Nodes it starts and write the status when it changed.
//!
//! A start is a merge patch guarded by the resourceVersion the decision saw: `409 Conflict`
//! means the Node changed meanwhile, so it is read afresh and the rollout decided again. The
//! answer to every patch goes into the cache before the next decision, so a watch lagging
//! behind the controller's own writes cannot make it spend the budget twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::{FutureExt, StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cache::{Cache, Cached, instant_of, node_view};
use super::crd::{ExtensionRollout, ExtensionRolloutStatus};
use super::decide::{NodeView, Start, decide};
use super::metrics::Metrics;
use crate::cluster::contract;
use crate::cluster::lease::Elector;
use crate::error::describe;

/// The leader-election Lease's name.
pub const LEASE: &str = "bakery-rollout-controller";

/// Target patches in flight at once.
const PARALLEL_PATCHES: usize = 16;

/// Decisions per rollout in one pass while target patches meet conflicts.
const ROUNDS: usize = 8;

/// Watch events taken in one burst before deciding.
const BURST: usize = 1024;

/// How `bakery rollout controller` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    pub lease_duration: Duration,
    pub metrics_addr: Option<SocketAddr>,
}

/// Runs until `stop` (Ok, the Lease released) or until this replica loses the Lease (an
/// error: the process exits non-zero and its Deployment starts it again as a candidate).
pub async fn run(client: kube::Client, options: &Options, stop: watch::Receiver<bool>) -> Result<()> {
    let metrics = Metrics::default();
    let _server = match options.metrics_addr {
        Some(addr) => {
            let shown = metrics.clone();
            Some(crate::util::prometheus::serve(addr, Arc::new(move || shown.render())).await?.1)
        }
        None => None,
    };
    let elector = Elector::new(client.clone(), &options.namespace, LEASE, &options.identity, options.lease_duration);
    let mut held = tokio::select! {
        held = elector.acquire() => held,
        () = stopped(stop.clone()) => return Ok(()),
    };
    metrics.leader(true);
    let controller = Controller::new(client, metrics.clone());
    let outcome = tokio::select! {
        lost = elector.keep(&mut held) => {
            metrics.leader(false);
            return Err(lost);
        }
        result = controller.run() => result,
        () = stopped(stop) => Ok(()),
    };
    metrics.leader(false);
    elector.release(held).await;
    outcome
}

/// Resolves once stopping was asked for.
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The loop's state: nothing but caches of the API server, the status writes in flight and
/// when to retry a failed write.
pub struct Controller {
    nodes: Api<Node>,
    rollouts: Api<ExtensionRollout>,
    fleet: Cache<NodeView>,
    known: Cache<ExtensionRollout>,
    metrics: Metrics,
    /// Status writes in flight, at most one per rollout; dropped (aborted) with the loop, so
    /// that a replica that lost its Lease writes nothing more.
    writing: JoinSet<(String, kube::Result<ExtensionRollout>)>,
    /// The rollouts with a status write in flight.
    pending: BTreeSet<String>,
    /// Rollouts whose status changed again while a write of it was in flight.
    dirty: BTreeSet<String>,
    /// rollout → (failed writes in a row, no new attempt before)
    failures: BTreeMap<String, (u32, Instant)>,
    /// The earliest retry of a failed status write.
    retry_at: Option<Instant>,
}

/// How the target patches of one decision went.
enum Started {
    All,
    /// A Node changed or went away since the decision: decide again.
    Stale,
    Failed(anyhow::Error),
}

/// What woke the loop.
enum Woke {
    Node(Box<Option<Result<Event<Node>, watcher::Error>>>),
    Rollout(Option<Result<Event<ExtensionRollout>, watcher::Error>>),
    Due,
    Written(Result<(String, kube::Result<ExtensionRollout>), tokio::task::JoinError>),
}

impl Controller {
    pub fn new(client: kube::Client, metrics: Metrics) -> Self {
        Self {
            nodes: Api::all(client.clone()),
            rollouts: Api::all(client),
            fleet: Cache::default(),
            known: Cache::default(),
            metrics,
            writing: JoinSet::new(),
            pending: BTreeSet::new(),
            dirty: BTreeSet::new(),
            failures: BTreeMap::new(),
            retry_at: None,
        }
    }

    /// Runs until a watch ends (it does not: watches back off and list again on errors).
    pub async fn run(mut self) -> Result<()> {
        let mut nodes = pin!(watcher(self.nodes.clone(), watcher::Config::default()).default_backoff());
        let mut rollouts = pin!(watcher(self.rollouts.clone(), watcher::Config::default()).default_backoff());
        let mut wake: Option<Instant> = None;
        let mut failing = [false, false];
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            let woke = tokio::select! {
                event = nodes.next() => Woke::Node(Box::new(event)),
                event = rollouts.next() => Woke::Rollout(event),
                () = tokio::time::sleep_until(wake.unwrap_or(far)), if wake.is_some() => Woke::Due,
                Some(done) = self.writing.join_next() => Woke::Written(done),
            };
            let mut changed = match woke {
                Woke::Node(event) => {
                    self.on_node(event.ok_or_else(|| anyhow!("the Node watch ended"))?, &mut failing[0])
                }
                Woke::Rollout(event) => {
                    let event = event.ok_or_else(|| anyhow!("the ExtensionRollout watch ended"))?;
                    self.on_rollout(event, &mut failing[1])
                }
                Woke::Due => {
                    wake = None;
                    true
                }
                Woke::Written(done) => self.written(done),
            };
            // whatever else has arrived: one decision for the burst
            for _ in 0..BURST {
                match nodes.next().now_or_never() {
                    Some(Some(event)) => changed |= self.on_node(event, &mut failing[0]),
                    _ => break,
                }
            }
            for _ in 0..BURST {
                match rollouts.next().now_or_never() {
                    Some(Some(event)) => changed |= self.on_rollout(event, &mut failing[1]),
                    _ => break,
                }
            }
            if changed && self.fleet.ready() && self.known.ready() {
                wake = self.reconcile_all().await;
            }
            if let Some(retry) = self.retry_at.take() {
                wake = Some(wake.map_or(retry, |w| w.min(retry)));
            }
        }
    }

    fn on_node(&mut self, event: Result<Event<Node>, watcher::Error>, failing: &mut bool) -> bool {
        feed(&mut self.fleet, event, failing, "Nodes", node_view)
    }

    fn on_rollout(&mut self, event: Result<Event<ExtensionRollout>, watcher::Error>, failing: &mut bool) -> bool {
        feed(&mut self.known, event, failing, "ExtensionRollouts", ExtensionRollout::clone)
    }

    /// A status write ended; true when the rollout is to be decided again.
    fn written(&mut self, done: Result<(String, kube::Result<ExtensionRollout>), tokio::task::JoinError>) -> bool {
        let Ok((name, result)) = done else { return true };
        self.pending.remove(&name);
        let again = self.dirty.remove(&name);
        match result {
            Ok(rollout) => {
                self.failures.remove(&name);
                self.known.apply(rollout);
                again
            }
            Err(kube::Error::Api(e)) if e.is_not_found() => again,
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("writing the status of ExtensionRollout {name}"));
                let retry = self.failed(&name, &e);
                self.retry_at = Some(self.retry_at.map_or(retry, |r| r.min(retry)));
                false
            }
        }
    }

    /// Decides every rollout; returns when to look again.
    async fn reconcile_all(&mut self) -> Option<Instant> {
        let names: Vec<String> = self.known.items().iter().map(|r| r.name().to_string()).collect();
        for gone in self.metrics.rollouts().into_iter().filter(|n| !names.contains(n)) {
            self.metrics.forget(&gone);
            self.failures.remove(&gone);
        }
        let mut wake: Option<Instant> = None;
        for name in names {
            if let Some(at) = self.reconcile(&name).await {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    /// Decides one rollout, starts what it says and sends the status on its way when it
    /// changed; returns when to look again (its `requeue_at`, or a retry after a failure).
    async fn reconcile(&mut self, name: &str) -> Option<Instant> {
        for _ in 0..ROUNDS {
            let rollout = self.known.get(name)?.clone();
            if rollout.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let now = Timestamp::now();
            let decision = decide(&rollout, self.fleet.items(), self.known.items(), now);
            match self.start(&rollout, &decision.start).await {
                Started::All => {}
                Started::Stale => continue,
                Started::Failed(e) => return Some(self.failed(name, &e)),
            }
            self.metrics.status(name, &decision.status);
            let requeue = decision.requeue_at.map(|at| instant_of(at, now));
            if rollout.status.as_ref() != Some(&decision.status) {
                self.write_status(name, rollout.status.as_ref(), decision.status);
            } else {
                self.failures.remove(name);
            }
            return requeue;
        }
        // conflicts in every round: the watch brings the news shortly
        Some(Instant::now() + Duration::from_millis(100))
    }

    /// Sets the target on each Node of `starts`, a few at a time.
    async fn start(&mut self, rollout: &ExtensionRollout, starts: &[Start]) -> Started {
        if starts.is_empty() {
            return Started::All;
        }
        let Ok(spec) = rollout.spec.check() else { return Started::All };
        let (ext, version) = (spec.extension.as_str(), spec.version.as_str());
        let api = &self.nodes;
        let results: Vec<(&Start, kube::Result<Node>)> = stream::iter(starts)
            .map(|s| async move {
                let patch = contract::target_patch(ext, version, s.resource_version.as_deref());
                (s, api.patch(&s.node, &PatchParams::default(), &Patch::Merge(&patch)).await)
            })
            .buffer_unordered(PARALLEL_PATCHES)
            .collect()
            .await;
        let mut outcome = Started::All;
        let mut patched = 0;
        for (s, result) in results {
            match result {
                Ok(node) => {
                    tracing::info!("rollout {}: Node {} to {ext} {version}", rollout.name(), s.node);
                    self.fleet.apply(node_view(&node));
                    patched += 1;
                }
                Err(kube::Error::Api(e)) if e.is_conflict() || e.is_not_found() => {
                    tracing::debug!(
                        "rollout {}: Node {} changed since the decision; deciding again",
                        rollout.name(),
                        s.node
                    );
                    if let Err(e) = self.refresh(&s.node).await {
                        outcome = Started::Failed(e);
                    } else if !matches!(outcome, Started::Failed(_)) {
                        outcome = Started::Stale;
                    }
                }
                Err(e) => {
                    let e = anyhow::Error::new(e).context(format!("setting the target of Node {}", s.node));
                    outcome = Started::Failed(e);
                }
            }
        }
        self.metrics.patched(rollout.name(), patched);
        outcome
    }

    /// Reads a Node afresh into the cache (or drops it when it is gone).
    async fn refresh(&mut self, node: &str) -> Result<()> {
        match self.nodes.get_opt(node).await.with_context(|| format!("reading Node {node}"))? {
            Some(fresh) => {
                self.fleet.apply(node_view(&fresh));
            }
            None => self.fleet.remove(node),
        }
        Ok(())
    }

    /// Writes the status in the background (the next starts need not wait for it), one write
    /// per rollout at a time: a status decided while one is in flight is decided again once it
    /// lands, so bursts of changes cost one write.
    fn write_status(&mut self, name: &str, before: Option<&ExtensionRolloutStatus>, status: ExtensionRolloutStatus) {
        if self.pending.contains(name) {
            self.dirty.insert(name.to_string());
            return;
        }
        if self.failures.get(name).is_some_and(|(_, not_before)| *not_before > Instant::now()) {
            return; // the retry comes at its time
        }
        log_phase(name, before, &status);
        let (api, name) = (self.rollouts.clone(), name.to_string());
        self.pending.insert(name.clone());
        self.writing.spawn(async move {
            let patch = json!({ "status": status });
            let result = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            (name, result)
        });
    }

    /// Logs a failure and returns when to try again (0.5 s doubling up to 30 s).
    fn failed(&mut self, name: &str, error: &anyhow::Error) -> Instant {
        let (count, not_before) = self.failures.entry(name.to_string()).or_insert((0, Instant::now()));
        *count += 1;
        let wait = Duration::from_millis(500 << (*count - 1).min(6)).min(Duration::from_secs(30));
        *not_before = Instant::now() + wait;
        tracing::warn!("rollout {name}: {}; trying again in {:.1} s", describe(error), wait.as_secs_f32());
        *not_before
    }
}

/// One watch event into `cache`; true when it changed what a decision sees.
fn feed<K, T: Cached>(
    cache: &mut Cache<T>,
    event: Result<Event<K>, watcher::Error>,
    failing: &mut bool,
    what: &str,
    view: impl Fn(&K) -> T,
) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            if !*failing {
                tracing::warn!("watching {what}: {}; retrying", describe(&e.into()));
                *failing = true;
            }
            return false;
        }
    };
    if *failing {
        tracing::info!("watching {what} again");
        *failing = false;
    }
    match event {
        Event::Apply(object) => cache.apply(view(&object)),
        Event::Delete(object) => cache.delete(&view(&object)),
        Event::Init => {
            cache.list_begin();
            false
        }
        Event::InitApply(object) => {
            cache.list_item(view(&object));
            false
        }
        Event::InitDone => {
            cache.list_done();
            true
        }
    }
}

/// Logs a rollout's phase when it changes.
fn log_phase(name: &str, before: Option<&ExtensionRolloutStatus>, after: &ExtensionRolloutStatus) {
    if before.map(|s| s.phase) != Some(after.phase) || before.map(|s| &s.version) != Some(&after.version) {
        tracing::info!("rollout {name}: {} {}: {}", after.phase.as_str(), after.version, after.message);
    } else {
        tracing::debug!("rollout {name}: {}", after.message);
    }
}
