//! A process-wide "stop soon" flag, set on SIGINT/SIGTERM, that long blocking work (unpacking,
//! compression, template rendering) checks so it ends quickly and its temporary files are removed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: OnceLock<&'static str> = OnceLock::new();

/// Asks blocking work to stop.
pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Asks blocking work to stop because `signal` (`SIGTERM`) arrived.
pub fn request_by(signal: &'static str) {
    let _ = SIGNAL.set(signal);
    request();
}

/// Whether stopping was asked for.
pub fn requested() -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

/// The signal that asked to stop, if one did.
pub fn signal() -> Option<&'static str> {
    SIGNAL.get().copied()
}

/// The error for work that stopped because of [`request`]: exit 130.
pub fn interrupted() -> anyhow::Error {
    crate::error::Interrupted(signal().unwrap_or("a signal")).into()
}

/// An error for work that stopped because of [`request`].
pub fn check() -> std::io::Result<()> {
    if requested() { Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled")) } else { Ok(()) }
}
