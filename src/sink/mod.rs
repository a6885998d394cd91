//! The dataset in the sink: shards, a commit record per task, the manifest and
//! `_SUCCESS`, and the checks that keep one pipeline's output from mixing with
//! another's (README "What the sink holds", docs/architecture.md "Commit protocol").
//!
//! This file is the protocol: preparing and checking a sink, committing a task, the
//! manifest and finalizing, listing and debris cleanup, failure records. What the
//! records hold is in `records.rs` (types only, no I/O: the plan makes and reads them);
//! the shard writer in `writer.rs`, uploads in `upload.rs`, the card in `card.rs`.

pub mod card;
pub mod claims;
pub mod columns;
pub mod index;
pub mod lease;
pub mod mds;
mod measure;
pub mod megatron;
pub mod records;
mod rowgroups;
pub mod shuffle;
pub mod stages;
pub mod upload;
pub use upload::clean_local_debris;
pub mod webdataset;
pub mod writer;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Location;
pub use columns::ColumnStats;

use crate::layout;
pub use crate::layout::{KILN_DIR, MANIFEST, PLAN, STATS, SUCCESS};
pub use records::*;

/// Reads `_kiln/stats.json`, if there is one.
pub async fn read_stats(sink: &Location) -> Result<Option<StatsFile>> {
    get_json(sink, STATS).await
}

/// Reads `_kiln/stats.json` when it holds the statistics of the pipeline with this
/// hash (a resumed run binds exactly what its committed tasks were written with).
pub async fn read_fitted(sink: &Location, pipeline_hash: &str) -> Result<Option<StatsFile>> {
    Ok(read_stats(sink)
        .await?
        .filter(|f| f.pipeline_hash == pipeline_hash))
}

/// Statistics as they read back from `_kiln/stats.json` once written: what a run binds
/// its fitted steps with, so that it and a resumed run apply the very same numbers.
pub fn as_stored(entries: &[StatsEntry]) -> Result<Vec<StatsEntry>> {
    let body = serde_json::to_vec(entries).map_err(|e| Error::Internal(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| Error::Internal(e.to_string()))
}

/// Writes `_kiln/stats.json`.
pub async fn write_stats(sink: &Location, file: &StatsFile) -> Result<()> {
    put_json(sink, STATS, file).await
}

/// Replaces the stored plan: only after a fit, so that `kiln status` and `kiln
/// finalize` see the fitted schema. Every worker that fits writes the same plan.
pub async fn replace_plan(sink: &Location, plan: &StoredPlan) -> Result<()> {
    put_json(sink, PLAN, plan).await
}

/// Reads the stored plan, if there is one.
pub async fn read_plan(sink: &Location) -> Result<Option<StoredPlan>> {
    get_json(sink, PLAN).await
}

/// Stores `plan` unless a plan is already there, and returns the plan that is: the one
/// just written or the one another worker wrote first.
pub async fn settle_plan(sink: &Location, plan: &StoredPlan) -> Result<StoredPlan> {
    let body = serde_json::to_vec_pretty(plan).map_err(|e| Error::Internal(e.to_string()))?;
    if put_if_absent(sink, PLAN, body.into()).await? {
        return Ok(plan.clone());
    }
    read_plan(sink).await?.ok_or_else(|| {
        Error::sink(
            sink.display_child(PLAN),
            "exists but could not be read back",
        )
    })
}

/// A PUT that succeeds only when nothing is at `relative` yet (S3 `If-None-Match: *`,
/// an exclusive create on local disk). `false` when something was there.
pub async fn put_if_absent(sink: &Location, relative: &str, body: Bytes) -> Result<bool> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match sink
        .store
        .put_opts(&sink.child(relative), PutPayload::from_bytes(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(false),
        Err(e) => Err(Error::store("write", sink.display_child(relative), e)),
    }
}

/// Every commit record in the sink, by task.
pub async fn committed(sink: &Location) -> Result<BTreeMap<usize, TaskRecord>> {
    records(sink, &list_all(sink).await?).await
}

/// Whether `task` has a commit record (one HEAD, no read).
pub async fn is_committed(sink: &Location, task: usize) -> Result<bool> {
    let rel = task_record_path(task);
    match sink.store.head(&sink.child(&rel)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store("read", sink.display_child(&rel), e)),
    }
}

/// The commit records among `paths` (a listing of the sink), by task.
async fn records(sink: &Location, paths: &[Path]) -> Result<BTreeMap<usize, TaskRecord>> {
    let mut out = BTreeMap::new();
    for path in paths {
        let rel = sink.relative(path);
        if rel.starts_with(&format!("{}/", layout::TASKS_DIR))
            && let Some(record) = get_json::<TaskRecord>(sink, &rel).await?
        {
            out.insert(record.task, record);
        }
    }
    Ok(out)
}

/// Reads the manifest, if there is one.
pub async fn read_manifest(sink: &Location) -> Result<Option<Manifest>> {
    get_json(sink, MANIFEST).await
}

/// What the sink holds before a run.
#[derive(Debug)]
pub enum SinkState {
    /// Nothing of ours (or nothing at all).
    Empty,
    /// A run of this pipeline finished: nothing to do.
    Complete(Box<Manifest>),
    /// Some tasks of this pipeline are committed.
    Partial(BTreeMap<usize, TaskRecord>),
}

/// A worker's run that failed or was stopped, kept in the sink for `kiln status`
/// (`_kiln/failures/IIIII-<unix ms>.json`). Best effort: a run killed with SIGKILL, or one
/// whose store is what failed, may leave none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// `I/N`.
    pub worker: String,
    pub exit_code: i32,
    /// Exit 75: the scheduler should run the worker again (network, throttling, a signal).
    pub retryable: bool,
    pub error: String,
    pub at: String,
    pub kiln_version: String,
}

/// Stores a failure record (see [`FailureRecord`]).
///
/// # Errors
/// The store's.
pub async fn record_failure(sink: &Location, worker: usize, record: &FailureRecord) -> Result<()> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    put_json(sink, &layout::failure_record(worker, millis), record).await
}

/// The failure records in the sink, oldest first.
///
/// # Errors
/// The store's, or a record that is not JSON.
pub async fn failures(sink: &Location) -> Result<Vec<FailureRecord>> {
    let prefix = sink.child(layout::FAILURES_DIR);
    let mut paths: Vec<Path> = sink
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| Error::store("list", sink.display_child(KILN_DIR), e))?;
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        if let Some(r) = get_json::<FailureRecord>(sink, &sink.relative(&path)).await? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(out)
}

pub fn task_record_path(task: usize) -> String {
    layout::task_record(task)
}

/// The dead-letter file of a task: its rejected records and objects, one JSON object
/// per line (see [`crate::rejects::Rejected`]).
pub fn errors_path(task: usize) -> String {
    layout::dead_letters(task)
}

/// Writes a task's dead-letter file; before its commit record, so a committed task's
/// file is always there.
pub async fn write_errors(
    sink: &Location,
    task: usize,
    letters: crate::rejects::DeadLetters,
) -> Result<()> {
    let relative = errors_path(task);
    let Some(mut file) = letters.spill else {
        return put(sink, &relative, letters.buf.into()).await;
    };
    // Spilled: streamed from the temporary file (a multipart upload when large).
    use std::io::{Read, Seek};
    use tokio::io::AsyncWriteExt;
    let uri = sink.display_child(&relative);
    let spill =
        |e: std::io::Error| Error::sink(&uri, format!("reading the spilled dead letters: {e}"));
    let upload = |e: std::io::Error| upload::upload_error(&uri, e);
    let mut w = object_store::buffered::BufWriter::new(sink.store.clone(), sink.child(&relative));
    file.rewind().map_err(spill)?;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk).map_err(spill)?;
        if n == 0 {
            break;
        }
        w.write_all(&chunk[..n]).await.map_err(upload)?;
    }
    w.write_all(&letters.buf).await.map_err(upload)?;
    w.shutdown().await.map_err(upload)
}

pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
    sink: &Location,
    relative: &str,
) -> Result<Option<T>> {
    let path = sink.child(relative);
    match sink.store.get(&path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| Error::store("read", sink.display_child(relative), e))?;
            serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::sink(
                    sink.display_child(relative),
                    format!("corrupt kiln record: {e}"),
                )
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store("read", sink.display_child(relative), e)),
    }
}

/// Writes `value` as pretty JSON at `relative` in one PUT (atomic on every store).
pub(crate) async fn put_json<T: Serialize>(
    sink: &Location,
    relative: &str,
    value: &T,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    put(sink, relative, body.into()).await
}

async fn put(sink: &Location, relative: &str, body: Bytes) -> Result<()> {
    sink.store
        .put(&sink.child(relative), PutPayload::from_bytes(body))
        .await
        .map(|_| ())
        .map_err(|e| Error::store("write", sink.display_child(relative), e))
}

/// Lists every object under the sink (relative paths).
async fn list_all(sink: &Location) -> Result<Vec<Path>> {
    list_under(sink, "").await
}

/// Lists every object under the sink's folder `relative` ("" for the whole sink); a
/// folder that is not there is empty.
pub(crate) async fn list_under(sink: &Location, relative: &str) -> Result<Vec<Path>> {
    let prefix = if relative.is_empty() {
        sink.prefix.clone()
    } else {
        sink.child(relative)
    };
    sink.store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            e => Err(Error::store("list", sink.display_child(relative), e)),
        })
}

/// Reads the sink's state and refuses a sink that holds something else.
///
/// With `overwrite`, whatever is there is deleted first.
///
/// # Errors
/// [`Error::Plan`] (exit 2) when the sink holds another pipeline's output or files that
/// are not a kiln dataset, and `overwrite` is not set.
pub async fn prepare(
    sink: &Location,
    pipeline_hash: &str,
    pipeline: &serde_json::Value,
    overwrite: bool,
) -> Result<SinkState> {
    let existing = list_all(sink).await?;
    if existing.is_empty() {
        return Ok(SinkState::Empty);
    }
    let refuse = |why: String| {
        Err(Error::Plan(format!(
            "sink {} {why}; choose another sink, or pass --overwrite to delete what is there",
            sink.display
        )))
    };
    let mut other_pipeline = None;
    let manifest: Option<Manifest> = get_json(sink, MANIFEST).await?;
    if let Some(m) = &manifest
        && m.pipeline_hash != pipeline_hash
    {
        other_pipeline = Some(m.name.clone());
    }
    let committed = records(sink, &existing).await?;
    if let Some(record) = committed
        .values()
        .find(|r| r.pipeline_hash != pipeline_hash)
    {
        other_pipeline.get_or_insert_with(|| {
            format!(
                "hash {}",
                &record.pipeline_hash[..12.min(record.pipeline_hash.len())]
            )
        });
    }
    let mut foreign = None;
    for path in &existing {
        let rel = sink.relative(path);
        if !layout::is_kiln_file(&rel) {
            foreign.get_or_insert(rel);
        }
    }
    if !overwrite {
        if let Some(other) = other_pipeline {
            // What differs, from the pipeline stored with that output.
            let stored = match &manifest {
                Some(m) => Some(m.pipeline.clone()),
                None => get_json::<StoredPlan>(sink, PLAN)
                    .await?
                    .map(|p| p.pipeline),
            };
            let mut changed = Vec::new();
            if let Some(stored) = &stored {
                differences(stored, pipeline, "", &mut changed);
            }
            let what = if changed.is_empty() {
                // The stored pipeline is sorted JSON, so what differs is not in it.
                "; the pipeline files agree, so what differs is the order of a mapping \
                 (split fractions, derive, cast, rename, a schema), a file a step reads \
                 (a tokenizer, an exec step's code), stats_from's statistics, or the kiln \
                 version that wrote it"
                    .to_string()
            } else {
                let shown: Vec<&str> = changed.iter().take(8).map(String::as_str).collect();
                format!(
                    "; what differs: {}{}",
                    shown.join("; "),
                    if changed.len() > 8 { "; …" } else { "" }
                )
            };
            return refuse(format!(
                "holds the output of a different pipeline ({other}{what})"
            ));
        }
        if let Some(f) = foreign {
            return refuse(format!(
                "is not empty and is not a kiln dataset (it holds `{f}`)"
            ));
        }
        if committed.is_empty() && manifest.is_none() {
            // Only shards of a run that committed nothing: they are rewritten below.
            return Ok(SinkState::Partial(committed));
        }
        if let Some(m) = manifest
            && existing.iter().any(|p| sink.relative(p) == SUCCESS)
        {
            return Ok(SinkState::Complete(Box::new(m)));
        }
        return Ok(SinkState::Partial(committed));
    }
    for path in existing {
        sink.store
            .delete(&path)
            .await
            .map_err(|e| Error::store("delete", path.to_string(), e))?;
    }
    Ok(SinkState::Empty)
}

/// The fields in which pipeline `b` differs from `a` (as JSON), as `path: a → b`, for
/// the fields the pipeline hash covers (not `run`, `storage`, `sink.uri`).
fn differences(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    if matches!(path, "run" | "storage" | "sink.uri") {
        return;
    }
    let show = |v: Option<&Value>| {
        let t = v.map_or_else(|| "(absent)".to_string(), Value::to_string);
        if t.chars().count() > 60 {
            format!("{}…", t.chars().take(59).collect::<String>())
        } else {
            t
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => differences(u, v, &p, out),
                    (u, v) => {
                        if !matches!(p.as_str(), "run" | "storage" | "sink.uri") {
                            out.push(format!("{p}: {} → {}", show(u), show(v)));
                        }
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(u, v, &format!("{path}.{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {} → {}", show(Some(a)), show(Some(b)))),
        _ => {}
    }
}

/// Commits a task: its record is written after all its shards are complete.
pub async fn commit_task(sink: &Location, record: &TaskRecord) -> Result<()> {
    put_json(sink, &task_record_path(record.task), record).await
}

/// Writes the dataset card, the manifest and then `_SUCCESS`. The manifest is a
/// conditional put, so of two workers finishing at once exactly one writes it; `false`
/// when another had. The card comes first and has no timestamp, so both write the same.
pub async fn finalize(sink: &Location, manifest: &Manifest) -> Result<bool> {
    let card = manifest
        .pipeline
        .pointer("/sink/dataset_card")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if card {
        put(sink, layout::CARD, card::render(manifest)?.into()).await?;
    }
    // Before the manifest: a dataset is complete only with every index a reader needs.
    for (path, body) in mds_indexes(manifest)? {
        put(sink, &path, body.into()).await?;
    }
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Internal(e.to_string()))?;
    let wrote = put_if_absent(sink, MANIFEST, body.into()).await?;
    // Every task is committed: no worker needs a stage's parts or a claim any more. After
    // the manifest, so that a worker still in a stage that finds a part gone finds the
    // dataset complete (and removes what it wrote itself since, `remove_scratch`).
    remove_scratch(sink).await?;
    // _SUCCESS is empty: writing it again is harmless, and a worker that lost the race
    // right after the winner wrote the manifest makes sure it is there.
    put(sink, SUCCESS, Bytes::new()).await?;
    Ok(wrote)
}

/// MosaicML Streaming's `index.json` for each folder of MDS shards: the shards' entries
/// in manifest order (what `streaming.MDSWriter` writes at its end), as
/// `json.dump(obj, sort_keys=True)` would.
fn mds_indexes(manifest: &Manifest) -> Result<Vec<(String, Vec<u8>)>> {
    let mut by_dir: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for s in &manifest.shards {
        if let Some(entry) = &s.mds {
            let dir = s.path.rfind('/').map_or("", |i| &s.path[..=i]);
            by_dir
                .entry(dir.to_string())
                .or_default()
                .push(entry.clone());
        }
    }
    by_dir
        .into_iter()
        .map(|(dir, shards)| {
            let body = serde_json::json!({ "shards": shards, "version": 2 });
            serde_json::to_vec(&body)
                .map(|b| (format!("{dir}{}", layout::MDS_INDEX), b))
                .map_err(|e| Error::Internal(e.to_string()))
        })
        .collect()
}

/// Removes the stage parts and task claims (the dataset is complete).
pub async fn remove_scratch(sink: &Location) -> Result<()> {
    let removed = stages::remove_all(sink).await?
        + claims::remove_all(sink).await?
        + stages::delete_under(sink, layout::SHUFFLE_DIR).await?;
    if let Some(root) = sink.identity.strip_prefix("file://") {
        // Local disk keeps the emptied folders.
        let _ = std::fs::remove_dir_all(std::path::Path::new(root).join(layout::SHUFFLE_DIR));
    }
    if removed > 0 {
        tracing::debug!(removed, "stage parts and task claims removed");
    }
    Ok(())
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
