//! `dedup.exact`: drop rows whose column value (optionally normalized) appeared earlier
//! in the input.
//!
//! "Earlier" is input order, the same on every run and thread count: the row at the
//! smallest (task, row) position survives. That needs the whole input, so this is a
//! full-pass step. In the first pass every task hashes the value of each row reaching
//! the step (XXH3-128) and writes (hash, task, row) records, sorted by hash, to runs in
//! a local spill directory, starting a new run whenever its buffer reaches its share of
//! `run.memory_limit`. Settling merges the runs (in rounds of at most [`FAN_IN`] files,
//! so open files stay bounded): in each group of equal hashes the first position
//! survives and the others become that task's drop list. The second pass drops them.
//!
//! Memory: a task's run buffer (`run_bytes`, 32 bytes a row) during the first
//! pass, one read buffer per merged run while settling, and the duplicates found up to
//! `memory`, past which they go to disk (`drops.rs`).
//!
//! **One pass.** The decision for a row needs only the rows before it, so when nothing
//! after the step needs its decisions before the main pass (no fit, no other full pass
//! after it), the step decides in the main pass instead ([`InOrder`]): the runtime runs
//! the tasks one at a time in task order (each still on every thread), and the step
//! keeps the first position of each hash it has seen, in memory; a row whose hash was
//! first seen at an earlier position goes. A resumed run first observes the tasks
//! already committed, as the full pass would, and starts from their positions. When the
//! positions outgrow `memory` (a quarter of `run.memory_limit` by default), the tasks
//! left get the two passes above, with the positions kept so far as one more sorted
//! run ahead of theirs. Either way the same rows go: the first copy in input order
//! stays.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::drops::{DropLists, Drops};
use super::keys::{IndexSpec, KeyIndex};
use super::spill::{Rec, Runs, SpillObserver, all_runs, le, read_fixed};
use super::text::{string_column, utf8, value};
use super::{FullPass, InOrder, Kind, Observer, Part, Sectioned, Step, StepContext, StepOptions};
use crate::pool::lock;
use crate::steps::StepError;
use std::io::Write;

/// Options of `dedup.exact`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupExactOptions {
    /// The column compared (default `text`).
    #[serde(default = "default_column")]
    pub column: String,
    /// Compare after NFKC, lowercasing and collapsing whitespace (default false: the
    /// exact bytes).
    #[serde(default)]
    pub normalize: bool,
    /// Bytes of (hash, position) records a task buffers before it writes a sorted run
    /// (default 64 MiB).
    #[serde(default = "default_run_bytes")]
    pub run_bytes: crate::size::ByteSize,
    /// Decide in the main pass, reading the input once, when nothing after the step
    /// needs its decisions first (default true). With false the step always makes a
    /// full pass first, and the main pass's tasks run side by side instead of one at a
    /// time: on a machine with many cores and inputs whose tasks decode on one thread
    /// each (gzip), that can be the faster of the two.
    #[serde(default = "default_one_pass")]
    pub one_pass: bool,
    /// Memory the first positions of the hashes seen may take in one pass before the
    /// rest of the input is decided in two passes (about 40 bytes a distinct value),
    /// and the duplicates found while settling before they go to the spill directory
    /// (16 bytes each at most); default a quarter of `run.memory_limit`.
    #[serde(default)]
    pub memory: Option<crate::size::ByteSize>,
    /// Earlier kiln datasets (their sinks' URIs) this input is deduplicated against: a
    /// row whose value one of them held at this step goes, first copies included. Read
    /// from the key index each stored (`_kiln/index/`), not from their shards; the
    /// input is read twice (no one pass).
    #[serde(default)]
    pub against: Vec<String>,
    /// Store the key index of this run (the earlier datasets' values and this input's)
    /// in `_kiln/index/`, so that a later run can dedup against this dataset (default
    /// true; 16 bytes a distinct value).
    #[serde(default = "default_index")]
    pub index: bool,
}

fn default_index() -> bool {
    true
}

fn default_one_pass() -> bool {
    true
}

fn default_column() -> String {
    "text".into()
}

fn default_run_bytes() -> crate::size::ByteSize {
    crate::size::ByteSize(64 << 20)
}

impl StepOptions for DedupExactOptions {
    const SUMMARY: &'static str =
        "drop rows whose value appeared earlier in the input (first copy kept; full pass)";
    const EXAMPLE: &'static str = "- dedup.exact: { column: text, normalize: true }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        Ok(Arc::new(DedupExact {
            opts: self.clone(),
            source,
            schema: input.clone(),
            runs: Runs::default(),
            drops: DropLists::default(),
            seen: Mutex::new(None),
        }))
    }
}

#[derive(Debug)]
struct DedupExact {
    opts: DedupExactOptions,
    source: usize,
    schema: SchemaRef,
    runs: Runs,
    /// Rows to drop, by task, sorted; set by `settle`.
    drops: DropLists,
    /// Deciding in the main pass: set by [`InOrder::begin`], taken by [`InOrder::end`].
    seen: Mutex<Option<Seen>>,
}

/// What deciding in order keeps: the first position (task, row) of each hash so far.
#[derive(Debug)]
struct Seen {
    first: HashMap<u128, (u32, u64), foldhash::fast::RandomState>,
    budget: u64,
}

/// Bytes a position takes in [`Seen::first`] per unit of its capacity: a 32-byte slot
/// and a control byte, with the table's buckets at most 8/7 of its capacity.
const SEEN_ENTRY_BYTES: u64 = 38;

impl Seen {
    fn bytes(&self) -> u64 {
        self.first.capacity() as u64 * SEEN_ENTRY_BYTES
    }

    /// Records `at` as a position of `key`; true when an earlier position has it.
    fn seen_before(&mut self, key: u128, at: (u32, u64)) -> bool {
        use std::collections::hash_map::Entry;
        match self.first.entry(key) {
            Entry::Occupied(mut e) => {
                // A committed task after this one may have put its position there first.
                if *e.get() < at {
                    return true;
                }
                e.insert(at);
                false
            }
            Entry::Vacant(e) => {
                e.insert(at);
                false
            }
        }
    }
}

impl DedupExact {
    fn hash(&self, text: &str, buf: &mut String) -> u128 {
        if !self.opts.normalize {
            return xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        }
        buf.clear();
        for word in text
            .nfkc()
            .collect::<String>()
            .to_lowercase()
            .split_whitespace()
        {
            if !buf.is_empty() {
                buf.push(' ');
            }
            buf.push_str(word);
        }
        xxhash_rust::xxh3::xxh3_128(buf.as_bytes())
    }
}

impl Step for DedupExact {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.insert(self.opts.column.clone());
        need
    }

    fn kind(&self) -> Kind<'_> {
        Kind::FullPass(self)
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        if self.drops.is_set() {
            return self.drops.apply(batch, cx, "dedup.exact", "duplicates");
        }
        let task =
            u32::try_from(cx.task).map_err(|_| StepError::internal("more than 2^32 tasks"))?;
        let texts = utf8(batch.column(self.source))?;
        // The rows are decided on the task's thread, in order; normalizing is the costly
        // part, so it runs on every thread first.
        let keys: Vec<Option<u128>> = if self.opts.normalize {
            crate::pool::par_map(texts.len(), 64, String::new, |buf, i| {
                value(&texts, i).map(|t| self.hash(t, buf))
            })
        } else {
            let mut buf = String::new();
            (0..texts.len())
                .map(|i| value(&texts, i).map(|t| self.hash(t, &mut buf)))
                .collect()
        };
        let mut seen = lock(&self.seen);
        let Some(seen) = seen.as_mut() else {
            // Neither settled nor deciding in order: the runtime's error, reported as such.
            drop(seen);
            return self.drops.apply(batch, cx, "dedup.exact", "duplicates");
        };
        let mut keep = Vec::with_capacity(keys.len());
        let mut dropped = 0;
        for (i, key) in keys.into_iter().enumerate() {
            // Nulls are never duplicates of anything.
            let first =
                key.is_none_or(|key| !seen.seen_before(key, (task, cx.rows_before + i as u64)));
            dropped += u64::from(!first);
            keep.push(first);
        }
        if dropped == 0 {
            return Ok(batch);
        }
        cx.count("duplicates", dropped);
        arrow::compute::filter_record_batch(&batch, &arrow::array::BooleanArray::from(keep))
            .map_err(StepError::from)
    }
}

impl FullPass for DedupExact {
    fn observer(&self, task: usize) -> Result<Box<dyn Observer + '_>, StepError> {
        Ok(Box::new(ExactObserver {
            step: self,
            spill: SpillObserver::new(&self.runs, task, self.opts.run_bytes.get())?,
            buf: String::new(),
        }))
    }

    fn write_part(&self, part: Part, out: &mut dyn std::io::Write) -> Result<(), StepError> {
        self.runs.write_part(part, out, "dedup.exact")
    }

    fn read_part(&self, input: &mut dyn std::io::Read) -> Result<Part, StepError> {
        self.runs.read_part(input, "dedup.exact")
    }

    fn settle(&self, parts: Vec<Part>, keys: &mut KeyIndex, budget: u64) -> Result<(), StepError> {
        let mut drops = Drops::new(&self.runs, self.memory(budget));
        let mut failed = None;
        self.decide(parts, keys, |task, row| {
            if failed.is_none() {
                failed = drops.push(task, row).err();
            }
        })?;
        failed.map_or(Ok(()), Err)?;
        self.drops.set(drops, "dedup.exact")
    }

    fn in_order(&self) -> Option<&dyn InOrder> {
        // Against earlier datasets, a first copy may go too: settled after a full pass.
        (self.opts.one_pass && self.opts.against.is_empty()).then_some(self as &dyn InOrder)
    }

    fn sectioned(&self) -> Option<&dyn Sectioned> {
        Some(self)
    }

    fn index(&self) -> Option<IndexSpec> {
        (self.opts.index || !self.opts.against.is_empty()).then(|| {
            IndexSpec::new(
                "dedup.exact",
                serde_json::json!({"column": self.opts.column, "normalize": self.opts.normalize}),
                self.opts.against.clone(),
                self.opts.index,
            )
        })
    }
}

impl DedupExact {
    /// The step's memory: its `memory` option, else the runtime's `budget`.
    fn memory(&self, budget: u64) -> u64 {
        self.opts.memory.map_or(budget, |m| m.get())
    }

    /// The records of `parts` in key order, each copy that goes handed to `drop`: all
    /// but the first of equal keys, and all of them when an earlier dataset in `keys`
    /// holds the key.
    fn decide(
        &self,
        parts: Vec<Part>,
        keys: &mut KeyIndex,
        mut drop: impl FnMut(u32, u64),
    ) -> Result<(), StepError> {
        let mut current: Option<u128> = None;
        let mut earlier = false;
        let mut failed = None;
        self.runs.merge(all_runs(parts, "dedup.exact")?, |r| {
            if current != Some(r.key) {
                current = Some(r.key);
                earlier = keys.seen(r.key).unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    false
                });
                if !earlier {
                    return;
                }
            }
            drop(r.task, r.row);
        })?;
        failed.map_or(Ok(()), Err)
    }
}

/// Across workers: a section's decisions are its duplicates, as (task u32, row u64)
/// little-endian, 12 bytes each. Every copy of a value is in one section, so the first
/// copy in input order is found there.
impl Sectioned for DedupExact {
    fn write_sections(
        &self,
        part: Part,
        sections: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<Vec<u64>, StepError> {
        self.runs.write_sections(part, sections, out, "dedup.exact")
    }

    fn merge_section(
        &self,
        parts: Vec<Part>,
        keys: &mut KeyIndex,
        _budget: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<(), StepError> {
        let mut w = std::io::BufWriter::with_capacity(64 << 10, out);
        let mut failed = None;
        self.decide(parts, keys, |task, row| {
            if failed.is_none() {
                let wrote = w
                    .write_all(&task.to_le_bytes())
                    .and_then(|()| w.write_all(&row.to_le_bytes()));
                failed = wrote.err();
            }
        })?;
        failed
            .map_or_else(|| w.flush(), Err)
            .map_err(|e| StepError::io("cannot write the duplicates of a section", e))
    }

    fn settle_sections(
        &self,
        decided: Vec<Box<dyn std::io::Read + Send>>,
        budget: u64,
    ) -> Result<(), StepError> {
        let mut drops = Drops::new(&self.runs, self.memory(budget));
        let mut failed = None;
        for r in decided {
            read_fixed::<12>(r, "a section's duplicates", |b| {
                if failed.is_none() {
                    let task = u32::from_le_bytes(le(b, 0));
                    failed = drops.push(task, u64::from_le_bytes(le(b, 4))).err();
                }
            })?;
        }
        failed.map_or(Ok(()), Err)?;
        self.drops.set(drops, "dedup.exact")
    }
}

impl InOrder for DedupExact {
    fn begin(&self, known: Vec<Part>, budget: u64) -> Result<(), StepError> {
        let budget = self.memory(budget);
        let mut seen = Seen {
            first: HashMap::default(),
            budget,
        };
        // In (hash, task, row) order: the first record of each hash is its first position.
        let mut last = None;
        self.runs.merge(all_runs(known, "dedup.exact")?, |r| {
            if last != Some(r.key) {
                last = Some(r.key);
                seen.first.insert(r.key, (r.task, r.row));
            }
        })?;
        *lock(&self.seen) = Some(seen);
        Ok(())
    }

    fn over_budget(&self) -> bool {
        lock(&self.seen)
            .as_ref()
            .is_some_and(|s| s.bytes() > s.budget)
    }

    fn write_index(&self, parts: Vec<Part>, keys: &mut KeyIndex) -> Result<(), StepError> {
        let mut last = None;
        let mut failed = None;
        self.runs.merge(all_runs(parts, "dedup.exact")?, |r| {
            if last != Some(r.key) && failed.is_none() {
                last = Some(r.key);
                failed = keys.seen(r.key).err();
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn end(&self) -> Result<Part, StepError> {
        let seen = lock(&self.seen)
            .take()
            .ok_or_else(|| StepError::internal("dedup.exact: ended before it began"))?;
        // Written as sorted runs of at most `run_bytes` each, freeing the table as it goes.
        let per_run = (self.opts.run_bytes.get() as usize / super::spill::RECORD).max(1024);
        let mut records = Vec::with_capacity(per_run.min(seen.first.len()));
        let mut written = Vec::new();
        for (key, (task, row)) in seen.first {
            records.push(Rec { key, task, row });
            if records.len() >= per_run {
                self.runs.flush(&mut records, &mut written)?;
            }
        }
        self.runs.flush(&mut records, &mut written)?;
        Ok(Box::new(written))
    }
}

/// One task of the full pass: the hash and position of each row.
struct ExactObserver<'a> {
    step: &'a DedupExact,
    spill: SpillObserver<'a>,
    buf: String,
}

impl Observer for ExactObserver<'_> {
    fn observe(&mut self, batch: &RecordBatch, rows_before: u64) -> Result<(), StepError> {
        let texts = utf8(batch.column(self.step.source))?;
        self.spill.make_room(texts.len())?;
        for i in 0..texts.len() {
            // Nulls are never duplicates of anything.
            if let Some(t) = value(&texts, i) {
                let key = self.step.hash(t, &mut self.buf);
                self.spill.records.push(Rec {
                    key,
                    task: self.spill.task,
                    row: rows_before + i as u64,
                });
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Part, StepError> {
        Ok(Box::new(self.spill.finish()?))
    }
}

#[cfg(test)]
#[path = "dedup_exact_tests.rs"]
mod tests;
