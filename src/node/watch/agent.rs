//! `node watch`'s decisions, pure: the lifecycle states and their allowed transitions, what to
//! do next given the targets, the records and what this run remembers (attempts, backoff, given
//! up targets), and how the Node should describe it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::contract::State;
use crate::node::records::{Outcome, Records};

/// Whether the agent may go from `from` to `to`: activation only follows staging, and nothing
/// follows activation without its result.
pub fn allowed(from: State, to: State) -> bool {
    match (from, to) {
        (State::Staging, State::Activating) => true,
        (_, State::Activating) => false,
        _ => true,
    }
}

/// One target being worked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub version: String,
    /// Failed attempts so far.
    pub failures: u32,
    pub not_before: Instant,
    pub last_error: String,
}

/// A target this run stopped trying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaveUp {
    pub version: String,
    pub state: State,
    pub message: String,
}

/// What this run remembers between Node updates.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub attempts: BTreeMap<String, Attempt>,
    pub gave_up: BTreeMap<String, GaveUp>,
}

/// Retry limits from the node config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts at one target.
    pub attempts: u32,
    /// Before the first retry; doubling after each further failure.
    pub backoff: Duration,
}

/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

impl Retry {
    /// The wait after the `failures`-th failure.
    pub fn delay(&self, failures: u32) -> Duration {
        let doubled = self.backoff.saturating_mul(1 << failures.saturating_sub(1).min(20));
        doubled.min(MAX_BACKOFF)
    }
}

impl Memory {
    /// Notes a failed attempt at `ext` `version`: Some(GaveUp) once the attempts are used up.
    pub fn failed(&mut self, ext: &str, version: &str, error: &str, retry: Retry, now: Instant) -> Option<GaveUp> {
        let failures = match self.attempts.get(ext) {
            Some(a) if a.version == version => a.failures + 1,
            _ => 1,
        };
        if failures >= retry.attempts {
            self.attempts.remove(ext);
            let message = format!("{ext} {version}: gave up after {failures} attempts: {error}");
            return Some(self.give_up(ext, version, State::Failed, &message));
        }
        let attempt = Attempt {
            version: version.to_string(),
            failures,
            not_before: now + retry.delay(failures),
            last_error: error.to_string(),
        };
        self.attempts.insert(ext.to_string(), attempt);
        None
    }

    /// Stops trying `ext` `version` until the target changes.
    pub fn give_up(&mut self, ext: &str, version: &str, state: State, message: &str) -> GaveUp {
        self.attempts.remove(ext);
        let gave_up = GaveUp { version: version.to_string(), state, message: message.to_string() };
        self.gave_up.insert(ext.to_string(), gave_up.clone());
        gave_up
    }

    /// Forgets `ext` (its target was reached).
    pub fn done(&mut self, ext: &str) {
        self.attempts.remove(ext);
        self.gave_up.remove(ext);
    }
}

/// The extension → version pairs a refresh proved bad on this node (rolled back, failed or
/// refused): they are not tried again until the target changes.
pub fn proven_bad(records: &Records) -> BTreeMap<String, (String, State, String)> {
    let mut out = BTreeMap::new();
    for (ext, record) in &records.extensions {
        let Some(last) = &record.last_result else { continue };
        let state = match last.outcome {
            Outcome::RolledBack => State::RolledBack,
            Outcome::Failed | Outcome::Refused => State::Failed,
            Outcome::Activated | Outcome::Unchanged => continue,
        };
        if let Some(version) = &last.version {
            out.insert(ext.clone(), (version.clone(), state, last.message.clone()));
        }
    }
    out
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Work on `extension` `version` now (attempt number `attempt`).
    Upgrade { extension: String, version: String, attempt: u32 },
    /// A retry is due at this instant; nothing before.
    WaitUntil(Instant),
    /// Nothing to do until the Node or the records change.
    Idle,
}

/// The next step for the `pending` (extension, target) pairs, in order.
pub fn next(
    pending: &[(String, String)],
    bad: &BTreeMap<String, (String, State, String)>,
    memory: &Memory,
    now: Instant,
) -> Next {
    let mut wait: Option<Instant> = None;
    for (ext, version) in pending {
        if bad.get(ext).is_some_and(|(v, ..)| v == version)
            || memory.gave_up.get(ext).is_some_and(|g| &g.version == version)
        {
            continue;
        }
        match memory.attempts.get(ext).filter(|a| &a.version == version) {
            Some(attempt) if attempt.not_before > now => {
                wait = Some(wait.map_or(attempt.not_before, |w| w.min(attempt.not_before)));
            }
            Some(attempt) => {
                return Next::Upgrade {
                    extension: ext.clone(),
                    version: version.clone(),
                    attempt: attempt.failures + 1,
                };
            }
            None => return Next::Upgrade { extension: ext.clone(), version: version.clone(), attempt: 1 },
        }
    }
    wait.map_or(Next::Idle, Next::WaitUntil)
}

/// How the Node should describe a moment with no upgrade running: waiting for a retry shows as
/// staging, a proven-bad or given-up target as rolled-back or failed, else idle.
pub fn summary(
    pending: &[(String, String)],
    bad: &BTreeMap<String, (String, State, String)>,
    memory: &Memory,
    now: Instant,
) -> (State, String) {
    for (ext, version) in pending {
        if let Some(a) = memory.attempts.get(ext).filter(|a| &a.version == version) {
            let wait = a.not_before.saturating_duration_since(now).as_secs();
            return (
                State::Staging,
                format!("{ext} {version}: attempt {} failed ({}); retrying in {wait} s", a.failures, a.last_error),
            );
        }
    }
    for (ext, version) in pending {
        if let Some(g) = memory.gave_up.get(ext).filter(|g| &g.version == version) {
            return (g.state, g.message.clone());
        }
        if let Some((_, state, message)) = bad.get(ext).filter(|(v, ..)| v == version) {
            return (*state, format!("{ext} {version}: {message}; set another target to try again"));
        }
    }
    (State::Idle, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::records::LastResult;

    const RETRY: Retry = Retry { attempts: 3, backoff: Duration::from_secs(10) };

    fn pending(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(e, v)| (e.to_string(), v.to_string())).collect()
    }

    #[test]
    fn transitions() {
        use State::*;
        let all = [Idle, Staging, Activating, Failed, RolledBack];
        for from in all {
            for to in all {
                let expected = to != Activating || from == Staging;
                assert_eq!(allowed(from, to), expected, "{from:?} → {to:?}");
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_limit() {
        let delays: Vec<u64> = (1..=8).map(|n| RETRY.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 600, 600]);
    }

    #[test]
    fn failures_are_retried_with_backoff_then_given_up() {
        let now = Instant::now();
        let mut memory = Memory::default();
        let work = pending(&[("k", "v2")]);
        let bad = BTreeMap::new();
        assert_eq!(
            next(&work, &bad, &memory, now),
            Next::Upgrade { extension: "k".into(), version: "v2".into(), attempt: 1 }
        );

        assert_eq!(memory.failed("k", "v2", "HTTP 503", RETRY, now), None);
        let due = now + Duration::from_secs(10);
        assert_eq!(next(&work, &bad, &memory, now), Next::WaitUntil(due), "no retry storm");
        let (state, message) = summary(&work, &bad, &memory, now);
        assert_eq!(state, State::Staging);
        assert_eq!(message, "k v2: attempt 1 failed (HTTP 503); retrying in 10 s");
        assert_eq!(
            next(&work, &bad, &memory, due),
            Next::Upgrade { extension: "k".into(), version: "v2".into(), attempt: 2 }
        );

        assert_eq!(memory.failed("k", "v2", "HTTP 503", RETRY, due), None);
        assert_eq!(next(&work, &bad, &memory, due), Next::WaitUntil(due + Duration::from_secs(20)));
        let gave_up = memory.failed("k", "v2", "HTTP 503", RETRY, due).expect("the third failure is the last");
        assert_eq!(gave_up.message, "k v2: gave up after 3 attempts: HTTP 503");
        assert_eq!(next(&work, &bad, &memory, due), Next::Idle, "waits for a new target");
        assert_eq!(summary(&work, &bad, &memory, due).0, State::Failed);

        // A new target starts afresh.
        let newer = pending(&[("k", "v3")]);
        assert_eq!(
            next(&newer, &bad, &memory, due),
            Next::Upgrade { extension: "k".into(), version: "v3".into(), attempt: 1 }
        );
        assert_eq!(summary(&newer, &bad, &memory, due), (State::Idle, String::new()));
    }

    #[test]
    fn a_target_the_records_prove_bad_is_not_tried_again() {
        let mut records = Records::default();
        records.extension("k").last_result = Some(LastResult {
            outcome: Outcome::RolledBack,
            version: Some("v3".into()),
            message: "demo.service is not up".into(),
            at: String::new(),
        });
        let bad = proven_bad(&records);
        let memory = Memory::default();
        let now = Instant::now();
        assert_eq!(next(&pending(&[("k", "v3")]), &bad, &memory, now), Next::Idle);
        let (state, message) = summary(&pending(&[("k", "v3")]), &bad, &memory, now);
        assert_eq!(state, State::RolledBack);
        assert!(message.contains("demo.service is not up") && message.contains("set another target"), "{message}");
        assert!(matches!(next(&pending(&[("k", "v4")]), &bad, &memory, now), Next::Upgrade { .. }));
    }

    #[test]
    fn a_waiting_extension_does_not_block_the_next_one() {
        let now = Instant::now();
        let mut memory = Memory::default();
        memory.failed("a", "v2", "offline", RETRY, now);
        let work = pending(&[("a", "v2"), ("b", "v5")]);
        assert_eq!(
            next(&work, &BTreeMap::new(), &memory, now),
            Next::Upgrade { extension: "b".into(), version: "v5".into(), attempt: 1 }
        );
    }
}
