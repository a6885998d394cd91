//! The work of one job: a piece of an object decoded (when the decoder framed it), then a
//! batch through the batch-local steps from one order-dependent step to the next, each
//! step in a context of its own; runs on any thread of the pool. What it returns is
//! taken back in order by the task's thread ([`super::drive`]), which also applies the
//! order-dependent steps with [`apply_step`].

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::formats::Decoded;
use crate::plan::Plan;
use crate::rejects::{RejectKind, Rejected};
use crate::report::Stats;
use crate::steps::{StepContext, StepError, StepErrorKind};

/// What a decoder hands on: a decoded batch, or a piece of an object a job decodes first.
pub(super) enum Work {
    Batch(RecordBatch),
    /// A batch already read, on its way from one step to the next.
    Passing(RecordBatch),
    /// A piece of an object the format framed, decoded by the job: batches and records
    /// left out, in order.
    Parse(crate::formats::Piece),
}

pub(super) enum Failure {
    Decode(Error),
    /// Step `s` failed; `applied`: what the steps before it did with that batch.
    Step {
        s: usize,
        applied: Vec<Applied>,
        error: StepError,
    },
}

pub(super) enum Piece {
    /// A record the decoder left out.
    Undecoded(Rejected),
    /// A batch through steps `start..stop` (`decoded`: its rows, if it was just read):
    /// what each step did, and the batch as it reaches `stop`.
    Rows {
        decoded: u64,
        applied: Vec<Applied>,
        batch: RecordBatch,
    },
}

/// What one step did with one batch.
#[derive(Default)]
pub(super) struct Applied {
    pub rows_in: u64,
    pub rows_out: u64,
    /// Counters, when the step counted in a context of its own (a job's).
    pub counts: BTreeMap<String, u64>,
    pub rejected: Vec<Rejected>,
}

/// A job: `work` decoded if it is framed records, then each batch through the
/// batch-local steps `start..stop`, each with a context of its own.
pub(super) fn run_job(
    plan: &Plan,
    stats: &Stats,
    tolerant: bool,
    (start, stop): (usize, usize),
    work: Work,
    object: &str,
) -> (Vec<Piece>, Option<Failure>) {
    let mut ended_with = None;
    let (decoded, read) = match work {
        Work::Batch(b) => (vec![Decoded::Batch(b)], true),
        Work::Passing(b) => (vec![Decoded::Batch(b)], false),
        Work::Parse(piece) => {
            let started = Instant::now();
            let (decoded, ended) = piece.run();
            stats.decode.add_working(started.elapsed());
            ended_with = ended.err();
            (decoded, true)
        }
    };
    let mut pieces = Vec::with_capacity(decoded.len());
    for d in decoded {
        let mut batch = match d {
            Decoded::Rejected(r) => {
                pieces.push(Piece::Undecoded(r));
                continue;
            }
            Decoded::Batch(b) => b,
        };
        let decoded = if read { batch.num_rows() as u64 } else { 0 };
        let mut applied = Vec::with_capacity(stop - start);
        for s in start..stop {
            let mut cx = StepContext::default();
            match apply_step(plan, stats, s, &mut cx, batch, object, tolerant) {
                Ok((out, mut a)) => {
                    a.counts = cx.counts;
                    applied.push(a);
                    batch = out;
                }
                Err(error) => {
                    let failure = Failure::Step { s, applied, error };
                    return (pieces, Some(failure));
                }
            }
            if batch.num_rows() == 0 {
                break;
            }
        }
        pieces.push(Piece::Rows {
            decoded,
            applied,
            batch,
        });
    }
    (pieces, ended_with.map(Failure::Decode))
}

/// Applies step `s` to `batch` in `cx`; under skip / dead_letter a row-local step's
/// failing rows are left out (and returned in [`Applied::rejected`]), and so is a batch a
/// [`crate::steps::Step::batch_faults`] step fails on with a data error.
pub(super) fn apply_step(
    plan: &Plan,
    stats: &Stats,
    s: usize,
    cx: &mut StepContext,
    batch: RecordBatch,
    object: &str,
    tolerant: bool,
) -> Result<(RecordBatch, Applied), StepError> {
    let started = Instant::now();
    let planned = &plan.steps[s];
    let rows_in = batch.num_rows() as u64;
    let mut rejected = Vec::new();
    let out = if tolerant && planned.step.row_local() {
        apply_leaving_out_bad_rows(plan, s, cx, batch, object, &mut rejected)?
    } else if tolerant && planned.step.batch_faults() {
        let counts = cx.counts.clone();
        match planned.step.apply(batch, cx) {
            Err(e) if e.kind == StepErrorKind::Data => {
                // The batch is left out whole; `account` places it in its task.
                cx.counts = counts;
                rejected.push(Rejected {
                    object: object.to_string(),
                    kind: RejectKind::Batch,
                    line: None,
                    offset: None,
                    rows_before: None,
                    rows: Some(rows_in),
                    stage: format!("step {} {}", s + 1, planned.name),
                    error: e.to_string(),
                    record: None,
                });
                RecordBatch::new_empty(planned.step.output_schema().clone())
            }
            other => other?,
        }
    } else {
        planned.step.apply(batch, cx)?
    };
    stats.steps[s].timer.add_working(started.elapsed());
    let applied = Applied {
        rows_in,
        rows_out: out.num_rows() as u64,
        counts: BTreeMap::new(),
        rejected,
    };
    Ok((out, applied))
}

/// Applies row-local step `s`; when it fails, applies it again to halves of the batch,
/// down to the single rows that fail, which are left out and recorded in `rejected`.
/// The rows that pass keep their order. A step's counters only count the parts that
/// passed.
fn apply_leaving_out_bad_rows(
    plan: &Plan,
    s: usize,
    cx: &mut StepContext,
    batch: RecordBatch,
    object: &str,
    rejected: &mut Vec<Rejected>,
) -> std::result::Result<RecordBatch, StepError> {
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
            rejected.push(Rejected {
                object: object.to_string(),
                kind: RejectKind::Record,
                line: None,
                offset: None,
                rows_before: None,
                rows: None,
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
        .map_err(|e| StepError::internal(format!("joining the rows step {} kept: {e}", s + 1)))
}

/// Errors that are the object's own: bad bytes, or a store that will not hand it over
/// (not found, forbidden). Not: a step's error ([`Error::StepFailed`]), a retryable store
/// error, a stop, a bug.
pub(super) fn object_fault(e: &Error) -> bool {
    match e {
        Error::Input { .. } => true,
        Error::Store { .. } => e.exit_code() != crate::error::EXIT_RETRY,
        _ => false,
    }
}

/// The record of an object left out from where it failed.
pub(super) fn object_rejection(object: &str, rows_before: u64, e: Error) -> Rejected {
    let (line, error) = match e {
        Error::Input { line, message, .. } => (line, message),
        other => (None, other.to_string()),
    };
    Rejected {
        object: object.to_string(),
        kind: RejectKind::Object,
        line,
        offset: None,
        rows_before: Some(rows_before),
        rows: None,
        stage: "object".into(),
        error,
        record: None,
    }
}
