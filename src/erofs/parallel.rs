//! Compression on every core with bounded memory: a reader thread cuts the compressed files
//! into fixed segments (4 KiB aligned, so extents never depend on how work was shared),
//! workers compress them, and the writer takes the results strictly in order. At most
//! `threads + 2` segments are in flight, so memory is bounded whatever the image's size, and
//! the bytes written do not depend on the number of threads.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Result, anyhow};

use super::compress::{Codec, Compressor, Segment, compress_segment};

/// Input bytes per segment: enough that the partly filled pcluster at each segment's end
/// costs little, small enough that two cores have several segments of one big file to share.
pub const SEGMENT_SIZE: usize = 2 << 20;

/// Where a file's bytes are read from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    Bytes(Arc<[u8]>),
}

impl Source {
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        Ok(match self {
            Source::Path(path) => Box::new(File::open(path).map_err(|e| anyhow!("opening {}: {e}", path.display()))?),
            Source::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Bytes(_) => "rendered content".into(),
        }
    }
}

/// The segments of one file of `size` bytes.
pub fn segments_of(size: u64) -> u64 {
    size.div_ceil(SEGMENT_SIZE as u64)
}

/// Counters of one pack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments the workers compressed.
    pub segments: u64,
    /// Physical clusters in them.
    pub pclusters: u64,
}

struct Slot {
    input: Option<Vec<u8>>,
    output: Option<Result<Segment, String>>,
}

#[derive(Default)]
struct State {
    /// The sequence number the writer takes next.
    next: u64,
    slots: BTreeMap<u64, Slot>,
    queue: VecDeque<u64>,
    /// Set when the reader has assigned every segment (or failed).
    read_all: bool,
    cancelled: bool,
    stats: Stats,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    capacity: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("segment lock")
    }

    fn wait<'a>(&self, guard: std::sync::MutexGuard<'a, State>) -> std::sync::MutexGuard<'a, State> {
        self.changed.wait(guard).expect("segment lock")
    }

    /// Reader: every segment of every file, in order.
    fn read(&self, files: &[(Source, u64)]) {
        let mut seq = 0u64;
        let fail = |seq: u64, error: String| {
            let mut state = self.lock();
            state.slots.insert(seq, Slot { input: None, output: Some(Err(error)) });
        };
        'files: for (source, size) in files {
            let mut reader = match source.open() {
                Ok(reader) => reader,
                Err(e) => {
                    fail(seq, format!("{e:#}"));
                    break;
                }
            };
            let mut left = *size;
            while left > 0 {
                let len = left.min(SEGMENT_SIZE as u64) as usize;
                {
                    let mut state = self.lock();
                    while !state.cancelled && seq - state.next >= self.capacity {
                        state = self.wait(state);
                    }
                    if state.cancelled {
                        break 'files;
                    }
                }
                let mut chunk = vec![0u8; len];
                if let Err(e) = reader.read_exact(&mut chunk) {
                    fail(seq, format!("reading {}: {e}", source.describe()));
                    break 'files;
                }
                let mut state = self.lock();
                state.slots.insert(seq, Slot { input: Some(chunk), output: None });
                state.queue.push_back(seq);
                seq += 1;
                left -= len as u64;
                self.changed.notify_all();
            }
        }
        self.lock().read_all = true;
        self.changed.notify_all();
    }

    /// Worker: compresses queued segments until there are no more.
    fn work(&self, codec: Codec) {
        let mut compressor = Compressor::new(codec).map_err(|e| format!("{e:#}"));
        loop {
            let (seq, input) = {
                let mut state = self.lock();
                loop {
                    if state.cancelled {
                        return;
                    }
                    if let Some(seq) = state.queue.pop_front() {
                        let input = state.slots.get_mut(&seq).and_then(|s| s.input.take()).expect("queued input");
                        break (seq, input);
                    }
                    if state.read_all {
                        return;
                    }
                    state = self.wait(state);
                }
            };
            let output = match &mut compressor {
                Ok(c) => compress_segment(c, &input).map_err(|e| format!("{e:#}")),
                Err(e) => Err(e.clone()),
            };
            drop(input);
            let mut state = self.lock();
            if let Some(slot) = state.slots.get_mut(&seq) {
                slot.output = Some(output);
            }
            self.changed.notify_all();
        }
    }

    /// Writer: the next segment in order, waiting for it.
    fn take(&self) -> Result<Segment> {
        let mut state = self.lock();
        loop {
            crate::util::cancel::check()?;
            let next = state.next;
            if let Some(slot) = state.slots.get_mut(&next) {
                if let Some(output) = slot.output.take() {
                    state.slots.remove(&next);
                    state.next += 1;
                    self.changed.notify_all();
                    let segment = output.map_err(|e| anyhow!(e))?;
                    state.stats.segments += 1;
                    state.stats.pclusters += segment.extents.iter().filter(|e| !e.raw).count() as u64;
                    return Ok(segment);
                }
            } else if state.read_all {
                return Err(anyhow!("internal error: segment {next} was never read"));
            }
            state = self.wait(state);
        }
    }

    fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }
}

/// Cancels the threads when the writer returns, also on error or panic.
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `write` with `threads` workers compressing the segments of `files` (sources and sizes,
/// in the order `write` takes them); `write` gets each segment by calling `next`.
pub fn with_segments<R>(
    files: &[(Source, u64)],
    codec: Codec,
    threads: usize,
    write: impl FnOnce(&mut dyn FnMut() -> Result<Segment>) -> Result<R>,
) -> Result<(R, Stats)> {
    let threads = threads.max(1);
    let shared = Shared { state: Mutex::new(State::default()), changed: Condvar::new(), capacity: threads as u64 + 2 };
    let shared_ref = &shared;
    let result = std::thread::scope(|scope| {
        scope.spawn(move || shared_ref.read(files));
        for _ in 0..threads {
            scope.spawn(move || shared_ref.work(codec));
        }
        let _stop = StopOnDrop(shared_ref);
        let mut next = || shared_ref.take();
        write(&mut next)
    })?;
    let stats = shared.lock().stats;
    Ok((result, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segments come back in order, equal to compressing each one alone, whatever the
    /// number of threads.
    #[test]
    fn segments_come_in_order_and_do_not_depend_on_threads() {
        let a: Vec<u8> = (0..SEGMENT_SIZE * 2 + 12_345).map(|i| (i % 251) as u8 ^ (i / 7000) as u8).collect();
        let b: Vec<u8> = (0..70_000).map(|i| (i % 13) as u8).collect();
        let files = vec![
            (Source::Bytes(Arc::from(a.as_slice())), a.len() as u64),
            (Source::Bytes(Arc::from(b.as_slice())), b.len() as u64),
        ];
        let count = segments_of(a.len() as u64) + segments_of(b.len() as u64);
        assert_eq!(count, 4);
        let mut expected = Vec::new();
        let mut c = Compressor::new(Codec::Lz4).unwrap();
        for chunk in a.chunks(SEGMENT_SIZE).chain(b.chunks(SEGMENT_SIZE)) {
            expected.push(compress_segment(&mut c, chunk).unwrap());
        }
        for threads in [1, 2, 5] {
            let (got, stats) = with_segments(&files, Codec::Lz4, threads, |next| {
                (0..count).map(|_| next()).collect::<Result<Vec<_>>>()
            })
            .unwrap();
            assert!(got == expected, "{threads} threads");
            assert_eq!(stats.segments, 4);
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let files = vec![(Source::Path("/nonexistent/blob".into()), 10_000)];
        let err = with_segments(&files, Codec::Lz4, 2, |next| next().map(|_| ())).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/blob"), "{err:#}");
    }
}
