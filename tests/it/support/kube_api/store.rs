//! Objects and their resourceVersions: one collection per resource type (objects in etcd's key
//! order, what is known beside them, the recent events and the watches), and the commit every
//! write ends in: the next resourceVersion, the event to the watches, the write to the history.
//! What a write may do is `write.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::apply::Ownership;
use super::history::Write;
use super::resources::ResourceType;
use super::watch::{Event, EventType, Watchers};
use super::write::Op;

/// What is known about one stored object besides its content.
#[derive(Clone, Debug, Default)]
pub(super) struct ObjectMeta {
    /// The resourceVersion that created it (Events are shown in creation order).
    pub created: u64,
    pub owners: Ownership,
}

/// The objects of one resource type, its recent events and its watches.
pub(super) struct Collection {
    pub ty: ResourceType,
    /// By `name` (cluster-scoped) or `namespace/name`: etcd's key order.
    pub objects: BTreeMap<String, Arc<Value>>,
    pub meta: HashMap<String, ObjectMeta>,
    /// Every event with a resourceVersion above `complete_after`, oldest first.
    pub log: VecDeque<Arc<Event>>,
    pub complete_after: u64,
    pub watchers: Watchers,
}

impl Collection {
    fn new(ty: ResourceType) -> Self {
        Collection {
            ty,
            objects: BTreeMap::new(),
            meta: HashMap::new(),
            log: VecDeque::new(),
            complete_after: 0,
            watchers: Watchers::default(),
        }
    }
}

/// The key of an object in its collection.
pub(super) fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

pub(super) struct Store {
    pub collections: Vec<Collection>,
    /// The last resourceVersion given out (etcd's revision: one counter for every kind).
    pub rv: u64,
    next_uid: u64,
    /// Events kept per resource type for watches from a resourceVersion; older ones get 410.
    pub log_capacity: usize,
    pub history: Vec<Arc<Write>>,
    pub record_history: bool,
}

pub(super) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn rv_of(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap_or_default()
}

impl Store {
    pub fn new(types: Vec<ResourceType>) -> Self {
        Store {
            collections: types.into_iter().map(Collection::new).collect(),
            rv: 100,
            next_uid: 0,
            log_capacity: 50_000,
            history: Vec::new(),
            record_history: true,
        }
    }

    /// The collection of `qualified` (`nodes`, `leases.coordination.k8s.io`).
    pub fn find(&self, qualified: &str) -> Option<usize> {
        self.collections.iter().position(|c| c.ty.qualified() == qualified)
    }

    /// The collection served at group/version/plural.
    pub fn served(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.collections.iter().position(|c| c.ty.group == group && c.ty.version == version && c.ty.plural == plural)
    }

    /// Adds a resource type (a custom resource); an existing one with that name is kept.
    pub fn register(&mut self, ty: ResourceType) -> usize {
        match self.served(&ty.group, &ty.version, &ty.plural) {
            Some(i) => i,
            None => {
                self.collections.push(Collection::new(ty));
                self.collections.len() - 1
            }
        }
    }

    pub fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012}", self.next_uid)
    }

    /// Stores (or with None deletes) an object under the next resourceVersion, sends the event
    /// to the watches and records the write.
    pub fn commit(&mut self, c: usize, key: &str, object: Option<Value>, type_: EventType, op: &Op) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        let collection = &mut self.collections[c];
        let prev = collection.objects.get(key).cloned();
        let deleted = object.is_none();
        let mut object = match object {
            Some(object) => object,
            None => (**prev.as_ref().expect("deleting a stored object")).clone(),
        };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let object = Arc::new(object);
        if deleted {
            collection.objects.remove(key);
            collection.meta.remove(key);
        } else {
            collection.objects.insert(key.to_string(), object.clone());
        }
        let event = Arc::new(Event::new(rv, type_, object.clone(), prev));
        collection.watchers.dispatch(&event);
        collection.log.push_back(event);
        while collection.log.len() > self.log_capacity {
            let evicted = collection.log.pop_front().unwrap();
            collection.complete_after = evicted.rv;
        }
        if self.record_history {
            self.history.push(Arc::new(Write {
                seq: rv,
                at: Instant::now(),
                resource: collection.ty.qualified(),
                namespace: object["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                name: object["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                verb: op.verb(),
                subresource: op.subresource.clone().unwrap_or_default(),
                client: op.client.clone(),
                object: object.clone(),
                deleted,
            }));
        }
        object
    }
}

pub(super) fn key_of(object: &Value) -> String {
    let metadata = &object["metadata"];
    key(metadata["namespace"].as_str(), metadata["name"].as_str().unwrap_or_default())
}
