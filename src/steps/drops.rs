//! The rows a full-pass step decided to drop, by task and sorted: collected while
//! settling within the step's memory budget ([`Drops`]) and read by the main pass
//! ([`DropLists`]).
//!
//! While they fit the budget (16 bytes a row at most) the rows stay in memory, a sorted
//! list per task. Past it they go to sorted runs in the step's spill directory, merged
//! at the end into one file of (task, row) records, 12 bytes a dropped row, in (task,
//! row) order; the main pass then reads a batch's range of it (a binary search on the
//! file), and memory holds one entry a task. Either way a task sees the same rows.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use super::spill::{Rec, Runs, io_err};
use super::{StepContext, StepError};

/// Bytes of a dropped row in the file: task (4), row (8), little-endian.
const DROP: u64 = 12;

/// The rows a full-pass step decided to drop, by task, sorted; set once by `settle`.
#[derive(Debug, Default)]
pub struct DropLists(OnceLock<Decided>);

#[derive(Debug)]
enum Decided {
    Memory(HashMap<u32, Vec<u64>>),
    File(DropFile),
}

/// The drops past the budget: (task, row) records in order in `path`.
#[derive(Debug)]
struct DropFile {
    file: Mutex<File>,
    path: PathBuf,
    /// Each task's records, as [first, end) record numbers.
    tasks: HashMap<u32, (u64, u64)>,
}

impl DropFile {
    /// The rows of `task` in `start..end`, in order.
    fn rows(&self, task: u32, start: u64, end: u64) -> std::io::Result<Vec<u64>> {
        let Some(&(first, last)) = self.tasks.get(&task) else {
            return Ok(Vec::new());
        };
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut row_at = |i: u64| -> std::io::Result<u64> {
            let mut b = [0u8; 8];
            f.seek(SeekFrom::Start(i * DROP + 4))?;
            f.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        // The first record in [lo, hi) whose row is at least `row`.
        let mut first_at_least = |row: u64, mut lo: u64, mut hi: u64| -> std::io::Result<u64> {
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if row_at(mid)? < row {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok(lo)
        };
        let from = first_at_least(start, first, last)?;
        let to = first_at_least(end, from, last)?;
        let mut bytes = vec![0u8; ((to - from) * DROP) as usize];
        f.seek(SeekFrom::Start(from * DROP))?;
        f.read_exact(&mut bytes)?;
        Ok(bytes
            .chunks_exact(DROP as usize)
            .map(|c| u64::from_le_bytes(super::spill::le(c, 4)))
            .collect())
    }
}

impl DropLists {
    /// Stores the decisions `drops` collected; `step` names the step in errors.
    pub fn set(&self, drops: Drops<'_>, step: &str) -> Result<(), StepError> {
        let decided = drops.finish()?;
        self.0
            .set(decided)
            .map_err(|_| StepError::internal(format!("{step} settled twice")))
    }

    /// True once `settle` has decided.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// True when the decisions went to a file (they outgrew the budget).
    #[cfg(test)]
    pub fn on_disk(&self) -> bool {
        matches!(self.0.get(), Some(Decided::File(_)))
    }

    /// `batch` (rows `cx.rows_before..` of task `cx.task` at this step) without the
    /// dropped rows, counted under `counter`.
    pub fn apply(
        &self,
        batch: RecordBatch,
        cx: &mut StepContext,
        step: &str,
        counter: &str,
    ) -> Result<RecordBatch, StepError> {
        let decided = self.0.get().ok_or_else(|| {
            StepError::internal(format!("{step} ran before its full pass settled"))
        })?;
        let Ok(task) = u32::try_from(cx.task) else {
            return Ok(batch);
        };
        let start = cx.rows_before;
        let end = start + batch.num_rows() as u64;
        let read;
        let rows: &[u64] = match decided {
            Decided::Memory(drops) => {
                let Some(rows) = drops.get(&task) else {
                    return Ok(batch);
                };
                let from = rows.partition_point(|r| *r < start);
                let to = rows.partition_point(|r| *r < end);
                &rows[from..to]
            }
            Decided::File(f) => {
                read = f.rows(task, start, end).map_err(|e| {
                    StepError::io(
                        format!(
                            "cannot read the rows {step} drops from {}",
                            f.path.display()
                        ),
                        e,
                    )
                })?;
                &read
            }
        };
        if rows.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for r in rows {
            keep[(r - start) as usize] = false;
        }
        cx.count(counter, rows.len() as u64);
        filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(StepError::from)
    }
}

/// The rows to drop as a settle finds them, in any order, within `budget` bytes: past
/// it, sorted runs in the step's spill directory.
pub struct Drops<'a> {
    runs: &'a Runs,
    rows: HashMap<u32, Vec<u64>>,
    held: usize,
    /// Rows held before a run is written (16 bytes a row at most: a list's doubling).
    cap: usize,
    written: Vec<PathBuf>,
}

impl<'a> Drops<'a> {
    pub fn new(runs: &'a Runs, budget: u64) -> Drops<'a> {
        Drops {
            runs,
            rows: HashMap::new(),
            held: 0,
            cap: (budget / 16).max(64) as usize,
            written: Vec::new(),
        }
    }

    pub fn push(&mut self, task: u32, row: u64) -> Result<(), StepError> {
        self.rows.entry(task).or_default().push(row);
        self.held += 1;
        if self.held >= self.cap {
            self.spill()?;
        }
        Ok(())
    }

    /// The rows held, as one sorted run (the key is the position, so that runs merge
    /// in (task, row) order).
    fn spill(&mut self) -> Result<(), StepError> {
        let mut tasks: Vec<(u32, Vec<u64>)> = self.rows.drain().collect();
        tasks.sort_unstable_by_key(|(t, _)| *t);
        let records = tasks.into_iter().flat_map(|(task, mut rows)| {
            rows.sort_unstable();
            rows.into_iter().map(move |row| Rec {
                key: (u128::from(task) << 64) | u128::from(row),
                task,
                row,
            })
        });
        self.runs.write_sorted(records, &mut self.written)?;
        self.held = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<Decided, StepError> {
        if self.written.is_empty() {
            for rows in self.rows.values_mut() {
                rows.sort_unstable();
                rows.dedup();
            }
            return Ok(Decided::Memory(std::mem::take(&mut self.rows)));
        }
        self.spill()?;
        let path = self.runs.new_path()?;
        let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
        let mut w = BufWriter::with_capacity(64 << 10, file);
        let mut tasks: HashMap<u32, (u64, u64)> = HashMap::new();
        let (mut n, mut last) = (0u64, None);
        let mut failed = None;
        self.runs.merge(std::mem::take(&mut self.written), |r| {
            if last == Some(r.key) || failed.is_some() {
                return;
            }
            last = Some(r.key);
            let wrote = w
                .write_all(&r.task.to_le_bytes())
                .and_then(|()| w.write_all(&r.row.to_le_bytes()));
            failed = wrote.err();
            tasks.entry(r.task).or_insert((n, n)).1 = n + 1;
            n += 1;
        })?;
        failed
            .map_or_else(|| w.flush(), Err)
            .map_err(|e| io_err("write", &path, e))?;
        drop(w);
        let file = File::open(&path).map_err(|e| io_err("open", &path, e))?;
        Ok(Decided::File(DropFile {
            file: Mutex::new(file),
            path,
            tasks,
        }))
    }
}

impl Drop for Drops<'_> {
    fn drop(&mut self) {
        for f in &self.written {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, UInt64Array};
    use std::sync::Arc;

    /// Decisions past the budget go to a file and a task sees the same rows as from
    /// memory, batch by batch, whatever order they were found in.
    #[test]
    fn drops_past_the_budget_read_back_as_from_memory() {
        let mut next = crate::steps::test_util::xorshift(0x9E37_79B9_7F4A_7C15);
        let found: Vec<(u32, u64)> = (0..5000)
            .map(|_| ((next() % 7) as u32, next() % 3000))
            .collect();
        let runs = Runs::default();
        let (memory, disk) = (DropLists::default(), DropLists::default());
        let mut a = Drops::new(&runs, 1 << 30);
        let mut b = Drops::new(&runs, 1024);
        for &(t, r) in &found {
            a.push(t, r).expect("push");
            b.push(t, r).expect("push");
        }
        memory.set(a, "t").expect("set");
        disk.set(b, "t").expect("set");
        assert!(!memory.on_disk() && disk.on_disk());
        for task in 0..8usize {
            for (start, len) in [
                (0u64, 3000usize),
                (0, 17),
                (100, 900),
                (2990, 64),
                (5000, 10),
            ] {
                let batch = RecordBatch::try_from_iter(vec![(
                    "n",
                    Arc::new(UInt64Array::from_iter_values(start..start + len as u64)) as ArrayRef,
                )])
                .expect("batch");
                let kept = |d: &DropLists| {
                    let mut cx = StepContext::for_task(task, 0);
                    cx.rows_before = start;
                    let out = d
                        .apply(batch.clone(), &mut cx, "t", "dropped")
                        .expect("apply");
                    (out, cx.counts.get("dropped").copied())
                };
                let (m, d) = (kept(&memory), kept(&disk));
                assert_eq!(m.0, d.0, "task {task} rows {start}+{len}");
                assert_eq!(m.1, d.1);
                let want = len as u64
                    - found
                        .iter()
                        .filter(|&&(t, r)| {
                            t as usize == task && (start..start + len as u64).contains(&r)
                        })
                        .map(|&(_, r)| r)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len() as u64;
                assert_eq!(m.0.num_rows() as u64, want);
            }
        }
    }
}
