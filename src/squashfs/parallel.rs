//! Block compression on every core for backhand's single-threaded writer.
//!
//! backhand's writer reads each file and calls [`CompressionAction::compress`] block by block on
//! its own thread. Which blocks it will ask for is known in advance: the data blocks of every
//! file of at least one block, in path order, minus all-zero blocks (stored as holes). A reader
//! thread feeds those blocks to worker threads, which compress them ahead; `compress` then hands
//! out the result when the bytes asked for are exactly the predicted block, and compresses inline
//! anything else (fragment and metadata blocks, or a prediction that went wrong). The output is
//! therefore identical to compressing everything inline, only faster. Memory stays bounded by
//! the number of blocks in flight.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{BackhandError, FilesystemCompressor, SuperBlock};

/// The compressor handed to backhand (it wants a `'static`); per-pack state is thread-local.
pub struct ParallelCompressor;

pub static PARALLEL: ParallelCompressor = ParallelCompressor;

thread_local! {
    static ACTIVE: RefCell<Option<Arc<Lookahead>>> = const { RefCell::new(None) };
}

impl CompressionAction for ParallelCompressor {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = SuperBlock;

    fn decompress(&self, bytes: &[u8], out: &mut Vec<u8>, compressor: Compressor) -> Result<(), BackhandError> {
        DefaultCompressor.decompress(bytes, out, compressor)
    }

    fn compress(&self, bytes: &[u8], fc: FilesystemCompressor, block_size: u32) -> Result<Vec<u8>, BackhandError> {
        crate::util::cancel::check()?;
        let active = ACTIVE.with(|a| a.borrow().clone());
        if let Some(result) = active.and_then(|lookahead| lookahead.take(bytes)) {
            return result.map_err(|e| BackhandError::StdIo(std::io::Error::other(e)));
        }
        DefaultCompressor.compress(bytes, fc, block_size)
    }

    fn compression_options(
        &self,
        superblock: &mut SuperBlock,
        kind: &backhand::kind::Kind,
        fs_compressor: FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, BackhandError> {
        DefaultCompressor.compression_options(superblock, kind, fs_compressor)
    }
}

/// Where a file's bytes are read from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    Bytes(Arc<[u8]>),
}

/// Counters of one pack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks compressed ahead by workers and used.
    pub predicted: u64,
    /// Blocks compressed inline on the writer thread.
    pub inline: u64,
}

struct Job {
    input: Arc<Vec<u8>>,
    output: Option<Result<Vec<u8>, String>>,
}

#[derive(Default)]
struct State {
    /// Sequence number the writer expects next.
    next: u64,
    /// Assigned and not yet consumed, by sequence number.
    jobs: BTreeMap<u64, Job>,
    /// Sequence numbers waiting for a worker.
    queue: VecDeque<u64>,
    /// Total number of blocks once the reader is done.
    total: Option<u64>,
    cancelled: bool,
    stats: Stats,
}

struct Lookahead {
    state: Mutex<State>,
    changed: Condvar,
    capacity: u64,
}

impl Lookahead {
    /// The predicted result for `bytes`, or `None` when `bytes` is not the next predicted block.
    fn take(&self, bytes: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let mut state = self.state.lock().expect("lookahead lock");
        loop {
            let next = state.next;
            match state.jobs.get(&next) {
                Some(job) if job.input.as_slice() != bytes => break,
                Some(job) if job.output.is_some() => {
                    let job = state.jobs.remove(&next).expect("present");
                    state.next += 1;
                    state.stats.predicted += 1;
                    self.changed.notify_all();
                    return job.output;
                }
                Some(_) => {}
                None if state.total.is_some_and(|t| next >= t) || state.cancelled => break,
                None => {}
            }
            state = self.changed.wait(state).expect("lookahead lock");
        }
        state.stats.inline += 1;
        None
    }

    fn cancel(&self) {
        self.state.lock().expect("lookahead lock").cancelled = true;
        self.changed.notify_all();
    }

    /// Reader: assigns the predicted blocks in order, waiting while `capacity` are in flight.
    fn read(&self, sources: &[Source], block_size: usize) {
        let mut seq = 0u64;
        let result = (|| -> std::io::Result<()> {
            for source in sources {
                let mut reader: Box<dyn Read> = match source {
                    Source::Path(path) => Box::new(File::open(path)?),
                    Source::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
                };
                let mut first = true;
                loop {
                    let mut chunk = vec![0u8; block_size];
                    let n = read_full(&mut reader, &mut chunk)?;
                    chunk.truncate(n);
                    // backhand stores a file shorter than a block as a fragment: no data block
                    if n == 0 || (first && n < block_size) {
                        break;
                    }
                    first = false;
                    if chunk.iter().all(|b| *b == 0) {
                        continue;
                    }
                    let mut state = self.state.lock().expect("lookahead lock");
                    while !state.cancelled && seq - state.next >= self.capacity {
                        state = self.changed.wait(state).expect("lookahead lock");
                    }
                    if state.cancelled {
                        return Ok(());
                    }
                    state.jobs.insert(seq, Job { input: Arc::new(chunk), output: None });
                    state.queue.push_back(seq);
                    seq += 1;
                    self.changed.notify_all();
                    if n < block_size {
                        break;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::debug!("lookahead reader stopped: {e}");
        }
        self.state.lock().expect("lookahead lock").total = Some(seq);
        self.changed.notify_all();
    }

    /// Worker: compresses queued blocks until cancelled or done.
    fn work(&self, fc: FilesystemCompressor, block_size: u32) {
        loop {
            let (seq, input) = {
                let mut state = self.state.lock().expect("lookahead lock");
                loop {
                    if state.cancelled {
                        return;
                    }
                    if let Some(seq) = state.queue.pop_front() {
                        break (seq, state.jobs[&seq].input.clone());
                    }
                    if state.total.is_some() {
                        return;
                    }
                    state = self.changed.wait(state).expect("lookahead lock");
                }
            };
            let output = DefaultCompressor.compress(&input, fc, block_size).map_err(|e| e.to_string());
            let mut state = self.state.lock().expect("lookahead lock");
            if let Some(job) = state.jobs.get_mut(&seq) {
                job.output = Some(output);
            }
            self.changed.notify_all();
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Clears the thread's lookahead and stops its threads, also on panic.
struct Deactivate(Arc<Lookahead>);

impl Drop for Deactivate {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
        self.0.cancel();
    }
}

/// Runs `write` (a backhand write that uses [`PARALLEL`]) with `threads` workers compressing
/// the data blocks of `sources` (the files in the writer's order) ahead of it.
pub fn with_lookahead<R>(
    sources: &[Source],
    fc: FilesystemCompressor,
    block_size: u32,
    threads: usize,
    write: impl FnOnce() -> R,
) -> (R, Stats) {
    let lookahead = Arc::new(Lookahead {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        capacity: (threads as u64) * 3 + 2,
    });
    let result = std::thread::scope(|scope| {
        let reader = lookahead.clone();
        scope.spawn(move || reader.read(sources, block_size as usize));
        for _ in 0..threads.max(1) {
            let worker = lookahead.clone();
            scope.spawn(move || worker.work(fc, block_size));
        }
        ACTIVE.with(|a| *a.borrow_mut() = Some(lookahead.clone()));
        let _deactivate = Deactivate(lookahead.clone());
        write()
    });
    let stats = lookahead.state.lock().expect("lookahead lock").stats;
    (result, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;
    use crate::squashfs::format::Codec;

    /// The writer asking for predicted blocks, plus an unpredicted one, gets exactly what inline
    /// compression gives, and the predicted ones come from the workers.
    #[test]
    fn predicted_blocks_match_inline_compression() {
        let block = 4096usize;
        let codec = Codec::new(Compression::Gzip, block as u32);
        let data: Vec<u8> = (0..block * 3 + 100).map(|i| (i * 7 % 251) as u8).collect();
        let mut zeros_inside = data.clone();
        zeros_inside[block..2 * block].fill(0);
        let sources = vec![
            Source::Bytes(Arc::from(&b"small"[..])),
            Source::Bytes(Arc::from(data.as_slice())),
            Source::Bytes(Arc::from(zeros_inside.as_slice())),
        ];
        let (outputs, stats) = with_lookahead(&sources, codec.fs, block as u32, 2, || {
            let mut outputs = Vec::new();
            for chunk in data.chunks(block) {
                outputs.push(PARALLEL.compress(chunk, codec.fs, block as u32).unwrap());
            }
            outputs.push(PARALLEL.compress(b"fragment bytes", codec.fs, block as u32).unwrap());
            for (i, chunk) in zeros_inside.chunks(block).enumerate() {
                if i != 1 {
                    outputs.push(PARALLEL.compress(chunk, codec.fs, block as u32).unwrap());
                }
            }
            outputs
        });
        let expected: Vec<Vec<u8>> = data
            .chunks(block)
            .chain([&b"fragment bytes"[..]])
            .chain(zeros_inside.chunks(block).enumerate().filter(|(i, _)| *i != 1).map(|(_, c)| c))
            .map(|chunk| codec.compress(chunk).unwrap())
            .collect();
        assert_eq!(outputs, expected);
        assert_eq!(stats, Stats { predicted: 7, inline: 1 });
    }

    #[test]
    fn without_a_lookahead_compress_is_plain() {
        let codec = Codec::new(Compression::Zstd, 4096);
        let out = PARALLEL.compress(b"abcabcabc", codec.fs, 4096).unwrap();
        assert_eq!(out, codec.compress(b"abcabcabc").unwrap());
    }
}
