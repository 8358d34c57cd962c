//! A process-wide "stop soon" flag, set on SIGINT/SIGTERM, that long blocking work (unpacking,
//! compression) checks so it ends quickly and its temporary files are removed.

use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Asks blocking work to stop.
pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether stopping was asked for.
pub fn requested() -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

/// An error for work that stopped because of [`request`].
pub fn check() -> std::io::Result<()> {
    if requested() { Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled")) } else { Ok(()) }
}
