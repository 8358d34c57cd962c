//! Error kinds that callers branch on. Everything else is an `anyhow` chain with context.

use std::fmt;

/// Input the user can fix (arguments, recipes, archives, images): the process exits with 2.
///
/// Wrap it in `anyhow` with context as usual; [`exit_code`] finds it anywhere in the chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Shorthand for an `anyhow::Error` carrying [`BadInput`].
pub fn bad_input(message: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.to_string()))
}

/// A download whose content did not match its published checksum.
#[derive(Debug, thiserror::Error)]
#[error("checksum mismatch: expected sha256 {expected}, got {actual}")]
pub struct ChecksumMismatch {
    pub expected: String,
    pub actual: String,
}

/// SIGINT or SIGTERM stopped the command (after cleaning up): exit 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}; nothing was published")]
pub struct Interrupted(pub &'static str);

/// Whether trying again may help. The download retry loop and `node watch` decide by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Bad input, a checksum mismatch, a 404, a TLS failure, a refused redirect: the same
    /// attempt fails the same way.
    Permanent,
    /// A reset connection, a timeout, a 5xx answer: a later attempt may succeed.
    Transient,
}

/// Marks an error chain with its [`Persistence`]. It adds no text: its message is empty, which
/// [`describe`] skips.
#[derive(Debug, thiserror::Error)]
#[error("")]
struct Marked(Persistence);

/// `error`, marked as failing the same way every time.
pub fn permanent(error: impl Into<anyhow::Error>) -> anyhow::Error {
    error.into().context(Marked(Persistence::Permanent))
}

/// `error`, marked as one a later attempt may not see.
pub fn transient(error: impl Into<anyhow::Error>) -> anyhow::Error {
    error.into().context(Marked(Persistence::Transient))
}

/// Whether trying again may help: the outermost mark in the chain, else permanent for
/// [`BadInput`] and [`ChecksumMismatch`], else transient (what is not known to be permanent).
pub fn persistence(error: &anyhow::Error) -> Persistence {
    if let Some(Marked(persistence)) = error.downcast_ref::<Marked>() {
        return *persistence;
    }
    if error.chain().any(|cause| cause.is::<BadInput>() || cause.is::<ChecksumMismatch>()) {
        Persistence::Permanent
    } else {
        Persistence::Transient
    }
}

/// The exit code for an error: 2 for bad input, 130 when interrupted, 1 for other failures.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.chain().any(|cause| cause.is::<BadInput>()) {
        2
    } else if error.chain().any(|cause| cause.is::<Interrupted>()) {
        130
    } else {
        1
    }
}

/// What the user may try about an error: [`describe`] prints it after the chain, on a line of
/// its own starting `try:`. It adds nothing to the chain's text.
#[derive(Debug, thiserror::Error)]
#[error("")]
pub struct Advice(pub Vec<String>);

/// The error chain on one line, `outer: inner: cause`, without the repeats of causes whose
/// message already quotes their source (zbus and std I/O errors do), then each [`Advice`] in
/// the chain on a line of its own.
pub fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    for text in error.downcast_ref::<Advice>().map(|a| a.0.as_slice()).unwrap_or_default() {
        out.push_str(&format!("\ntry: {text}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to connect: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn describe_drops_causes_their_parent_already_quotes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(Quoting(io)).context("connecting to the bus");
        assert_eq!(describe(&error), "connecting to the bus: failed to connect: No such file or directory");
        let plain = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(describe(&plain), "outer: middle: inner");
    }

    #[test]
    fn persistence_is_the_outermost_mark_and_adds_no_text() {
        let reset = transient(anyhow::anyhow!("connection reset")).context("fetching x").context("staging k v2");
        assert_eq!(persistence(&reset), Persistence::Transient);
        assert_eq!(describe(&reset), "staging k v2: fetching x: connection reset");
        let tls = permanent(anyhow::anyhow!("invalid peer certificate")).context("fetching x");
        assert_eq!(persistence(&tls), Persistence::Permanent);
        let checksum = anyhow::Error::new(ChecksumMismatch { expected: "a".into(), actual: "b".into() });
        assert_eq!(persistence(&checksum.context("fetching x")), Persistence::Permanent);
        assert_eq!(persistence(&bad_input("unknown arch").context("x")), Persistence::Permanent);
        assert_eq!(persistence(&anyhow::anyhow!("D-Bus went away")), Persistence::Transient);
        let relabelled = permanent(transient(anyhow::anyhow!("timed out")).context("deadline"));
        assert_eq!(persistence(&relabelled), Persistence::Permanent, "the outermost mark wins");
    }

    #[test]
    fn bad_input_anywhere_in_the_chain_exits_2() {
        let err = Err::<(), _>(bad_input("unknown arch")).context("creating image").unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("network down")), 1);
    }
}
