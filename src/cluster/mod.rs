//! The cluster side of the node agent: which cluster and Node (connect), what operators ask for
//! and what the agent reports on the Node (contract, pure), and the Kubernetes API calls that
//! carry it (api).

pub mod api;
pub mod connect;
pub mod contract;
