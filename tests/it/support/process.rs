//! A bakery process a test keeps running (`node watch`, `rollout controller`): its stderr is
//! collected line by line and waited on by content, its metrics endpoint read, and it is stopped
//! by a signal; killed when dropped, printing what it said when the test failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

pub struct Logged {
    pub child: Child,
    /// What it is, for messages: `bakery node watch`.
    what: String,
    log: Arc<Mutex<String>>,
    /// Lines read so far, notified at each.
    seen: Arc<(Mutex<usize>, Condvar)>,
}

impl Logged {
    /// Starts `command` with stdout discarded and stderr collected.
    pub fn spawn(what: &str, mut command: Command) -> Logged {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starting bakery");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (for_thread, seen_thread) = (log.clone(), seen.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for_thread.lock().unwrap().push_str(&format!("{line}\n"));
                *seen_thread.0.lock().unwrap() += 1;
                seen_thread.1.notify_all();
            }
        });
        Logged { child, what: what.to_string(), log, seen }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most a minute) until the log has a line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut count = self.seen.0.lock().unwrap();
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no log line with {needle:?}:\n{}", self.log());
            count = self.seen.1.wait_timeout(count, left).unwrap().0;
        }
    }

    /// The body of the metrics endpoint the log names (`metrics on http://ADDR/metrics`).
    pub fn metrics(&self) -> String {
        let line = self.wait_log("metrics on http://");
        let url = line.split("metrics on http://").nth(1).unwrap().trim();
        let addr = url.trim_end_matches("/metrics");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
        answer.split("\r\n\r\n").nth(1).unwrap().to_string()
    }

    /// SIGKILL, as a node failure or the OOM killer would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit (at most a minute); returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "{} did not stop:\n{}", self.what, self.log());
            // the exit is a process event with no notification to wait on; poll it
            let count = self.seen.0.lock().unwrap();
            let _ = self.seen.1.wait_timeout(count, Duration::from_millis(50)).unwrap();
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{} said:\n{}", self.what, self.log());
        }
    }
}
