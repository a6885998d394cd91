//! Row groups encoded on every thread of the pool, appended to their shard in order.
//!
//! One role, kept in one file on purpose: the hand-off between a task and the pool's
//! encode jobs (budget, ordered appending, shard boundaries, failure) shares one lock
//! and one set of invariants, and splitting it would spread them over several files.
//!
//! A task's writer ([`super::writer::TaskWriter`]) cuts the rows the steps hand it into
//! row groups by rules that depend only on the rows (their count and their Arrow size),
//! never on how anything encoded; each row group is then encoded as a rayon job of its
//! own (Parquet column writers from [`ArrowRowGroupWriterFactory`], the API DataFusion's
//! parallel writer uses), and whichever job completes the next row group in order
//! appends it, and every completed one after it, to the partition's open shard. Shard
//! boundaries are decided there, between row groups: before a row group that would take
//! the shard past `max_bytes`, and after the row group the cutter marked as reaching
//! `max_rows`. Every decision is a function of the rows and of encoded bytes, which are
//! themselves a function of the rows, so the shards are byte-identical for any number of
//! threads and any order in which the jobs ran.
//!
//! Nothing here blocks a thread on work only it could do: a thread that waits (for a slot
//! in the run's [`Budget`], or for its task's last row groups) waits as [`crate::pool`]
//! says, running its own queued jobs and never stealing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use tokio::sync::mpsc;

use super::ShardRecord;
use super::columns::ShardColumns;
use super::upload::{StagedShard, UPLOAD_CHUNK, UploadMsg, UploadSink, Uploaded, upload};
use super::writer::{WriterConfig, shard_name};
use crate::error::{Error, Result};
use crate::pool::{lock, panic_message, wait};
use crate::report::Stats;

/// How one partition of a task encodes: the writer settings chosen from its first rows
/// and the column-writer factory made from them.
pub(super) struct Encoding {
    pub props: WriterProperties,
    factory: ArrowRowGroupWriterFactory,
    /// The footer of a shard with no row groups (schema, key-value metadata, lengths
    /// and magic), in bytes; each row group adds [`Encoded::footer`] to it.
    footer: u64,
    /// The file metadata of that empty shard, to measure what a row group adds.
    empty: ParquetMetaData,
    /// [`Encoding::empty`] serialized, in bytes.
    empty_len: u64,
}

impl Encoding {
    pub fn new(props: WriterProperties, schema: &SchemaRef) -> Result<Self> {
        let internal = |e: parquet::errors::ParquetError| {
            Error::Internal(format!("setting up the Parquet encoder: {e}"))
        };
        // The factory of a writer that writes nothing: column writers depend only on
        // the schema and the properties, not on the file they end up in. Finishing
        // that writer gives the footer every shard starts from.
        let (mut file, factory) =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(internal)?;
        let empty = file.finish().map_err(internal)?;
        let footer = (file.bytes_written() as u64).saturating_sub(4);
        let empty_len = metadata_len(&empty).map_err(internal)?;
        Ok(Encoding {
            props,
            factory,
            footer,
            empty,
            empty_len,
        })
    }

    /// The bytes a row group of these column chunks adds to its shard's footer and
    /// page index: measured by serializing it, so a shard's size is known before its
    /// footer is written (the footer of a shard of small row groups is not small).
    fn footer_bytes(&self, chunks: &[ArrowColumnChunk], rows: u64) -> Result<u64> {
        let internal = |e: parquet::errors::ParquetError| {
            Error::Internal(format!("measuring a row group's metadata: {e}"))
        };
        let file = self.empty.file_metadata();
        let closes: Vec<_> = chunks.iter().map(ArrowColumnChunk::close).collect();
        let row_group = RowGroupMetaData::builder(file.schema_descr_ptr())
            .set_num_rows(rows as i64)
            .set_column_metadata(closes.iter().map(|c| c.metadata.clone()).collect())
            .build()
            .map_err(internal)?;
        let column_index = closes
            .iter()
            .map(|c| c.column_index.clone().unwrap_or(ColumnIndexMetaData::NONE))
            .collect();
        let offset_index: Option<Vec<_>> = closes.iter().map(|c| c.offset_index.clone()).collect();
        let one = ParquetMetaDataBuilder::new(file.clone())
            .add_row_group(row_group)
            .set_column_index(Some(vec![column_index]))
            .set_offset_index(offset_index.map(|o| vec![o]))
            .build();
        Ok(metadata_len(&one)
            .map_err(internal)?
            .saturating_sub(self.empty_len))
    }
}

/// Serialized length of a file's metadata (page index and footer).
fn metadata_len(m: &ParquetMetaData) -> parquet::errors::Result<u64> {
    let mut out = Vec::new();
    ParquetMetaDataWriter::new(&mut out, m).finish()?;
    Ok(out.len() as u64)
}

/// A row group as the cutter made it.
pub(super) struct Cut {
    pub dir: String,
    pub seq: u64,
    pub batches: Vec<RecordBatch>,
    /// The shard reaches `max_rows` with this row group.
    pub ends_shard: bool,
    pub encoding: Arc<Encoding>,
}

/// An encoded row group waiting for its turn to be appended.
struct Encoded {
    chunks: Vec<ArrowColumnChunk>,
    rows: u64,
    /// Encoded bytes of its column chunks.
    bytes: u64,
    /// What it adds to the shard's footer and page index.
    footer: u64,
    columns: ShardColumns,
    ends_shard: bool,
    encoding: Arc<Encoding>,
}

/// What a task's encode jobs share with the task.
pub(super) struct Lane {
    state: Mutex<LaneState>,
    cv: Condvar,
    cfg: Arc<WriterConfig>,
    stats: Arc<Stats>,
    task: usize,
}

#[derive(Default)]
struct LaneState {
    parts: HashMap<String, Appending>,
    /// Row groups cut and not yet appended (or dropped): each holds a budget slot.
    in_flight: usize,
    /// The first error of an encode or an append; the task fails with it.
    error: Option<Error>,
    /// The task failed or gave up: row groups that complete now are dropped.
    closed: bool,
    shards: Vec<ShardRecord>,
    staged: Vec<StagedShard>,
}

/// One partition's shards as row groups are appended.
#[derive(Default)]
struct Appending {
    /// The sequence number of the row group to append next.
    next: u64,
    /// Row groups encoded ahead of their turn.
    ready: BTreeMap<u64, Encoded>,
    open: Option<OpenShard>,
    next_shard: usize,
}

struct OpenShard {
    file: SerializedFileWriter<UploadSink>,
    tx: mpsc::Sender<UploadMsg>,
    join: tokio::task::JoinHandle<Result<Uploaded>>,
    relative: String,
    /// The shard's full URI, for messages.
    uri: String,
    rows: u64,
    row_groups: usize,
    /// The footer and page index the shard will end with, as it stands.
    footer: u64,
    columns: ShardColumns,
}

impl OpenShard {
    /// The error to report for a failed write: the upload's own error when the upload
    /// is what failed (the encoder then only sees a closed channel), else `e`.
    fn error(&mut self, cfg: &WriterConfig, e: impl std::fmt::Display) -> Error {
        if self.join.is_finished()
            && let Ok(Err(upload)) = cfg.handle.block_on(&mut self.join)
        {
            return upload;
        }
        Error::sink(&self.uri, e)
    }
}

impl Lane {
    pub fn new(cfg: Arc<WriterConfig>, stats: Arc<Stats>, task: usize) -> Arc<Self> {
        Arc::new(Lane {
            state: Mutex::new(LaneState::default()),
            cv: Condvar::new(),
            cfg,
            stats,
            task,
        })
    }

    /// Hands a row group to be encoded on any thread, once the run's budget has room.
    pub fn dispatch(self: &Arc<Self>, cut: Cut) -> Result<()> {
        let waited = self.cfg.budget.take();
        self.stats.encode.add_blocked(waited);
        {
            let mut st = lock(&self.state);
            if let Some(e) = st.error.take() {
                st.closed = true;
                drop(st);
                self.cfg.budget.give(1);
                return Err(e);
            }
            st.in_flight += 1;
        }
        let lane = self.clone();
        rayon::spawn(move || {
            let _busy = crate::pool::Busy::enter();
            let mut cut = cut;
            let start = Instant::now();
            let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                encode(&mut cut, &lane.cfg.file_schema)
            }))
            .unwrap_or_else(|p| {
                Err(Error::Internal(format!(
                    "panic while encoding a row group of task {}: {}",
                    lane.task,
                    panic_message(&*p)
                )))
            });
            lane.stats.encode.add_working(start.elapsed());
            lane.complete(cut.dir, cut.seq, encoded);
        });
        Ok(())
    }

    /// A row group's encode finished: appends it and every row group after it that is
    /// ready, in order, and gives their budget slots back.
    fn complete(&self, dir: String, seq: u64, encoded: Result<Encoded>) {
        let mut st = lock(&self.state);
        let mut released = 0;
        match encoded {
            Ok(e) if !st.closed => {
                st.parts
                    .entry(dir.clone())
                    .or_default()
                    .ready
                    .insert(seq, e);
            }
            Ok(_) => released += 1,
            Err(e) => {
                st.error.get_or_insert(e);
                released += 1;
            }
        }
        if st.error.is_some() || st.closed {
            released += st
                .parts
                .values_mut()
                .map(|p| std::mem::take(&mut p.ready).len())
                .sum::<usize>();
        } else {
            let LaneState {
                parts,
                shards,
                staged,
                error,
                ..
            } = &mut *st;
            let part = parts.entry(dir.clone()).or_default();
            while let Some(e) = part.ready.remove(&part.next) {
                part.next += 1;
                released += 1;
                if let Err(err) = self.append(&dir, part, e, shards, staged) {
                    *error = Some(err);
                    released += std::mem::take(&mut part.ready).len();
                    break;
                }
            }
        }
        st.in_flight -= released;
        drop(st);
        self.cfg.budget.give(released);
        self.cv.notify_all();
    }

    /// Appends an encoded row group to the partition's open shard, closing the shard
    /// before it when it would take the shard past `max_bytes`, and after it when the
    /// cutter said the shard reaches `max_rows` there.
    fn append(
        &self,
        dir: &str,
        part: &mut Appending,
        e: Encoded,
        shards: &mut Vec<ShardRecord>,
        staged: &mut Vec<StagedShard>,
    ) -> Result<()> {
        let cfg = &*self.cfg;
        if part.open.as_ref().is_some_and(|o| {
            o.row_groups > 0
                && o.file.bytes_written() as u64 + o.footer + e.bytes + e.footer > cfg.max_bytes
        }) && let Some(open) = part.open.take()
        {
            let (record, stage) = self.close(open)?;
            shards.push(record);
            staged.push(stage);
        }
        let open = match &mut part.open {
            Some(open) => open,
            slot => {
                let shard = part.next_shard;
                part.next_shard += 1;
                let mut open = self.open(dir, shard, &e.encoding.props)?;
                open.footer = e.encoding.footer;
                slot.insert(open)
            }
        };
        let appended = open.file.next_row_group().and_then(|mut rg| {
            for c in e.chunks {
                c.append_to_row_group(&mut rg)?;
            }
            rg.close().map(|_| ())
        });
        if let Err(err) = appended {
            return Err(open.error(cfg, err));
        }
        open.rows += e.rows;
        open.row_groups += 1;
        open.footer += e.footer;
        open.columns.merge(&e.columns);
        if (e.ends_shard || open.rows >= cfg.max_rows)
            && let Some(open) = part.open.take()
        {
            let (record, stage) = self.close(open)?;
            shards.push(record);
            staged.push(stage);
        }
        Ok(())
    }

    fn open(&self, dir: &str, shard: usize, props: &WriterProperties) -> Result<OpenShard> {
        let cfg = &*self.cfg;
        let relative = shard_name(dir, self.task, shard);
        let uri = format!("{}{relative}", cfg.display);
        let path = crate::storage::join(&cfg.root, &relative);
        let (tx, rx) = mpsc::channel(2);
        let join = cfg.handle.spawn(upload(
            cfg.store.clone(),
            path,
            uri.clone(),
            rx,
            self.stats.clone(),
        ));
        let sink = UploadSink {
            tx: tx.clone(),
            buf: Vec::with_capacity(UPLOAD_CHUNK),
            stats: self.stats.clone(),
        };
        // ArrowWriter sets the file up (the Arrow schema in its metadata); its row
        // groups come from here.
        let (file, _) = ArrowWriter::try_new(sink, cfg.file_schema.clone(), Some(props.clone()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|e| Error::sink(&uri, e))?;
        Ok(OpenShard {
            file,
            tx,
            join,
            relative,
            uri,
            rows: 0,
            row_groups: 0,
            footer: 0,
            columns: ShardColumns::new(&cfg.file_schema),
        })
    }

    fn close(&self, mut open: OpenShard) -> Result<(ShardRecord, StagedShard)> {
        let cfg = &*self.cfg;
        let metadata = match open.file.finish() {
            Ok(m) => m,
            Err(e) => return Err(open.error(cfg, e)),
        };
        let OpenShard {
            tx,
            join,
            relative,
            uri,
            rows,
            columns,
            ..
        } = open;
        let memory_bytes = columns.memory_bytes;
        let columns = columns.finish(&cfg.file_schema, &metadata);
        let start = Instant::now();
        let sent = tx.blocking_send(UploadMsg::Finish);
        drop(tx);
        let uploaded = cfg
            .handle
            .block_on(join)
            .map_err(|e| Error::Internal(format!("the upload of {uri} panicked: {e}")))?;
        let (upload, bytes, crc) = uploaded?;
        let staged = StagedShard {
            upload: Some(upload),
            uri: uri.clone(),
            handle: cfg.handle.clone(),
        };
        if sent.is_err() {
            return Err(Error::sink(&uri, "the upload stopped"));
        }
        let stats = &self.stats;
        stats.encode.add_blocked(start.elapsed());
        stats
            .shards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .bytes_out
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let record = ShardRecord {
            path: relative,
            rows,
            bytes,
            crc32c: format!("{crc:08x}"),
            memory_bytes,
            columns,
            index: None,
            mds: None,
            buckets: Vec::new(),
        };
        Ok((record, staged))
    }

    /// Waits for every row group cut so far to be appended (running this thread's
    /// queued encodes meanwhile), then closes the open shards in `order` (partition
    /// folders in first-seen order) and returns the shards written.
    pub fn finish(&self, order: &[String]) -> Result<(Vec<ShardRecord>, Vec<StagedShard>)> {
        let start = Instant::now();
        wait(&self.state, &self.cv, |st| st.in_flight == 0);
        self.stats.encode.add_blocked(start.elapsed());
        let mut st = lock(&self.state);
        if let Some(e) = st.error.take() {
            st.closed = true;
            return Err(e);
        }
        st.closed = true;
        let mut shards = std::mem::take(&mut st.shards);
        let mut staged = std::mem::take(&mut st.staged);
        for dir in order {
            if let Some(open) = st.parts.get_mut(dir).and_then(|p| p.open.take()) {
                let (record, stage) = self.close(open)?;
                shards.push(record);
                staged.push(stage);
            }
        }
        Ok((shards, staged))
    }

    /// The task gave up: row groups still encoding are dropped when they complete, and
    /// the open shards' uploads are aborted when the last job lets go of the lane.
    pub fn abandon(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        let dropped = st
            .parts
            .values_mut()
            .map(|p| std::mem::take(&mut p.ready).len())
            .sum::<usize>();
        st.in_flight -= dropped;
        for p in st.parts.values_mut() {
            p.open = None;
        }
        drop(st);
        self.cfg.budget.give(dropped);
    }
}

/// Encodes the rows of a row group into Parquet column chunks.
///
/// Takes the rows out of the cut and lets go of each batch once its values are in pages, so
/// a row group in flight holds its rows or its pages, not both for long.
fn encode(cut: &mut Cut, schema: &SchemaRef) -> Result<Encoded> {
    let internal = |e: parquet::errors::ParquetError| {
        Error::Internal(format!("encoding a row group of {}: {e}", cut.dir))
    };
    let mut writers = cut
        .encoding
        .factory
        .create_column_writers(0)
        .map_err(internal)?;
    let mut columns = ShardColumns::new(schema);
    let mut rows = 0;
    // The column writers check whether a page is full after every `write_batch_size`
    // rows counted from the start of each write: writing windows of exactly that many
    // rows from the start of the row group puts page boundaries where the rows put
    // them, however the rows came batched. A window that spans two batches is copied
    // into one (at most one such window per batch).
    let window = cut.encoding.props.write_batch_size().max(1);
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in std::mem::take(&mut cut.batches) {
        columns.observe(&batch);
        rows += batch.num_rows() as u64;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (window - pending_rows).min(batch.num_rows() - offset);
            let piece = batch.slice(offset, take);
            offset += take;
            if pending.is_empty() && take == window {
                write_rows(&mut writers, schema, &piece, &cut.dir)?;
                continue;
            }
            pending.push(piece);
            pending_rows += take;
            if pending_rows == window {
                write_joined(&mut writers, schema, &mut pending, &cut.dir)?;
                pending_rows = 0;
            }
        }
    }
    write_joined(&mut writers, schema, &mut pending, &cut.dir)?;
    let chunks = writers
        .into_iter()
        .map(|w| w.close())
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(internal)?;
    Ok(Encoded {
        bytes: chunks.iter().map(|c| c.close().bytes_written).sum(),
        footer: cut.encoding.footer_bytes(&chunks, rows)?,
        chunks,
        rows,
        columns,
        ends_shard: cut.ends_shard,
        encoding: cut.encoding.clone(),
    })
}

/// Writes the pieces of one window (if any) as one batch, and empties `pending`.
fn write_joined(
    writers: &mut [ArrowColumnWriter],
    schema: &SchemaRef,
    pending: &mut Vec<RecordBatch>,
    dir: &str,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let joined = arrow::compute::concat_batches(schema, pending.iter())
        .map_err(|e| Error::Internal(e.to_string()))?;
    pending.clear();
    write_rows(writers, schema, &joined, dir)
}

/// Writes the rows of `batch` to the column writers of a row group.
fn write_rows(
    writers: &mut [ArrowColumnWriter],
    schema: &SchemaRef,
    batch: &RecordBatch,
    dir: &str,
) -> Result<()> {
    let internal = |e: parquet::errors::ParquetError| {
        Error::Internal(format!("encoding a row group of {dir}: {e}"))
    };
    let mut w = writers.iter_mut();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        for leaf in compute_leaves(field, column).map_err(internal)? {
            w.next()
                .ok_or_else(|| Error::Internal("fewer column writers than leaves".into()))?
                .write(&leaf)
                .map_err(internal)?;
        }
    }
    Ok(())
}
