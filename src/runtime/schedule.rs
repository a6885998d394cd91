//! Scheduling the tasks of a pass: at most `slots` at a time (the pool's threads, or one
//! when a step needs listing order), the first error stopping the others; and the full
//! pass of a group of steps, whose tasks' parts settle the steps once all are done.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::drive::Mode;
use super::task::{Pass, TaskDone, objects_finished, run_task};
use crate::error::{Error, Result};
use crate::plan::Task;
use crate::report::{Phase, Stats};
use crate::steps::keys::BUCKETS;
use crate::steps::{Kind, Part, StepError};

/// Runs `start(task)` for each task, at most `slots` at once, handing each result to
/// `done` as it finishes. Starts no task after an error, a `stop` or a `drain`; the
/// first error wins and the running tasks are drained (a task failing after `stop` was
/// set failed because of it: [`Error::Interrupted`]).
///
/// # Errors
/// The first task's error; [`Error::Interrupted`] when a stop or a drain left tasks
/// unstarted.
pub(super) async fn schedule<T, F>(
    tasks: impl IntoIterator<Item = Task>,
    slots: usize,
    stop: &AtomicBool,
    drain: Option<&AtomicBool>,
    mut start: impl FnMut(Task) -> F,
    mut done: impl FnMut(T),
) -> Result<()>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut pending = tasks.into_iter().peekable();
    let mut running: JoinSet<Result<T>> = JoinSet::new();
    let mut first_error: Option<Error> = None;
    let halted =
        || stop.load(Ordering::Relaxed) || drain.is_some_and(|d| d.load(Ordering::Relaxed));
    loop {
        while first_error.is_none() && running.len() < slots && !halted() {
            let Some(task) = pending.next() else { break };
            running.spawn(start(task));
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(t)) => done(t),
            Ok(Err(e)) => {
                let e = if first_error.is_none() && stop.load(Ordering::Relaxed) {
                    Error::Interrupted("a signal")
                } else {
                    e
                };
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(join) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(Error::Internal(format!("a task panicked: {join}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if pending.peek().is_some() => Err(Error::Interrupted("a signal")),
        None => Ok(()),
    }
}

/// The full pass of steps `from..=to` (exact or near-duplicate removal; a group of
/// fitted steps): every task of `env.plan`, committed or not and whoever owns it, is
/// read and run through the steps before `from`; each step of the group observes what
/// reaches `from` (an [`Observer`](crate::steps::Observer) per task and step); then each
/// settles with every task's part, in task order. Their counters are not the run's, so
/// they go to a scratch [`Stats`] shown as the run's current phase. Returns the rows
/// read and, for each step of the group, the statistics a fitted step settled with
/// (None for a full-pass step).
pub(super) async fn full_pass(
    env: &Pass,
    from: usize,
    to: usize,
    slots: usize,
) -> Result<(u64, Vec<Option<serde_json::Value>>)> {
    let started = Instant::now();
    let (rows, by_step) = observe(env, from, to, slots, env.plan.tasks.clone()).await?;
    let settled = settle(env, from, to, by_step).await?;
    let names: Vec<&str> = env.plan.steps[from..=to].iter().map(|s| s.name).collect();
    tracing::info!(
        steps = names.join(", "),
        tasks = env.plan.tasks.len(),
        rows,
        seconds = started.elapsed().as_secs_f64(),
        "full pass settled"
    );
    Ok((rows, settled))
}

/// `tasks` (committed or not, whoever owns them) run through the steps before `from`,
/// each step of `from..=to` observing what reaches `from`, as in a [`full_pass`].
/// Returns the rows read and, for each step of the group, the tasks' parts in task
/// order.
pub(super) async fn observe(
    env: &Pass,
    from: usize,
    to: usize,
    slots: usize,
    tasks: Vec<Task>,
) -> Result<(u64, Vec<Vec<Part>>)> {
    // Each task's parts (one per step of the group), by task index.
    let parts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let kept = parts.clone();
    let rows = observe_each(env, from, to, slots, tasks, None, move |done: TaskDone| {
        crate::pool::lock(&kept).insert(done.record.task, done.parts);
        async { Ok(()) }
    })
    .await?;
    let parts = std::mem::take(&mut *crate::pool::lock(&parts));
    // Step k's parts in task order: the k-th of each task's.
    let mut by_step: Vec<Vec<Part>> = (from..=to).map(|_| Vec::new()).collect();
    for task_parts in parts.into_values() {
        for (column, part) in by_step.iter_mut().zip(task_parts) {
            column.push(part);
        }
    }
    Ok((rows, by_step))
}

/// Asked right before a task (or a section) of a shared stage starts: whether this run
/// computes it (its claim, `shared.rs`).
pub(super) type Gate =
    Arc<dyn Fn(usize) -> futures::future::BoxFuture<'static, Result<bool>> + Send + Sync>;

/// `tasks` observed as in [`observe`], each task's result handed to `each` (on the
/// task's own tokio task, so it may store the parts while other tasks run); a task
/// `gate` refuses is skipped. Returns the rows read.
pub(super) async fn observe_each<F, Fut>(
    env: &Pass,
    from: usize,
    to: usize,
    slots: usize,
    tasks: Vec<Task>,
    gate: Option<Gate>,
    each: F,
) -> Result<u64>
where
    F: Fn(TaskDone) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let plan = env.plan.clone();
    let names: Vec<String> = plan.steps.iter().map(|s| s.name.to_string()).collect();
    let scratch = Arc::new(Stats::new(
        tasks.iter().map(|t| objects_finished(&plan, t)).sum(),
        tasks.iter().map(|t| t.bytes).sum(),
        &names,
    ));
    let fits = plan.steps[from..=to]
        .iter()
        .any(|s| s.step.kind().needs_fit());
    env.stats.set_phase(Phase::Pass {
        label: format!(
            "{} {}",
            if fits { "fit" } else { "full pass" },
            names[from..=to].join(", ")
        ),
        stats: scratch.clone(),
    });
    let pass = Pass {
        stats: scratch.clone(),
        ..env.clone()
    };
    schedule(
        tasks,
        slots,
        &env.stop,
        None,
        |task| {
            let (pass, each, gate) = (pass.clone(), each.clone(), gate.clone());
            async move {
                if let Some(gate) = gate
                    && !gate(task.id).await?
                {
                    return Ok(());
                }
                each(run_task(pass, task, Mode::Observe(from, to)).await?).await
            }
        },
        |()| {},
    )
    .await?;
    if env.stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted("a signal"));
    }
    Ok(Stats::get(&scratch.rows_in))
}

/// Settles each step of `from..=to` with its parts (`by_step`, as [`observe`] returns
/// them), on the pass's pool: the statistics of a fitted step, None for a full-pass one.
pub(super) async fn settle(
    env: &Pass,
    from: usize,
    to: usize,
    by_step: Vec<Vec<Part>>,
) -> Result<Vec<Option<serde_json::Value>>> {
    let mut settled = Vec::new();
    for (k, parts) in (from..=to).zip(by_step) {
        let step = env.plan.steps[k].step.clone();
        let name = env.plan.steps[k].name;
        // A dedup settles against its key index: every bucket of it.
        let index = match step.kind() {
            Kind::FullPass(_) => {
                let earlier = super::index::against(&env.plan, k).await?;
                Some(super::index::open(env, k, 0, BUCKETS, &earlier).await?)
            }
            _ => None,
        };
        let budget = env.plan.step_memory();
        let (r, index) = on_pool(env, move || {
            let mut index = index;
            let r = match (step.kind(), index.as_mut()) {
                (Kind::FullPass(p), Some(ix)) => {
                    p.settle(parts, &mut ix.keys, budget).map(|()| None)
                }
                (Kind::Fit(f), _) => f.settle(parts).map(Some),
                _ => Err(StepError::internal("a map step in a full pass")),
            };
            (r, index)
        })
        .await?;
        let stats =
            r.map_err(|e| Error::step_failed("the whole input (the full pass)", k, name, None, e))?;
        if let Some(index) = index {
            index.store(env, k).await?;
        }
        settled.push(stats);
    }
    Ok(settled)
}

/// Runs `f` on the pass's CPU pool (settling merges spill runs: not on the reactor).
pub(super) async fn on_pool<T: Send + 'static>(
    env: &Pass,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    env.pool.spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .map_err(|_| Error::Internal("a job on the CPU pool vanished".into()))
}
