//! bakery: builds systemd-sysext images from upstream release binaries and keeps nodes on them.
//!
//! The build side is a one-way pipeline (see `pipeline`): resolve → fetch → plan → validate →
//! pack → publish. Only fetch, pack and publish touch the network or the disk. The node side
//! (`node`) observes, decides (pure) and acts; `cluster` is its side of the Kubernetes API.

/// Templates and recipes embedded in the binary.
pub(crate) mod assets;
/// Butane and Ignition configs that provision nodes from a release.
pub(crate) mod butane;
/// clap definitions and the glue running each command.
pub mod cli;
/// The Kubernetes side: the Node contract, node watch's API calls, the rollout controller.
pub(crate) mod cluster;
/// Components and node bootstrap: releases of versioned files, services and scripts.
pub(crate) mod components;
/// bakery.toml, environment and flags.
pub(crate) mod config;
/// Signed dm-verity DDIs: GPT, verity hash tree, PKCS#7 signature; writing and verifying.
pub(crate) mod ddi;
/// EROFS writing (native, parallel compression) and the strict EROFS reader.
pub(crate) mod erofs;
/// Error kinds callers branch on (bad input → exit 2, checksum mismatch, interrupted).
pub mod error;
/// One interface over both formats: pack a tree, read an image back (strictly), inspect.
pub(crate) mod image;
/// Domain values: Arch, Sha256, ExtName, ExtVersion, mirrors, extension-release, manifest.
pub mod model;
/// The node agent: update, refresh, status, rollback, doctor, watch.
pub(crate) mod node;
/// Build side: resolve, fetch, plan, validate, publish (pack lives in image, squashfs and erofs).
pub mod pipeline;
/// The recipe format and the catalog of built-in and local recipes.
pub mod recipe;
/// bakery release: SHA256SUMS, signature, index.json, transfer files.
pub(crate) mod release;
/// SquashFS writing (parallel compression for backhand, tables with xattrs) and its strict reader.
pub(crate) mod squashfs;
/// Transfer files, match patterns, and updating from a release like systemd-sysupdate.
pub mod sysupdate;
/// Atomic writes, cancellation, gpg, time formatting.
pub(crate) mod util;
