//! `sink.shuffle`: a permutation of the rows across the whole dataset, the same for a
//! seed whatever the task size, thread count or timing.
//!
//! Every row gets a 128-bit key, XXH3 of its content (arrow's row format of all its
//! columns) with the seed; the order of the dataset is the order of the keys. Two passes,
//! as a bucketed shuffle does:
//!
//! 1. **Scatter** (each task, in place of writing shards): the task's rows go into `B`
//!    buckets by the top of their key (bucket `b` holds the keys of the `b`-th `1/B` of
//!    the key space), each bucket an Arrow IPC stream with the key as two more columns;
//!    the streams, back to back, are one object `_kiln/shuffle/parts/TTTTT.arrows`,
//!    staged and published when the task commits like a shard, with where each bucket
//!    ends in the task's commit record.
//! 2. **Gather** (once every task is committed, `runtime/shuffle.rs`): bucket `b` reads
//!    its segment of every part by a ranged read, sorts its rows by key and writes them
//!    as the shards `part-BBBBB-SSSSS` through the sink's writer (any format, partition
//!    folders as usual), then commits a bucket record. Shards in name order are the
//!    dataset in key order.
//!
//! `B` comes from the input's size (`bucket_bytes` of input per bucket), not from the
//! tasks, so the order, the shards and their bytes depend on the rows and the seed
//! alone. Identical rows have one key: the copies of a row, found next to each other
//! after the sort, are given keys of their own (the key and the copy's number, hashed
//! again) and the bucket is sorted once more, so copies are spread over their bucket
//! rather than left side by side. A bucket is sorted in memory: `bucket_bytes` bounds it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::row::{RowConverter, SortField};
use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::ShardRecord;
use super::upload::StagedShard;
use super::writer::WriterConfig;
use crate::error::{Error, Result};
use crate::layout;
use crate::report::Stats;

/// The key's columns, appended to the scattered rows.
pub const KEY_HI: &str = "__kiln_shuffle_key_hi";
pub const KEY_LO: &str = "__kiln_shuffle_key_lo";

/// What every task's scatter needs.
#[derive(Debug)]
pub struct Scatter {
    pub seed: u64,
    pub buckets: usize,
}

/// Buckets for `input_bytes` of input, `bucket_bytes` each (at least one).
pub fn bucket_count(input_bytes: u64, bucket_bytes: u64) -> usize {
    input_bytes.div_ceil(bucket_bytes.max(1)).max(1) as usize
}

/// Each row's key: XXH3-128 of its content with the seed, as (high, low) halves.
pub fn keys(batch: &RecordBatch, seed: u64) -> Result<(Vec<u64>, Vec<u64>)> {
    let fields = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| Error::Internal(e.to_string()))?;
    let rows = converter
        .convert_columns(batch.columns())
        .map_err(|e| Error::Internal(format!("the shuffle key of a row: {e}")))?;
    let (mut hi, mut lo) = (Vec::with_capacity(rows.num_rows()), Vec::new());
    for row in rows.iter() {
        let k = xxh3_128_with_seed(row.as_ref(), seed);
        hi.push((k >> 64) as u64);
        lo.push(k as u64);
    }
    Ok((hi, lo))
}

/// The bucket of a key whose high half is `hi`: buckets are equal ranges of the key
/// space, in key order.
pub fn bucket_of(hi: u64, buckets: usize) -> usize {
    ((u128::from(hi) * buckets as u128) >> 64) as usize
}

/// The schema of scattered rows: the output's, then the key.
pub fn scattered_schema(output: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = output.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(KEY_HI, DataType::UInt64, false));
    fields.push(Field::new(KEY_LO, DataType::UInt64, false));
    Arc::new(Schema::new_with_metadata(fields, output.metadata().clone()))
}

/// One task's scatter: an IPC stream per bucket, in memory until the task ends.
pub(super) struct Writer {
    cfg: Arc<WriterConfig>,
    scatter: Arc<Scatter>,
    schema: SchemaRef,
    task: usize,
    stats: Arc<Stats>,
    streams: Vec<Option<StreamWriter<Rope>>>,
    rows: u64,
    memory_bytes: u64,
}

impl Writer {
    pub fn new(
        cfg: Arc<WriterConfig>,
        scatter: Arc<Scatter>,
        output: &SchemaRef,
        task: usize,
        stats: Arc<Stats>,
    ) -> Self {
        let streams = (0..scatter.buckets).map(|_| None).collect();
        Writer {
            cfg,
            schema: scattered_schema(output),
            scatter,
            task,
            stats,
            streams,
            rows: 0,
            memory_bytes: 0,
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::sink(
            format!("{}{}", self.cfg.display, layout::shuffle_part(self.task)),
            e.to_string(),
        )
    }

    /// Scatters the rows of `batch` (the output, partition columns included).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (hi, lo) = keys(batch, self.scatter.seed)?;
        let mut by_bucket: Vec<Vec<u32>> = vec![Vec::new(); self.scatter.buckets];
        for (row, h) in hi.iter().enumerate() {
            by_bucket[bucket_of(*h, self.scatter.buckets)].push(row as u32);
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(hi)));
        columns.push(Arc::new(UInt64Array::from(lo)));
        let keyed =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.error(e))?;
        for (b, rows) in by_bucket.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part =
                take_record_batch(&keyed, &UInt32Array::from(rows)).map_err(|e| self.error(e))?;
            if self.streams[b].is_none() {
                let w = StreamWriter::try_new(Rope::default(), &self.schema)
                    .map_err(|e| self.error(e))?;
                self.streams[b] = Some(w);
            }
            if let Some(w) = self.streams[b].as_mut() {
                w.write(&part).map_err(|e| self.error(e))?;
            }
        }
        self.rows += batch.num_rows() as u64;
        self.memory_bytes += batch.get_array_memory_size() as u64;
        Ok(())
    }

    /// The part: every bucket's stream, back to back, stored as one object that the
    /// task's commit publishes; its record says where each bucket ends. The streams' chunks
    /// go to the store as they are, never copied into one buffer.
    pub fn finish(self) -> Result<(Vec<ShardRecord>, Vec<StagedShard>)> {
        let mut chunks = Vec::new();
        let mut ends = Vec::with_capacity(self.streams.len());
        let (mut bytes, mut crc) = (0u64, 0u32);
        for w in self.streams {
            if let Some(w) = w {
                let rope = w.into_inner().map_err(|e| {
                    Error::sink(&self.cfg.display, format!("a shuffle bucket: {e}"))
                })?;
                for chunk in rope.chunks {
                    bytes += chunk.len() as u64;
                    crc = crc32c::crc32c_append(crc, &chunk);
                    chunks.push(bytes::Bytes::from(chunk));
                }
            }
            ends.push(bytes);
        }
        let relative = layout::shuffle_part(self.task);
        let staged = super::upload::stage_chunks(&self.cfg, &relative, chunks)?;
        self.stats
            .bytes_out
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let record = ShardRecord {
            path: relative,
            rows: self.rows,
            bytes,
            crc32c: format!("{crc:08x}"),
            memory_bytes: self.memory_bytes,
            columns: Default::default(),
            index: None,
            mds: None,
            buckets: ends,
        };
        Ok((vec![record], vec![staged]))
    }
}

/// A bucket's IPC stream as it is written: chunks that are never grown in place. A
/// stream in one `Vec` doubled as it grew (hundreds of MB for a bucket of a large task),
/// each time into fresh pages the kernel faults in and zeroes, copying what it held —
/// with the copy of every stream into one part buffer, a third of the shuffle's extra
/// CPU. A chunk's size doubles from 64 KiB to 4 MiB, so a task's many small buckets
/// hold little and a large one is a few hundred chunks.
#[derive(Default)]
pub(super) struct Rope {
    chunks: Vec<Vec<u8>>,
}

impl Rope {
    const FIRST: usize = 64 << 10;
    const LARGEST: usize = 4 << 20;
}

impl std::io::Write for Rope {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.chunks.last().map_or(0, |c| c.capacity() - c.len());
            if room == 0 {
                let next = self
                    .chunks
                    .last()
                    .map_or(Self::FIRST, |c| (c.capacity() * 2).min(Self::LARGEST));
                self.chunks.push(Vec::with_capacity(next));
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            if let Some(chunk) = self.chunks.last_mut() {
                chunk.extend_from_slice(now);
            }
            rest = later;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `sink.shuffle.window`: a task's rows gathered `rows` at a time and each window put in
/// key order (copies of a row spread, as in a bucket).
pub struct Window {
    seed: u64,
    rows: u64,
    batches: Vec<RecordBatch>,
    held: u64,
}

impl Window {
    pub fn new(seed: u64, rows: u64) -> Self {
        Window {
            seed,
            rows,
            batches: Vec::new(),
            held: 0,
        }
    }

    /// Takes `batch`; a full window comes back permuted (the rows past it stay for the
    /// next).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let room = (self.rows - self.held) as usize;
        let n = batch.num_rows();
        self.batches.push(batch.slice(0, room.min(n)));
        self.held += room.min(n) as u64;
        if self.held < self.rows {
            return Ok(None);
        }
        let full = self.take()?;
        if n > room {
            // A batch larger than the rest of the window: whole windows of it go out too.
            let rest = batch.slice(room, n - room);
            let mut out = vec![full];
            let mut at = 0;
            while rest.num_rows() - at >= self.rows as usize {
                self.batches.push(rest.slice(at, self.rows as usize));
                out.push(self.take()?);
                at += self.rows as usize;
            }
            if at < rest.num_rows() {
                self.batches.push(rest.slice(at, rest.num_rows() - at));
                self.held = (rest.num_rows() - at) as u64;
            }
            let schema = out[0].schema();
            return arrow::compute::concat_batches(&schema, &out)
                .map(Some)
                .map_err(|e| Error::Internal(e.to_string()));
        }
        Ok(Some(full))
    }

    /// The window held so far, permuted.
    fn take(&mut self) -> Result<RecordBatch> {
        let batches = std::mem::take(&mut self.batches);
        self.held = 0;
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Error::Internal("an empty shuffle window".into()))?;
        let rows = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (hi, lo) = keys(&rows, self.seed)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(hi)));
        columns.push(Arc::new(UInt64Array::from(lo)));
        let keyed = RecordBatch::try_new(scattered_schema(&schema), columns)
            .map_err(|e| Error::Internal(e.to_string()))?;
        order_bucket(&keyed, self.seed)
    }

    /// The last, partial window of the task, permuted.
    pub fn finish(mut self) -> Result<RecordBatch> {
        if self.batches.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
        }
        self.take()
    }
}

/// The rows of one bucket in the dataset's order: sorted by key; the copies of a row
/// (one key) given keys of their own, spread over the bucket. Without the key columns.
pub fn order_bucket(batch: &RecordBatch, seed: u64) -> Result<RecordBatch> {
    let n = batch.num_columns();
    if n < 2 || batch.num_rows() == 0 {
        return batch
            .project(&(0..n.saturating_sub(2)).collect::<Vec<_>>())
            .map_err(|e| Error::Internal(e.to_string()));
    }
    let order = order_rows(std::slice::from_ref(batch), seed)?;
    rows_in_order(std::slice::from_ref(batch), &order)
}

/// Where each row of `batches` (scattered rows, the key their last two columns) goes:
/// (batch, row) pairs in the dataset's order, as [`order_bucket`] orders one batch.
pub fn order_rows(batches: &[RecordBatch], seed: u64) -> Result<Vec<(usize, usize)>> {
    let mut keyed: Vec<(u64, u64, usize, usize)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let n = batch.num_columns();
        let column = |i: usize| -> Result<&[u64]> {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.values().as_ref())
                .ok_or_else(|| Error::Internal("a shuffle bucket without its key".into()))
        };
        let (hi, lo) = (column(n.wrapping_sub(2))?, column(n.wrapping_sub(1))?);
        keyed.extend((0..batch.num_rows()).map(|r| (hi[r], lo[r], b, r)));
    }
    // Equal keys are equal rows: which of them comes first changes no byte.
    keyed.sort_unstable_by_key(|k| (k.0, k.1));
    // Copies: runs of one key in the sorted order; copy j > 0 gets a key of its own.
    let mut again = false;
    let mut prev: Option<(u64, u64)> = None;
    let mut copy = 0u64;
    for k in &mut keyed {
        let key = (k.0, k.1);
        if prev == Some(key) {
            copy += 1;
            let mut bytes = [0u8; 24];
            bytes[..8].copy_from_slice(&key.0.to_le_bytes());
            bytes[8..16].copy_from_slice(&key.1.to_le_bytes());
            bytes[16..].copy_from_slice(&copy.to_le_bytes());
            // A key anywhere in the key space: the sort below is of this bucket only.
            let new = xxh3_128_with_seed(&bytes, seed);
            k.0 = (new >> 64) as u64;
            k.1 = new as u64;
            again = true;
        } else {
            copy = 0;
        }
        prev = Some(key);
    }
    if again {
        keyed.sort_unstable_by_key(|k| (k.0, k.1));
    }
    Ok(keyed.into_iter().map(|k| (k.2, k.3)).collect())
}

/// The rows `order` names, taken from `batches`, without the key columns.
pub fn rows_in_order(batches: &[RecordBatch], order: &[(usize, usize)]) -> Result<RecordBatch> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let rows = arrow::compute::interleave_record_batch(&refs, order)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let n = rows.num_columns();
    rows.project(&(0..n.saturating_sub(2)).collect::<Vec<_>>())
        .map_err(|e| Error::Internal(e.to_string()))
}

/// A written bucket's record: its shards.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BucketRecord {
    pub bucket: usize,
    pub shards: Vec<ShardRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch(ids: &[i64], texts: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            (
                "text",
                Arc::new(StringArray::from(texts.to_vec())) as ArrayRef,
            ),
        ])
        .expect("batch")
    }

    #[test]
    fn a_rope_keeps_every_byte_in_order_in_chunks_it_never_grows() {
        use std::io::Write;
        let mut rope = Rope::default();
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(777_777) {
            rope.write_all(piece).expect("write");
        }
        // Each chunk filled to the capacity it was made with (so never reallocated), the
        // capacities doubling from the first to the largest.
        let (last, full) = rope.chunks.split_last().expect("chunks");
        assert!(full.iter().all(|c| c.len() == c.capacity()));
        assert!(last.len() <= last.capacity());
        let caps: Vec<usize> = rope.chunks.iter().map(Vec::capacity).collect();
        assert_eq!(caps[0], Rope::FIRST);
        assert!(
            caps.windows(2)
                .all(|w| w[1] == (w[0] * 2).min(Rope::LARGEST)),
            "{caps:?}"
        );
        assert_eq!(rope.chunks.concat(), data);
    }

    #[test]
    fn keys_depend_on_the_row_and_the_seed_alone() {
        let a = batch(&[1, 2, 3], &["a", "b", "c"]);
        let b = batch(&[3, 1], &["c", "a"]);
        let (ha, la) = keys(&a, 7).expect("keys");
        let (hb, lb) = keys(&b, 7).expect("keys");
        assert_eq!((ha[0], la[0]), (hb[1], lb[1]), "the same row, the same key");
        assert_eq!((ha[2], la[2]), (hb[0], lb[0]));
        assert_ne!(keys(&a, 8).expect("keys").0, ha, "another seed, other keys");
    }

    #[test]
    fn buckets_are_ranges_of_the_key_space_in_order() {
        assert_eq!(bucket_of(0, 4), 0);
        assert_eq!(bucket_of(u64::MAX, 4), 3);
        assert_eq!(bucket_of(1 << 62, 4), 1);
        assert_eq!(bucket_of(u64::MAX, 1), 0);
        assert_eq!(bucket_count(0, 10), 1);
        assert_eq!(bucket_count(25, 10), 3);
    }

    #[test]
    fn a_bucket_sorts_by_key_and_spreads_the_copies_of_a_row() {
        // Twenty copies of one row among forty others.
        let ids: Vec<i64> = (0..60)
            .map(|i| if i % 3 == 0 { 5 } else { 100 + i })
            .collect();
        let texts: Vec<&str> = ids
            .iter()
            .map(|&i| if i == 5 { "x" } else { "y" })
            .collect();
        let rows = batch(&ids, &texts);
        let (hi, lo) = keys(&rows, 3).expect("keys");
        let mut cols = rows.columns().to_vec();
        cols.push(Arc::new(UInt64Array::from(hi)));
        cols.push(Arc::new(UInt64Array::from(lo)));
        let keyed = RecordBatch::try_new(scattered_schema(&rows.schema()), cols).expect("keyed");
        let out = order_bucket(&keyed, 3).expect("ordered");
        assert_eq!(out.num_columns(), 2, "without the key");
        assert_eq!(out.num_rows(), 60);
        let ids: Vec<i64> = out
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids")
            .values()
            .to_vec();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let mut want: Vec<i64> = (0..60)
            .map(|i| if i % 3 == 0 { 5 } else { 100 + i })
            .collect();
        want.sort_unstable();
        assert_eq!(sorted, want, "every row once");
        // Deterministic: the same input gives the same order.
        let again = order_bucket(&keyed, 3).expect("ordered");
        assert_eq!(out, again);
        // The copies are not side by side: no run of even eight of them.
        let run = ids.windows(8).any(|w| w.iter().all(|&v| v == 5));
        assert!(!run, "copies spread: {ids:?}");
    }
}
