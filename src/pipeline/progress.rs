//! Progress of packing: a bar on a terminal, otherwise a plain log line every few seconds
//! (`packing: 120.3 MiB/281.0 MiB, 43%`), both on stderr. The packing thread reports; the
//! [`PackProgress`] belongs to the future that awaits it, so an interrupted or failed build
//! clears the bar at once and nothing is printed for it afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::util::human_bytes;

/// How often a plain progress line is printed when stderr is not a terminal, unless
/// `BAKERY_PROGRESS_INTERVAL_MS` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar on stderr (a terminal).
    Bar,
    /// A log line (at info level, so `--quiet` hides it) when `interval` has passed since the
    /// last one; the first only after `interval`, so short packs stay silent.
    Lines { interval: Duration },
}

/// The owner's handle: [`finish`](Self::finish) on success; dropping it without finishing
/// (an error, an interruption) clears the bar and silences the reporter.
pub struct PackProgress {
    shared: Arc<Mutex<State>>,
}

/// The packing thread's handle.
#[derive(Clone)]
pub struct Reporter {
    shared: Arc<Mutex<State>>,
}

struct State {
    output: Output,
    done: u64,
    total: u64,
    /// Whether the owner is gone: nothing more is shown.
    closed: bool,
}

enum Output {
    Bar(ProgressBar),
    Lines { interval: Duration, last: Instant, printed: Option<u64> },
}

impl PackProgress {
    pub fn new(display: Display) -> (Self, Reporter) {
        let output = match display {
            Display::Bar => {
                let style = ProgressStyle::with_template("{prefix:>14} [{bar:28}] {bytes:>10}/{total_bytes:<10} {eta}")
                    .expect("a valid progress template")
                    .progress_chars("=> ");
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                Output::Bar(bar.with_style(style).with_prefix("packing"))
            }
            Display::Lines { interval } => Output::Lines { interval, last: Instant::now(), printed: None },
        };
        let shared = Arc::new(Mutex::new(State { output, done: 0, total: 0, closed: false }));
        (Self { shared: shared.clone() }, Reporter { shared })
    }

    /// Packing succeeded: the bar goes away; when lines were printed, a last one says 100%.
    pub fn finish(self) {
        let mut state = self.shared.lock().expect("progress lock");
        if let Output::Lines { printed: Some(done), .. } = state.output
            && done < state.total
        {
            let total = state.total;
            state.done = total;
            state.print();
        }
        state.close();
    }
}

impl Drop for PackProgress {
    fn drop(&mut self) {
        self.shared.lock().expect("progress lock").close();
    }
}

impl Reporter {
    /// `done` of `total` bytes are packed.
    pub fn update(&self, done: u64, total: u64) {
        let mut state = self.shared.lock().expect("progress lock");
        if state.closed {
            return;
        }
        state.done = done.max(state.done).min(total);
        state.total = total;
        let done = state.done;
        let due = match &mut state.output {
            Output::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                false
            }
            Output::Lines { interval, last, .. } => {
                let due = last.elapsed() >= *interval;
                if due {
                    *last = Instant::now();
                }
                due
            }
        };
        if due {
            state.print();
        }
    }
}

impl State {
    fn print(&mut self) {
        let (done, total) = (self.done, self.total);
        if let Output::Lines { printed, .. } = &mut self.output {
            *printed = Some(done);
            tracing::info!("{}", line(done, total));
        }
    }

    fn close(&mut self) {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
        self.closed = true;
    }
}

/// `packing: 120.3 MiB/281.0 MiB, 43%`.
pub fn line(done: u64, total: u64) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!("packing: {}/{}, {percent}%", human_bytes(done), human_bytes(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_bytes_and_a_percentage_rounded_down() {
        assert_eq!(line(126_143_898, 294_649_856), "packing: 120.3 MiB/281.0 MiB, 42%");
        assert_eq!(line(5, 5), "packing: 5 B/5 B, 100%");
        assert_eq!(line(0, 0), "packing: 0 B/0 B, 100%");
    }

    fn printed(progress: &PackProgress) -> Option<u64> {
        match progress.shared.lock().unwrap().output {
            Output::Lines { printed, .. } => printed,
            Output::Bar(_) => unreachable!(),
        }
    }

    #[test]
    fn finishing_after_a_line_prints_100_percent_and_a_closed_reporter_prints_nothing() {
        let (progress, reporter) = PackProgress::new(Display::Lines { interval: Duration::ZERO });
        reporter.update(10, 40);
        assert_eq!(printed(&progress), Some(10));
        reporter.update(5, 40);
        assert_eq!(printed(&progress), Some(10), "progress never goes back");
        let shared = progress.shared.clone();
        progress.finish();
        assert_eq!(shared.lock().unwrap().done, 40);
        reporter.update(40, 40);
        assert!(shared.lock().unwrap().closed);
    }

    #[test]
    fn a_pack_shorter_than_the_interval_prints_nothing() {
        let (progress, reporter) = PackProgress::new(Display::Lines { interval: Duration::from_secs(3600) });
        reporter.update(40, 40);
        assert_eq!(printed(&progress), None);
        let shared = progress.shared.clone();
        progress.finish();
        assert_eq!(shared.lock().unwrap().done, 40, "no line, and no 100% line either");
        assert!(matches!(shared.lock().unwrap().output, Output::Lines { printed: None, .. }));
    }

    #[test]
    fn dropping_the_owner_clears_the_bar() {
        let (progress, reporter) = PackProgress::new(Display::Bar);
        reporter.update(1, 2);
        let shared = progress.shared.clone();
        drop(progress);
        let state = shared.lock().unwrap();
        assert!(state.closed);
        let Output::Bar(bar) = &state.output else { unreachable!() };
        assert!(bar.is_finished());
    }
}
