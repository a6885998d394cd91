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
//! Memory: a task's run buffer (28 bytes a row, flushed at its budget) during the first
//! pass, one read buffer per merged run while settling, and 8 bytes per duplicate found.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::spill::{DropLists, Rec, Runs, SpillObserver, all_runs};
use super::text::{string_column, utf8, value};
use super::{FullPass, Kind, Observer, Part, Step, StepContext, StepOptions};
use crate::steps::StepError;

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
        self.drops.apply(batch, cx, "dedup.exact", "duplicates")
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

    fn settle(&self, parts: Vec<Part>) -> Result<(), StepError> {
        let mut drops: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut current: Option<u128> = None;
        self.runs.merge(all_runs(parts, "dedup.exact")?, |r| {
            if current == Some(r.key) {
                drops.entry(r.task).or_default().push(r.row);
            } else {
                current = Some(r.key);
            }
        })?;
        self.drops.set(drops, "dedup.exact")
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
        self.spill.spill_if_full()
    }

    fn finish(self: Box<Self>) -> Result<Part, StepError> {
        Ok(Box::new(self.spill.finish()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, StringArray};

    fn batch(texts: &[Option<&str>]) -> RecordBatch {
        let a: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
        RecordBatch::try_from_iter(vec![("text", a)]).expect("batch")
    }

    fn texts(b: &RecordBatch) -> Vec<Option<String>> {
        let a = b.column(0).as_string::<i32>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect()
    }

    /// Two tasks, observed in the "wrong" order (task 1 first) with tiny runs, so the
    /// merge rounds and the position order both matter.
    #[test]
    fn first_copy_in_input_order_survives_whatever_the_observation_order() {
        let opts: DedupExactOptions = serde_json::from_value(serde_json::json!({
            "normalize": true, "run_bytes": "1 KiB"
        }))
        .expect("options");
        let task0 = batch(&[Some("a b"), Some("c"), Some("A  B"), None, None, Some("d")]);
        let task1 = batch(&[Some("c"), Some("e"), Some("e"), Some("a b")]);
        let step = opts.bind(&task0.schema()).expect("binds");
        let mut many = Vec::new();
        for i in 0..300 {
            many.push(format!("filler {i}"));
        }
        let fill = batch(&many.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>());
        let x = batch(&[Some("x")]);
        let mut tasks = vec![(1usize, vec![&task1, &fill]), (0, vec![&task0, &fill])];
        for t in 2..(super::super::spill::FAN_IN + 20) {
            tasks.push((t, vec![&x]));
        }
        crate::steps::test_util::full_pass(step.as_ref(), &tasks);
        let mut cx0 = StepContext::for_task(0, 0);
        let out0 = step.apply(task0, &mut cx0).expect("task 0");
        assert_eq!(
            texts(&out0),
            [
                Some("a b".into()),
                Some("c".into()),
                None,
                None,
                Some("d".into())
            ]
        );
        let mut cx1 = StepContext::for_task(1, 0);
        let out1 = step.apply(task1, &mut cx1).expect("task 1");
        assert_eq!(texts(&out1), [Some("e".into())]);
        assert_eq!(cx0.counts["duplicates"] + cx1.counts["duplicates"], 4);
        // The filler of task 1 duplicates task 0's filler entirely.
        let mut cx1 = StepContext::for_task(1, 0);
        cx1.rows_before = 4;
        assert_eq!(step.apply(fill, &mut cx1).expect("fill").num_rows(), 0);
        // "x" in tasks 2.. : only task 2 keeps it.
        let mut cx = StepContext::for_task(3, 0);
        assert_eq!(
            step.apply(batch(&[Some("x")]), &mut cx)
                .expect("x")
                .num_rows(),
            0
        );
        let mut cx = StepContext::for_task(2, 0);
        assert_eq!(
            step.apply(batch(&[Some("x")]), &mut cx)
                .expect("x")
                .num_rows(),
            1
        );
    }
}
