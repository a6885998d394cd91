//! Reading a task's objects: a tokio task per task streams each object, in order, into
//! a bounded channel of its own that the decoder on the rayon thread reads through
//! [`ChannelReader`]. A slice of a large object is cut here too ([`slice_reader`]):
//! whole lines (CSV: whole records, after the object's header), or whole frames of a
//! seekable zstd object, and a slice fetches only its bytes and the end of its last
//! record ([`read_on_demand`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use tokio::sync::{Semaphore, mpsc};

use crate::error::{Error, Result};
use crate::formats;
use crate::formats::reader::{ChannelReader, Chunks, Demand, LineRange};
use crate::plan::{Plan, Task};
use crate::report::Stats;

/// Bytes of input read per range request.
fn read_chunk(plan: &Plan) -> u64 {
    // A quarter of each task's share of the memory budget, split over the prefetch depth.
    let share = plan.pipeline.run.memory_limit.get()
        / plan.threads.max(1) as u64
        / 4
        / (PREFETCH + RANGES_IN_FLIGHT + 1) as u64;
    share.clamp(256 << 10, 2 << 20)
}

/// Chunks read ahead of the decoder, per task.
const PREFETCH: usize = 4;

/// Range requests in flight per object when reading a file by ranges: the disk's
/// latency is hidden behind the previous range, while memory stays at a few chunks.
const RANGES_IN_FLIGHT: usize = 2;

/// How reading one object ended.
enum Read {
    /// Every byte was handed to the decoder.
    Done,
    /// The decoder stopped reading (a `limit`, or it failed on its own).
    DecoderGone,
    /// A signal asked everything to stop.
    Stopped,
}

/// Streams each object of the task, in order, into its own bounded channel.
///
/// Each object is one GET holding one of the run's `io_concurrency` permits, so that
/// many objects are in flight across tasks. A remote store answers with a body stream,
/// which is forwarded in `chunk`-sized pieces: when the decoder falls behind, the full
/// channel stops the forwarding and TCP flow control stops the sender, so memory stays
/// at a few chunks however large the object, with one request per object (object_store
/// resumes a body that breaks off with a range request for the rest). A store that
/// answers with a local file is read by ranged reads instead, two in flight.
pub(super) async fn read_objects(
    plan: Arc<Plan>,
    task: Task,
    objects_tx: mpsc::Sender<Chunks>,
    io: Arc<Semaphore>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let chunk = read_chunk(&plan);
    // A task's objects are of one input.
    let store = plan.input_of(task.objects.start).source.base.store.clone();
    for i in task.objects.clone() {
        let obj = &plan.objects[i];
        let (tx, rx) = mpsc::channel(PREFETCH);
        let demand = Arc::new(Demand::default());
        let t = Instant::now();
        let sent = objects_tx
            .send(Chunks {
                rx,
                demand: demand.clone(),
            })
            .await;
        stats.read.add_blocked(t.elapsed());
        if sent.is_err() {
            return Ok(());
        }
        // A slice of one object starts a byte early (see `LineRange`) and reads on
        // until the decoder has the line that straddles its end; a slice of a seekable
        // zstd object starts at its first frame, one of a gzip object where its range
        // does (it looks for its first member from there).
        let from = match &task.range {
            Some(r) if plan.compressions[i] != formats::Compression::None => r.start,
            Some(r) => LineRange::<&[u8]>::read_from(r),
            None => 0,
        };
        // A slice's first request ends a short tail past its end, where its last
        // record almost always ends; the rest is fetched only if the decoder asks.
        let to = task
            .range
            .as_ref()
            .map_or(obj.size, |r| (r.end + SLICE_TAIL).min(obj.size));
        let permit = io.clone().acquire_owned().await;
        let work = Instant::now();
        let options = object_store::GetOptions {
            range: (from > 0 || to < obj.size).then(|| (from..to).into()),
            ..Default::default()
        };
        let got = store.get_opts(&obj.path, options).await;
        stats.read.add_working(work.elapsed());
        let owned = AtomicU64::new(task.range.as_ref().map_or(obj.size, |r| r.end - r.start));
        let span = from..to;
        let fetch = Fetch {
            store: &store,
            obj,
            chunk,
            tx: &tx,
            io: &io,
            stats: &stats,
            stop: &stop,
        };
        let outcome = match got {
            Ok(result) => match result.payload {
                object_store::GetResultPayload::Stream(body) => {
                    let read = forward(body, chunk, &tx, &stats, &owned, &stop).await;
                    drop(permit);
                    read
                }
                object_store::GetResultPayload::File(..) => {
                    drop(permit);
                    fetch.ranges(span, &owned).await
                }
            },
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Ok(Read::Done) if to < obj.size => fetch.on_demand(to, &demand).await,
            other => other,
        };
        match outcome {
            Ok(Read::Done | Read::DecoderGone) => {}
            Ok(Read::Stopped) => {
                // Not an end of file: the decoder must not take a cut object for a whole one.
                let _ = tx.send(Err("stopped by a signal".into())).await;
                return Ok(());
            }
            Err(e) => {
                // The decoder's error says "cannot read: " itself.
                let _ = tx.send(Err(e.to_string())).await;
                let e = Error::store("read", &obj.display, e);
                // Under skip / dead_letter the decoder leaves out an object that is gone
                // or forbidden, and the task goes on; a retryable fault fails the task.
                if plan.pipeline.run.on_error == crate::spec::OnError::Fail
                    || e.exit_code() == crate::error::EXIT_RETRY
                {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Forwards a GET's body to the decoder in `chunk`-sized pieces.
async fn forward(
    mut body: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    chunk: u64,
    tx: &mpsc::Sender<std::result::Result<Bytes, String>>,
    stats: &Stats,
    owned: &AtomicU64,
    stop: &AtomicBool,
) -> object_store::Result<Read> {
    use futures::StreamExt;
    let chunk = chunk as usize;
    let mut buf = bytes::BytesMut::new();
    let send = async |piece: Bytes| -> bool {
        let t = Instant::now();
        let len = piece.len() as u64;
        let ok = tx.send(Ok(piece)).await.is_ok();
        stats.read.add_blocked(t.elapsed());
        Stats::add(&stats.bytes_read, len);
        Stats::add(&stats.bytes_done, take_owned(owned, len));
        ok
    };
    loop {
        let work = Instant::now();
        let next = body.next().await;
        stats.read.add_working(work.elapsed());
        if stop.load(Ordering::Relaxed) {
            return Ok(Read::Stopped);
        }
        let Some(piece) = next else { break };
        let piece = piece?;
        if buf.is_empty() && piece.len() >= chunk {
            if !send(piece).await {
                return Ok(Read::DecoderGone);
            }
            continue;
        }
        buf.extend_from_slice(&piece);
        if buf.len() >= chunk && !send(buf.split().freeze()).await {
            return Ok(Read::DecoderGone);
        }
    }
    if !buf.is_empty() && !send(buf.freeze()).await {
        return Ok(Read::DecoderGone);
    }
    Ok(Read::Done)
}

/// The bytes of a task that is a slice of one large object (`range`): whole lines, or
/// for CSV whole records checked at the cut, after the object's header line when it has
/// one (read with a range request of its own), so the decoder sees a small CSV file.
///
/// A slice of a seekable zstd object (`range` starts and ends at frames) is cut the same
/// way in decompressed offsets, from the first byte of its first frame: it owns the
/// lines that start after that byte and at or before the first byte of the frame after
/// its last (so it needs nothing of the frames before it), and reads on into later
/// frames to finish its last line. A slice of a gzip object of many members is cut
/// alike at the members that start in `range` (`formats::members`); for WARC, whole
/// records from its first member to the first member past its end.
pub(super) fn slice_reader<'a>(
    plan: &Plan,
    i: usize,
    task: &crate::plan::Task,
    raw: ChannelReader<'a>,
    handle: &tokio::runtime::Handle,
) -> Result<Box<dyn std::io::Read + 'a>> {
    let range = task
        .range
        .as_ref()
        .ok_or_else(|| Error::Internal("a slice without a range".into()))?;
    let obj = &plan.objects[i];
    let input = plan.input_of(i);
    let store = input.source.base.store.clone();
    let csv = &input.spec.csv;
    let records = || formats::csv::records(csv, &obj.display);
    let is_csv = input.format_name == crate::spec::FormatName::Csv;
    let buffered = |raw| Box::new(std::io::BufReader::with_capacity(1 << 16, raw));
    let body: Box<dyn std::io::Read + 'a> = match plan.compressions[i] {
        formats::Compression::Gzip if task.inside_member => {
            let blocks = formats::members::blocks::slice(buffered(raw), range.clone())
                .map_err(|e| Error::input(&obj.display, None, e))?;
            let (end, first) = (blocks.end(), range.start == 0);
            if is_csv {
                Box::new(LineRange::csv_after_members(blocks, first, end, records()))
            } else {
                Box::new(LineRange::after_members(blocks, first, end))
            }
        }
        formats::Compression::Gzip => {
            use formats::members::{Starts, slice};
            let warc = input.format_name == crate::spec::FormatName::Warc;
            let starts = if warc { Starts::Warc } else { Starts::Anything };
            let members = slice(buffered(raw), range.clone(), starts)
                .map_err(|e| Error::input(&obj.display, None, e))?;
            let (end, first) = (members.end(), range.start == 0);
            if warc {
                Box::new(members)
            } else if is_csv {
                Box::new(LineRange::csv_after_members(members, first, end, records()))
            } else {
                Box::new(LineRange::after_members(members, first, end))
            }
        }
        formats::Compression::Zstd => {
            let frames = handle
                .block_on(formats::seekable::frames(
                    store.as_ref(),
                    &obj.path,
                    obj.size,
                ))
                .map_err(|e| Error::store("read the seek table of", &obj.display, e))?
                .ok_or_else(|| {
                    Error::input(
                        &obj.display,
                        None,
                        "its seek table is gone: the object changed since the plan was made",
                    )
                })?;
            let (start, end) = frames.decompressed(range);
            let cut = if start == 0 { 0 } else { start + 1 }..end.map_or(u64::MAX, |e| e + 1);
            let decoded = formats::decompress(formats::Compression::Zstd, raw)
                .map_err(|e| Error::input(&obj.display, None, e))?;
            if is_csv {
                Box::new(LineRange::csv(
                    decoded,
                    cut,
                    frames.size_decomp(),
                    records(),
                ))
            } else {
                Box::new(LineRange::new(decoded, cut))
            }
        }
        formats::Compression::None if is_csv => Box::new(LineRange::csv(
            buffered(raw),
            range.clone(),
            obj.size,
            records(),
        )),
        formats::Compression::None => Box::new(LineRange::new(buffered(raw), range.clone())),
    };
    if !is_csv || !csv.header || range.start == 0 {
        return Ok(body);
    }
    let head = formats::reader::BlockingObjectReader::new(
        store,
        obj.path.clone(),
        obj.size,
        handle.clone(),
    )
    .with_chunk(64 << 10);
    let head = formats::decompress(plan.compressions[i], head)
        .map_err(|e| Error::input(&obj.display, None, e))?;
    let header = formats::csv::first_record(head, records(), plan.max_record_bytes())
        .map_err(|e| Error::read(&obj.display, Some(1), e))?;
    Ok(Box::new(std::io::Read::chain(
        std::io::Cursor::new(header),
        body,
    )))
}

/// Bytes a slice's first request reads past the slice's end, to finish its last record.
const SLICE_TAIL: u64 = 64 << 10;

/// One object being read by a task: where from, where to, and the run's limits.
#[derive(Clone, Copy)]
struct Fetch<'a> {
    store: &'a Arc<dyn object_store::ObjectStore>,
    obj: &'a crate::storage::Object,
    chunk: u64,
    tx: &'a mpsc::Sender<std::result::Result<Bytes, String>>,
    io: &'a Arc<Semaphore>,
    stats: &'a Arc<Stats>,
    stop: &'a AtomicBool,
}

impl Fetch<'_> {
    /// Past a slice's first request (its bytes and [`SLICE_TAIL`]), the rest of the object
    /// as the decoder asks for it: one range at a time, sent only once it has taken every
    /// chunk before and waits for more, from [`SLICE_TAIL`] doubling up to `chunk`. The
    /// bytes fetched past a slice's end are then about twice its last record's overhang at
    /// most, instead of the channel's read-ahead.
    async fn on_demand(&self, mut at: u64, demand: &Demand) -> object_store::Result<Read> {
        let Fetch {
            store,
            obj,
            chunk,
            tx,
            io,
            stats,
            stop,
        } = *self;
        let mut step = SLICE_TAIL;
        while at < obj.size {
            if !demand.wanted(tx).await {
                return Ok(Read::DecoderGone);
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(Read::Stopped);
            }
            let end = (at + step).min(obj.size);
            let permit = io.acquire().await;
            let work = Instant::now();
            let bytes = store.get_range(&obj.path, at..end).await?;
            drop(permit);
            stats.read.add_working(work.elapsed());
            // Counted as read once the store has served it, taken or not: a decoder
            // that has what it needs may be gone by the time the range arrives.
            Stats::add(&stats.bytes_read, bytes.len() as u64);
            if tx.send(Ok(bytes)).await.is_err() {
                return Ok(Read::DecoderGone);
            }
            at = end;
            step = (step * 2).min(chunk.max(SLICE_TAIL));
        }
        Ok(Read::Done)
    }

    /// Reads `span` of an object by ranges of `chunk` bytes, [`RANGES_IN_FLIGHT`] at a
    /// time, each holding an `io_concurrency` permit while it runs.
    async fn ranges(
        &self,
        span: std::ops::Range<u64>,
        owned: &AtomicU64,
    ) -> object_store::Result<Read> {
        let Fetch {
            store,
            obj,
            chunk,
            tx,
            io,
            stats,
            stop,
        } = *self;
        use futures::StreamExt;
        let from = span.start;
        let ranges = (0..(span.end - from).div_ceil(chunk))
            .map(|k| from + k * chunk..(from + (k + 1) * chunk).min(span.end));
        let mut chunks = futures::stream::iter(ranges)
            .map(|range| {
                let (store, io, stats) = (store.clone(), io.clone(), stats.clone());
                let path = obj.path.clone();
                async move {
                    let permit = io.acquire_owned().await;
                    let work = Instant::now();
                    let got = store.get_range(&path, range).await;
                    drop(permit);
                    stats.read.add_working(work.elapsed());
                    got
                }
            })
            .buffered(RANGES_IN_FLIGHT);
        while let Some(got) = chunks.next().await {
            if stop.load(Ordering::Relaxed) {
                return Ok(Read::Stopped);
            }
            let bytes = got?;
            let len = bytes.len() as u64;
            Stats::add(&stats.bytes_read, len);
            let t = Instant::now();
            if tx.send(Ok(bytes)).await.is_err() {
                return Ok(Read::DecoderGone);
            }
            stats.read.add_blocked(t.elapsed());
            Stats::add(&stats.bytes_done, take_owned(owned, len));
        }
        Ok(Read::Done)
    }
}

/// Of `len` bytes just read, those still within what the task owns (`owned`, counted
/// down): a slice reads past its end to finish its last record, and progress must not
/// count those bytes twice (once here, once by the next slice).
pub(super) fn take_owned(owned: &AtomicU64, len: u64) -> u64 {
    let mut taken = 0;
    let _ = owned.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        taken = left.min(len);
        Some(left - taken)
    });
    taken
}
