//! Runs joining and taking over each other's work on one sink (docs/workers.md): a run
//! naming no worker joining as a helper, a finished worker running a dead worker's
//! share, and what a helper waits for before it ends.

use std::sync::atomic::AtomicBool;

use super::schedule::schedule;
use super::{ExecOptions, Worker, claims};
use crate::error::{Error, Result};
use crate::plan::{Plan, Task};
use crate::sink;

/// Takes this run's record: its worker's, or, for a run that may join (`opts.join`) a
/// sink planned for other workers or whose only worker is running, a helper's (and then
/// `opts.worker` becomes [`Worker::helper`]).
///
/// # Errors
/// [`Error::Busy`] when the worker is running and this run may not join it, or the
/// pipeline cannot be shared with a helper: full-pass or fitted steps on a sink of one
/// worker (their decisions are that run's, in memory), `limit` (one run, in order).
pub(super) async fn lease(
    plan: &Plan,
    opts: &mut ExecOptions,
    workers: usize,
) -> Result<sink::lease::Lease> {
    let joins = opts.join && !opts.own_tasks_only && !opts.overwrite;
    if joins && workers != opts.worker.count {
        opts.worker = Worker::helper(workers);
    }
    if !opts.worker.is_helper() {
        match sink::lease::acquire(&plan.sink, opts.worker.index, opts.worker.count).await {
            Err(Error::Busy(why)) if joins => {
                tracing::debug!("{why}");
                opts.worker = Worker::helper(workers);
            }
            other => return other,
        }
    }
    let staged = plan.steps.iter().any(|s| s.step.kind().needs_pass());
    if plan.sequential || (staged && workers == 1) {
        return Err(Error::Busy(format!(
            "sink {} is in use by a run of this pipeline, and a second run cannot share its \
             work: {}. Run again once it has finished (or {}s after it was killed)",
            plan.sink.display,
            if plan.sequential {
                "`limit` keeps the first rows in order, on one run".to_string()
            } else {
                "its full-pass or fitted steps decide in that run's memory; start the runs \
                 as `--worker I/N` to share them"
                    .to_string()
            },
            sink::lease::EXPIRES.as_secs()
        )));
    }
    tracing::info!(
        "joining the run(s) on {} as a helper: running the tasks no run has started",
        plan.sink.display
    );
    sink::lease::acquire(&plan.sink, workers, workers).await
}

/// Elastic workers: a worker that has done its own tasks runs those of each worker whose
/// run is gone (its record in `_kiln/runs/` not renewed for 30 s, or on this host its
/// process dead: a SIGKILL, a lost node). It first takes that worker's record by the
/// same conditional put a rerun of it would make, so the dead worker's next run is
/// refused while this one holds it, and of several finished workers one takes each.
/// A worker never started, or whose run ended (failed or not), has no record and is not
/// taken over. Returns the tasks run.
pub(super) async fn take_over<F>(
    plan: &Plan,
    worker: Worker,
    slots: usize,
    stop: &AtomicBool,
    drain: &AtomicBool,
    start: &impl Fn(Task) -> F,
    done: &mut impl FnMut(claims::Ran),
) -> Result<usize>
where
    F: std::future::Future<Output = Result<claims::Ran>> + Send + 'static,
{
    let dead: std::collections::BTreeSet<usize> = sink::lease::runs(&plan.sink)
        .await?
        .iter()
        .filter(|r| !r.live())
        .filter_map(|r| r.worker.split_once('/')?.0.parse().ok())
        .filter(|&j| j != worker.index && j < worker.count)
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let committed = sink::committed(&plan.sink).await?;
    let mut taken = 0;
    for j in dead {
        let left: Vec<Task> = plan
            .tasks
            .iter()
            .filter(|t| t.id % worker.count == j && !committed.contains_key(&t.id))
            .cloned()
            .collect();
        if left.is_empty() || drain.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let lease = match sink::lease::acquire(&plan.sink, j, worker.count).await {
            Ok(lease) => lease,
            // Another worker took it first.
            Err(Error::Busy(_)) => continue,
            Err(e) => return Err(e),
        };
        tracing::info!(
            "taking over {} task(s) of worker {j}/{}, whose run is gone",
            left.len(),
            worker.count
        );
        let n = left.len();
        let ran = schedule(left, slots, stop, Some(drain), start, &mut *done).await;
        lease.release().await;
        ran?;
        taken += n;
    }
    Ok(taken)
}

/// The tasks a helper waits for: not committed, and claimed by a run or belonging to a
/// worker that is running.
///
/// # Errors
/// The store's.
pub(super) async fn held(plan: &Plan, count: usize) -> Result<Vec<usize>> {
    let (claimed, committed) = sink::claims::claimed_and_committed(&plan.sink).await?;
    let (_, running) = claims::running(&plan.sink).await?;
    Ok(plan
        .tasks
        .iter()
        .map(|t| t.id)
        .filter(|t| !committed.contains(t))
        .filter(|t| claimed.contains(t) || running.contains(&(t % count)))
        .collect())
}
