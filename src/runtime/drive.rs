//! Driving the steps of one task: each decoded batch through the steps and into the
//! task's writer (the main pass), or through the steps before a full pass's group and
//! into the group's observers; under `on_error: skip | dead_letter` the rows a row-local
//! step fails on are found by bisection and left out; at the end of the task, the rows
//! steps held back (a `pack`'s tail) flow on, and the writer or the observers finish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::plan::Plan;
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
    pub shards: Vec<ShardRecord>,
    /// The shards' uploads, completed when the task commits.
    pub staged: Staged,
    /// Each step's named counters.
    pub step_counts: Vec<BTreeMap<String, u64>>,
    pub rejects: Rejects,
    /// In a full pass: each observed step's part.
    pub parts: Vec<Part>,
}

/// The steps of one task, with their per-task state.
pub(super) struct Drive<'a> {
    plan: &'a Plan,
    mode: Mode,
    stats: &'a Stats,
    contexts: Vec<StepContext>,
    observers: Vec<Box<dyn Observer + 'a>>,
    writer: TaskWriter,
    /// What the decoder and the steps left out.
    pub rejects: Rejects,
}

impl<'a> Drive<'a> {
    /// For task `task` (its stable key `task_key`); `first_object` names it in errors.
    pub fn new(
        plan: &'a Plan,
        (task, task_key): (usize, u64),
        mode: Mode,
        stats: &'a Arc<Stats>,
        cfg: Arc<WriterConfig>,
        first_object: &str,
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
        Ok(Drive {
            plan,
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
        })
    }

    /// True once a step will emit no more rows (a reached `limit`).
    pub fn exhausted(&self) -> bool {
        self.plan.steps.iter().any(|s| s.step.exhausted())
    }

    /// One decoded batch of `object` through the steps: written (`Write`) or handed to
    /// the observers of a full pass's steps (`Observe`).
    pub fn batch(&mut self, batch: RecordBatch, object: &str) -> Result<()> {
        match self.mode {
            Mode::Write => self.run_steps(0, batch, object),
            Mode::Observe(from, to) => self.observe_steps(from, to, batch, object),
        }
    }

    /// The full pass of steps `from..=to`: `batch` through the steps before `from`,
    /// then to the observer of each step of the group (all see the batch that reaches
    /// `from`). Rows left out under skip / dead_letter are left out here as in the main
    /// pass.
    fn observe_steps(
        &mut self,
        from: usize,
        to: usize,
        mut batch: RecordBatch,
        object: &str,
    ) -> Result<()> {
        let plan = self.plan;
        for (s, (planned, cx)) in plan.steps.iter().zip(self.contexts.iter_mut()).enumerate() {
            let rows = batch.num_rows() as u64;
            if s >= from {
                self.observers[s - from]
                    .observe(&batch, cx.rows_before)
                    .map_err(|m| step_error(plan, s, object, cx, m))?;
                cx.rows_before += rows;
                if s == to {
                    return Ok(());
                }
                continue;
            }
            batch = if self.rejects.tolerant() && planned.step.row_local() {
                apply_leaving_out_bad_rows(plan, s, cx, batch, object, &mut self.rejects)?
            } else {
                planned
                    .step
                    .apply(batch, cx)
                    .map_err(|m| step_error(plan, s, object, cx, m))?
            };
            cx.rows_before += rows;
            if batch.num_rows() == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs `batch` through the steps from index `from` on, and writes what comes out.
    fn run_steps(&mut self, from: usize, mut batch: RecordBatch, object: &str) -> Result<()> {
        let (plan, stats) = (self.plan, self.stats);
        for (s, (planned, cx)) in plan
            .steps
            .iter()
            .zip(self.contexts.iter_mut())
            .enumerate()
            .skip(from)
        {
            let st = &stats.steps[s];
            let rows = batch.num_rows() as u64;
            Stats::add(&st.rows_in, rows);
            let ts = Instant::now();
            batch = if self.rejects.tolerant() && planned.step.row_local() {
                let before = self.rejects.rows;
                let out =
                    apply_leaving_out_bad_rows(plan, s, cx, batch, object, &mut self.rejects)?;
                let left_out = self.rejects.rows - before;
                Stats::add(&st.rows_rejected, left_out);
                Stats::add(&stats.rows_rejected, left_out);
                out
            } else {
                planned
                    .step
                    .apply(batch, cx)
                    .map_err(|m| step_error(plan, s, object, cx, m))?
            };
            st.timer.add_working(ts.elapsed());
            cx.rows_before += rows;
            Stats::add(&st.rows_out, batch.num_rows() as u64);
            if batch.num_rows() == 0 {
                return Ok(());
            }
        }
        Stats::add(&stats.rows_out, batch.num_rows() as u64);
        // Encoding is timed by the writer's jobs, on whichever thread runs them.
        self.writer.write(&batch)
    }

    /// The task has no more batches (`last` names its last object): in a full pass the
    /// observers' parts; else the rows steps held back flow through the steps after
    /// them, and the writer closes its shards.
    pub fn finish(mut self, last: &str) -> Result<Driven> {
        let plan = self.plan;
        if let Mode::Observe(from, _) = self.mode {
            let parts = self
                .observers
                .into_iter()
                .enumerate()
                .map(|(i, o)| o.finish().map_err(|m| pass_error(plan, from + i, last, m)))
                .collect::<Result<_>>()?;
            return Ok(Driven {
                shards: Vec::new(),
                staged: Staged::default(),
                step_counts: Vec::new(),
                rejects: self.rejects,
                parts,
            });
        }
        for s in 0..plan.steps.len() {
            let tail = plan.steps[s]
                .step
                .finish(&mut self.contexts[s])
                .map_err(|m| step_error(plan, s, last, &self.contexts[s], m))?;
            if let Some(batch) = tail
                && batch.num_rows() > 0
            {
                Stats::add(&self.stats.steps[s].rows_out, batch.num_rows() as u64);
                self.run_steps(s + 1, batch, last)?;
            }
        }
        let (shards, staged) = self.writer.finish()?;
        Ok(Driven {
            shards,
            staged,
            step_counts: self.contexts.into_iter().map(|c| c.counts).collect(),
            rejects: self.rejects,
            parts: Vec::new(),
        })
    }
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

/// Applies row-local step `s`; when it fails, applies it again to halves of the batch,
/// down to the single rows that fail, which are left out and recorded. The rows that
/// pass keep their order. A step's counters only count the parts that passed.
fn apply_leaving_out_bad_rows(
    plan: &Plan,
    s: usize,
    cx: &mut StepContext,
    batch: RecordBatch,
    object: &str,
    rejects: &mut Rejects,
) -> Result<RecordBatch> {
    let step = &plan.steps[s].step;
    let counts = cx.counts.clone();
    let first = match step.apply(batch.clone(), cx) {
        Ok(out) => return Ok(out),
        Err(m) => m,
    };
    cx.counts = counts;
    let stage = format!("step {} {}", s + 1, plan.steps[s].name);
    let mut good = Vec::new();
    // (offset, length, the error of applying it whole, if known), as a stack in order.
    let mut todo = vec![(0, batch.num_rows(), Some(first))];
    while let Some((offset, len, failed)) = todo.pop() {
        let error = match failed {
            Some(m) => m,
            None => {
                let counts = cx.counts.clone();
                match step.apply(batch.slice(offset, len), cx) {
                    Ok(out) => {
                        good.push(out);
                        continue;
                    }
                    Err(m) => {
                        cx.counts = counts;
                        m
                    }
                }
            }
        };
        if len == 1 {
            rejects.add(Rejected {
                object: object.to_string(),
                kind: RejectKind::Record,
                line: None,
                offset: None,
                rows_before: None,
                stage: stage.clone(),
                error: error.to_string(),
                record: Some(crate::rejects::row_json(&batch, offset)),
            });
        } else {
            let half = len / 2;
            todo.push((offset + half, len - half, None));
            todo.push((offset, half, None));
        }
    }
    let schema = step.output_schema().clone();
    arrow::compute::concat_batches(&schema, &good)
        .map_err(|e| Error::Internal(format!("joining the rows step {} kept: {e}", s + 1)))
}
