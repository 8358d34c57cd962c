//! The rollout controller. Its pure core: the `ExtensionRollout` resource (crd), label
//! selectors (selector), maintenance windows (window), Nodes as the decision sees them (view),
//! and THE decision (decide): which Nodes get their target now, the status, and when to look
//! again. Around it: the caches it decides on (cache), the loop with leader election
//! (controller), its metrics (metrics), and `rollout list`/`status` (report).
//!
//! The controller loop is thin on top of it. On every change of a rollout or a Node (and at
//! `requeue_at`), for each rollout:
//! ```text
//! let nodes: Vec<NodeView> = node_store.iter().map(|n| NodeView::from_node(&n)).collect();
//! let d = decide(&rollout, &nodes, &all_rollouts, jiff::Timestamp::now());
//! for s in &d.start {          // Api<Node>::patch(&s.node, .., Patch::Merge(&target_patch(..)))
//!     contract::target_patch(ext, version, s.resource_version.as_deref());
//!     // then put the patched Node (the response) into the cache decide reads next
//! }
//! // Api<ExtensionRollout>::patch_status(name, .., Patch::Merge(&json!({"status": d.status})))
//! //   when d.status differs from rollout.status
//! // requeue at d.requeue_at, if any
//! ```
//! A 409 on a target patch means the Node changed since the view: decide again. It writes
//! nothing else on a Node: no cordon, no uncordon.

pub mod cache;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod metrics;
pub mod report;
pub mod selector;
pub mod view;
pub mod window;

pub use crd::ExtensionRollout;
