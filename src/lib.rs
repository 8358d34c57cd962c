//! bakery: builds systemd-sysext images from upstream release binaries.
//!
//! The build side is a one-way pipeline (see `pipeline`): resolve → fetch → plan → validate →
//! pack → publish. Only fetch, pack and publish touch the network or the disk.

pub mod assets; // templates and recipes embedded in the binary
pub mod butane; // Butane and Ignition configs that provision nodes from a release
pub mod cli; // clap definitions and the glue running each command
pub mod config; // bakery.toml, environment and flags
pub mod error;
pub mod image; // reading images back: inspect // error kinds callers branch on (bad input → exit 2, checksum mismatch)
pub mod model;
pub mod node; // the node agent: update, refresh, status, rollback // domain values: Arch, Sha256, ExtName, ExtVersion, mirrors, extension-release, manifest
pub mod pipeline; // build side: resolve, fetch, plan, validate, publish (pack lives in squashfs)
pub mod recipe;
pub mod release; // bakery release: SHA256SUMS, signature, index.json, transfer files // the recipe format and the catalog of built-in and local recipes
pub mod squashfs;
pub mod sysupdate; // transfer files, match patterns, and updating from a release like systemd-sysupdate
pub mod util; // atomic writes, small formatting helpers // SquashFS writing: parallel compression for backhand, tables with xattrs
