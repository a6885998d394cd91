//! Driving the steps of one task: each decoded batch through the steps and into the
//! task's writer (the main pass), or through the steps before a full pass's group and
//! into the group's observers; under `on_error: skip | dead_letter` the rows a row-local
//! step fails on are found by bisection and left out; at the end of the task, the rows
//! steps held back (a `pack`'s tail) flow on, and the writer or the observers finish.
//!
//! One role in one file (longer than most): the owner's loop, its queues of jobs and the
//! held rejections are one piece of state that orders every batch of a task; the jobs
//! themselves are in `job.rs`.
//!
//! Batches, not tasks, are the unit of CPU work. The task's own thread (its owner)
//! decodes; each batch then goes through the batch-local steps ([`Step::batch_local`])
//! as a rayon job of its own, so that one task keeps every thread of the pool busy. A
//! job's result waits in a queue, one queue per step jobs start at, and the owner takes
//! the results of each queue in the order the batches entered it: it accounts for them
//! (counters, rejections, the rows each step saw), runs any step that needs the task's
//! order itself (`sample`, `pack`, a dedup's drop list), and starts the next job, or
//! hands the batch to the writer or the observers. Everything that depends on order
//! happens on the owner, in batch order, so a task's output is what one thread makes,
//! byte for byte, and a failing step's error is the first in row order. A decoder may
//! hand over framed records instead of a batch, which the job parses first
//! ([`Work::Parse`]).
//!
//! Rejections (under skip / dead_letter) are held per batch until the batch has left
//! the steps, then recorded in the order batches entered, so the dead-letter file and
//! the log lines are what one thread writes too.
//!
//! What a job does is `job.rs`; this file is the task's thread's side, kept whole on
//! purpose: the queues, the order results are taken in, the held rejections and the
//! accounting share one set of invariants (everything ordered happens here, in entry
//! order), and splitting them would spread those over several files.
//!
//! Memory: a pass-wide [`Budget`] ([`in_flight`]) of slots and bytes; a batch (or a piece
//! of an object) takes a slot and its weight when it enters and gives them back when it
//! leaves the steps.
//!
//! [`Step::batch_local`]: crate::steps::Step::batch_local

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use super::job::{
    Applied, Failure, Piece, Work, apply_step, object_fault, object_rejection, run_job,
};
use crate::error::{Error, Result};
use crate::formats::Decoded;
use crate::plan::Plan;
use crate::pool::{Budget, Permit, lock, panic_message, wait};
use crate::rejects::{RejectKind, Rejected, Rejects};
use crate::report::Stats;
use crate::sink::ShardRecord;
use crate::sink::writer::{Staged, TaskWriter, WriterConfig};
use crate::steps::{Observer, Part, StepContext, StepError};

/// What a task run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Decode, apply every step, write and commit shards.
    Write,
    /// The full pass of the steps `from..=to`: apply the steps before `from` and hand
    /// what reaches it to each one's observer; nothing is written.
    Observe(usize, usize),
}

/// What driving a task's steps made.
pub(super) struct Driven {
    /// Rows the task read: decoded, and records the decoder left out.
    pub rows_in: u64,
    pub shards: Vec<ShardRecord>,
    /// The shards' uploads, completed when the task commits.
    pub staged: Staged,
    /// Each step's named counters.
    pub step_counts: Vec<BTreeMap<String, u64>>,
    pub rejects: Rejects,
    /// In a full pass: each observed step's part.
    pub parts: Vec<Part>,
}

/// What a pass lets into the steps at once, over all its tasks: one batch or piece per
/// thread and one more, so that a thread done with one finds the next waiting, and no
/// more than a quarter of `run.memory_limit` of them together (as each says it weighs:
/// a batch its arrays, a chunk of lines twice its bytes, a Parquet row group its column
/// chunks fetched and decoded), though one always gets in. With large row groups this is
/// most of the source's memory (a 309 MB file of 26 MB row groups, one run each: 343 MB
/// peak with 2 × threads in flight, 327 MB with threads + 1); the bytes keep many threads
/// from multiplying it. None on one thread: every batch then goes through the steps on
/// its task's thread, as it comes.
pub(super) fn in_flight(plan: &Plan) -> Option<Arc<Budget>> {
    let memory = plan.pipeline.run.memory_limit.get();
    (plan.threads > 1).then(|| Arc::new(Budget::with_bytes(plan.threads + 1, memory / 4)))
}

/// The steps of one task, with their per-task state.
pub(super) struct Drive<'a> {
    plan: &'a Plan,
    /// The same plan, for jobs on other threads.
    shared: Arc<Plan>,
    mode: Mode,
    stats: &'a Arc<Stats>,
    contexts: Vec<StepContext>,
    observers: Vec<Box<dyn Observer + 'a>>,
    writer: TaskWriter,
    /// What the decoder and the steps left out.
    pub rejects: Rejects,
    rows_in: u64,
    /// The object of the rows taken last, and how many of its rows were taken.
    object_rows: (Arc<str>, u64),
    /// Under skip / dead_letter: objects a piece of which failed, so that the rest of each
    /// is left out (as on one thread, where decoding stops at the fault).
    faulted: Vec<Arc<str>>,
    /// Batches in the steps on other threads; None: all on this one.
    flight: Option<Flight>,
}

/// The jobs of one task and their results, in order.
struct Flight {
    budget: Arc<Budget>,
    signal: Arc<Signal>,
    /// By the step its jobs start at: their results, oldest first; a slot is empty
    /// until its job is done.
    queues: Vec<VecDeque<Arc<Slot>>>,
    /// What came in from the decoder and is not through the steps yet, in order: the
    /// sequence number of the first, then each one's rejections so far.
    first: u64,
    held: VecDeque<Held>,
}

/// One piece of work from the decoder (a batch, a chunk, a record it left out) until
/// it is through the steps.
struct Held {
    /// Its rejections so far, each marked true when the decoder left it out.
    rejected: Vec<(bool, Rejected)>,
    /// Its jobs and batches still on their way; recorded once none is.
    live: usize,
}

type Slot = Mutex<Option<Ran>>;

/// Jobs done, counted, and a condition variable the owner sleeps on.
#[derive(Default)]
struct Signal {
    done: Mutex<u64>,
    cv: Condvar,
}

/// A job's result: its work from step `start` up to step `stop` (the next step that
/// needs the task's order, or the end), piece by piece.
struct Ran {
    /// Which piece of the decoder's work it is ([`Flight::held`]).
    seq: u64,
    start: usize,
    stop: usize,
    object: Arc<str>,
    pieces: Vec<Piece>,
    /// What ended the job early: a chunk that did not decode, or a step's error. The
    /// pieces before it stand, as one thread would have handed them on.
    failure: Option<Failure>,
    /// The slot of the batch in the pass's budget, passed on with it.
    permit: Option<Arc<Permit>>,
}

impl<'a> Drive<'a> {
    /// For task `task` (its stable key `task_key`); `first_object` names it in errors.
    /// `budget`: the pass's batches in flight ([`in_flight`]); None runs every
    /// step on this thread.
    pub fn new(
        plan: &'a Arc<Plan>,
        (task, task_key): (usize, u64),
        mode: Mode,
        stats: &'a Arc<Stats>,
        cfg: Arc<WriterConfig>,
        first_object: &str,
        budget: Option<Arc<Budget>>,
    ) -> Result<Self> {
        let observers = match mode {
            Mode::Write => Vec::new(),
            Mode::Observe(from, to) => plan.steps[from..=to]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.step
                        .kind()
                        .observer(task)
                        .unwrap_or_else(|| Err(StepError::internal("a map step in a full pass")))
                        .map_err(|m| pass_error(plan, from + i, first_object, m))
                })
                .collect::<Result<_>>()?,
        };
        // A `limit` stops the reading at the batch that reaches it, which only a task
        // that takes its batches one at a time knows.
        let flight = budget
            .filter(|_| !plan.steps.iter().any(|s| s.step.needs_global_order()))
            .map(|budget| Flight {
                budget,
                signal: Arc::default(),
                queues: (0..=plan.steps.len()).map(|_| VecDeque::new()).collect(),
                first: 0,
                held: VecDeque::new(),
            });
        Ok(Drive {
            plan,
            shared: plan.clone(),
            mode,
            stats,
            contexts: plan
                .steps
                .iter()
                .map(|_| StepContext::for_task(task, task_key))
                .collect(),
            observers,
            writer: TaskWriter::new(cfg, task, stats.clone()),
            rejects: Rejects::new(plan.pipeline.run.on_error, task),
            rows_in: 0,
            object_rows: (Arc::from(""), 0),
            faulted: Vec::new(),
            flight,
        })
    }

    /// True once a step will emit no more rows (a reached `limit`).
    pub fn exhausted(&self) -> bool {
        self.plan.steps.iter().any(|s| s.step.exhausted())
    }

    /// True when batches go through the steps on other threads, so a decoder gains by
    /// handing over framed records ([`Work::Parse`]) rather than decoding them itself.
    pub fn parallel(&self) -> bool {
        self.flight.is_some()
    }

    /// True when a piece of `object` failed under skip / dead_letter: the rest of it is
    /// left out, so its reading may stop.
    pub fn faulted(&self, object: &str) -> bool {
        self.faulted.iter().any(|o| &**o == object)
    }

    /// Rows of `object` taken so far (all of them after [`Drive::settle`]).
    pub fn rows_of(&self, object: &str) -> u64 {
        let (last, rows) = &self.object_rows;
        if &**last == object { *rows } else { 0 }
    }

    /// One decoded batch of `object` through the steps: written (`Write`) or handed to
    /// the observers of a full pass's steps (`Observe`).
    pub fn batch(&mut self, batch: RecordBatch, object: &str) -> Result<()> {
        self.work(Work::Batch(batch), object)
    }

    /// A record the decoder left out, in its place among the rows.
    pub fn undecoded(&mut self, r: Rejected) -> Result<()> {
        let seq = self.enter(0);
        self.take_undecoded(seq, r);
        self.release();
        Ok(())
    }

    /// A new piece of the decoder's work with `live` jobs or batches on their way: its
    /// sequence number.
    fn enter(&mut self, live: usize) -> u64 {
        match &mut self.flight {
            Some(f) => {
                f.held.push_back(Held {
                    rejected: Vec::new(),
                    live,
                });
                f.first + f.held.len() as u64 - 1
            }
            None => 0,
        }
    }

    /// Records the rejections of the pieces at the front that are through the steps.
    fn release(&mut self) {
        let Some(f) = &mut self.flight else { return };
        while f.held.front().is_some_and(|h| h.live == 0) {
            if let Some(h) = f.held.pop_front() {
                f.first += 1;
                for (undecoded, r) in h.rejected {
                    if undecoded {
                        self.rejects.add_undecoded(r);
                    } else {
                        self.rejects.add(r);
                    }
                }
            }
        }
    }

    /// The held piece `seq`.
    fn held(&mut self, seq: u64) -> Option<&mut Held> {
        let f = self.flight.as_mut()?;
        let i = usize::try_from(seq.checked_sub(f.first)?).ok()?;
        f.held.get_mut(i)
    }

    /// A rejection of piece `seq`: recorded now on one thread, else when the piece is
    /// through the steps.
    fn reject(&mut self, seq: u64, r: Rejected, undecoded: bool) {
        match self.held(seq) {
            Some(h) => h.rejected.push((undecoded, r)),
            None if undecoded => self.rejects.add_undecoded(r),
            None => self.rejects.add(r),
        }
    }

    /// One of piece `seq`'s jobs or batches is done.
    fn done(&mut self, seq: u64) {
        if let Some(h) = self.held(seq) {
            h.live = h.live.saturating_sub(1);
        }
        self.release();
    }

    /// Work from the decoder into the steps: here, on one thread; else as a job once the
    /// pass's budget has a slot, taking what earlier jobs finished, in order, meanwhile.
    pub fn work(&mut self, work: Work, object: &str) -> Result<()> {
        let object: Arc<str> = Arc::from(object);
        let Some(flight) = &self.flight else {
            let (pieces, ended) = match work {
                Work::Batch(b) | Work::Passing(b) => (vec![Decoded::Batch(b)], Ok(())),
                Work::Parse(piece) => piece.run(),
            };
            for piece in pieces {
                match piece {
                    Decoded::Batch(b) => {
                        self.take_decoded(b.num_rows() as u64, &object);
                        self.arrive(0, b, &object, 0, None)?;
                    }
                    Decoded::Rejected(r) => self.take_undecoded(0, r),
                }
            }
            return ended;
        };
        let (budget, signal) = (flight.budget.clone(), flight.signal.clone());
        let bytes = match &work {
            Work::Batch(b) | Work::Passing(b) => b.get_array_memory_size() as u64,
            Work::Parse(piece) => piece.bytes,
        };
        let permit = loop {
            self.pump()?;
            if let Some(p) = budget.try_permit(bytes) {
                break p;
            }
            let waited = Instant::now();
            wait_for_jobs(&signal);
            self.stats.decode.add_blocked(waited.elapsed());
        };
        let seq = self.enter(1);
        self.start(0, work, object, seq, Some(Arc::new(permit)));
        self.pump()
    }

    /// Waits for every job of the task and takes their results.
    pub fn settle(&mut self) -> Result<()> {
        while let Some(flight) = &self.flight {
            if flight.queues.iter().all(VecDeque::is_empty) {
                self.release();
                break;
            }
            let signal = flight.signal.clone();
            if !self.pump_once()? {
                wait_for_jobs(&signal);
            }
        }
        Ok(())
    }

    /// Past the last step this mode applies.
    fn end(&self) -> usize {
        match self.mode {
            Mode::Write => self.plan.steps.len(),
            Mode::Observe(from, _) => from,
        }
    }

    /// Starts a job on `work` from step `at` to the next step that needs the task's
    /// order (or the end); its result joins queue `at`.
    fn start(
        &mut self,
        at: usize,
        work: Work,
        object: Arc<str>,
        seq: u64,
        permit: Option<Arc<Permit>>,
    ) {
        let end = self.end();
        let stop = (at..end)
            .find(|&s| !self.plan.steps[s].step.batch_local())
            .unwrap_or(end);
        let Some(flight) = &mut self.flight else {
            return;
        };
        let slot: Arc<Slot> = Arc::default();
        flight.queues[at].push_back(slot.clone());
        let (plan, stats, signal) = (
            self.shared.clone(),
            self.stats.clone(),
            flight.signal.clone(),
        );
        let tolerant = self.rejects.tolerant();
        rayon::spawn(move || {
            let _busy = crate::pool::Busy::enter();
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_job(&plan, &stats, tolerant, (at, stop), work, &object)
            }));
            let (pieces, failure) = ran.unwrap_or_else(|p| {
                let e = Error::Internal(format!(
                    "panic in the steps of {object}: {}",
                    panic_message(&*p)
                ));
                (Vec::new(), Some(Failure::Decode(e)))
            });
            *lock(&slot) = Some(Ran {
                seq,
                start: at,
                stop,
                object,
                pieces,
                failure,
                permit,
            });
            *lock(&signal.done) += 1;
            signal.cv.notify_all();
        });
    }

    /// Takes every result that is next in its queue, until none is.
    fn pump(&mut self) -> Result<()> {
        while self.pump_once()? {}
        Ok(())
    }

    /// One sweep over the queues, earliest step first, taking the results at their
    /// fronts that are done; false when there was none.
    fn pump_once(&mut self) -> Result<bool> {
        let mut taken = false;
        let queues = self.flight.as_ref().map_or(0, |f| f.queues.len());
        for at in 0..queues {
            while let Some(ran) = self.flight.as_mut().and_then(|f| {
                let front = f.queues[at].front()?;
                let ran = lock(front).take()?;
                f.queues[at].pop_front();
                Some(ran)
            }) {
                taken = true;
                self.take(ran)?;
            }
        }
        Ok(taken)
    }

    /// A job's result, in order: each piece accounted for and sent on from its stop.
    fn take(&mut self, ran: Ran) -> Result<()> {
        let Ran {
            seq,
            start,
            stop,
            object,
            pieces,
            failure,
            permit,
        } = ran;
        if start == 0 && self.faulted(&object) {
            // A piece after the one that failed in the same object: left out with it.
            self.done(seq);
            return Ok(());
        }
        for piece in pieces {
            match piece {
                Piece::Undecoded(r) => self.take_undecoded(seq, r),
                Piece::Rows {
                    decoded,
                    applied,
                    batch,
                } => {
                    self.take_decoded(decoded, &object);
                    self.account(seq, start, applied);
                    if batch.num_rows() > 0 {
                        if let Some(h) = self.held(seq) {
                            h.live += 1;
                        }
                        self.arrive(stop, batch, &object, seq, permit.clone())?;
                    }
                }
            }
        }
        match failure {
            None => {
                self.done(seq);
                Ok(())
            }
            Some(Failure::Decode(e)) if self.rejects.tolerant() && object_fault(&e) => {
                // What `task.rs` does when the decoder itself fails, for a piece's fault.
                Stats::add(&self.stats.objects_rejected, 1);
                let name = match &e {
                    Error::Input { object, .. } => object.clone(),
                    _ => object.to_string(),
                };
                let rejected = object_rejection(&name, self.rows_of(&object), e);
                self.reject(seq, rejected, false);
                self.faulted.push(object);
                self.done(seq);
                Ok(())
            }
            Some(Failure::Decode(e)) => Err(e),
            Some(Failure::Step { s, applied, error }) => {
                self.account(seq, start, applied);
                Err(step_error(self.plan, s, &object, &self.contexts[s], error))
            }
        }
    }

    fn take_decoded(&mut self, n: u64, object: &Arc<str>) {
        self.rows_in += n;
        if self.object_rows.0 != *object {
            self.object_rows = (object.clone(), 0);
        }
        self.object_rows.1 += n;
        Stats::add(&self.stats.rows_in, n);
    }

    fn take_undecoded(&mut self, seq: u64, r: Rejected) {
        self.rows_in += 1;
        Stats::add(&self.stats.rows_in, 1);
        Stats::add(&self.stats.rows_rejected, 1);
        self.reject(seq, r, true);
    }

    /// What steps `start..` did with one batch, in order: rows, rejections, counters.
    fn account(&mut self, seq: u64, start: usize, applied: Vec<Applied>) {
        let stats = self.stats;
        for (s, a) in (start..).zip(applied) {
            let st = &stats.steps[s];
            Stats::add(&st.rows_in, a.rows_in);
            let left_out = a.rejected.iter().map(|r| r.rows.unwrap_or(1)).sum();
            for mut r in a.rejected {
                if r.kind == RejectKind::Batch {
                    r.rows_before = Some(self.contexts[s].rows_before);
                }
                self.reject(seq, r, false);
            }
            Stats::add(&st.rows_rejected, left_out);
            Stats::add(&stats.rows_rejected, left_out);
            let cx = &mut self.contexts[s];
            for (name, n) in a.counts {
                cx.count(&name, n);
            }
            cx.rows_before += a.rows_in;
            Stats::add(&st.rows_out, a.rows_out);
        }
    }

    /// `batch` reaches step `at`, in order: steps that need the task's order (every
    /// step, on one thread) run here, batch-local ones as a job; past the last step it
    /// goes to the writer or the observers.
    fn arrive(
        &mut self,
        mut at: usize,
        mut batch: RecordBatch,
        object: &Arc<str>,
        seq: u64,
        permit: Option<Arc<Permit>>,
    ) -> Result<()> {
        let end = self.end();
        while at < end {
            if self.flight.is_some() && self.plan.steps[at].step.batch_local() {
                self.start(at, Work::Passing(batch), object.clone(), seq, permit);
                return Ok(());
            }
            let tolerant = self.rejects.tolerant();
            let cx = &mut self.contexts[at];
            let (out, applied) = apply_step(self.plan, self.stats, at, cx, batch, object, tolerant)
                .map_err(|e| step_error(self.plan, at, object, cx, e))?;
            self.account(seq, at, vec![applied]);
            batch = out;
            at += 1;
            if batch.num_rows() == 0 {
                self.done(seq);
                return Ok(());
            }
        }
        self.deliver(batch, object)?;
        self.done(seq);
        Ok(())
    }

    /// A batch past the steps: to the writer, or to each observer of the full pass.
    fn deliver(&mut self, batch: RecordBatch, object: &str) -> Result<()> {
        match self.mode {
            Mode::Write => {
                Stats::add(&self.stats.rows_out, batch.num_rows() as u64);
                // Encoding is timed by the writer's jobs, on whichever thread runs them.
                self.writer.write(&batch)
            }
            Mode::Observe(from, to) => {
                let rows = batch.num_rows() as u64;
                for s in from..=to {
                    let cx = &mut self.contexts[s];
                    self.observers[s - from]
                        .observe(&batch, cx.rows_before)
                        .map_err(|m| step_error(self.plan, s, object, cx, m))?;
                    cx.rows_before += rows;
                }
                Ok(())
            }
        }
    }

    /// The task has no more batches (`last` names its last object): in a full pass the
    /// observers' parts; else the rows steps held back flow through the steps after
    /// them, and the writer closes its shards.
    pub fn finish(mut self, last: &str) -> Result<Driven> {
        self.settle()?;
        let plan = self.plan;
        if let Mode::Observe(from, _) = self.mode {
            let parts = self
                .observers
                .into_iter()
                .enumerate()
                .map(|(i, o)| o.finish().map_err(|m| pass_error(plan, from + i, last, m)))
                .collect::<Result<_>>()?;
            return Ok(Driven {
                rows_in: self.rows_in,
                shards: Vec::new(),
                staged: Staged::default(),
                step_counts: Vec::new(),
                rejects: self.rejects,
                parts,
            });
        }
        let last: Arc<str> = Arc::from(last);
        for s in 0..plan.steps.len() {
            let tail = plan.steps[s]
                .step
                .finish(&mut self.contexts[s])
                .map_err(|m| step_error(plan, s, &last, &self.contexts[s], m))?;
            if let Some(batch) = tail
                && batch.num_rows() > 0
            {
                Stats::add(&self.stats.steps[s].rows_out, batch.num_rows() as u64);
                let seq = self.enter(1);
                self.arrive(s + 1, batch, &last, seq, None)?;
                // A tail's jobs are done before the next step's tail follows them.
                self.settle()?;
            }
        }
        let (shards, staged) = self.writer.finish()?;
        Ok(Driven {
            rows_in: self.rows_in,
            shards,
            staged,
            step_counts: self.contexts.into_iter().map(|c| c.counts).collect(),
            rejects: self.rejects,
            parts: Vec::new(),
        })
    }
}

/// Sleeps until a job of the task is done or a millisecond passed (another task's
/// results may free budget slots meanwhile), running this thread's own queued jobs first.
fn wait_for_jobs(signal: &Signal) {
    let seen = *lock(&signal.done);
    let started = Instant::now();
    wait(&signal.done, &signal.cv, |done| {
        *done != seen || started.elapsed() >= Duration::from_millis(1)
    });
}

/// Step `s`'s error on the data of `object`; a row the step names is placed among the
/// rows of the task that reached the step before (`cx`).
fn step_error(plan: &Plan, s: usize, object: &str, cx: &StepContext, e: StepError) -> Error {
    let row = e.row.map(|r| (cx.task, cx.rows_before + r as u64 + 1));
    Error::step_failed(object, s, plan.steps[s].name, row, e)
}

/// A step's error outside of a batch (creating or finishing an observer).
fn pass_error(plan: &Plan, s: usize, object: &str, e: StepError) -> Error {
    Error::step_failed(object, s, plan.steps[s].name, None, e)
}
