//! The gather of `sink.shuffle` (the scatter and the order are `sink/shuffle.rs`): once
//! every task of the plan is committed, each bucket reads its segment of every task's
//! part by a ranged read, orders its rows by key and writes them as shards through the
//! sink's writer; a bucket record commits them, so a rerun skips the buckets written.
//! Buckets run one after another, each encoding its row groups on every thread; a
//! bucket's rows are in memory while it is ordered (`sink.shuffle.bucket_bytes` of input
//! bounds them).
//!
//! On several workers the gather is done by the workers that find every task committed
//! (a worker done while others still run its share ends as usual): each bucket is
//! claimed (`_kiln/claims/shuffle/bucket-BBBBB.json`) before it is written, so two
//! workers finishing together split the buckets; a worker then waits for the buckets
//! another live run holds, and writes those whose holder is gone. A bucket's bytes
//! depend only on the parts and the seed, so which worker writes it changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;

use std::time::{Duration, Instant};

use super::claims::Claims;
use crate::error::{Error, Result};
use crate::layout;
use crate::plan::Plan;
use crate::report::Stats;
use crate::sink::shuffle::{BucketRecord, bucket_count, order_rows, rows_in_order};
use crate::sink::writer::{Staged, TaskWriter, WriterConfig};
use crate::sink::{self, ShardRecord, TaskRecord};

/// Where the claim of bucket `b` of the gather is.
fn bucket_claim(b: usize) -> String {
    format!("{}/shuffle/bucket-{b:05}.json", layout::CLAIMS_DIR)
}

/// How workers share the gather: this run's claims, and how long it waits for the
/// buckets other live runs hold.
pub(super) struct Sharing<'a> {
    pub claims: &'a Claims,
    pub wait: Duration,
}

/// Writes every bucket not yet written (on several workers, those it claims) and
/// returns the shards of all, in bucket order.
pub(super) async fn gather(
    plan: &Arc<Plan>,
    stats: &Arc<Stats>,
    records: &BTreeMap<usize, TaskRecord>,
    sharing: Option<Sharing<'_>>,
) -> Result<Vec<ShardRecord>> {
    let Some(spec) = plan.pipeline.sink.shuffle.as_ref() else {
        return Err(Error::Internal("a gather without sink.shuffle".into()));
    };
    let buckets = bucket_count(plan.input_bytes(), spec.bucket_bytes.get());
    let cfg = Arc::new(
        plan.writer_config(tokio::runtime::Handle::current())?
            .writing(),
    );
    // Each task's part and where its buckets end, in task order.
    let parts: Vec<(&str, &[u64])> = records
        .values()
        .flat_map(|r| r.shards.iter())
        .filter(|s| s.path.starts_with(layout::SHUFFLE_DIR))
        .map(|s| (s.path.as_str(), s.buckets.as_slice()))
        .collect();
    for (path, ends) in &parts {
        if ends.len() != buckets {
            return Err(Error::sink(
                plan.sink.display_child(path),
                format!(
                    "scattered into {} buckets, but this run makes {buckets}: the part is \
                     another run's; run with --overwrite",
                    ends.len()
                ),
            ));
        }
    }
    tracing::info!(
        buckets,
        parts = parts.len(),
        "shuffle: every task committed, gathering"
    );
    let mut shards: BTreeMap<usize, Vec<ShardRecord>> = BTreeMap::new();
    let mut held_elsewhere = Vec::new();
    let mut written = 0usize;
    for b in 0..buckets {
        if let Some(done) = bucket_record(plan, b).await? {
            shards.insert(b, done.shards);
            continue;
        }
        if let Some(s) = &sharing
            && !s
                .claims
                .acquire_item(&plan.sink, &bucket_claim(b), None)
                .await?
        {
            held_elsewhere.push(b);
            continue;
        }
        shards.insert(b, write(plan, stats, &cfg, &parts, b, spec.seed).await?);
        written += 1;
    }
    // The buckets other workers write: wait for their records; write those whose
    // holder is gone.
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    while let Some(s) = sharing.as_ref().filter(|_| !held_elsewhere.is_empty()) {
        let mut left = Vec::new();
        for b in held_elsewhere {
            if let Some(done) = bucket_record(plan, b).await? {
                shards.insert(b, done.shards);
            } else if s
                .claims
                .acquire_item(&plan.sink, &bucket_claim(b), None)
                .await?
            {
                tracing::info!("shuffle: writing bucket {b}, whose claim a gone run held");
                shards.insert(b, write(plan, stats, &cfg, &parts, b, spec.seed).await?);
                written += 1;
            } else {
                left.push(b);
            }
        }
        held_elsewhere = left;
        if held_elsewhere.is_empty() {
            break;
        }
        if started.elapsed() > s.wait {
            return Err(Error::Busy(format!(
                "shuffle buckets {held_elsewhere:?} are still being written by another worker \
                 after {:?} (--stage-wait); run again to finish them",
                s.wait
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    tracing::info!(buckets, written, "shuffle: buckets gathered into shards");
    Ok(shards.into_values().flatten().collect())
}

async fn bucket_record(plan: &Plan, b: usize) -> Result<Option<BucketRecord>> {
    sink::get_json::<BucketRecord>(&plan.sink, &layout::shuffle_bucket(b)).await
}

/// Writes bucket `b` from its segment of every part and commits its record.
async fn write(
    plan: &Plan,
    stats: &Arc<Stats>,
    cfg: &Arc<WriterConfig>,
    parts: &[(&str, &[u64])],
    b: usize,
    seed: u64,
) -> Result<Vec<ShardRecord>> {
    let started = Instant::now();
    let mut segments = Vec::new();
    for (path, ends) in parts {
        let start = if b == 0 { 0 } else { ends[b - 1] };
        if ends[b] > start {
            segments.push(sink::stages::get_range(&plan.sink, path, start..ends[b]).await?);
        }
    }
    let read: usize = segments.iter().map(bytes::Bytes::len).sum();
    tracing::debug!(bucket = b, bytes = read, elapsed = ?started.elapsed(), "shuffle: bucket read");
    let (cfg, stats) = (cfg.clone(), stats.clone());
    let batch_rows = plan.batch_rows.max(1);
    let (bucket_shards, staged) = tokio::task::spawn_blocking(move || {
        write_bucket(cfg, stats, b, segments, seed, batch_rows)
    })
    .await
    .map_err(|e| Error::Internal(format!("bucket {b} of the shuffle: {e}")))??;
    tracing::debug!(bucket = b, elapsed = ?started.elapsed(), "shuffle: bucket written");
    // The shards become objects, then the record commits them.
    staged.publish().await?;
    sink::put_json(
        &plan.sink,
        &layout::shuffle_bucket(b),
        &BucketRecord {
            bucket: b,
            shards: bucket_shards.clone(),
        },
    )
    .await?;
    Ok(bucket_shards)
}

/// Orders one bucket's rows and writes them as the shards of "task" `bucket`.
fn write_bucket(
    cfg: Arc<WriterConfig>,
    stats: Arc<Stats>,
    bucket: usize,
    segments: Vec<bytes::Bytes>,
    seed: u64,
    batch_rows: usize,
) -> Result<(Vec<ShardRecord>, Staged)> {
    // Decoded in place: the batches' arrays are slices of the segments read (a stream
    // reader would copy every message body into a zeroed buffer of its own).
    let mut batches = Vec::new();
    let corrupt = |e| Error::Internal(format!("a shuffle segment of bucket {bucket}: {e}"));
    for segment in segments {
        let mut decoder = StreamDecoder::new();
        let mut buffer = Buffer::from(segment);
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer).map_err(corrupt)? {
                batches.push(batch);
            }
        }
        decoder.finish().map_err(corrupt)?;
    }
    // The rows are taken in order straight from the decoded segments, a writer's batch at
    // a time: no copy of the whole bucket besides the segments.
    let order = order_rows(&batches, seed)?;
    tracing::debug!(bucket, rows = order.len(), "shuffle: bucket ordered");
    let mut writer = TaskWriter::new(cfg, bucket, stats);
    for chunk in order.chunks(batch_rows) {
        writer.write(&rows_in_order(&batches, chunk)?)?;
    }
    writer.finish()
}
