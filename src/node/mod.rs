//! The node agent: what runs on a node after systemd-sysupdate (or `bakery node update`) stages a
//! new image. observe (links, images, host, records) → decide (pure: what changed, what to
//! restart, healthy or not, what to roll back to) → act (links, systemd-sysext, systemd over
//! D-Bus, records).

pub mod config;
pub mod decide;
pub mod doctor;
pub mod keep;
pub mod lock;
pub mod merge;
pub mod observe;
pub mod records;
pub mod refresh;
pub mod root;
pub mod status;
pub mod sysext;
pub mod systemd;
pub mod update;
pub mod watch;
