//! The cluster side: which cluster and Node (connect), what operators ask for and what the agent
//! reports on the Node (contract, pure), the Kubernetes API calls that carry it for the agent
//! (api), leader election on a Lease (lease), and the rollout controller that sets the targets
//! for a fleet (rollout).

pub mod api;
pub mod connect;
pub mod contract;
pub mod lease;
pub mod rollout;
