//! Sorted spill runs for full-pass steps: (key, task, row) records written in sorted
//! runs to a local directory and merged back in key order, with at most [`FAN_IN`]
//! files open at once. `dedup.exact` keys by content hash, `dedup.minhash` by
//! (band hash, band).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StepError;

/// Files merged at once while settling.
pub const FAN_IN: usize = 128;
/// Bytes of one record: hash (16), task (4), row (8), little-endian.
pub const RECORD: usize = 28;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub key: u128,
    pub task: u32,
    pub row: u64,
}

impl Rec {
    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.key.to_le_bytes())?;
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
            key: u128::from_le_bytes(h),
            task: u32::from_le_bytes(t),
            row: u64::from_le_bytes(w),
        }))
    }
}

impl Rec {
    /// As [`Rec::read`], but a record cut short is an error, not the end.
    fn read_whole(r: &mut impl Read) -> std::io::Result<Option<Rec>> {
        let mut b = [0u8; RECORD];
        let mut got = 0;
        while got < RECORD {
            match r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "a record cut short",
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Rec::read(&mut &b[..])
    }
}

/// Records sorted by (hash, task, row), from several sorted run files.
pub struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Rec, usize)>>,
}

impl Merge {
    pub fn open(files: &[PathBuf]) -> Result<Merge, StepError> {
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

    pub fn next(&mut self) -> Result<Option<Rec>, StepError> {
        // The smallest record is replaced in place by the next of its run (one sift
        // down), rather than popped and the next pushed (a sift down and a sift up).
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let Reverse((rec, i)) = *top;
        match Rec::read(&mut self.readers[i])
            .map_err(|e| StepError::io("cannot read a spill run", e))?
        {
            Some(next) => *top = Reverse((next, i)),
            None => {
                std::collections::binary_heap::PeekMut::pop(top);
            }
        }
        Ok(Some(rec))
    }
}

pub fn io_err(what: &str, path: &Path, e: std::io::Error) -> StepError {
    StepError::io(
        format!(
            "cannot {what} the spill file {} (is the temporary directory full? set TMPDIR to a larger disk)",
            path.display()
        ),
        e,
    )
}

/// A spill directory for sorted runs. Created on first use, removed (with its files)
/// when dropped. Each task's observer keeps the paths of the runs it wrote (its part of
/// the full pass); settling merges every task's.
#[derive(Debug, Default)]
pub struct Runs {
    dir: OnceLock<std::io::Result<tempfile::TempDir>>,
    seq: AtomicU64,
}

impl Runs {
    fn dir(&self) -> Result<&Path, StepError> {
        self.dir
            .get_or_init(|| tempfile::Builder::new().prefix("kiln-spill-").tempdir())
            .as_ref()
            .map(|d| d.path())
            .map_err(|e| {
                StepError::io(
                    format!(
                        "cannot create a spill directory under {} (set TMPDIR to a writable disk)",
                        std::env::temp_dir().display()
                    ),
                    std::io::Error::new(e.kind(), e.to_string()),
                )
            })
    }

    /// A new file's path in the spill directory (removed with it).
    pub fn new_path(&self) -> Result<PathBuf, StepError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Ok(self.dir()?.join(format!("run-{n:08}.bin")))
    }

    /// Sorts `records` and writes them as one run, whose path goes to `written`;
    /// leaves `records` empty.
    pub fn flush(
        &self,
        records: &mut Vec<Rec>,
        written: &mut Vec<PathBuf>,
    ) -> Result<(), StepError> {
        if records.is_empty() {
            return Ok(());
        }
        records.sort_unstable();
        self.write_sorted(records.drain(..), written)
    }

    /// Writes `records`, already in order, as one run, whose path goes to `written`.
    pub fn write_sorted(
        &self,
        records: impl IntoIterator<Item = Rec>,
        written: &mut Vec<PathBuf>,
    ) -> Result<(), StepError> {
        let path = self.new_path()?;
        let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
        let mut w = BufWriter::with_capacity(64 << 10, file);
        for r in records {
            r.write(&mut w).map_err(|e| io_err("write", &path, e))?;
        }
        w.flush().map_err(|e| io_err("write", &path, e))?;
        written.push(path);
        Ok(())
    }

    /// The records of `runs`, in (key, task, row) order, handed to `each`; the runs are
    /// deleted afterwards.
    pub fn merge(
        &self,
        mut runs: Vec<PathBuf>,
        mut each: impl FnMut(Rec),
    ) -> Result<(), StepError> {
        // No more than FAN_IN files open at once: while there are more runs, merge the
        // fewest that leave FAN_IN for the last merge (at most FAN_IN at a time, oldest
        // first, the merged run joining the end). 200 runs merge 73 into one, not all
        // 200 in two rounds: less written again, and less disk at the peak.
        while runs.len() > FAN_IN {
            let k = (runs.len() - FAN_IN + 1).min(FAN_IN);
            let group: Vec<PathBuf> = runs.drain(..k).collect();
            let path = self.new_path()?;
            let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
            let mut w = BufWriter::with_capacity(64 << 10, file);
            let mut m = Merge::open(&group)?;
            while let Some(r) = m.next()? {
                r.write(&mut w).map_err(|e| io_err("write", &path, e))?;
            }
            w.flush().map_err(|e| io_err("write", &path, e))?;
            drop(m);
            for f in &group {
                let _ = std::fs::remove_file(f);
            }
            runs.push(path);
        }
        let mut m = Merge::open(&runs)?;
        let bytes: u64 = runs
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let merged = if bytes < PIPELINE_BYTES {
            std::iter::from_fn(|| m.next().transpose()).try_for_each(|r| r.map(&mut each))
        } else {
            pipelined(m, each)
        };
        for f in &runs {
            let _ = std::fs::remove_file(f);
        }
        merged
    }
}

/// Runs at least this large merge on a thread of their own ([`pipelined`]).
const PIPELINE_BYTES: u64 = 4 << 20;
/// Records a chunk hands from the merging thread to the caller's.
const CHUNK: usize = 16 << 10;

/// The records of `m` handed to `each` on this thread while another thread merges (the
/// heap of runs and the reads) ahead of it, a few chunks at most: a settle's merge and
/// what it does with each record (a dedup's union-find and key index) overlap instead
/// of adding up.
fn pipelined(mut m: Merge, mut each: impl FnMut(Rec)) -> Result<(), StepError> {
    use std::sync::mpsc::{channel, sync_channel};
    std::thread::scope(|s| {
        let (full, merged) = sync_channel::<Vec<Rec>>(4);
        let (used, free) = channel::<Vec<Rec>>();
        let merging = s.spawn(move || -> Result<(), StepError> {
            loop {
                let mut chunk = free.try_recv().unwrap_or_default();
                chunk.clear();
                chunk.reserve(CHUNK);
                while chunk.len() < CHUNK {
                    match m.next()? {
                        Some(r) => chunk.push(r),
                        None => break,
                    }
                }
                let last = chunk.len() < CHUNK;
                // A send fails only when the caller's side is gone: nothing to do.
                if (!chunk.is_empty() && full.send(chunk).is_err()) || last {
                    return Ok(());
                }
            }
        });
        for chunk in merged {
            chunk.iter().for_each(|r| each(*r));
            let _ = used.send(chunk);
        }
        merging
            .join()
            .map_err(|_| StepError::internal("the thread merging spill runs panicked"))?
    })
}

impl Runs {
    /// A task's part (its sorted runs) for another worker: the runs merged into one
    /// sorted stream of records; the runs are deleted.
    pub fn write_part(
        &self,
        part: super::Part,
        out: &mut dyn Write,
        step: &str,
    ) -> Result<(), StepError> {
        let runs = all_runs(vec![part], step)?;
        let mut w = BufWriter::with_capacity(64 << 10, out);
        let mut failed = None;
        self.merge(runs, |r| {
            if failed.is_none()
                && let Err(e) = r.write(&mut w)
            {
                failed = Some(e);
            }
        })?;
        match failed.map_or_else(|| w.flush(), Err) {
            Err(e) => Err(StepError::io(format!("cannot write a part of `{step}`"), e)),
            Ok(()) => Ok(()),
        }
    }

    /// A part [`Runs::write_part`] wrote, as one run in this spill directory. Refuses
    /// records out of order or a truncated record: a part is never half read.
    pub fn read_part(&self, input: &mut dyn Read, step: &str) -> Result<super::Part, StepError> {
        let path = self.new_path()?;
        let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
        let mut w = BufWriter::with_capacity(64 << 10, file);
        let mut r = std::io::BufReader::with_capacity(64 << 10, input);
        let mut last: Option<Rec> = None;
        loop {
            let rec = match Rec::read_whole(&mut r) {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(StepError::io(format!("cannot read a part of `{step}`"), e));
                }
            };
            if last.is_some_and(|l| l > rec) {
                let _ = std::fs::remove_file(&path);
                return Err(StepError::internal(format!(
                    "a stored part of `{step}` is not sorted: it was not written by this \
                     version of kiln"
                )));
            }
            last = Some(rec);
            rec.write(&mut w).map_err(|e| io_err("write", &path, e))?;
        }
        w.flush().map_err(|e| io_err("write", &path, e))?;
        Ok(Box::new(vec![path]))
    }
}

/// Reads `input` as records of `N` bytes, handing each to `each`; a record cut short is
/// an error, naming `what`.
pub fn read_fixed<const N: usize>(
    input: Box<dyn Read + Send>,
    what: &str,
    mut each: impl FnMut(&[u8; N]),
) -> Result<(), StepError> {
    let mut r = BufReader::with_capacity(64 << 10, input);
    let mut b = [0u8; N];
    loop {
        let mut got = 0;
        while got < N {
            match r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(()),
                Ok(0) => {
                    return Err(StepError::internal(format!("{what}: a record cut short")));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StepError::io(format!("cannot read {what}"), e)),
            }
        }
        each(&b);
    }
}

/// The little-endian u32, u64 or u128 at `at` of a fixed-size record.
pub fn le<const W: usize>(b: &[u8], at: usize) -> [u8; W] {
    let mut out = [0u8; W];
    out.copy_from_slice(&b[at..at + W]);
    out
}

/// The section of `key` among `n`: its bucket of the key index (its top byte,
/// [`super::keys::bucket`]) scaled to `n`. Every record of one key is in one section,
/// and a section is whole buckets, so a section of a later run reads only its own
/// buckets of an earlier index.
pub fn section(key: u128, n: usize) -> usize {
    super::keys::bucket(key) * n.max(1) / super::keys::BUCKETS
}

impl Runs {
    /// A task's part as `n` sections by [`section`], each sorted, one after the other;
    /// the byte offset where each ends. The runs are deleted.
    pub fn write_sections(
        &self,
        part: super::Part,
        n: usize,
        out: &mut dyn Write,
        step: &str,
    ) -> Result<Vec<u64>, StepError> {
        let n = n.max(1);
        // The merged stream routed to one local file per section (each stays sorted),
        // then the files one after the other.
        let mut files = Vec::with_capacity(n);
        let mut writers = Vec::with_capacity(n);
        for _ in 0..n {
            let path = self.new_path()?;
            let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
            writers.push(BufWriter::with_capacity(16 << 10, file));
            files.push(path);
        }
        let mut failed = None;
        self.merge(all_runs(vec![part], step)?, |r| {
            if failed.is_none()
                && let Err(e) = r.write(&mut writers[section(r.key, n)])
            {
                failed = Some(e);
            }
        })?;
        let done = || -> std::io::Result<Vec<u64>> {
            if let Some(e) = failed {
                return Err(e);
            }
            let mut ends = Vec::with_capacity(n);
            let mut at = 0;
            let mut out = BufWriter::with_capacity(64 << 10, out);
            for (w, path) in writers.into_iter().zip(&files) {
                drop(w.into_inner().map_err(|e| e.into_error())?);
                at += std::io::copy(&mut File::open(path)?, &mut out)?;
                ends.push(at);
            }
            out.flush()?;
            Ok(ends)
        };
        let ends = done();
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        ends.map_err(|e| StepError::io(format!("cannot write the sections of a `{step}` part"), e))
    }
}

/// The observer of a dedup step: (key, task, row) records of one task, written as a
/// sorted run before the buffer would pass `run_bytes`; its part is the runs' paths.
pub struct SpillObserver<'a> {
    runs: &'a Runs,
    pub task: u32,
    pub records: Vec<Rec>,
    budget: usize,
    written: Vec<PathBuf>,
}

impl<'a> SpillObserver<'a> {
    /// For task `task`, buffering up to `run_bytes` of records before a run is written.
    pub fn new(runs: &'a Runs, task: usize, run_bytes: u64) -> Result<Self, StepError> {
        Ok(SpillObserver {
            runs,
            task: u32::try_from(task).map_err(|_| StepError::internal("more than 2^32 tasks"))?,
            records: Vec::new(),
            budget: (run_bytes as usize / std::mem::size_of::<Rec>()).max(1024),
            written: Vec::new(),
        })
    }

    /// Makes room for `n` more records: writes a run first if they would pass the
    /// budget, and reserves the whole budget once, so that the buffer never grows by
    /// doubling (which would hold up to twice `run_bytes`, and copy it each time).
    pub fn make_room(&mut self, n: usize) -> Result<(), StepError> {
        if !self.records.is_empty() && self.records.len() + n > self.budget {
            self.runs.flush(&mut self.records, &mut self.written)?;
        }
        let want = (self.records.len() + n).max(self.budget);
        if self.records.capacity() < want {
            self.records.reserve_exact(want - self.records.len());
        }
        Ok(())
    }

    /// Writes what is buffered; the paths of every run this task wrote.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, StepError> {
        self.runs.flush(&mut self.records, &mut self.written)?;
        Ok(self.written)
    }
}

/// Every task's runs, in task order, as one list for [`Runs::merge`].
pub fn all_runs(parts: Vec<super::Part>, step: &str) -> Result<Vec<PathBuf>, StepError> {
    Ok(super::parts::<Vec<PathBuf>>(parts, step)?
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u128, task: u32, row: u64) -> Rec {
        Rec { key, task, row }
    }

    /// A task's runs travel as one sorted stream and come back as one run with the same
    /// records; a stream cut inside a record, or out of order, is refused.
    #[test]
    fn a_part_travels_whole_and_sorted_or_not_at_all() {
        let runs = Runs::default();
        let mut written = Vec::new();
        runs.flush(&mut vec![rec(5, 1, 0), rec(1, 1, 3)], &mut written)
            .expect("run");
        runs.flush(&mut vec![rec(3, 1, 1), rec(5, 1, 2)], &mut written)
            .expect("run");
        let mut bytes = Vec::new();
        runs.write_part(Box::new(written), &mut bytes, "t")
            .expect("writes");
        assert_eq!(bytes.len(), 4 * RECORD);
        let back = runs.read_part(&mut &bytes[..], "t").expect("reads");
        let mut got = Vec::new();
        runs.merge(all_runs(vec![back], "t").expect("runs"), |r| got.push(r))
            .expect("merges");
        assert!(got == [rec(1, 1, 3), rec(3, 1, 1), rec(5, 1, 0), rec(5, 1, 2)]);

        let cut = runs.read_part(&mut &bytes[..bytes.len() - 1], "t");
        assert!(cut.is_err_and(|e| e.kind == crate::error::StepErrorKind::Io));
        let mut swapped = bytes[RECORD..2 * RECORD].to_vec();
        swapped.extend_from_slice(&bytes[..RECORD]);
        let e = runs.read_part(&mut &swapped[..], "t").expect_err("refused");
        assert!(e.message.contains("not sorted"), "{}", e.message);
    }

    /// Runs past [`PIPELINE_BYTES`] merge on a thread of their own: every record, in
    /// order, none twice, and the runs deleted.
    #[test]
    fn large_runs_merge_in_order_on_another_thread() {
        let runs = Runs::default();
        let mut written = Vec::new();
        let per_run = PIPELINE_BYTES as usize / RECORD / 2 + 3 * CHUNK / 2;
        for i in 0..3u64 {
            let mut recs: Vec<Rec> = (0..per_run as u64)
                .map(|j| rec(u128::from(j * 3 + i), 7, j))
                .collect();
            runs.flush(&mut recs, &mut written).expect("run");
        }
        let paths = written.clone();
        let mut got = 0u128;
        runs.merge(written, |r| {
            assert_eq!(r.key, got, "in order");
            got += 1;
        })
        .expect("merges");
        assert_eq!(got, 3 * per_run as u128);
        assert!(paths.iter().all(|p| !p.exists()));
    }

    /// More runs than [`FAN_IN`] merge in order, in as few records written again as
    /// leave one last merge of [`FAN_IN`], with no run left behind.
    #[test]
    fn more_runs_than_the_fan_in_merge_in_order_and_leave_no_file() {
        for n in [FAN_IN + 1, 2 * FAN_IN + 5, FAN_IN * FAN_IN / 8] {
            let runs = Runs::default();
            let mut written = Vec::new();
            for i in 0..n as u64 {
                // Run i holds keys i, i + n, i + 2n: every run interleaves with every other.
                let mut recs: Vec<Rec> = (0..3u64)
                    .map(|j| rec(u128::from(i + j * n as u64), 0, i))
                    .collect();
                runs.flush(&mut recs, &mut written).expect("run");
            }
            let dir = runs.dir().expect("dir").to_path_buf();
            let mut got = Vec::new();
            runs.merge(written, |r| got.push(r.key)).expect("merges");
            let want: Vec<u128> = (0..3 * n as u128).collect();
            assert!(got == want, "{n} runs merged out of order");
            let left = std::fs::read_dir(&dir).expect("lists").count();
            assert_eq!(left, 0, "{n} runs: {left} files left");
        }
    }
}
