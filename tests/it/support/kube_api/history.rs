//! The recorded history: every write in order (HTTP or direct), with the object as it was after
//! it, so tests can assert a guarantee at every instant by replaying it, and count writes per
//! object and per client. Request counts (gets, lists, watches per resource and client) prove
//! that a client watches rather than polls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::Request;

/// One write, as the server committed it.
#[derive(Clone, Debug)]
pub struct Write {
    /// The resourceVersion it got: increasing by one over every write of every kind.
    pub seq: u64,
    pub at: Instant,
    /// `nodes`, `leases.coordination.k8s.io`, `extensionrollouts.bakery.dev`, ...
    pub resource: String,
    /// "" for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// `create`, `update`, `patch`, `apply` or `delete`.
    pub verb: &'static str,
    /// `status` or "".
    pub subresource: String,
    /// The requester: its User-Agent (or `unknown`), or the direct caller's name.
    pub client: String,
    /// The object after the write; for a delete, its last state.
    pub object: Arc<Value>,
    pub deleted: bool,
}

/// A copy of the history at one moment (cheap: the objects are shared).
#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<Arc<Write>>,
}

impl History {
    /// The writes to one resource type.
    pub fn of<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a Arc<Write>> + 'a {
        self.writes.iter().filter(move |w| w.resource == resource)
    }

    /// How many writes each object of `resource` got (by `namespace/name` or `name`).
    pub fn writes_per_object(&self, resource: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for write in self.of(resource) {
            let key = if write.namespace.is_empty() {
                write.name.clone()
            } else {
                format!("{}/{}", write.namespace, write.name)
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
    }

    /// How many writes each client made.
    pub fn writes_per_client(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for write in &self.writes {
            *counts.entry(write.client.clone()).or_default() += 1;
        }
        counts
    }

    /// The writes `client` made.
    pub fn by<'a>(&'a self, client: &'a str) -> impl Iterator<Item = &'a Arc<Write>> + 'a {
        self.writes.iter().filter(move |w| w.client == client)
    }

    /// Replays the writes to `resource`: after each, the objects as they were at that instant.
    pub fn replay(&self, resource: &str) -> Replay<'_> {
        Replay { writes: self.writes.iter(), resource: resource.to_string(), objects: BTreeMap::new() }
    }

    /// The Nodes after each write to a Node.
    pub fn nodes_at_each_step(&self) -> Replay<'_> {
        self.replay("nodes")
    }

    /// The largest value `measure` takes over the states of `resource` after each write, with
    /// the write where it was first reached.
    pub fn max_over_steps(
        &self,
        resource: &str,
        mut measure: impl FnMut(&BTreeMap<String, Arc<Value>>) -> usize,
    ) -> Option<(usize, Arc<Write>)> {
        let mut replay = self.replay(resource);
        let mut best: Option<(usize, Arc<Write>)> = None;
        while let Some(step) = replay.next_step() {
            let value = measure(step.objects);
            if best.as_ref().is_none_or(|(b, _)| value > *b) {
                best = Some((value, step.write.clone()));
            }
        }
        best
    }
}

/// A replay in progress; `next_step` moves it on by one write.
pub struct Replay<'a> {
    writes: std::slice::Iter<'a, Arc<Write>>,
    resource: String,
    objects: BTreeMap<String, Arc<Value>>,
}

/// The state after one write.
pub struct Step<'r> {
    pub write: &'r Arc<Write>,
    /// The object before this write (None when it created it).
    pub before: Option<Arc<Value>>,
    /// Every object of the resource after this write, by `namespace/name` or `name`.
    pub objects: &'r BTreeMap<String, Arc<Value>>,
}

impl<'a> Replay<'a> {
    pub fn next_step(&mut self) -> Option<Step<'_>> {
        let write = self.writes.by_ref().find(|w| w.resource == self.resource)?;
        let key =
            if write.namespace.is_empty() { write.name.clone() } else { format!("{}/{}", write.namespace, write.name) };
        let before =
            if write.deleted { self.objects.remove(&key) } else { self.objects.insert(key, write.object.clone()) };
        Some(Step { write, before, objects: &self.objects })
    }
}

/// Requests counted by `(verb, resource)` as RBAC names them (`list nodes`, `watch
/// bakery.dev:extensionrollouts`, `patch nodes/status`), over `requests`.
pub fn count_requests<'a>(requests: impl IntoIterator<Item = &'a Request>) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        if let Some(key) = request.rbac() {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}
