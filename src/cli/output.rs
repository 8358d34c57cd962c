//! Results on stdout. A closed stdout (`bakery inspect --json | head -1`) is not a failure: what
//! the reader no longer wants is dropped, the command finishes its work (a `node update
//! --activate` still activates) and exits as it would have, 0 on success. Rust ignores SIGPIPE,
//! so `println!` would panic there instead (exit 101).

use std::fmt;
use std::io::Write;

/// Writes `args` to stdout and flushes; nothing happens when stdout is closed.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("writing to stdout")),
        _ => Ok(()),
    }
}
