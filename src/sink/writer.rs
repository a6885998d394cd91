//! The shard writer of one task: rows cut into row groups, each encoded on any thread of
//! the pool (`super::rowgroups`), bytes handed over a bounded channel to an upload task
//! on the I/O runtime that streams them into the store as the parts of a multipart
//! upload (`super::upload`). The upload is completed only when the task commits ([`Staged::publish`], right before the commit record), so a shard
//! becomes visible to readers with its task and never before; a failed or abandoned
//! upload is aborted and leaves nothing.
//!
//! One role, though over 600 lines: what a task's rows become in the sink. The other
//! formats and the shuffle's scatter are their own modules (`megatron`, `mds`,
//! `webdataset`, `shuffle`); this file holds the settings they share (`WriterConfig`),
//! the partition split and shard names every format uses, and the Parquet row-group cut.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::ShardRecord;
use super::rowgroups::{Cut, Encoding, Lane};
pub use super::upload::Staged;
use crate::error::{Error, Result};
use crate::pool::Budget;
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
    /// The files hold fewer columns than the batches (partition columns; a Megatron
    /// sink's token column alone).
    pub project: bool,
    /// `format: megatron`: how the token ids are stored.
    pub megatron: Option<super::megatron::Dtype>,
    /// `format: mds`: each column's encoding.
    pub mds: Option<Arc<super::mds::Columns>>,
    /// `format: webdataset`: each column's member type and the key column.
    pub webdataset: Option<Arc<super::webdataset::Columns>>,
    /// `sink.shuffle`, in the main pass: a task scatters its rows into buckets instead
    /// of writing shards (`super::shuffle`).
    pub scatter: Option<Arc<super::shuffle::Scatter>>,
    /// `sink.shuffle.window`: each task's rows permuted within windows of this many rows
    /// (seed, rows).
    pub window: Option<(u64, u64)>,
    /// Schema of the batches handed to [`TaskWriter::write`].
    pub output_schema: SchemaRef,
    pub props: WriterProperties,
    pub max_rows: u64,
    pub max_bytes: u64,
    /// A row group closes at this many rows...
    pub row_group_rows: u64,
    /// ...or this many bytes of Arrow data.
    pub row_group_bytes: u64,
    /// Row groups cut and not yet appended, over the whole run.
    pub budget: Arc<Budget>,
    pub handle: tokio::runtime::Handle,
}

impl WriterConfig {
    /// The same settings writing shards (the gather of `sink.shuffle`), not scattering.
    pub fn writing(&self) -> WriterConfig {
        WriterConfig {
            scatter: None,
            window: None,
            ..self.clone()
        }
    }
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
    /// `run.memory_limit`.
    pub memory_limit: u64,
    /// The run's CPU threads.
    pub threads: usize,
    /// The largest vocabulary of the pipeline's `tokenize` steps, if any.
    pub vocabulary: Option<u64>,
    /// Stored bytes of the input (the number of `sink.shuffle` buckets).
    pub input_bytes: u64,
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
        let file_cols: Vec<usize> = shards
            .file_schema
            .fields()
            .iter()
            .map(|f| shards.output_schema.index_of(f.name()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let project = file_cols.len() != shards.output_schema.fields().len();
        let megatron = (spec.format == crate::spec::SinkFormat::Megatron).then(|| {
            super::megatron::Dtype::choose(
                spec.megatron.as_ref().map(|m| m.dtype).unwrap_or_default(),
                shards.vocabulary,
            )
        });
        let mds = match spec.format {
            crate::spec::SinkFormat::Mds => Some(Arc::new(
                super::mds::Columns::new(shards.file_schema, spec.max_bytes.get())
                    .map_err(|e| Error::Plan(format!("sink.format: mds: {e}")))?,
            )),
            _ => None,
        };
        let webdataset = match spec.format {
            crate::spec::SinkFormat::Webdataset => Some(Arc::new(
                super::webdataset::Columns::new(
                    shards.file_schema,
                    spec.webdataset.as_ref().and_then(|w| w.key.as_deref()),
                )
                .map_err(|e| Error::Plan(format!("sink.format: webdataset: {e}")))?,
            )),
            _ => None,
        };
        let rg_bytes = row_group_bytes(spec);
        Ok(WriterConfig {
            store: sink.store.clone(),
            root: sink.prefix.clone(),
            display: sink.display.clone(),
            file_schema: shards.file_schema.clone(),
            partition_cols,
            file_cols,
            project,
            megatron,
            mds,
            webdataset,
            window: spec
                .shuffle
                .as_ref()
                .and_then(|s| Some((s.seed, s.window?.max(1)))),
            scatter: spec.shuffle.as_ref().filter(|s| s.global()).map(|s| {
                Arc::new(super::shuffle::Scatter {
                    seed: s.seed,
                    buckets: super::shuffle::bucket_count(shards.input_bytes, s.bucket_bytes.get()),
                })
            }),
            output_schema: shards.output_schema.clone(),
            props: writer_properties(spec, &shards)?,
            max_rows: spec.max_rows.max(1),
            max_bytes: spec.max_bytes.get(),
            row_group_rows: (spec.row_group_rows as u64).max(1),
            row_group_bytes: rg_bytes,
            budget: Arc::new(Budget::new(row_groups_in_flight(rg_bytes, &shards))),
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
    // Pages small next to max_bytes, so that small shards still have several.
    let page = (spec.max_bytes.get() / 64).clamp(64 << 10, 1 << 20) as usize;
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_data_page_size_limit(page)
        .set_dictionary_page_size_limit(page)
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

/// Arrow bytes of rows that close a row group: `sink.row_group_bytes`, but never more
/// than an eighth of `max_bytes`: shards are closed between row groups, so a shard then
/// ends within an eighth (of its Arrow size; less once compressed) of `max_bytes`. Only
/// the sink's settings decide it, never `run.threads` or `run.memory_limit`: the row
/// groups, and so the shards, are the same bytes whatever the machine.
fn row_group_bytes(spec: &crate::spec::Sink) -> u64 {
    spec.row_group_bytes
        .get()
        .min(spec.max_bytes.get() / 8)
        .max(1)
}

/// Row groups a run may have cut and not yet appended: two per thread and one more, but
/// no more than fit in half of `run.memory_limit` at two row groups' worth each (its
/// rows, then its encoded pages), and at least one.
///
/// Two per thread, not one: a task's thread that finds no slot runs an encode job of its
/// own queue while it waits (`pool::wait`), a whole row group, and reads and parses
/// nothing meanwhile. With one slot per thread the other threads then ran out of work
/// for about a tenth of the run (one 1 GB `.jsonl` object, 2 threads: 1.4 s of 8 s,
/// traced); with a second row group queued per thread they find one. Measured on that
/// object, two paired sets of 5 runs: 0.88x and 0.94x the wall time, 0.94x and 0.99x
/// the CPU, about 60 MB more peak memory.
fn row_groups_in_flight(row_group_bytes: u64, shards: &Shards<'_>) -> usize {
    let fit = shards.memory_limit / 4 / row_group_bytes.max(1);
    (fit as usize).clamp(1, 2 * shards.threads + 1)
}

/// Writes the shards of one task: cuts the rows into row groups (at
/// `sink.row_group_rows` rows, at `sink.row_group_bytes` of Arrow data, and where a shard
/// reaches `max_rows`), which are encoded on any thread of the pool and appended in
/// order (`super::rowgroups`).
pub struct TaskWriter {
    cfg: Arc<WriterConfig>,
    partitions: HashMap<String, Making>,
    /// Partition directories in first-seen order, so closing is deterministic.
    order: Vec<String>,
    lane: Arc<Lane>,
    /// `format: megatron`: the token column goes here instead of into row groups.
    megatron: Option<super::megatron::Writer>,
    /// `format: mds`: the rows go here instead of into row groups.
    mds: Option<super::mds::Writer>,
    /// `format: webdataset`: the rows go here instead of into row groups.
    webdataset: Option<super::webdataset::Writer>,
    /// `sink.shuffle` in the main pass: the rows are scattered, no shard is written.
    scatter: Option<super::shuffle::Writer>,
    /// `sink.shuffle.window`: the rows of the window being filled.
    window: Option<super::shuffle::Window>,
    finished: bool,
}

/// The row group being cut in one partition.
#[derive(Default)]
struct Making {
    batches: Vec<RecordBatch>,
    rows: u64,
    /// Arrow bytes of its rows.
    bytes: u64,
    /// Rows since the last row group that reached `max_rows`.
    since_cut: u64,
    next_seq: u64,
    /// Writer settings chosen from the partition's first rows in this task.
    encoding: Option<Arc<Encoding>>,
}

impl TaskWriter {
    pub fn new(cfg: Arc<WriterConfig>, task: usize, stats: Arc<Stats>) -> Self {
        TaskWriter {
            megatron: cfg
                .megatron
                .map(|dtype| super::megatron::Writer::new(cfg.clone(), dtype, task, stats.clone())),
            mds: cfg
                .mds
                .clone()
                .map(|cols| super::mds::Writer::new(cfg.clone(), cols, task, stats.clone())),
            webdataset: cfg
                .webdataset
                .clone()
                .map(|cols| super::webdataset::Writer::new(cfg.clone(), cols, task, stats.clone())),
            scatter: cfg.scatter.clone().map(|s| {
                super::shuffle::Writer::new(cfg.clone(), s, &cfg.output_schema, task, stats.clone())
            }),
            window: cfg
                .window
                .map(|(seed, rows)| super::shuffle::Window::new(seed, rows)),
            lane: Lane::new(cfg.clone(), stats, task),
            cfg,
            partitions: HashMap::new(),
            order: Vec::new(),
            finished: false,
        }
    }

    /// Writes a batch (with partition columns, if any).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(s) = self.scatter.as_mut() {
            return s.write(batch);
        }
        if let Some(w) = self.window.as_mut() {
            if let Some(full) = w.push(batch)? {
                return self.write_rows(&full);
            }
            return Ok(());
        }
        self.write_rows(batch)
    }

    /// Writes rows in the order given.
    fn write_rows(&mut self, batch: &RecordBatch) -> Result<()> {
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
        let batch = if !self.cfg.project {
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
        if let Some(m) = self.megatron.as_mut() {
            self.partitions.entry(dir.clone()).or_default();
            return m.write(&dir, &batch);
        }
        if let Some(m) = self.mds.as_mut() {
            self.partitions.entry(dir.clone()).or_default();
            return m.write(&dir, &batch);
        }
        if let Some(w) = self.webdataset.as_mut() {
            self.partitions.entry(dir.clone()).or_default();
            return w.write(&dir, &batch);
        }
        let cfg = self.cfg.clone();
        let m = self.partitions.entry(dir.clone()).or_default();
        let n = batch.num_rows() as u64;
        // Each row's Arrow size, additive over rows: where a row group ends depends on
        // the rows alone, not on how they were batched or who encodes them.
        let sizes = super::measure::row_bytes(&batch);
        let mut offset = 0u64;
        while offset < n {
            let room_rows = (cfg.row_group_rows - m.rows).min(cfg.max_rows - m.since_cut);
            let mut take = 0u64;
            let mut bytes = 0u64;
            while take < room_rows.min(n - offset) && m.bytes + bytes < cfg.row_group_bytes {
                bytes += sizes[(offset + take) as usize];
                take += 1;
            }
            m.batches.push(batch.slice(offset as usize, take as usize));
            m.rows += take;
            m.bytes += bytes;
            m.since_cut += take;
            offset += take;
            if m.rows >= cfg.row_group_rows
                || m.since_cut >= cfg.max_rows
                || m.bytes >= cfg.row_group_bytes
            {
                let cut = cut(&cfg, &dir, m)?;
                self.lane.dispatch(cut)?;
            }
        }
        Ok(())
    }

    /// Cuts what is left, waits for every row group to be appended, closes the open
    /// shards and returns the records of all shards written, with the shards
    /// themselves staged: they become objects when the task commits
    /// ([`Staged::publish`]).
    pub fn finish(mut self) -> Result<(Vec<ShardRecord>, Staged)> {
        self.finished = true;
        if let Some(s) = self.scatter.take() {
            let (shards, staged) = s.finish()?;
            return Ok((shards, Staged(staged)));
        }
        if let Some(last) = self
            .window
            .take()
            .map(super::shuffle::Window::finish)
            .transpose()?
        {
            self.write_rows(&last)?;
        }
        let other = match (
            self.megatron.take(),
            self.mds.take(),
            self.webdataset.take(),
        ) {
            (Some(m), _, _) => Some(m.finish(&self.order)?),
            (None, Some(m), _) => Some(m.finish(&self.order)?),
            (None, None, Some(w)) => Some(w.finish(&self.order)?),
            (None, None, None) => None,
        };
        if let Some((mut shards, staged)) = other {
            shards.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok((shards, Staged(staged)));
        }
        for dir in &self.order {
            if let Some(m) = self.partitions.get_mut(dir)
                && m.rows > 0
            {
                let cut = cut(&self.cfg, dir, m)?;
                self.lane.dispatch(cut)?;
            }
        }
        let (mut shards, staged) = self.lane.finish(&self.order)?;
        shards.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((shards, Staged(staged)))
    }
}

impl Drop for TaskWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.lane.abandon();
        }
    }
}

/// The row group `m` has cut so far, handed on; `m` starts the next.
fn cut(cfg: &WriterConfig, dir: &str, m: &mut Making) -> Result<Cut> {
    let ends_shard = m.since_cut >= cfg.max_rows;
    if ends_shard {
        m.since_cut = 0;
    }
    let encoding = match &m.encoding {
        Some(e) => e.clone(),
        None => {
            // The partition's first row group in this task: its first rows choose how
            // every row group of the partition is encoded.
            let sample = first_rows(&cfg.file_schema, &m.batches, DICTIONARY_SAMPLE)?;
            let props = dictionary_choice(&cfg.props, &sample);
            m.encoding
                .insert(Arc::new(Encoding::new(props, &cfg.file_schema)?))
                .clone()
        }
    };
    let seq = m.next_seq;
    m.next_seq += 1;
    m.rows = 0;
    m.bytes = 0;
    Ok(Cut {
        dir: dir.to_string(),
        seq,
        batches: std::mem::take(&mut m.batches),
        ends_shard,
        encoding,
    })
}

/// The first `n` rows of `batches` (fewer if they hold fewer), as one batch.
fn first_rows(schema: &SchemaRef, batches: &[RecordBatch], n: usize) -> Result<RecordBatch> {
    let mut left = n;
    let mut parts = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        parts.push(b.slice(0, take));
        left -= take;
    }
    arrow::compute::concat_batches(schema, &parts).map_err(|e| Error::Internal(e.to_string()))
}

/// Deterministic shard name: `part-<task>-<shard>.parquet` below its partition folder.
///
/// Inside a `split=<value>/` folder the name ends in the split as well
/// (`split=val/part-00000-00000-val.parquet`): Hugging Face `datasets` finds splits by
/// the words train / validation / val / test … in file names, not in Hive folders, so
/// `load_dataset(<sink>)` then sees the splits without a dataset card.
pub fn shard_name(dir: &str, task: usize, shard: usize) -> String {
    shard_stem(dir, task, shard) + ".parquet"
}

/// [`shard_name`] without its extension (a Megatron shard's `.bin` and `.idx` share it).
pub fn shard_stem(dir: &str, task: usize, shard: usize) -> String {
    let split = dir
        .split('/')
        .filter_map(|part| part.strip_prefix("split="))
        .next_back();
    match split {
        Some(value) if !value.is_empty() => format!("{dir}part-{task:05}-{shard:05}-{value}"),
        _ => format!("{dir}part-{task:05}-{shard:05}"),
    }
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
