//! Limits on one download (`[download]` in bakery.toml): a stall timeout, a minimum speed over a
//! window, an overall deadline and a size cap, and the meter that applies them to a body as it
//! arrives. Pure: the caller passes the clock.

use std::fmt;
use std::time::{Duration, Instant};

use crate::util::human_bytes;

/// What one download may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for the next bytes (or for the answer's headers).
    pub stall_timeout: Duration,
    /// Bytes per second a download must average over each `speed_window` (0: no minimum).
    pub min_speed: u64,
    pub speed_window: Duration,
    /// For one download, all its attempts included.
    pub deadline: Duration,
    /// The largest body when nothing gives the expected size.
    pub max_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(60),
            min_speed: 1024,
            speed_window: Duration::from_secs(30),
            deadline: Duration::from_secs(3600),
            max_size: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// A limit a download broke, saying which `[download]` key sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Stalled { after: Duration },
    TooSlow { received: u64, window: Duration, min_speed: u64 },
    TooLarge { cap: u64, by: Cap },
    Deadline { deadline: Duration },
}

/// Where a size cap came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// The source gave the size (a manifest).
    Expected,
    /// `[download] max_size`.
    MaxSize,
    /// The most read into memory (a checksum file, a listing).
    Document,
}

impl Exceeded {
    /// Whether another attempt may succeed: a stalled or slow connection may recover, a body
    /// larger than allowed or a used-up deadline will not.
    pub fn transient(&self) -> bool {
        matches!(self, Exceeded::Stalled { .. } | Exceeded::TooSlow { .. })
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Stalled { after } => {
                write!(f, "no data for {} ([download] stall_timeout)", seconds(*after))
            }
            Exceeded::TooSlow { received, window, min_speed } => write!(
                f,
                "{} in {}, below the minimum speed of {}/s ([download] min_speed, speed_window)",
                human_bytes(*received),
                seconds(*window),
                human_bytes(*min_speed)
            ),
            Exceeded::TooLarge { cap, by: Cap::Expected } => write!(f, "larger than its expected size of {cap} bytes"),
            Exceeded::TooLarge { cap, by: Cap::MaxSize } => {
                write!(f, "larger than {} ([download] max_size)", human_bytes(*cap))
            }
            Exceeded::TooLarge { cap, by: Cap::Document } => {
                write!(f, "larger than {}, the most read of a document", human_bytes(*cap))
            }
            Exceeded::Deadline { deadline } => {
                write!(f, "not done within {} ([download] deadline)", seconds(*deadline))
            }
        }
    }
}

impl std::error::Error for Exceeded {}

/// `60 s`, `1.5 s`.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0} s") } else { format!("{secs:.1} s") }
}

/// Applies [`Limits`] to one body as its bytes arrive.
#[derive(Clone, Debug)]
pub struct Meter {
    limits: Limits,
    cap: u64,
    by: Cap,
    received: u64,
    last_data: Instant,
    window_start: Instant,
    window_bytes: u64,
}

impl Meter {
    /// A meter for a body of at most `expected` bytes when the source says, else `max_size`
    /// (and never more than `ceiling`, for documents read into memory).
    pub fn new(limits: Limits, expected: Option<u64>, ceiling: u64, now: Instant) -> Self {
        let (cap, by) = match expected {
            Some(size) => (size, Cap::Expected),
            None => (limits.max_size, Cap::MaxSize),
        };
        let (cap, by) = if cap > ceiling { (ceiling, Cap::Document) } else { (cap, by) };
        Self { limits, cap, by, received: 0, last_data: now, window_start: now, window_bytes: 0 }
    }

    /// Refuses a body whose announced length (`Content-Length`) is past the cap.
    pub fn announced(&self, length: Option<u64>) -> Result<(), Exceeded> {
        match length {
            Some(length) if length > self.cap => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    /// Counts `bytes` that arrived at `now`.
    pub fn received(&mut self, bytes: u64, now: Instant) -> Result<(), Exceeded> {
        self.received += bytes;
        self.window_bytes += bytes;
        if bytes > 0 {
            self.last_data = now;
        }
        if self.received > self.cap {
            return Err(self.too_large());
        }
        self.check(now)
    }

    /// Checks the stall timeout and the minimum speed at `now`; a finished window starts the next.
    pub fn check(&mut self, now: Instant) -> Result<(), Exceeded> {
        if now.duration_since(self.last_data) >= self.limits.stall_timeout {
            return Err(Exceeded::Stalled { after: self.limits.stall_timeout });
        }
        let window = self.limits.speed_window;
        if now.duration_since(self.window_start) >= window {
            let wanted = (self.limits.min_speed as f64 * window.as_secs_f64()) as u64;
            if self.window_bytes < wanted {
                let (received, min_speed) = (self.window_bytes, self.limits.min_speed);
                return Err(Exceeded::TooSlow { received, window, min_speed });
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }

    /// When [`Meter::check`] may next fail if nothing arrives.
    pub fn next_check(&self) -> Instant {
        let stall = self.last_data + self.limits.stall_timeout;
        if self.limits.min_speed == 0 { stall } else { stall.min(self.window_start + self.limits.speed_window) }
    }

    /// Bytes received so far.
    pub fn total(&self) -> u64 {
        self.received
    }

    fn too_large(&self) -> Exceeded {
        Exceeded::TooLarge { cap: self.cap, by: self.by }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            stall_timeout: Duration::from_secs(10),
            min_speed: 100,
            speed_window: Duration::from_secs(4),
            deadline: Duration::from_secs(60),
            max_size: 1000,
        }
    }

    #[test]
    fn a_trickle_is_too_slow_at_the_end_of_a_window() {
        let start = Instant::now();
        let mut meter = Meter::new(limits(), None, u64::MAX, start);
        let at = |s: u64| start + Duration::from_secs(s);
        meter.received(1, at(1)).unwrap();
        meter.received(1, at(3)).unwrap();
        assert_eq!(meter.next_check(), at(4));
        let err = meter.received(1, at(5)).unwrap_err();
        assert_eq!(err, Exceeded::TooSlow { received: 3, window: Duration::from_secs(4), min_speed: 100 });
        assert!(err.transient());
        assert!(err.to_string().contains("3 B in 4 s, below the minimum speed of 100 B/s"), "{err}");
    }

    #[test]
    fn a_fast_window_starts_the_next_one() {
        let start = Instant::now();
        let mut meter = Meter::new(limits(), None, u64::MAX, start);
        meter.received(400, start + Duration::from_secs(4)).unwrap();
        assert_eq!(meter.next_check(), start + Duration::from_secs(8));
        assert!(meter.check(start + Duration::from_secs(8)).is_err(), "nothing in the second window");
    }

    #[test]
    fn silence_past_the_stall_timeout_fails_without_a_minimum_speed() {
        let start = Instant::now();
        let mut meter = Meter::new(Limits { min_speed: 0, ..limits() }, None, u64::MAX, start);
        assert_eq!(meter.next_check(), start + Duration::from_secs(10));
        meter.check(start + Duration::from_secs(9)).unwrap();
        let err = meter.check(start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.to_string(), "no data for 10 s ([download] stall_timeout)");
    }

    #[test]
    fn the_cap_is_the_expected_size_or_max_size_and_never_past_the_ceiling() {
        let now = Instant::now();
        let mut meter = Meter::new(limits(), None, u64::MAX, now);
        assert!(meter.announced(Some(1000)).is_ok());
        let err = meter.announced(Some(1001)).unwrap_err();
        assert_eq!(err.to_string(), "larger than 1000 B ([download] max_size)");
        assert!(!err.transient());
        meter.received(1000, now).unwrap();
        assert!(meter.received(1, now).is_err());
        let meter = Meter::new(limits(), Some(10), u64::MAX, now);
        assert_eq!(meter.announced(Some(11)).unwrap_err().to_string(), "larger than its expected size of 10 bytes");
        let meter = Meter::new(limits(), None, 50, now);
        assert_eq!(meter.announced(Some(51)).unwrap_err().to_string(), "larger than 50 B, the most read of a document");
    }
}
