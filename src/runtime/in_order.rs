//! The main pass of a plan whose full-pass step decides as rows arrive ([`Plan::in_order`],
//! [`InOrder`]): exact dedup in one pass. A row's fate depends only on the rows before
//! it in input order, so the tasks run one at a time in task order (each still spreads
//! its batches over every thread) and the step decides each batch on the task's thread,
//! in batch order, from what it kept of the tasks before.
//!
//! Tasks an earlier run committed are not run again, but the step must know their rows:
//! they are observed first, as in a full pass (a fresh run has none). When the step's
//! state outgrows its budget, the pass ends at the next task boundary: the tasks left
//! get a full pass, settled with what the step kept so far ahead of their parts, and
//! run side by side like any main pass. Either way each task's output is the same.
//!
//! [`Plan::in_order`]: crate::plan::Plan::in_order
//! [`InOrder`]: crate::steps::InOrder

use std::future::Future;
use std::sync::atomic::AtomicBool;

use super::schedule::{observe, on_pool, schedule, settle};
use super::task::Pass;
use crate::error::{Error, Result};
use crate::plan::Task;
use crate::report::Phase;
use crate::steps::keys::BUCKETS;
use crate::steps::{Kind, Part, StepError};

/// Runs `todo` (this run's tasks, in task order) with step `k` deciding in order;
/// `known`: the tasks committed before, observed first. `start` and `done` are the main
/// pass's, as [`schedule`] takes them. Returns the tasks left when the step's state
/// outgrew its budget (their decisions settled), to run side by side; none otherwise.
///
/// # Errors
/// A task's error, or the step's (its state, its spill files).
pub(super) async fn main_pass<T, F>(
    env: &Pass,
    k: usize,
    known: Vec<Task>,
    todo: Vec<Task>,
    drain: &AtomicBool,
    mut start: impl FnMut(Task) -> F,
    mut done: impl FnMut(T),
) -> Result<Vec<Task>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let threads = env.plan.threads;
    let known_parts = if known.is_empty() {
        Vec::new()
    } else {
        tracing::info!(
            tasks = known.len(),
            "observing the tasks already committed, for the decisions of `{}`",
            env.plan.steps[k].name
        );
        let (_, mut by_step) = observe(env, k, k, threads, known).await?;
        by_step.pop().unwrap_or_default()
    };
    let budget = env.plan.step_memory();
    call(env, k, move |o| o.begin(known_parts, budget)).await?;
    env.stats.set_phase(Phase::Write);
    let mut left = todo.into_iter();
    while let Some(task) = left.next() {
        if call(env, k, |o| Ok(o.over_budget())).await? {
            let rest: Vec<Task> = std::iter::once(task).chain(left).collect();
            tracing::info!(
                tasks_left = rest.len(),
                "`{}` outgrew its memory deciding in one pass: the tasks left get a full pass",
                env.plan.steps[k].name
            );
            let kept = call(env, k, |o| o.end()).await?;
            let (_, mut by_step) = observe(env, k, k, threads, rest.clone()).await?;
            let mut parts: Vec<Part> = vec![kept];
            parts.extend(by_step.pop().unwrap_or_default());
            settle(env, k, k, vec![parts]).await?;
            env.stats.set_phase(Phase::Write);
            return Ok(rest);
        }
        schedule([task], 1, &env.stop, Some(drain), &mut start, &mut done).await?;
    }
    // What the step kept is every key of the input: its key index.
    let kept = call(env, k, |o| o.end()).await?;
    write_index(env, k, vec![kept]).await?;
    Ok(Vec::new())
}

/// Stores step `k`'s key index from `parts` (every task's keys), when it has one.
async fn write_index(env: &Pass, k: usize, parts: Vec<Part>) -> Result<()> {
    if super::index::spec(&env.plan, k).is_none_or(|s| !s.write) {
        return Ok(());
    }
    // Deciding in one pass never dedups against earlier datasets.
    let mut index = super::index::open(env, k, 0, BUCKETS, &Vec::new()).await?;
    let index = call(env, k, move |o| {
        o.write_index(parts, &mut index.keys).map(|()| index)
    })
    .await?;
    index.store(env, k).await
}

/// A run with no task left to do whose step `k` decides in order: when an earlier run
/// committed every task but ended before storing the step's key index, the index is
/// made from a full pass over the input (the rows of every task).
pub(super) async fn index_if_missing(env: &Pass, k: usize) -> Result<()> {
    let Some(spec) = super::index::spec(&env.plan, k).filter(|s| s.write) else {
        return Ok(());
    };
    if crate::sink::index::complete(&env.plan.sink, &spec.id).await? {
        return Ok(());
    }
    tracing::info!(
        "every task is committed but the key index of `{}` is not stored: reading the input for it",
        env.plan.steps[k].name
    );
    let (_, mut by_step) = observe(env, k, k, env.plan.threads, env.plan.tasks.clone()).await?;
    write_index(env, k, by_step.pop().unwrap_or_default()).await
}

/// Calls `f` with step `k`'s in-order side, on the pass's pool.
async fn call<R: Send + 'static>(
    env: &Pass,
    k: usize,
    f: impl FnOnce(&dyn crate::steps::InOrder) -> std::result::Result<R, StepError> + Send + 'static,
) -> Result<R> {
    let step = env.plan.steps[k].step.clone();
    let r = on_pool(env, move || match step.kind() {
        Kind::FullPass(p) => match p.in_order() {
            Some(o) => f(o),
            None => Err(StepError::internal("the step cannot decide in order")),
        },
        _ => Err(StepError::internal(
            "the step does not decide over the input",
        )),
    })
    .await?;
    r.map_err(|e| {
        Error::step_failed(
            "the whole input (one pass)",
            k,
            env.plan.steps[k].name,
            None,
            e,
        )
    })
}
