//! Counters shared by the runtime, the progress display, the final summary and the
//! `--report` JSON.

mod progress;

pub use progress::Progress;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Time one stage of the pipeline spent working, waiting for input and blocked on a
/// full output channel. Summed over all threads, so it can exceed the elapsed time.
#[derive(Debug, Default)]
pub struct StageTimer {
    working: AtomicU64,
    waiting: AtomicU64,
    blocked: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StageTimer {
    pub fn add_working(&self, d: Duration) {
        self.working.fetch_add(nanos(d), Ordering::Relaxed);
    }
    pub fn add_waiting(&self, d: Duration) {
        self.waiting.fetch_add(nanos(d), Ordering::Relaxed);
    }
    pub fn add_blocked(&self, d: Duration) {
        self.blocked.fetch_add(nanos(d), Ordering::Relaxed);
    }
    fn snapshot(&self, stage: &str) -> StageReport {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        StageReport {
            stage: stage.to_string(),
            working_s: s(&self.working),
            waiting_s: s(&self.waiting),
            blocked_s: s(&self.blocked),
        }
    }
}

/// Counters of one step.
#[derive(Debug)]
pub struct StepStats {
    pub name: String,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// Rows the step failed on and left out (on_error skip / dead_letter).
    pub rows_rejected: AtomicU64,
    pub timer: StageTimer,
    /// Named counters of committed tasks (tokens, drops per rule).
    pub counts: Mutex<BTreeMap<String, u64>>,
}

/// Live counters of a run.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub objects_total: u64,
    pub bytes_total: u64,
    pub objects_done: AtomicU64,
    /// Bytes fetched from storage (a projected Parquet read fetches a fraction).
    pub bytes_read: AtomicU64,
    /// Bytes of the input listing processed, for progress: whole objects, whether or not
    /// every byte had to be fetched.
    pub bytes_done: AtomicU64,
    /// Records read: rows decoded, and records a decoder left out.
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// Records left out under on_error skip / dead_letter, by decoders and steps.
    pub rows_rejected: AtomicU64,
    /// Objects (or their rest) left out under on_error skip / dead_letter.
    pub objects_rejected: AtomicU64,
    /// Rejections of committed tasks by stage.
    pub rejected: Mutex<BTreeMap<String, u64>>,
    pub shards: AtomicU64,
    pub bytes_out: AtomicU64,
    pub read: StageTimer,
    pub decode: StageTimer,
    pub encode: StageTimer,
    pub upload: StageTimer,
    pub steps: Vec<StepStats>,
    /// Nanoseconds spent in the commit protocol: checking the sink and storing the plan,
    /// removing a killed attempt's files, commit records, listing the committed tasks,
    /// manifest and `_SUCCESS` (summed over tasks running at once).
    pub protocol: AtomicU64,
    /// Nanoseconds of stages shared with other workers spent storing this worker's
    /// parts, waiting at the barrier, and reading every part back (docs/workers.md).
    pub shared_stages: AtomicU64,
    /// What the run is doing now, for the progress display.
    phase: Mutex<Phase>,
}

/// A stage of a run, as the progress display shows it: each pass over the input has
/// its own counters and totals.
#[derive(Debug, Clone, Default)]
pub enum Phase {
    /// Checking the sink, reading back statistics: nothing to count yet.
    #[default]
    Preparing,
    /// A full pass (a dedup's, a fit's): every task read once more, counted apart from
    /// the run's own counters.
    Pass { label: String, stats: Arc<Stats> },
    /// The pass that writes the shards, counted by the run's own counters.
    Write,
}

impl Stats {
    pub fn new(objects_total: u64, bytes_total: u64, step_names: &[String]) -> Self {
        Stats {
            started: Instant::now(),
            objects_total,
            bytes_total,
            objects_done: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            objects_rejected: AtomicU64::new(0),
            rejected: Mutex::default(),
            shards: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            read: StageTimer::default(),
            decode: StageTimer::default(),
            encode: StageTimer::default(),
            upload: StageTimer::default(),
            protocol: AtomicU64::new(0),
            shared_stages: AtomicU64::new(0),
            phase: Mutex::default(),
            steps: step_names
                .iter()
                .map(|n| StepStats {
                    name: n.clone(),
                    rows_in: AtomicU64::new(0),
                    rows_out: AtomicU64::new(0),
                    rows_rejected: AtomicU64::new(0),
                    timer: StageTimer::default(),
                    counts: Mutex::default(),
                })
                .collect(),
        }
    }

    /// Adds a committed task's step counters to the run's.
    pub fn add_step_counts(&self, counts: &[BTreeMap<String, u64>]) {
        for (step, c) in self.steps.iter().zip(counts) {
            let mut total = step.counts.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in c {
                *total.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// Adds a committed task's rejections by stage to the run's.
    pub fn add_rejected(&self, counts: &crate::rejects::RejectCounts) {
        let mut total = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in &counts.by_stage {
            *total.entry(k.clone()).or_default() += v;
        }
    }

    /// Starts a phase: the display finishes the previous one's bar and starts its own.
    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    pub fn phase(&self) -> Phase {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `d` as time spent in the commit protocol.
    pub fn add_protocol(&self, d: std::time::Duration) {
        Self::add(&self.protocol, d.as_nanos() as u64);
    }

    /// Counts `d` as time a stage shared with other workers cost beyond the pass itself.
    pub fn add_shared_stages(&self, d: std::time::Duration) {
        Self::add(&self.shared_stages, d.as_nanos() as u64);
    }

    /// The run so far as a report.
    pub fn report(&self, head: ReportHead) -> Report {
        let elapsed = self.started.elapsed().as_secs_f64();
        let bytes_read = Self::get(&self.bytes_read);
        let rows_in = Self::get(&self.rows_in);
        let mut stages = vec![self.read.snapshot("read"), self.decode.snapshot("decode")];
        stages.extend(
            self.steps
                .iter()
                .enumerate()
                .map(|(i, s)| s.timer.snapshot(&format!("{}. {}", i + 1, s.name))),
        );
        stages.push(self.encode.snapshot("encode"));
        stages.push(self.upload.snapshot("upload"));
        Report {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            head,
            input: InputReport {
                objects: self.objects_total,
                bytes: self.bytes_total,
                bytes_read,
            },
            rows_in,
            rows_out: Self::get(&self.rows_out),
            rows_rejected: Self::get(&self.rows_rejected),
            objects_rejected: Self::get(&self.objects_rejected),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            steps: self
                .steps
                .iter()
                .map(|s| StepReport {
                    name: s.name.clone(),
                    rows_in: Self::get(&s.rows_in),
                    rows_out: Self::get(&s.rows_out),
                    rows_rejected: Self::get(&s.rows_rejected),
                    counts: s.counts.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                })
                .collect(),
            shards: Self::get(&self.shards),
            bytes_out: Self::get(&self.bytes_out),
            elapsed_s: elapsed,
            commit_protocol_s: Self::get(&self.protocol) as f64 / 1e9,
            shared_stages_s: Self::get(&self.shared_stages) as f64 / 1e9,
            peak_rss_bytes: peak_rss(),
            throughput: Throughput {
                input_mb_s: if elapsed > 0.0 {
                    bytes_read as f64 / 1e6 / elapsed
                } else {
                    0.0
                },
                rows_s: if elapsed > 0.0 {
                    rows_in as f64 / elapsed
                } else {
                    0.0
                },
            },
            stages,
            storage: crate::storage::http::counts(),
        }
    }
}

/// What the run was and how it ended; the first part of the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReportHead {
    pub pipeline: String,
    pub pipeline_hash: String,
    pub sink: String,
    /// `succeeded`, `failed`, `already_complete` or `interrupted`.
    pub status: String,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub tasks_total: usize,
    /// Tasks committed by an earlier run and skipped by this one.
    pub tasks_skipped: usize,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub objects: u64,
    pub bytes: u64,
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows the step failed on and left out (on_error skip / dead_letter).
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_rejected: u64,
    /// The step's named counters over the tasks this run committed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Stored input bytes read per second, in MB (1e6).
    pub input_mb_s: f64,
    pub rows_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub working_s: f64,
    pub waiting_s: f64,
    pub blocked_s: f64,
}

/// The machine-readable summary written by `--report`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kiln_version: String,
    #[serde(flatten)]
    pub head: ReportHead,
    pub input: InputReport,
    /// Records read: rows decoded, and records a decoder left out.
    pub rows_in: u64,
    pub rows_out: u64,
    /// Records left out under `on_error: skip | dead_letter` (by decoders and steps).
    pub rows_rejected: u64,
    /// Objects, or the rest of objects, left out under `on_error: skip | dead_letter`.
    pub objects_rejected: u64,
    /// Rejections of the tasks this run committed, by stage (`jsonl`, `step 2 cast`,
    /// `object`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, u64>,
    pub steps: Vec<StepReport>,
    pub shards: u64,
    pub bytes_out: u64,
    pub elapsed_s: f64,
    /// Seconds spent in the commit protocol (sink checks, stored plan, commit records,
    /// manifest; summed over tasks that commit at once), what resumability costs.
    pub commit_protocol_s: f64,
    /// Seconds of stages shared with other workers (a dedup or fit on `--worker I/N`)
    /// not spent computing this worker's parts: uploading them, waiting for the other
    /// workers' parts, reading them all back. 0 on one worker.
    pub shared_stages_s: f64,
    /// The process's peak resident memory (Linux `VmHWM`); absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    pub throughput: Throughput,
    pub stages: Vec<StageReport>,
    /// Storage requests, and the failed attempts object_store retried (local files make
    /// no requests).
    pub storage: crate::storage::http::RequestCounts,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Peak resident set size of this process, from `/proc/self/status`.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1 object`, `2 objects`.
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Report {
    /// The human summary printed at the end of every run.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let mb = |b: u64| b as f64 / 1e6;
        let _ = writeln!(
            s,
            "{} {}: {} · {}, {:.1} MB read · {} in → {} out · {}, {:.1} MB · {:.2}s, {:.1} MB/s{}",
            self.head.status,
            self.head.pipeline,
            self.head.sink,
            counted(self.input.objects, "object"),
            mb(self.input.bytes_read),
            counted(self.rows_in, "row"),
            counted(self.rows_out, "row"),
            counted(self.shards, "shard"),
            mb(self.bytes_out),
            self.elapsed_s,
            self.throughput.input_mb_s,
            self.peak_rss_bytes
                .map(|b| format!(" · peak RSS {:.0} MB", mb(b)))
                .unwrap_or_default(),
        );
        if self.rows_rejected + self.objects_rejected > 0 {
            let stages: Vec<String> = self
                .rejected
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                s,
                "  left out as bad input: {}, {} ({})",
                counted(self.rows_rejected, "record"),
                counted(self.objects_rejected, "object"),
                stages.join(" · ")
            );
        }
        let st = &self.storage;
        if st.throttled + st.server_errors + st.connection_errors > 0 {
            let _ = writeln!(
                s,
                "  storage: {} requests, retried {} throttled · {} server errors · {} connection errors{}",
                st.requests,
                st.throttled,
                st.server_errors,
                st.connection_errors,
                match (st.lowest_concurrency, st.concurrency_at_end) {
                    (Some(low), Some(end)) => {
                        format!(" · requests in flight lowered to {low}, {end} at the end")
                    }
                    _ => String::new(),
                }
            );
        }
        if self.head.tasks_skipped > 0 {
            let _ = writeln!(
                s,
                "  {} of {} tasks were already committed and skipped",
                self.head.tasks_skipped, self.head.tasks_total
            );
        }
        if !self.steps.is_empty() {
            let _ = writeln!(s, "  {:<28} {:>12} {:>12}", "step", "rows in", "rows out");
            for (i, st) in self.steps.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>12} {:>12}",
                    format!("{}. {}", i + 1, st.name),
                    st.rows_in,
                    st.rows_out
                );
                if !st.counts.is_empty() {
                    let mut counts: Vec<String> =
                        st.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    // `pack`: the share of its rows' tokens that are padding.
                    if let (Some(pad), Some(cap)) = (
                        st.counts.get("padded_tokens"),
                        st.counts.get("capacity_tokens").filter(|c| **c > 0),
                    ) {
                        counts.push(format!("padding {:.2}%", *pad as f64 * 100.0 / *cap as f64));
                    }
                    // `pack` with `remainder: drop`: the share of the tokens left out.
                    if let (Some(dropped), Some(cap)) = (
                        st.counts.get("dropped_tokens").filter(|d| **d > 0),
                        st.counts.get("capacity_tokens"),
                    ) {
                        counts.push(format!(
                            "tokens dropped {:.2}%",
                            *dropped as f64 * 100.0 / (*cap + *dropped) as f64
                        ));
                    }
                    let _ = writeln!(s, "  {:<28} {}", "", counts.join(" · "));
                    if st.name == "mix"
                        && let Some(mixture) = crate::steps::mix::achieved(&st.counts)
                    {
                        let _ = writeln!(s, "  {:<28} {mixture}", "");
                    }
                }
            }
        }
        let _ = writeln!(
            s,
            "  {:<28} {:>10} {:>10} {:>10}   (thread-seconds, {} threads)",
            "stage", "working", "waiting", "blocked", self.head.threads
        );
        for st in &self.stages {
            let _ = writeln!(
                s,
                "  {:<28} {:>9.2}s {:>9.2}s {:>9.2}s",
                st.stage, st.working_s, st.waiting_s, st.blocked_s
            );
        }
        if let Some(busiest) = self
            .stages
            .iter()
            .max_by(|a, b| a.working_s.total_cmp(&b.working_s))
        {
            let _ = writeln!(s, "  busiest stage: {}", busiest.stage);
        }
        s
    }
}
