//! The cluster side: which cluster and Node (connect), what operators ask for and what the agent
//! reports on the Node (contract, pure), the Kubernetes API calls that carry it for the agent
//! (api), and the rollout controller that sets the targets for a fleet (rollout).

pub mod api;
pub mod connect;
pub mod contract;
// Until `bakery rollout controller` (the loop, leader election, CLI) lands on top of it, only
// the tests use the rollout core.
#[allow(dead_code)]
pub mod rollout;
