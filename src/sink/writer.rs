//! The shard writer of one task: Parquet encoding on the calling (rayon) thread, bytes
//! handed over a bounded channel to an upload task on the I/O runtime that streams them
//! into the store as the parts of a multipart upload (`super::upload`). The upload is completed only when
//! the task commits ([`Staged::publish`], right before the commit record), so a shard
//! becomes visible to readers with its task and never before; a failed or abandoned
//! upload is aborted and leaves nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::sync::mpsc;

use super::ShardRecord;
use super::columns::ShardColumns;
pub use super::upload::Staged;
use super::upload::{StagedShard, UPLOAD_CHUNK, UploadMsg, UploadSink, Uploaded, upload};
use crate::error::{Error, Result};
use crate::report::Stats;
use crate::spec::SinkCompression;
use crate::storage::Location;

/// Characters Hive escapes in partition values.
const HIVE: &AsciiSet = &CONTROLS
    .add(b'/')
    .add(b'\\')
    .add(b'=')
    .add(b'%')
    .add(b':')
    .add(b'*')
    .add(b'?')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'|')
    .add(b'#')
    .add(b'\'')
    .add(b'[')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'^');

/// Hive's folder name for a null partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// What the writer needs to know, fixed for a run.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// The sink as the user wrote it, ending in `/`, for messages.
    pub display: String,
    /// Schema of the rows written to files (partition columns removed).
    pub file_schema: SchemaRef,
    /// Indices of the partition columns in the batches handed to [`TaskWriter::write`].
    pub partition_cols: Vec<(usize, String)>,
    /// Indices of the file columns in those batches.
    pub file_cols: Vec<usize>,
    pub props: WriterProperties,
    pub max_rows: u64,
    pub max_bytes: u64,
    pub handle: tokio::runtime::Handle,
}

/// What a run's shards are made from, besides the sink section.
#[derive(Debug, Clone, Copy)]
pub struct Shards<'a> {
    /// Schema of the batches handed to [`TaskWriter::write`].
    pub output_schema: &'a SchemaRef,
    /// Schema of the files (the output without partition columns).
    pub file_schema: &'a SchemaRef,
    /// The pipeline's name and output hash, written into every file's metadata.
    pub pipeline: &'a str,
    pub pipeline_hash: &'a str,
    /// Each CPU thread's share of `run.memory_limit`.
    pub memory_share: u64,
}

impl WriterConfig {
    /// The writer's settings for a run: Parquet properties from the sink section, the
    /// partition and file columns of `shards.output_schema`.
    ///
    /// # Errors
    /// [`Error::Plan`] for a compression level the codec does not take.
    pub fn new(
        spec: &crate::spec::Sink,
        sink: &Location,
        shards: Shards<'_>,
        handle: tokio::runtime::Handle,
    ) -> Result<WriterConfig> {
        let partition_cols = spec
            .partition_by
            .iter()
            .map(|n| shards.output_schema.index_of(n).map(|i| (i, n.clone())))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let file_cols = (0..shards.output_schema.fields().len())
            .filter(|i| !partition_cols.iter().any(|(p, _)| p == i))
            .collect();
        Ok(WriterConfig {
            store: sink.store.clone(),
            root: sink.prefix.clone(),
            display: sink.display.clone(),
            file_schema: shards.file_schema.clone(),
            partition_cols,
            file_cols,
            props: writer_properties(spec, &shards)?,
            max_rows: spec.max_rows,
            max_bytes: spec.max_bytes.get(),
            handle,
        })
    }
}

/// Parquet writer settings from the sink section.
fn writer_properties(spec: &crate::spec::Sink, shards: &Shards<'_>) -> Result<WriterProperties> {
    let compression = match spec.compression {
        SinkCompression::Zstd => PqCompression::ZSTD(
            ZstdLevel::try_new(spec.compression_level.unwrap_or(3))
                .map_err(|e| Error::Plan(format!("sink.compression_level: {e}")))?,
        ),
        SinkCompression::Snappy => PqCompression::SNAPPY,
        SinkCompression::Lz4 => PqCompression::LZ4_RAW,
        SinkCompression::None => PqCompression::UNCOMPRESSED,
    };
    // Open pages and dictionaries are what the writer's size estimate over-counts
    // (see `TaskWriter`): keep them small next to max_bytes so shards land near it.
    let page = (spec.max_bytes.get() / 64).clamp(64 << 10, 1 << 20) as usize;
    // Buffered bytes that close a row group: `sink.row_group_bytes`, but never more
    // than a quarter of each thread's share of `run.memory_limit`.
    let row_group_bytes = spec
        .row_group_bytes
        .get()
        .min(shards.memory_share / 4)
        .max(1 << 20);
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_data_page_size_limit(page)
        .set_dictionary_page_size_limit(page)
        .set_max_row_group_row_count(Some(spec.row_group_rows))
        .set_max_row_group_bytes(Some(row_group_bytes as usize))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("kiln version {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("kiln.pipeline".to_string(), shards.pipeline.to_string()),
            KeyValue::new(
                "kiln.pipeline_hash".to_string(),
                shards.pipeline_hash.to_string(),
            ),
        ]))
        .build())
}

struct OpenShard {
    writer: ArrowWriter<UploadSink>,
    tx: mpsc::Sender<UploadMsg>,
    join: tokio::task::JoinHandle<Result<Uploaded>>,
    relative: String,
    /// The shard's full URI, for messages.
    uri: String,
    rows: u64,
    /// Column statistics of the rows written so far.
    columns: ShardColumns,
    schema: SchemaRef,
    /// The I/O runtime, to wait for the upload from this (rayon) thread. Not
    /// `futures::executor::block_on`: a Parquet source decodes inside one, and those
    /// do not nest.
    handle: tokio::runtime::Handle,
}

impl OpenShard {
    /// The error to report for a failed write: the upload's own error when the upload
    /// is what failed (the encoder then only sees a closed channel), else `e`.
    fn error(&mut self, e: impl std::fmt::Display) -> Error {
        if self.join.is_finished()
            && let Ok(Err(upload)) = self.handle.block_on(&mut self.join)
        {
            return upload;
        }
        Error::sink(&self.uri, e)
    }
}

/// Shards of one partition (or of the whole task when unpartitioned).
#[derive(Default)]
struct PartitionState {
    open: Option<OpenShard>,
    next_shard: usize,
}

/// Writes the shards of one task.
pub struct TaskWriter {
    cfg: Arc<WriterConfig>,
    task: usize,
    partitions: HashMap<String, PartitionState>,
    /// Partition directories in first-seen order, so closing is deterministic.
    order: Vec<String>,
    shards: Vec<ShardRecord>,
    staged: Staged,
    stats: Arc<Stats>,
}

impl TaskWriter {
    pub fn new(cfg: Arc<WriterConfig>, task: usize, stats: Arc<Stats>) -> Self {
        TaskWriter {
            cfg,
            task,
            partitions: HashMap::new(),
            order: Vec::new(),
            shards: Vec::new(),
            staged: Staged::default(),
            stats,
        }
    }

    /// Writes a batch (with partition columns, if any).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.cfg.partition_cols.is_empty() {
            return self.write_partition(String::new(), batch.clone());
        }
        for (dir, rows) in self.split(batch)? {
            let part =
                take_record_batch(batch, &rows).map_err(|e| Error::Internal(e.to_string()))?;
            self.write_partition(dir, part)?;
        }
        Ok(())
    }

    /// Groups rows by their partition folder, in order of first appearance.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, UInt32Array)>> {
        let mut columns = Vec::with_capacity(self.cfg.partition_cols.len());
        for (i, _) in &self.cfg.partition_cols {
            let c: ArrayRef = cast(batch.column(*i), &DataType::Utf8)
                .map_err(|e| Error::Internal(e.to_string()))?;
            columns.push(c);
        }
        let strings: Vec<&arrow::array::StringArray> = columns
            .iter()
            .filter_map(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .collect();
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for row in 0..batch.num_rows() {
            let mut dir = String::new();
            for ((_, name), col) in self.cfg.partition_cols.iter().zip(&strings) {
                let value = if !col.is_valid(row) {
                    HIVE_NULL.to_string()
                } else if col.value(row) == HIVE_NULL {
                    // The string itself, not a null: escaped so that the two never share
                    // a folder (readers decode `%5F` back to `_`).
                    format!("%5F{}", &HIVE_NULL[1..])
                } else {
                    utf8_percent_encode(col.value(row), HIVE).to_string()
                };
                dir.push_str(&format!("{name}={value}/"));
            }
            let g = *index.entry(dir.clone()).or_insert_with(|| {
                groups.push((dir, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(row as u32);
        }
        Ok(groups
            .into_iter()
            .map(|(d, rows)| (d, UInt32Array::from(rows)))
            .collect())
    }

    fn write_partition(&mut self, dir: String, batch: RecordBatch) -> Result<()> {
        let batch = if self.cfg.partition_cols.is_empty() {
            batch
        } else {
            let b = batch
                .project(&self.cfg.file_cols)
                .map_err(|e| Error::Internal(e.to_string()))?;
            b.with_schema(self.cfg.file_schema.clone())
                .map_err(|e| Error::Internal(e.to_string()))?
        };
        if !self.partitions.contains_key(&dir) {
            self.order.push(dir.clone());
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let state = self.partitions.entry(dir.clone()).or_default();
            if state.open.is_none() {
                let shard = state.next_shard;
                state.next_shard += 1;
                let first = batch.slice(offset, batch.num_rows() - offset);
                state.open = Some(open_shard(
                    &self.cfg,
                    &self.stats,
                    &dir,
                    self.task,
                    shard,
                    &first,
                )?);
            }
            let open = state
                .open
                .as_mut()
                .ok_or_else(|| Error::Internal("no open shard".into()))?;
            let remaining = (batch.num_rows() - offset) as u64;
            let mut take = remaining.min(self.cfg.max_rows - open.rows);
            // Keep each write under 1/16 of max_bytes (in memory, which bounds its
            // compressed size), so one write cannot overshoot the limit by much.
            let est_bytes =
                batch.get_array_memory_size() as f64 * take as f64 / batch.num_rows() as f64;
            let slice_cap = self.cfg.max_bytes as f64 / 16.0;
            if est_bytes > slice_cap {
                take = ((take as f64 * slice_cap / est_bytes).floor() as u64).max(1);
            }
            let slice = batch.slice(offset, take as usize);
            if let Err(e) = open.writer.write(&slice) {
                return Err(open.error(e));
            }
            open.columns.observe(&slice);
            open.rows += take;
            offset += take as usize;
            // The writer's estimate counts closed pages as compressed and open pages and
            // dictionaries as encoded, so it never under-estimates, and it over-estimates
            // by at most one open page and dictionary per column (pages are sized from
            // max_bytes, see `writer_properties`). When it reaches the limit, flush
            // the row group to measure; close within 10% of the limit, else fill the rest.
            let mut full = open.rows >= self.cfg.max_rows;
            let max = self.cfg.max_bytes as f64;
            if !full && (open.writer.bytes_written() + open.writer.in_progress_size()) as f64 >= max
            {
                if let Err(e) = open.writer.flush() {
                    return Err(open.error(e));
                }
                full = open.writer.bytes_written() as f64 >= max * 0.9;
            }
            if full {
                let open = state_take(&mut self.partitions, &dir)?;
                let (record, staged) = close_shard(open, &self.stats)?;
                self.shards.push(record);
                self.staged.0.push(staged);
            }
        }
        Ok(())
    }

    /// Closes every open shard and returns the records of all shards written, with the
    /// shards themselves staged: they become objects when the task commits
    /// ([`Staged::publish`]).
    pub fn finish(mut self) -> Result<(Vec<ShardRecord>, Staged)> {
        for dir in std::mem::take(&mut self.order) {
            if let Some(open) = self.partitions.get_mut(&dir).and_then(|s| s.open.take()) {
                let (record, staged) = close_shard(open, &self.stats)?;
                self.shards.push(record);
                self.staged.0.push(staged);
            }
        }
        self.shards.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((self.shards, self.staged))
    }
}

fn state_take(partitions: &mut HashMap<String, PartitionState>, dir: &str) -> Result<OpenShard> {
    partitions
        .get_mut(dir)
        .and_then(|s| s.open.take())
        .ok_or_else(|| Error::Internal("no open shard".into()))
}

/// Deterministic shard name: `part-<task>-<shard>.parquet` below its partition folder.
///
/// Inside a `split=<value>/` folder the name ends in the split as well
/// (`split=val/part-00000-00000-val.parquet`): Hugging Face `datasets` finds splits by
/// the words train / validation / val / test … in file names, not in Hive folders, so
/// `load_dataset(<sink>)` then sees the splits without a dataset card.
pub fn shard_name(dir: &str, task: usize, shard: usize) -> String {
    let split = dir
        .split('/')
        .filter_map(|part| part.strip_prefix("split="))
        .next_back();
    match split {
        Some(value) if !value.is_empty() => {
            format!("{dir}part-{task:05}-{shard:05}-{value}.parquet")
        }
        _ => format!("{dir}part-{task:05}-{shard:05}.parquet"),
    }
}

fn open_shard(
    cfg: &WriterConfig,
    stats: &Arc<Stats>,
    dir: &str,
    task: usize,
    shard: usize,
    first: &RecordBatch,
) -> Result<OpenShard> {
    let relative = shard_name(dir, task, shard);
    let uri = format!("{}{relative}", cfg.display);
    let path = crate::storage::join(&cfg.root, &relative);
    let (tx, rx) = mpsc::channel(2);
    let join = cfg.handle.spawn(upload(
        cfg.store.clone(),
        path,
        uri.clone(),
        rx,
        stats.clone(),
    ));
    let sink = UploadSink {
        tx: tx.clone(),
        buf: Vec::with_capacity(UPLOAD_CHUNK),
        stats: stats.clone(),
    };
    let props = dictionary_choice(&cfg.props, first);
    let writer = ArrowWriter::try_new(sink, cfg.file_schema.clone(), Some(props))
        .map_err(|e| Error::sink(&uri, e))?;
    Ok(OpenShard {
        writer,
        tx,
        join,
        relative,
        uri,
        rows: 0,
        columns: ShardColumns::new(&cfg.file_schema),
        schema: cfg.file_schema.clone(),
        handle: cfg.handle.clone(),
    })
}

/// Rows of a shard's first batch sampled to choose the encoding of each column.
const DICTIONARY_SAMPLE: usize = 4096;

/// The writer settings for a shard whose first rows are `first`: dictionary encoding
/// off for columns whose sample is mostly distinct values (ids, free text, measured
/// floats), where a dictionary only costs time (hashing every value) and bytes (a
/// dictionary as large as the data, plus the indices) -- the check parquet-mr makes
/// after its first page, made here up front. Low-cardinality columns keep it.
fn dictionary_choice(props: &WriterProperties, first: &RecordBatch) -> WriterProperties {
    let n = first.num_rows().min(DICTIONARY_SAMPLE);
    if n < 256 {
        return props.clone();
    }
    let mut builder = props.clone().into_builder();
    let mut changed = false;
    for (field, column) in first.schema().fields().iter().zip(first.columns()) {
        if mostly_distinct(&column.slice(0, n)) {
            builder = builder.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(field.name().as_str()),
                false,
            );
            changed = true;
        }
    }
    if changed {
        builder.build()
    } else {
        props.clone()
    }
}

/// True when more than half of the non-null values of `a` are distinct (top-level
/// primitive and byte columns; others keep the default).
fn mostly_distinct(a: &ArrayRef) -> bool {
    use arrow::array::AsArray;
    let valid = a.len() - a.null_count();
    if valid < 128 {
        return false;
    }
    let mut seen: std::collections::HashSet<&[u8], foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(valid, Default::default());
    let t = a.data_type();
    let data;
    match t {
        DataType::Utf8 => seen.extend(a.as_string::<i32>().iter().flatten().map(str::as_bytes)),
        DataType::LargeUtf8 => {
            seen.extend(a.as_string::<i64>().iter().flatten().map(str::as_bytes))
        }
        DataType::Binary => seen.extend(a.as_binary::<i32>().iter().flatten()),
        DataType::LargeBinary => seen.extend(a.as_binary::<i64>().iter().flatten()),
        t if t.is_primitive() => {
            let Some(width) = t.primitive_width() else {
                return false;
            };
            data = a.to_data();
            let Some(buffer) = data.buffers().first() else {
                return false;
            };
            let bytes = buffer.as_slice();
            for i in (0..a.len()).filter(|&i| a.is_valid(i)) {
                let at = (data.offset() + i) * width;
                if let Some(v) = bytes.get(at..at + width) {
                    seen.insert(v);
                }
            }
        }
        _ => return false,
    }
    seen.len() * 2 > valid
}

fn close_shard(mut open: OpenShard, stats: &Arc<Stats>) -> Result<(ShardRecord, StagedShard)> {
    let metadata = match open.writer.finish() {
        Ok(m) => m,
        Err(e) => return Err(open.error(e)),
    };
    let OpenShard {
        tx,
        join,
        relative,
        uri,
        rows,
        columns,
        schema,
        handle,
        ..
    } = open;
    let memory_bytes = columns.memory_bytes;
    let columns = columns.finish(&schema, &metadata);
    let start = Instant::now();
    let sent = tx.blocking_send(UploadMsg::Finish);
    drop(tx);
    let uploaded = handle
        .block_on(join)
        .map_err(|e| Error::Internal(format!("the upload of {uri} panicked: {e}")))?;
    let (upload, bytes, crc) = uploaded?;
    let staged = StagedShard {
        upload: Some(upload),
        uri: uri.clone(),
        handle: handle.clone(),
    };
    if sent.is_err() {
        return Err(Error::sink(&uri, "the upload stopped"));
    }
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
    };
    Ok((record, staged))
}
