//! The agent's own Node through the Kubernetes API: watched (list, then watch from the list's
//! resourceVersion, re-listing after `410 Gone` or a lost connection, with backoff), reported on
//! (annotations by merge patch, the condition by strategic merge patch on the status subresource),
//! cordoned and uncordoned (guarded by resourceVersion), and Events (events.k8s.io/v1). Every
//! patch is retried when the API answers `409 Conflict`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::Stream;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde_json::json;

use super::contract::{self, CORDONED, Condition, Report, Targets};

/// The Events the agent records on its Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Staged,
    Activated,
    RolledBack,
    Failed,
}

impl EventKind {
    pub fn reason(self) -> &'static str {
        match self {
            EventKind::Staged => "ExtensionStaged",
            EventKind::Activated => "ExtensionActivated",
            EventKind::RolledBack => "ExtensionRolledBack",
            EventKind::Failed => "ExtensionFailed",
        }
    }

    fn action(self) -> &'static str {
        match self {
            EventKind::Staged => "Stage",
            EventKind::Activated | EventKind::RolledBack | EventKind::Failed => "Activate",
        }
    }

    fn warning(self) -> bool {
        matches!(self, EventKind::RolledBack | EventKind::Failed)
    }
}

/// Attempts at a patch that meets `409 Conflict`.
const CONFLICT_ATTEMPTS: u32 = 5;

/// The Events' reporting controller.
const REPORTER: &str = "bakery";

pub struct NodeApi {
    api: Api<Node>,
    events: Api<events::Event>,
    name: String,
}

impl NodeApi {
    pub fn new(client: kube::Client, name: &str) -> Self {
        Self { api: Api::all(client.clone()), events: Api::namespaced(client, "default"), name: name.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Node as it is now.
    pub async fn get(&self) -> Result<Node> {
        self.api.get(&self.name).await.with_context(|| format!("reading Node {}", self.name))
    }

    /// The Node every time it changes (and once at the start), forever: errors are yielded and
    /// the watch goes on after a backoff.
    pub fn watch(&self) -> impl Stream<Item = Result<Node, watcher::Error>> + Send + use<> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        watcher(self.api.clone(), config).default_backoff().applied_objects()
    }

    /// Makes the Node's annotations and condition say `report`, writing only what changed.
    pub async fn report(&self, targets: &Targets, report: &Report) -> Result<()> {
        let name = self.name.clone();
        retry_conflicts(&format!("reporting on Node {name}"), || async {
            let node = self.get().await?;
            if let Some(patch) = contract::annotations_patch(&annotations(&node), report) {
                self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            let now = crate::util::time::now_rfc3339();
            if let Some(condition) = contract::condition(current_condition(&node).as_ref(), targets, report, &now) {
                let patch = json!({ "status": { "conditions": [condition] } });
                self.api.patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
            }
            Ok(())
        })
        .await
    }

    /// Cordons the Node unless it is already unschedulable; true when this call cordoned it
    /// (and marked it so with the `bakery.dev/cordoned` annotation).
    pub async fn cordon(&self) -> Result<bool> {
        retry_conflicts(&format!("cordoning Node {}", self.name), || async {
            let node = self.get().await?;
            if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
                return Ok(annotations(&node).contains_key(CORDONED));
            }
            let patch = json!({
                "metadata": { "resourceVersion": node.metadata.resource_version, "annotations": { CORDONED: "true" } },
                "spec": { "unschedulable": true },
            });
            self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(true)
        })
        .await
    }

    /// Uncordons the Node if this agent cordoned it; true when it did.
    pub async fn uncordon(&self) -> Result<bool> {
        retry_conflicts(&format!("uncordoning Node {}", self.name), || async {
            let node = self.get().await?;
            if !annotations(&node).contains_key(CORDONED) {
                return Ok(false);
            }
            let patch = json!({
                "metadata": { "resourceVersion": node.metadata.resource_version, "annotations": { CORDONED: null } },
                "spec": { "unschedulable": null },
            });
            self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(true)
        })
        .await
    }

    /// Records an Event on the Node (events.k8s.io/v1, in `default` as for every cluster-scoped
    /// object). Each occurrence is its own Event: their notes differ, which a series would hide.
    pub async fn event(&self, node: &Node, kind: EventKind, note: &str) -> Result<()> {
        let now = jiff::Timestamp::now();
        let event = events::Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.name, now.as_nanosecond())),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(kind.action().into()),
            reason: Some(kind.reason().into()),
            // the API limits notes to 1 kB
            note: Some(note.chars().take(1000).collect()),
            regarding: Some(node.object_ref(&())),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(format!("{REPORTER}-{}", self.name)),
            type_: Some(if kind.warning() { "Warning" } else { "Normal" }.into()),
            ..events::Event::default()
        };
        self.events
            .create(&PostParams::default(), &event)
            .await
            .with_context(|| format!("recording {} on Node {}", kind.reason(), self.name))?;
        Ok(())
    }
}

/// The Node's annotations.
pub fn annotations(node: &Node) -> BTreeMap<String, String> {
    node.metadata.annotations.clone().unwrap_or_default()
}

/// The Node's `BakeryUpToDate` condition, as the contract models it.
fn current_condition(node: &Node) -> Option<Condition> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == contract::CONDITION)?;
    Some(Condition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
        last_heartbeat_time: c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        last_transition_time: c.last_transition_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
    })
}

/// Runs `attempt` again (reading the Node afresh) while the API answers `409 Conflict`.
async fn retry_conflicts<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if tries < CONFLICT_ATTEMPTS && is_conflict(&e) => {
                tracing::debug!("{what}: conflict, trying again ({tries}/{CONFLICT_ATTEMPTS})");
                tokio::time::sleep(Duration::from_millis(50 << tries)).await;
            }
            result => return result.with_context(|| what.to_string()),
        }
    }
}

fn is_conflict(error: &anyhow::Error) -> bool {
    error.chain().any(|e| matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.is_conflict()))
}
