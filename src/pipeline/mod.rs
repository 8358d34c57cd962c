//! The build pipeline, one stage per module. Stages take owned input and return owned,
//! printable values; only fetch, pack (`crate::squashfs`) and publish do I/O.

pub mod cache;
pub mod checksum;
pub mod create;
pub mod extract;
pub mod fetch;
pub mod http;
pub mod inputs;
pub mod limits;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod render;
pub mod resolve;
pub mod validate;
pub mod versions;
