//! Watch event streams: chunked JSON events from a resourceVersion, BOOKMARKs, 410 Gone.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Shared;
use super::store::status;

pub(super) struct WatchSpec {
    pub(super) from: u64,
    pub(super) name: Option<String>,
    pub(super) bookmarks: bool,
    pub(super) timeout: Duration,
}

/// Streams watch events until the timeout, a cut, an expiry or the server closing.
pub(super) fn stream_watch(writer: &mut TcpStream, shared: &Shared, spec: WatchSpec) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = |writer: &mut TcpStream, event: &Value| {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        let framed = [format!("{:x}\r\n", line.len()).into_bytes(), line, b"\r\n".to_vec()].concat();
        writer.write_all(&framed).and_then(|_| writer.flush()).is_ok()
    };
    let deadline = Instant::now() + spec.timeout;
    let mut state = shared.state.lock().unwrap();
    state.view.watching += 1;
    state.view.watches_started += 1;
    let (cut, expired, mut bookmarks) = (state.cut, state.expired, state.bookmarks);
    let mut sent = spec.from;
    let state_oldest = state.oldest;
    if spec.from < state_oldest {
        state.view.watching -= 1;
        drop(state);
        let gone = status(410, "Expired", &format!("too old resource version: {} ({})", spec.from, state_oldest));
        chunk(writer, &json!({ "type": "ERROR", "object": gone }));
        let _ = writer.write_all(b"0\r\n\r\n");
        return;
    }
    let end = loop {
        if state.closing || state.cut != cut {
            break "cut";
        }
        if state.expired != expired {
            break "expired";
        }
        let events: Vec<Value> = state
            .history
            .iter()
            .filter(|(rv, _, object)| {
                *rv > sent && spec.name.as_deref().is_none_or(|n| object["metadata"]["name"] == n)
            })
            .map(|(_, kind, object)| json!({ "type": kind, "object": object }))
            .collect();
        let newest = state.rv;
        let bookmark = spec.bookmarks && state.bookmarks != bookmarks;
        bookmarks = state.bookmarks;
        if !events.is_empty() || bookmark {
            drop(state);
            for event in &events {
                if !chunk(writer, event) {
                    return finish(shared);
                }
            }
            if bookmark {
                let mark = json!({ "type": "BOOKMARK", "object": {
                    "kind": "Node", "apiVersion": "v1", "metadata": { "resourceVersion": newest.to_string() } } });
                if !chunk(writer, &mark) {
                    return finish(shared);
                }
            }
            sent = newest;
            state = shared.state.lock().unwrap();
            continue;
        }
        sent = newest;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "timeout";
        }
        state = shared.changed.wait_timeout(state, left).unwrap().0;
    };
    state.view.watching -= 1;
    shared.changed.notify_all();
    drop(state);
    match end {
        "expired" => {
            let gone = status(410, "Expired", "too old resource version");
            chunk(writer, &json!({ "type": "ERROR", "object": gone }));
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        "timeout" => {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        _ => {
            // cut: no terminating chunk, the connection just ends
            let _ = writer.shutdown(Shutdown::Both);
        }
    }
}

fn finish(shared: &Shared) {
    shared.state.lock().unwrap().view.watching -= 1;
    shared.changed.notify_all();
}
