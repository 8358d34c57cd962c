//! Named pauses for crash tests. When `BAKERY_FAILPOINT` names a point the run reaches, bakery
//! prints `bakery: failpoint NAME reached` on stderr and blocks there for good, so a test can
//! kill it with SIGKILL at exactly that step and check what a crash leaves. Unset (always, in
//! normal use), a point costs one comparison.

use std::sync::OnceLock;

/// Every point, in the order a run passes them; tests loop over these.
pub const POINTS: &[&str] = &[
    // create: the temporary image is packed, nothing is published yet
    "create:packed",
    // publish (create): the output directory's lock is held
    "publish:locked",
    // the journal names the image about to be renamed
    "publish:journal-written",
    // --force with other bytes: the old line is gone, the old image still there
    "publish:old-line-removed",
    // the image is in place, SHA256SUMS does not list it yet
    "publish:image-renamed",
    // SHA256SUMS lists the image, the journal is still there
    "publish:sums-written",
    // release: the lock is held, nothing written yet
    "release:locked",
    // the new SHA256SUMS and its signature are written as temporary files
    "release:pair-staged",
    // SHA256SUMS is renamed, its signature not yet
    "release:sums-renamed",
    // SHA256SUMS.gpg is renamed: the release is complete
    "release:signed",
];

/// Blocks forever when `BAKERY_FAILPOINT` is `point`.
pub fn pause(point: &str) {
    debug_assert!(POINTS.contains(&point), "unknown failpoint {point}");
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    if WANTED.get_or_init(|| std::env::var("BAKERY_FAILPOINT").ok()).as_deref() == Some(point) {
        eprintln!("bakery: failpoint {point} reached");
        loop {
            std::thread::park();
        }
    }
}
