//! The integration tests, one binary: each module drives the built `bakery` (and real peers:
//! unsquashfs, systemd-sysext, systemd in containers, gpg, ignition-validate, kubectl) the way a
//! user would. One binary links the library once instead of once per file; run one module with
//! `cargo test --test it create::`.

#[macro_use]
mod support;

mod bad_input;
mod bootstrap;
mod bounded;
mod cli;
mod container_image;
mod create;
mod ddi_build;
mod ddi_node;
mod ddi_release;
mod ddi_vm;
mod erofs;
mod erofs_nodes;
mod erofs_reader;
mod examples;
mod inspect;
mod kube_api_model;
mod node;
mod publish;
mod recipes;
mod release;
mod rollout;
mod static_binary;
mod strict_reader;
mod sysupdate;
mod version_order;
mod versions;
mod watch;
