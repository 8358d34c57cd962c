//! A real HTTP/1.1 server on 127.0.0.1 for tests: serves an in-memory tree, counts requests per
//! path, and injects faults (connection resets, error statuses, redirects, bodies that trickle or
//! never end). It answers TLS with a plain-text 400, like real HTTP servers; [`NotTls`] answers
//! every connection so.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A body and its extra answer headers.
type Served = (Vec<u8>, Vec<(String, String)>);

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    /// The headers of the last request for each path (lowercase names).
    request_headers: HashMap<String, HashMap<String, String>>,
    hits: HashMap<String, usize>,
    resets: HashMap<String, usize>,
    statuses: HashMap<String, u16>,
    /// Requests for these paths wait until released (or the server closes).
    held: HashSet<String>,
    paces: HashMap<String, Pace>,
    closing: bool,
}

/// How a body is sent.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// One byte, then a pause, and so on.
    Trickle(Duration),
    /// 64 KiB chunks without end (and without a Content-Length), until the client goes.
    Endless,
}

struct Shared {
    state: Mutex<State>,
    /// Notified on every request and every release.
    changed: Condvar,
}

/// Stops accepting when dropped.
pub struct Server {
    pub port: u16,
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        super::accept_connections(&listener, shared.clone(), |s| s.state.lock().unwrap().closing, handle);
        Server { port, shared, listener }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `--mirror` arguments sending `upstream` (e.g. `https://dl.k8s.io`) to this server, under
    /// the path prefix `/<host>`.
    pub fn mirror_for(&self, upstream: &str) -> String {
        let host = upstream.trim_start_matches("https://");
        format!("{upstream}={}/{host}", self.url())
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.put_with_headers(path, body, &[]);
    }

    /// Serves every file of `dir` (not recursively) under `prefix` (`/ext`).
    pub fn serve_dir(&self, prefix: &str, dir: &std::path::Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let name = entry.file_name().into_string().unwrap();
                self.put(&format!("{prefix}/{name}"), std::fs::read(entry.path()).unwrap());
            }
        }
    }

    /// Serves `body` at `path` with extra answer headers.
    pub fn put_with_headers(&self, path: &str, body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state().files.insert(path.to_string(), (body.into(), headers));
    }

    /// A header of the last request for `path`.
    pub fn request_header(&self, path: &str, name: &str) -> Option<String> {
        self.state().request_headers.get(path).and_then(|h| h.get(&name.to_ascii_lowercase()).cloned())
    }

    pub fn remove(&self, path: &str) {
        self.state().files.remove(path);
    }

    /// Resets (TCP RST, no answer) the next `count` connections asking for `path`.
    pub fn reset_next(&self, path: &str, count: usize) {
        self.state().resets.insert(path.to_string(), count);
    }

    /// Answers `path` with `status` and an empty body.
    pub fn fail_with(&self, path: &str, status: u16) {
        self.state().statuses.insert(path.to_string(), status);
    }

    /// Sends `path`'s body one byte every `interval`.
    pub fn trickle(&self, path: &str, interval: Duration) {
        self.state().paces.insert(path.to_string(), Pace::Trickle(interval));
    }

    /// Answers `path` with a body that never ends (no Content-Length).
    pub fn endless(&self, path: &str) {
        self.state().paces.insert(path.to_string(), Pace::Endless);
    }

    /// Answers `path` with `status` (a 3xx) and `Location: location`.
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        self.put_with_headers(path, Vec::new(), &[("Location", location)]);
        self.fail_with(path, status);
    }

    /// Holds requests for `path` (unanswered) until [`Server::release`].
    pub fn hold(&self, path: &str) {
        self.state().held.insert(path.to_string());
    }

    pub fn release(&self, path: &str) {
        self.state().held.remove(path);
        self.shared.changed.notify_all();
    }

    /// Waits until `path` has been requested `count` times; false after `timeout`.
    pub fn wait_for_hits(&self, path: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        while state.hits.get(path).copied().unwrap_or(0) < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state().hits.get(path).copied().unwrap_or(0)
    }

    /// All requests received.
    pub fn total_hits(&self) -> usize {
        self.state().hits.values().sum()
    }

    /// Every path requested, sorted.
    pub fn requested(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.state().hits.keys().cloned().collect();
        paths.sort();
        paths
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.changed.notify_all();
        // wake the accept loop so its thread ends
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(stream: TcpStream, shared: &Shared) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // Like nginx or hyper, a request that does not start with a method (a TLS ClientHello) is
    // answered at once with a plain-text 400, not after a line that never comes.
    if reader.fill_buf().is_ok_and(|buf| buf.first().is_some_and(|b| !b.is_ascii_uppercase())) {
        let mut stream = stream;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                }
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (answer, pace) = {
        let mut state = shared.state.lock().unwrap();
        *state.hits.entry(path.clone()).or_default() += 1;
        state.request_headers.insert(path.clone(), headers);
        shared.changed.notify_all();
        while state.held.contains(&path) && !state.closing {
            state = shared.changed.wait(state).unwrap();
        }
        let answer = if let Some(left) = state.resets.get_mut(&path).filter(|n| **n > 0) {
            *left -= 1;
            None
        } else if let Some(status) = state.statuses.get(&path) {
            let (body, headers) = state.files.get(&path).cloned().unwrap_or_default();
            Some((*status, body, headers))
        } else {
            match state.files.get(&path) {
                Some((body, headers)) => Some((200, body.clone(), headers.clone())),
                None => Some((404, b"not found".to_vec(), Vec::new())),
            }
        };
        (answer, state.paces.get(&path).copied())
    };
    let mut stream = stream;
    match answer {
        None => {
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).ok();
            drop(stream);
        }
        Some((status, body, headers)) => {
            let reason = match status {
                200 => "OK",
                301 => "Moved Permanently",
                302 => "Found",
                403 => "Forbidden",
                404 => "Not Found",
                500 => "Internal Server Error",
                503 => "Service Unavailable",
                _ => "Status",
            };
            let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            let length = match pace {
                Some(Pace::Endless) => String::new(),
                _ => format!("Content-Length: {}\r\n", body.len()),
            };
            let head = format!("HTTP/1.1 {status} {reason}\r\n{length}{extra}Connection: close\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let _ = match pace {
                None => stream.write_all(&body),
                Some(Pace::Trickle(interval)) => trickle(&mut stream, &body, interval, shared),
                Some(Pace::Endless) => {
                    let chunk = vec![b'x'; 64 * 1024];
                    while !shared.state.lock().unwrap().closing && stream.write_all(&chunk).is_ok() {}
                    Ok(())
                }
            };
        }
    }
}

/// Writes `body` a byte at a time, `interval` apart, until done, the client goes or the server closes.
fn trickle(stream: &mut TcpStream, body: &[u8], interval: Duration, shared: &Shared) -> std::io::Result<()> {
    for byte in body {
        stream.write_all(std::slice::from_ref(byte))?;
        stream.flush()?;
        let state = shared.state.lock().unwrap();
        let (state, _) = shared.changed.wait_timeout_while(state, interval, |s| !s.closing).unwrap();
        if state.closing {
            break;
        }
    }
    Ok(())
}

/// A TCP server on 127.0.0.1 that answers every connection with a plain-text HTTP error at once:
/// to a TLS client, a handshake failure. Counts the connections.
pub struct NotTls {
    pub port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl NotTls {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
        });
        NotTls { port, connections }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}
