//! The sink's records, as stored: a task's commit record, the stored plan
//! (`_kiln/plan.json`), the manifest, fitted statistics (`_kiln/stats.json`). Types and
//! what follows from them alone; reading and writing them is the protocol's
//! (`sink/mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rejects::RejectCounts;
use crate::sink::card;
use crate::sink::columns::ColumnStats;
use crate::sink::now_rfc3339;

/// One shard as recorded in commit records and the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardRecord {
    /// Path relative to the sink root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// CRC-32C of the file's bytes, as 8 hex digits (the checksum S3 and GCS support).
    pub crc32c: String,
    /// Size of the rows as Arrow arrays in memory (what `datasets` calls `num_bytes`).
    #[serde(default)]
    pub memory_bytes: u64,
    /// Statistics of each column (by name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnStats>,
    /// A file published with the shard that a reader needs beside it: a Megatron
    /// shard's `.idx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<FileRecord>,
    /// An MDS shard's entry in its folder's `index.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mds: Option<serde_json::Value>,
    /// A task's scattered rows (`sink.shuffle`): where each bucket's segment ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<u64>,
}

/// A file of the sink: path relative to its root, size, CRC-32C (8 hex digits).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
    pub crc32c: String,
}

/// An input object of a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputRecord {
    pub path: String,
    pub bytes: u64,
}

/// The commit record of one task, `_kiln/tasks/NNNNN.json`. Only tasks with a record
/// count; a rerun skips them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: usize,
    pub pipeline_hash: String,
    pub inputs: Vec<InputRecord>,
    pub shards: Vec<ShardRecord>,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Each step's named counters for this task (tokens, drops per rule), by step
    /// index; empty when no step counts anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_counts: Vec<BTreeMap<String, u64>>,
    /// Records and objects left out under `on_error: skip | dead_letter`.
    #[serde(default, skip_serializing_if = "RejectCounts::is_empty")]
    pub rejected: RejectCounts,
    pub committed_at: String,
}

/// A column of the output schema, as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// `_kiln/manifest.json`, written once every task is committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub kiln_version: String,
    pub name: String,
    pub pipeline_hash: String,
    /// The pipeline as run (after `${VAR}` expansion and `--set`).
    pub pipeline: serde_json::Value,
    pub created_at: String,
    /// Columns stored in the files.
    pub schema: Vec<ColumnRecord>,
    /// Columns stored in folder names (`split=train/`).
    pub partition_by: Vec<String>,
    pub tasks: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Records read from the source, before steps dropped any (those a decoder left
    /// out included).
    #[serde(default)]
    pub rows_in: u64,
    /// Size of all rows as Arrow arrays in memory.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Records and objects left out under `on_error: skip | dead_letter`, by stage (under
    /// `dead_letter` each one is in `_kiln/errors/`). `rows_in` records were read, the
    /// `rejected.undecoded` ones among them.
    #[serde(default)]
    pub rejected: RejectCounts,
    #[serde(default)]
    pub input: InputSummary,
    /// The columns as Hugging Face `datasets` features (the dataset card's
    /// `dataset_info.features`); absent when a column has no `datasets` type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Value>,
    /// The splits: values of a `split` partition column, or one `train` split.
    #[serde(default)]
    pub splits: Vec<SplitSummary>,
    /// The first list-of-integer column (token ids) and its total elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSummary>,
    /// Each step's counters (tokens, drops per rule), summed over the tasks.
    #[serde(default)]
    pub steps: Vec<StepSummary>,
    /// Statistics of each stored column, over all shards.
    #[serde(default)]
    pub columns: Vec<ColumnSummary>,
    pub shards: Vec<ShardRecord>,
}

impl Manifest {
    /// Why a run that made this dataset exits 3, if it does: more records or objects
    /// were left out than the pipeline's `run.max_error_ratio` allows.
    /// `max_ratio`: the run's `run.max_error_ratio`; None: the one it was made with.
    pub fn too_many_errors(&self, max_ratio: Option<f64>) -> Option<String> {
        let max = max_ratio.unwrap_or_else(|| {
            self.pipeline
                .pointer("/run/max_error_ratio")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        });
        // `rows_in` counts every record read, the undecodable ones included.
        self.rejected
            .too_many(self.rows_in, self.input.objects as u64, max)
    }
}

/// The input the dataset was made from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputSummary {
    pub objects: usize,
    pub bytes: u64,
    /// SHA-256 of the stored listing (`path\tbytes\n` per object, in order): the same
    /// hash means the same input objects of the same sizes.
    pub listing_sha256: String,
}

/// One split of the dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SplitSummary {
    pub name: String,
    /// Glob of the split's shards relative to the sink (a `data_files` path).
    pub data_files: String,
    pub shards: usize,
    pub rows: u64,
    pub bytes: u64,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// Token totals of the dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenSummary {
    pub column: String,
    pub tokens: u64,
}

/// A step of the pipeline and its counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepSummary {
    pub step: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

/// A stored column and its statistics over the dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(flatten)]
    pub stats: ColumnStats,
}

/// A task of the stored plan: a range of the stored listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTask {
    pub start: usize,
    pub end: usize,
    pub bytes: u64,
    /// A slice `[from, to)` of one large object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// The slice is inside one gzip member of independent blocks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inside_member: bool,
}

/// `_kiln/plan.json`: written once, by the first worker (a conditional put decides), and
/// followed by every later worker and rerun, so objects added to the source mid-run or
/// another worker count cannot change who does what. It also holds what the manifest
/// needs, so `kiln finalize SINK` works without the pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPlan {
    pub kiln_version: String,
    pub name: String,
    pub pipeline_hash: String,
    pub pipeline: serde_json::Value,
    pub created_at: String,
    /// The number of workers the tasks are dealt to (task `t` goes to worker `t % N`).
    pub workers: usize,
    pub schema: Vec<ColumnRecord>,
    pub partition_by: Vec<String>,
    /// The listing: store paths (not URIs) and sizes, sorted.
    pub objects: Vec<InputRecord>,
    pub tasks: Vec<StoredTask>,
    /// The stored columns as `datasets` features, when every column has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Value>,
    /// The first list-of-integer column: the token ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_column: Option<String>,
    /// Under `sources:`, each input's objects in `objects`, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<StoredInput>,
}

/// A named input's objects in a stored plan's listing: `objects[start..end]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredInput {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

impl StoredPlan {
    /// The manifest of the complete dataset.
    pub fn manifest(&self, records: &BTreeMap<usize, TaskRecord>) -> Manifest {
        let shards: Vec<ShardRecord> = records
            .values()
            .flat_map(|r| r.shards.iter().cloned())
            .collect();
        self.manifest_of(records, shards)
    }

    /// The manifest of `records` whose dataset is `shards` (with `sink.shuffle`, the
    /// buckets' shards rather than the tasks' scattered parts).
    pub fn manifest_of(
        &self,
        records: &BTreeMap<usize, TaskRecord>,
        shards: Vec<ShardRecord>,
    ) -> Manifest {
        let splits = card::splits(&self.partition_by, &shards, self.token_column.as_deref());
        let tokens = self.token_column.as_ref().map(|c| TokenSummary {
            column: c.clone(),
            tokens: splits.iter().filter_map(|s| s.tokens).sum(),
        });
        Manifest {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.name.clone(),
            pipeline_hash: self.pipeline_hash.clone(),
            pipeline: self.pipeline.clone(),
            created_at: now_rfc3339(),
            schema: self.schema.clone(),
            partition_by: self.partition_by.clone(),
            tasks: records.len(),
            rows: shards.iter().map(|s| s.rows).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            rows_in: records.values().map(|r| r.rows_in).sum(),
            memory_bytes: shards.iter().map(|s| s.memory_bytes).sum(),
            rejected: records
                .values()
                .fold(RejectCounts::default(), |mut all, r| {
                    all.add(&r.rejected);
                    all
                }),
            input: self.input_summary(),
            features: self.features.clone(),
            splits,
            tokens,
            steps: self.step_summaries(records),
            columns: self.column_summaries(&shards),
            shards,
        }
    }

    fn input_summary(&self) -> InputSummary {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for o in &self.objects {
            h.update(format!("{}\t{}\n", o.path, o.bytes).as_bytes());
        }
        InputSummary {
            objects: self.objects.len(),
            bytes: self.objects.iter().map(|o| o.bytes).sum(),
            listing_sha256: format!("{:x}", h.finalize()),
        }
    }

    /// The steps by name (from the stored pipeline) with their counters summed.
    fn step_summaries(&self, records: &BTreeMap<usize, TaskRecord>) -> Vec<StepSummary> {
        let names: Vec<String> = self
            .pipeline
            .get("steps")
            .and_then(|s| s.as_array())
            .map(|steps| {
                steps
                    .iter()
                    .map(|st| match st {
                        serde_json::Value::Object(m) => {
                            m.keys().next().cloned().unwrap_or_default()
                        }
                        serde_json::Value::String(s) => s.clone(),
                        _ => String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<StepSummary> = names
            .into_iter()
            .map(|step| StepSummary {
                step,
                counts: BTreeMap::new(),
            })
            .collect();
        for record in records.values() {
            for (i, counts) in record.step_counts.iter().enumerate() {
                if let Some(s) = out.get_mut(i) {
                    for (k, v) in counts {
                        *s.counts.entry(k.clone()).or_default() += v;
                    }
                }
            }
        }
        out
    }

    fn column_summaries(&self, shards: &[ShardRecord]) -> Vec<ColumnSummary> {
        self.schema
            .iter()
            .map(|c| {
                let mut stats: Option<ColumnStats> = None;
                for s in shards {
                    if let Some(st) = s.columns.get(&c.name) {
                        match &mut stats {
                            Some(acc) => acc.merge(st),
                            None => stats = Some(st.clone()),
                        }
                    }
                }
                ColumnSummary {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                    stats: stats.unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Tasks of the plan without a commit record.
    pub fn missing(&self, records: &BTreeMap<usize, TaskRecord>) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|t| !records.contains_key(t))
            .collect()
    }
}

/// `_kiln/stats.json`: what the fitted steps (`standardize`, `one_hot`, ...) learned in
/// their full pass, written before the first task commits. A resumed run binds them
/// again instead of refitting; another pipeline's `stats_from` applies them to other
/// data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsFile {
    pub kiln_version: String,
    /// The pipeline that fitted them.
    pub name: String,
    pub pipeline_hash: String,
    /// Where they came from: `fit` (a full pass over `rows` rows of this dataset's
    /// input), or the sink they were read from with `stats_from`.
    pub fitted_on: String,
    pub rows: u64,
    pub objects: usize,
    pub input_bytes: u64,
    /// One entry per fitted step, in pipeline order.
    pub steps: Vec<StatsEntry>,
}

/// The statistics of one step. A pipeline using them finds its entry by step name and
/// occurrence (the 2nd `standardize` takes the 2nd entry of `standardize`), so a
/// validation pipeline may differ from the training one in other steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsEntry {
    /// Position in the pipeline that fitted it (1-based).
    pub index: usize,
    pub step: String,
    /// 1 for the first step of this name, 2 for the second...
    pub occurrence: usize,
    /// The step's own statistics (`columns: {name: {...}}`).
    #[serde(flatten)]
    pub stats: serde_json::Map<String, serde_json::Value>,
}
