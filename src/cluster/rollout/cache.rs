//! The controller's view of the API server: the Nodes (as [`NodeView`]s) and the rollouts, kept
//! from their watches and from the answers to its own writes. It holds nothing the API server
//! does not: it is a cache, rebuilt by a list at every start.
//!
//! Two rules make it safe to decide on:
//! - **Never backwards.** An object is replaced only by a newer one (a higher resourceVersion),
//!   so a watch that lags behind the controller's own patch cannot undo it in the view: the
//!   budget a start spent stays spent. (resourceVersions of one resource type are integers that
//!   grow with every write; Kubernetes 1.35 made comparing them part of the API contract,
//!   KEP-5504. One that is not an integer is taken as newer.)
//! - **Whole lists.** After a re-list (a 410 Gone, a lost connection) the listed objects replace
//!   the cache only once the list is complete, and the caller does not decide in between: a
//!   partial list would hide unavailable Nodes.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;

use super::crd::ExtensionRollout;
use super::view::NodeView;
use crate::cluster::contract::{STATUS, TARGET};

/// What the cache needs of an object.
pub trait Cached: Clone {
    fn key(&self) -> &str;
    fn resource_version(&self) -> Option<&str>;
}

impl Cached for NodeView {
    fn key(&self) -> &str {
        &self.name
    }

    fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }
}

impl Cached for ExtensionRollout {
    fn key(&self) -> &str {
        self.name()
    }

    fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }
}

/// The view of a Node the controller keeps: only the annotations bakery reads (a Node's other
/// annotations can be large and are never looked at).
pub fn node_view(node: &Node) -> NodeView {
    let mut view = NodeView::from_node(node);
    view.annotations
        .retain(|key, _| key.starts_with(TARGET) || key.starts_with(STATUS) || key.starts_with("bakery.dev/"));
    view
}

/// Whether `incoming` may replace `held`: it is at least as new.
fn not_older(incoming: Option<&str>, held: Option<&str>) -> bool {
    match (incoming.map(str::parse::<u64>), held.map(str::parse::<u64>)) {
        (Some(Ok(a)), Some(Ok(b))) => a >= b,
        _ => true,
    }
}

/// Objects by key, sorted, so that `decide` reads them as a slice without copying.
#[derive(Clone, Debug)]
pub struct Cache<T> {
    items: Vec<T>,
    /// The objects of a list in progress (None: no list in progress).
    listing: Option<Vec<T>>,
    /// A complete list has been seen since the start.
    synced: bool,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Self { items: Vec::new(), listing: None, synced: false }
    }
}

impl<T: Cached> Cache<T> {
    /// The objects, by key; empty until the first list is complete.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// A complete list has been seen and no re-list is in progress: safe to decide on.
    pub fn ready(&self) -> bool {
        self.synced && self.listing.is_none()
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.find(key).ok().map(|i| &self.items[i])
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|item| item.key().cmp(key))
    }

    /// An object as a watch event or a write's answer shows it; false when the cache already
    /// held it or something newer.
    pub fn apply(&mut self, object: T) -> bool {
        match self.find(object.key()) {
            Ok(i) => {
                let held = &self.items[i];
                if held.resource_version() == object.resource_version()
                    || !not_older(object.resource_version(), held.resource_version())
                {
                    return false;
                }
                self.items[i] = object;
            }
            Err(i) => self.items.insert(i, object),
        }
        true
    }

    /// An object deleted (its last state), unless the cache holds a newer one of the same name
    /// (deleted and created again).
    pub fn delete(&mut self, object: &T) -> bool {
        match self.find(object.key()) {
            Ok(i) if not_older(object.resource_version(), self.items[i].resource_version()) => {
                self.items.remove(i);
                true
            }
            _ => false,
        }
    }

    /// Drops the object named `key` (read afresh and found gone).
    pub fn remove(&mut self, key: &str) {
        if let Ok(i) = self.find(key) {
            self.items.remove(i);
        }
    }

    /// A (re-)list begins; the cache stays as it is until [`Cache::list_done`].
    pub fn list_begin(&mut self) {
        self.listing = Some(Vec::new());
    }

    pub fn list_item(&mut self, object: T) {
        self.listing.get_or_insert_with(Vec::new).push(object);
    }

    /// The list is complete: it replaces the cache, except where the cache holds a newer
    /// version of an object (an answer to a write made while listing).
    pub fn list_done(&mut self) {
        let Some(mut listed) = self.listing.take() else { return };
        listed.sort_by(|a, b| a.key().cmp(b.key()));
        listed.dedup_by(|later, earlier| {
            let same = later.key() == earlier.key();
            if same && not_older(later.resource_version(), earlier.resource_version()) {
                std::mem::swap(later, earlier);
            }
            same
        });
        for item in &mut listed {
            if let Some(held) = self.get(item.key())
                && !not_older(item.resource_version(), held.resource_version())
            {
                *item = held.clone();
            }
        }
        self.items = listed;
        self.synced = true;
    }
}

/// When a `requeue_at` is due, as a tokio instant (at once when it is past).
pub fn instant_of(at: Timestamp, now: Timestamp) -> tokio::time::Instant {
    let wait = now.duration_until(at).try_into().unwrap_or(std::time::Duration::ZERO);
    tokio::time::Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, rv: &str, target: Option<&str>) -> NodeView {
        let mut v = NodeView { name: name.into(), resource_version: Some(rv.into()), ..NodeView::default() };
        if let Some(t) = target {
            v.annotations.insert(format!("{TARGET}k"), t.into());
        }
        v
    }

    fn names(cache: &Cache<NodeView>) -> Vec<(&str, &str)> {
        cache.items().iter().map(|v| (v.name.as_str(), v.resource_version.as_deref().unwrap())).collect()
    }

    #[test]
    fn a_lagging_watch_event_does_not_undo_the_controllers_own_patch() {
        let mut cache = Cache::default();
        cache.list_begin();
        cache.list_item(view("b", "5", None));
        cache.list_item(view("a", "4", None));
        assert!(!cache.ready(), "not before the list is complete");
        cache.list_done();
        assert!(cache.ready());
        assert_eq!(names(&cache), [("a", "4"), ("b", "5")]);
        // the PATCH answer: a at 9 with the target
        assert!(cache.apply(view("a", "9", Some("v2"))));
        // the watch catches up with an older change of a (an agent's report at 7)
        assert!(!cache.apply(view("a", "7", None)));
        assert_eq!(cache.get("a").unwrap().annotations[&format!("{TARGET}k")], "v2");
        // and then delivers the patch itself: nothing changes
        assert!(!cache.apply(view("a", "9", Some("v2"))));
        assert!(cache.apply(view("a", "10", Some("v2"))));
    }

    #[test]
    fn a_relist_replaces_the_cache_at_its_end_keeping_newer_answers() {
        let mut cache = Cache::default();
        cache.list_begin();
        for v in [view("a", "1", None), view("b", "2", None), view("c", "3", None)] {
            cache.list_item(v);
        }
        cache.list_done();
        cache.list_begin();
        cache.list_item(view("a", "4", None));
        // a write's answer while listing: c at 12
        cache.apply(view("c", "12", Some("v2")));
        cache.list_item(view("c", "11", None));
        assert!(!cache.ready(), "no decision while listing");
        assert_eq!(names(&cache), [("a", "1"), ("b", "2"), ("c", "12")], "the old view until the end");
        cache.list_done();
        // b is gone (deleted while the watch was down), c keeps the newer answer
        assert_eq!(names(&cache), [("a", "4"), ("c", "12")]);
        assert!(cache.ready());
    }

    #[test]
    fn deletes_drop_the_object_unless_a_newer_one_took_its_name() {
        let mut cache = Cache::default();
        cache.list_begin();
        cache.list_done();
        cache.apply(view("a", "3", None));
        assert!(!cache.delete(&view("a", "2", None)), "an old incarnation");
        assert!(cache.delete(&view("a", "3", None)));
        assert!(cache.items().is_empty());
        // resourceVersions that are not integers cannot be compared: the newest event wins
        cache.apply(view("x", "abc", None));
        assert!(cache.apply(view("x", "abd", Some("v1"))));
    }

    #[test]
    fn node_views_keep_only_bakerys_annotations() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1", "annotations": {
                "target.bakery.dev/k": "v2", "status.bakery.dev/k": "v1", "bakery.dev/state": "idle",
                "bakery.dev/message": "m", "node.alpha.kubernetes.io/ttl": "0", "huge.example/blob": "x",
            }},
        }))
        .unwrap();
        let keys: Vec<String> = node_view(&node).annotations.into_keys().collect();
        assert_eq!(keys, ["bakery.dev/message", "bakery.dev/state", "status.bakery.dev/k", "target.bakery.dev/k"]);
    }
}
