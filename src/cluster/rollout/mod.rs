//! The rollout controller's pure core: the `ExtensionRollout` resource (crd), label selectors
//! (selector), maintenance windows (window), Nodes as the decision sees them (view), and THE
//! decision (decide): which Nodes get their target now, the status, and when to look again.
//!
//! The controller loop is thin on top of it: for each rollout, read the Nodes and the other
//! rollouts from the API (or a cache holding the controller's own writes), call
//! [`decide`], patch `target.bakery.dev/<ext>` on each Node of `start` with
//! [`contract::target_patch`](crate::cluster::contract::target_patch), write `status` to the
//! status subresource, and come back at `requeue_at` or on the next change. It writes nothing
//! else on a Node: no cordon, no uncordon.

pub mod crd;
pub mod decide;
pub mod selector;
pub mod view;
pub mod window;

#[allow(unused_imports)] // (until the controller loop uses them)
pub use crd::{ExtensionRollout, ExtensionRolloutSpec, ExtensionRolloutStatus, Phase, RolloutWindow};
#[allow(unused_imports)]
pub use decide::{Decision, NodeView, Start, decide};
