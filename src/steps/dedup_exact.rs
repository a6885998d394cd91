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

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::text::{string_column, utf8, value};
use super::{Step, StepContext, StepOptions};

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
    pub run_bytes: crate::spec::ByteSize,
}

fn default_column() -> String {
    "text".into()
}

fn default_run_bytes() -> crate::spec::ByteSize {
    crate::spec::ByteSize(64 << 20)
}

/// Files merged at once while settling.
const FAN_IN: usize = 128;
/// Bytes of one record: hash (16), task (4), row (8), little-endian.
const RECORD: usize = 28;

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
            spill: OnceLock::new(),
            runs: Mutex::new(Vec::new()),
            run_seq: AtomicU64::new(0),
            drops: OnceLock::new(),
        }))
    }
}

#[derive(Debug)]
struct DedupExact {
    opts: DedupExactOptions,
    source: usize,
    schema: SchemaRef,
    /// Created on first use, removed when the step is dropped.
    spill: OnceLock<Result<tempfile::TempDir, String>>,
    runs: Mutex<Vec<PathBuf>>,
    run_seq: AtomicU64,
    /// Rows to drop, by task, sorted; set by `settle`.
    drops: OnceLock<HashMap<u32, Vec<u64>>>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    hash: u128,
    task: u32,
    row: u64,
}

impl Rec {
    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.hash.to_le_bytes())?;
        w.write_all(&self.task.to_le_bytes())?;
        w.write_all(&self.row.to_le_bytes())
    }

    fn read(r: &mut impl Read) -> std::io::Result<Option<Rec>> {
        let mut b = [0u8; RECORD];
        match r.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(&b[..16]);
        let mut t = [0u8; 4];
        t.copy_from_slice(&b[16..20]);
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[20..]);
        Ok(Some(Rec {
            hash: u128::from_le_bytes(h),
            task: u32::from_le_bytes(t),
            row: u64::from_le_bytes(w),
        }))
    }
}

/// Records sorted by (hash, task, row), from several sorted run files.
struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Rec, usize)>>,
}

impl Merge {
    fn open(files: &[PathBuf]) -> Result<Merge, String> {
        let mut readers = Vec::with_capacity(files.len());
        let mut heap = BinaryHeap::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let file = File::open(f).map_err(|e| io_err("open", f, e))?;
            let mut r = BufReader::with_capacity(32 << 10, file);
            if let Some(rec) = Rec::read(&mut r).map_err(|e| io_err("read", f, e))? {
                heap.push(Reverse((rec, i)));
            }
            readers.push(r);
        }
        Ok(Merge { readers, heap })
    }

    fn next(&mut self) -> Result<Option<Rec>, String> {
        let Some(Reverse((rec, i))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = Rec::read(&mut self.readers[i])
            .map_err(|e| format!("cannot read a dedup spill run: {e}"))?
        {
            self.heap.push(Reverse((next, i)));
        }
        Ok(Some(rec))
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!(
        "cannot {what} the dedup spill file {}: {e} (is the temporary directory full? set TMPDIR to a larger disk)",
        path.display()
    )
}

/// What a task buffers in the first pass.
#[derive(Default)]
struct Observed {
    records: Vec<Rec>,
}

impl DedupExact {
    fn spill_dir(&self) -> Result<&Path, String> {
        self.spill
            .get_or_init(|| {
                tempfile::Builder::new()
                    .prefix("kiln-dedup-")
                    .tempdir()
                    .map_err(|e| {
                        format!(
                            "cannot create a spill directory under {}: {e} (set TMPDIR to a writable disk)",
                            std::env::temp_dir().display()
                        )
                    })
            })
            .as_ref()
            .map(|d| d.path())
            .map_err(Clone::clone)
    }

    fn new_run(&self) -> Result<PathBuf, String> {
        let n = self.run_seq.fetch_add(1, Ordering::Relaxed);
        Ok(self.spill_dir()?.join(format!("run-{n:08}.bin")))
    }

    /// Sorts and writes `records` as one run.
    fn flush(&self, records: &mut Vec<Rec>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        records.sort_unstable();
        let path = self.new_run()?;
        let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
        let mut w = BufWriter::with_capacity(64 << 10, file);
        for r in records.iter() {
            r.write(&mut w).map_err(|e| io_err("write", &path, e))?;
        }
        w.flush().map_err(|e| io_err("write", &path, e))?;
        records.clear();
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path);
        Ok(())
    }

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

    fn full_pass(&self) -> bool {
        true
    }

    fn observe(&self, batch: &RecordBatch, cx: &mut StepContext) -> Result<(), String> {
        let texts = utf8(batch.column(self.source))?;
        let task = u32::try_from(cx.task).map_err(|_| "more than 2^32 tasks".to_string())?;
        let first_row = cx.rows_before;
        let budget = (self.opts.run_bytes.get() as usize / RECORD).max(1024);
        let mut buf = String::new();
        let mut full = Vec::new();
        {
            let state: &mut Observed = cx.state(Observed::default);
            for i in 0..texts.len() {
                // Nulls are never duplicates of anything.
                if let Some(t) = value(&texts, i) {
                    state.records.push(Rec {
                        hash: self.hash(t, &mut buf),
                        task,
                        row: first_row + i as u64,
                    });
                }
            }
            if state.records.len() >= budget {
                full = std::mem::take(&mut state.records);
            }
        }
        self.flush(&mut full)
    }

    fn observed(&self, cx: &mut StepContext) -> Result<(), String> {
        let mut records = std::mem::take(&mut cx.state(Observed::default).records);
        self.flush(&mut records)
    }

    fn settle(&self) -> Result<(), String> {
        let mut runs = std::mem::take(&mut *self.runs.lock().unwrap_or_else(|p| p.into_inner()));
        // Merge in rounds so that no more than FAN_IN files are open at once.
        while runs.len() > FAN_IN {
            let mut next = Vec::new();
            for group in runs.chunks(FAN_IN) {
                let path = self.new_run()?;
                let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
                let mut w = BufWriter::with_capacity(64 << 10, file);
                let mut m = Merge::open(group)?;
                while let Some(r) = m.next()? {
                    r.write(&mut w).map_err(|e| io_err("write", &path, e))?;
                }
                w.flush().map_err(|e| io_err("write", &path, e))?;
                for f in group {
                    let _ = std::fs::remove_file(f);
                }
                next.push(path);
            }
            runs = next;
        }
        let mut drops: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut m = Merge::open(&runs)?;
        let mut current: Option<u128> = None;
        while let Some(r) = m.next()? {
            if current == Some(r.hash) {
                drops.entry(r.task).or_default().push(r.row);
            } else {
                current = Some(r.hash);
            }
        }
        for f in &runs {
            let _ = std::fs::remove_file(f);
        }
        for rows in drops.values_mut() {
            rows.sort_unstable();
        }
        self.drops
            .set(drops)
            .map_err(|_| "dedup.exact settled twice".to_string())
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, String> {
        let drops = self
            .drops
            .get()
            .ok_or("dedup.exact ran before its full pass settled")?;
        let Some(rows) = u32::try_from(cx.task).ok().and_then(|t| drops.get(&t)) else {
            return Ok(batch);
        };
        let start = cx.rows_before;
        let end = start + batch.num_rows() as u64;
        let from = rows.partition_point(|r| *r < start);
        let to = rows.partition_point(|r| *r < end);
        if from == to {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for r in &rows[from..to] {
            keep[(r - start) as usize] = false;
        }
        cx.count("duplicates", (to - from) as u64);
        filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(|e| e.to_string())
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
        for (task, b) in [(1usize, &task1), (0, &task0)] {
            let mut cx = StepContext::for_task(task, 0);
            step.observe(b, &mut cx).expect("observe");
            cx.rows_before += b.num_rows() as u64;
            step.observe(&fill, &mut cx).expect("observe");
            step.observed(&mut cx).expect("observed");
        }
        for t in 2..(FAN_IN + 20) {
            let mut cx = StepContext::for_task(t, 0);
            step.observe(&batch(&[Some("x")]), &mut cx)
                .expect("observe");
            step.observed(&mut cx).expect("observed");
        }
        step.settle().expect("settles");
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
