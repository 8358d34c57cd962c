//! systemd-sysupdate's vocabulary: transfer files, match patterns, and an update that plays
//! sysupdate's part where it is missing (Debian 12 has none).

pub mod pattern;
pub mod transfer;
pub mod update;
