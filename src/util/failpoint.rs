//! Named pauses for crash and race tests. When `BAKERY_FAILPOINT` names a point the run
//! reaches, bakery prints `bakery: failpoint NAME reached` on stderr and blocks there for good,
//! so a test can kill it with SIGKILL at exactly that step and check what a crash leaves. With
//! `BAKERY_FAILPOINT_RESUME=FIFO` as well, it then reads one line from that FIFO and goes on, so
//! a test can change the world at exactly that step (rewrite an image bakery has just checked);
//! a FIFO it cannot read ends the run (exit 1) rather than leave that test waiting.
//! Unset (always, in normal use), a point costs one comparison.

use std::io::BufRead;
use std::sync::OnceLock;

/// Every point, in the order a run passes them; tests loop over these.
pub const POINTS: &[&str] = &[
    // create: packing is about to report its first progress; the temporary image is incomplete
    "create:packing",
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
    // node refresh: every linked image is checked and hashed, systemd-sysext has not merged yet
    "refresh:checked",
];

/// Blocks when `BAKERY_FAILPOINT` is `point`: for good, or until a line arrives on the FIFO
/// `BAKERY_FAILPOINT_RESUME` names.
pub fn pause(point: &str) {
    debug_assert!(POINTS.contains(&point), "unknown failpoint {point}");
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    if WANTED.get_or_init(|| std::env::var("BAKERY_FAILPOINT").ok()).as_deref() == Some(point) {
        eprintln!("bakery: failpoint {point} reached");
        if let Some(fifo) = std::env::var_os("BAKERY_FAILPOINT_RESUME") {
            match wait_for_line(std::path::Path::new(&fifo)) {
                Ok(()) => return,
                Err(e) => {
                    // ended, not parked: the test waiting to resume it would wait for good
                    eprintln!("bakery: failpoint {point}: reading {}: {e}", fifo.to_string_lossy());
                    std::process::exit(1);
                }
            }
        }
        loop {
            std::thread::park();
        }
    }
}

/// Opens `fifo` (which waits for a writer) and reads one line, or to its end.
fn wait_for_line(fifo: &std::path::Path) -> std::io::Result<()> {
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::open(fifo)?).read_line(&mut line)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_on_the_fifo_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("resume");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "go\n").unwrap())
        };
        wait_for_line(&fifo).unwrap();
        writer.join().unwrap();
    }
}
