//! Watch event streams as the API server's watch cache sends them: from a resourceVersion
//! (every later event of the kind, in order), or with the current objects first as synthetic
//! `ADDED` events (no resourceVersion, `0`, or `sendInitialEvents=true`, which ends them with a
//! `BOOKMARK` annotated `k8s.io/initial-events-end`); filtered by selectors, where an object that
//! stops matching arrives as `DELETED` and one that starts matching as `ADDED`; `BOOKMARK`s on
//! demand for watches that allow them; `410 Gone` as an `ERROR` event for a resourceVersion
//! older than the kept events; metadata-only objects when asked for. Each watch has a channel
//! that writes fill as they happen (no polling); the write path only filters and sends.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::errors::ApiError;
use super::selector::Filter;
use super::{Shared, View};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, as the log keeps it.
pub struct Event {
    pub rv: u64,
    pub type_: EventType,
    /// The object after the change (for a delete: its last state, at the delete's version).
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    /// The event's line as most watches send it, serialized once.
    line: OnceLock<Vec<u8>>,
}

impl Event {
    pub fn new(rv: u64, type_: EventType, object: Arc<Value>, prev: Option<Arc<Value>>) -> Self {
        Event { rv, type_, object, prev, line: OnceLock::new() }
    }

    /// How a watch with `filter` sees this event: its type and object, or nothing.
    fn seen_by(&self, filter: &Filter) -> Option<EventType> {
        let now = self.type_ != EventType::Deleted && filter.matches(&self.object);
        let before = self.prev.as_deref().is_some_and(|p| filter.matches(p));
        match (before, now) {
            (false, true) => Some(EventType::Added),
            (true, true) => Some(EventType::Modified),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        }
    }
}

/// What a watch receives.
pub(super) enum Message {
    Event(Arc<Event>, EventType),
    /// A synthetic `ADDED` for an object that existed when the watch started.
    Initial(Arc<Value>),
    Bookmark {
        rv: u64,
        initial_events_end: bool,
    },
    /// The kept events were dropped: an `ERROR` 410, then the end.
    Expired(ApiError),
    /// The connection drops without the final chunk.
    Cut,
}

pub(super) struct Watcher {
    pub id: u64,
    pub filter: Filter,
    pub bookmarks: bool,
    /// A subscription of the direct API: faults for HTTP watches leave it alone.
    pub direct: bool,
    pub tx: Sender<Message>,
}

/// The watches of one resource type; the ones pinned to one name (`metadata.name=N`, as each
/// agent watches its own Node) are found by that name, so a write costs nothing for the others.
#[derive(Default)]
pub(super) struct Watchers {
    any: Vec<Watcher>,
    pinned: HashMap<String, Vec<Watcher>>,
}

impl Watchers {
    pub fn add(&mut self, watcher: Watcher) {
        match watcher.filter.fields.name() {
            Some(name) => self.pinned.entry(name.to_string()).or_default().push(watcher),
            None => self.any.push(watcher),
        }
    }

    pub fn remove(&mut self, id: u64) {
        self.retain(|w| w.id != id);
    }

    /// Keeps the watches `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&Watcher) -> bool) {
        self.any.retain(&mut keep);
        self.pinned.retain(|_, list| {
            list.retain(&mut keep);
            !list.is_empty()
        });
    }

    /// Sends `event` to every watch it concerns, forgetting the ones that ended.
    pub fn dispatch(&mut self, event: &Arc<Event>) {
        let send = |w: &Watcher| match event.seen_by(&w.filter) {
            Some(type_) => w.tx.send(Message::Event(event.clone(), type_)).is_ok(),
            None => true,
        };
        self.any.retain(send);
        let name = event.object["metadata"]["name"].as_str().unwrap_or_default();
        if let Some(list) = self.pinned.get_mut(name) {
            list.retain(send);
            if list.is_empty() {
                self.pinned.remove(name);
            }
        }
    }
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Start {
    /// Events after this resourceVersion.
    After(u64),
    /// The current objects as `ADDED`, then what changes.
    Now,
    /// `sendInitialEvents=true`: the current objects, a BOOKMARK ending them, then changes.
    Stream,
}

/// Registers a watch on collection `c`; the events it must catch up on are queued at once,
/// under the same lock as the writes, so none is missed or doubled.
pub(super) fn register(
    view: &mut View,
    c: usize,
    filter: Filter,
    start: Start,
    bookmarks: bool,
    direct: bool,
) -> (u64, Receiver<Message>) {
    let (tx, rx) = channel();
    view.next_watch += 1;
    let id = view.next_watch;
    let rv = view.store.rv;
    let collection = &mut view.store.collections[c];
    match start {
        Start::After(from) if from < collection.complete_after => {
            let message = format!("too old resource version: {from} ({})", collection.complete_after);
            let _ = tx.send(Message::Expired(ApiError::expired(&message)));
            return (id, rx);
        }
        Start::After(from) if from > rv => {
            let mut error =
                ApiError::new(504, "Timeout", &format!("Too large resource version: {from}, current: {rv}"));
            error.status["details"] = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1});
            let _ = tx.send(Message::Expired(error));
            return (id, rx);
        }
        Start::After(from) => {
            let first = collection.log.partition_point(|e| e.rv <= from);
            for event in collection.log.range(first..) {
                if let Some(type_) = event.seen_by(&filter) {
                    let _ = tx.send(Message::Event(event.clone(), type_));
                }
            }
        }
        Start::Now | Start::Stream => {
            for object in collection.objects.values().filter(|o| filter.matches(o)) {
                let _ = tx.send(Message::Initial(object.clone()));
            }
            if start == Start::Stream {
                let _ = tx.send(Message::Bookmark { rv, initial_events_end: true });
            }
        }
    }
    collection.watchers.add(Watcher { id, filter, bookmarks, direct, tx });
    (id, rx)
}

/// Ends watch `id` on collection `c` (if a fault did not end it already).
pub(super) fn unregister(view: &mut View, c: usize, id: u64) {
    if let Some(collection) = view.store.collections.get_mut(c) {
        collection.watchers.remove(id);
    }
}

/// The object as a metadata-only watch or get receives it.
pub(super) fn partial(object: &Value) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] })
}

/// An HTTP watch: what it streams and how.
pub(super) struct Stream {
    pub c: usize,
    pub id: u64,
    pub rx: Receiver<Message>,
    pub timeout: Duration,
    pub metadata_only: bool,
    /// The kind and apiVersion of BOOKMARK objects.
    pub kind: String,
    pub api_version: String,
}

fn line(message: &Message, stream: &Stream) -> Option<Vec<u8>> {
    let event = |type_: EventType, object: &Value| {
        let object = if stream.metadata_only { partial(object) } else { object.clone() };
        let mut line = serde_json::to_vec(&json!({ "type": type_.name(), "object": object })).unwrap();
        line.push(b'\n');
        line
    };
    Some(match message {
        Message::Event(e, type_) if *type_ == e.type_ && !stream.metadata_only => {
            e.line.get_or_init(|| event(e.type_, &e.object)).clone()
        }
        Message::Event(e, EventType::Deleted) if e.type_ != EventType::Deleted => {
            // it stopped matching: the previous content, at this event's resourceVersion
            let mut before = (**e.prev.as_ref().unwrap()).clone();
            before["metadata"]["resourceVersion"] = json!(e.rv.to_string());
            event(EventType::Deleted, &before)
        }
        Message::Event(e, type_) => event(*type_, &e.object),
        Message::Initial(object) => event(EventType::Added, object),
        Message::Bookmark { rv, initial_events_end } => {
            let mut metadata = json!({ "resourceVersion": rv.to_string(), "creationTimestamp": null });
            if *initial_events_end {
                metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
            }
            let kind = if stream.metadata_only { "PartialObjectMetadata" } else { stream.kind.as_str() };
            let api_version = if stream.metadata_only { "meta.k8s.io/v1" } else { stream.api_version.as_str() };
            let object = json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata });
            let mut line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object })).unwrap();
            line.push(b'\n');
            line
        }
        Message::Expired(error) => {
            let mut line = serde_json::to_vec(&json!({ "type": "ERROR", "object": error.status })).unwrap();
            line.push(b'\n');
            line
        }
        Message::Cut => return None,
    })
}

fn chunk(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Streams a watch until its timeout, a cut, an expiry or the server closing; then unregisters.
/// True when the response ended properly, so the connection serves the next request (as Go's
/// server keeps it alive, and hyper's pool reuses it).
pub(super) fn stream(writer: &mut TcpStream, shared: &Shared, stream: Stream) -> bool {
    let end = stream_events(writer, &stream);
    {
        let mut view = shared.state.lock().unwrap();
        unregister(&mut view, stream.c, stream.id);
        view.watching -= 1;
    }
    shared.changed.notify_all();
    match end {
        End::Finished => writer.write_all(b"0\r\n\r\n").and_then(|_| writer.flush()).is_ok(),
        End::Cut => {
            let _ = writer.shutdown(Shutdown::Both);
            false
        }
        End::Gone => false,
    }
}

enum End {
    /// Timeout or an ERROR event: the final chunk ends the body.
    Finished,
    /// Cut by a fault or the server closing: no final chunk.
    Cut,
    /// The client went away.
    Gone,
}

fn stream_events(writer: &mut TcpStream, stream: &Stream) -> End {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return End::Gone;
    }
    let deadline = Instant::now() + stream.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let first = match stream.rx.recv_timeout(left) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => return End::Finished,
            Err(RecvTimeoutError::Disconnected) => return End::Cut,
        };
        // write what is queued in one go
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut finished = false;
        while let Some(message) = next.take() {
            match line(&message, stream) {
                None => {
                    let _ = writer.write_all(&out);
                    return End::Cut;
                }
                Some(bytes) => chunk(&mut out, &bytes),
            }
            if matches!(message, Message::Expired(_)) {
                finished = true;
                break;
            }
            if out.len() < 1 << 20 {
                next = stream.rx.try_recv().ok();
            }
        }
        if writer.write_all(&out).and_then(|_| writer.flush()).is_err() {
            return End::Gone;
        }
        if finished {
            return End::Finished;
        }
    }
}

/// A watch through the direct API (for simulated agents): events as they happen, no HTTP.
pub struct Subscription {
    pub(super) shared: Arc<Shared>,
    pub(super) c: usize,
    pub(super) id: u64,
    pub(super) rx: Receiver<Message>,
}

/// One event a subscription receives.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub type_: &'static str,
    pub object: Arc<Value>,
}

impl Subscription {
    fn convert(message: Message) -> Option<WatchEvent> {
        match message {
            Message::Event(e, EventType::Deleted) if e.type_ != EventType::Deleted => {
                Some(WatchEvent { type_: "DELETED", object: e.prev.clone().unwrap() })
            }
            Message::Event(e, type_) => Some(WatchEvent { type_: type_.name(), object: e.object.clone() }),
            Message::Initial(object) => Some(WatchEvent { type_: "ADDED", object }),
            Message::Bookmark { .. } | Message::Expired(_) | Message::Cut => None,
        }
    }

    /// The next event, waiting at most `timeout`; None on timeout or when the watch was cut.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(message) => match Self::convert(message) {
                    Some(event) => return Some(event),
                    None if left.is_zero() => return None,
                    None => continue,
                },
                Err(_) => return None,
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<WatchEvent> {
        while let Ok(message) = self.rx.try_recv() {
            if let Some(event) = Self::convert(message) {
                return Some(event);
            }
        }
        None
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut view = self.shared.state.lock().unwrap();
        unregister(&mut view, self.c, self.id);
    }
}
