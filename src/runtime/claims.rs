//! Workers of a job taking tasks from each other in the main pass (`sink/claims.rs`;
//! docs/workers.md, "Slow workers"): every run claims each task before it starts, and
//! a worker done with its own tasks (and those of a dead worker, `take_over`), or a
//! helper with none of its own, runs the tasks no run has claimed yet, from the end of the plan, until
//! none is left; then those whose claim a gone run holds. A slow worker skips what was
//! taken when it gets there.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use super::schedule::schedule;
use crate::error::Result;
use crate::plan::{Plan, Task};
use crate::sink::claims::{self, Claim, Claimed};
use crate::sink::{TaskRecord, lease};
use crate::storage::Location;

/// What became of a task handed to the main pass.
pub(super) enum Ran {
    /// This run ran and committed it.
    Committed(TaskRecord),
    /// Another run holds it, or committed it first.
    Elsewhere,
}

/// This run's claim on tasks: every run claims each task before it starts, so that
/// other workers and helpers can share the main pass.
#[derive(Debug, Clone)]
pub(super) struct Claims {
    me: Claim,
}

impl Claims {
    pub(super) fn new(run_id: String, worker: super::Worker) -> Claims {
        Claims {
            me: Claim {
                run_id,
                worker: worker.to_string(),
            },
        }
    }

    /// Whether this run runs `task`: its claim is this run's now (created, or taken from
    /// a run that is gone, whose half-written files are removed) and no run committed
    /// it meanwhile.
    ///
    /// # Errors
    /// The store's.
    pub(super) async fn acquire(&self, sink: &Location, task: usize) -> Result<bool> {
        match claims::claim(sink, task, &self.me).await? {
            Claimed::Mine => {}
            Claimed::Theirs(held) => {
                if live(sink).await?.contains(&held.run_id) {
                    return Ok(false);
                }
                tracing::info!(
                    "task {task}: taking the claim of worker {}, whose run is gone",
                    held.worker
                );
                if !claims::take(sink, task, &held.run_id, &self.me).await? {
                    return Ok(false);
                }
                // What that run's attempt left half written on local disk: no other
                // run writes this task now.
                let (sink, redo) = (sink.clone(), BTreeSet::from([task]));
                tokio::task::spawn_blocking(move || {
                    crate::sink::clean_local_debris(&sink, &redo, None)
                })
                .await
                .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
            }
        }
        Ok(!crate::sink::is_committed(sink, task).await?)
    }
}

impl Claims {
    /// Whether this run computes the stage item whose claim is at `rel` (a task's part,
    /// a section): its claim is this run's now, created or taken from a run that is not
    /// live. `live`: the live runs' ids when the caller has them; else they are read
    /// only if another run holds the claim.
    ///
    /// # Errors
    /// The store's.
    pub(super) async fn acquire_item(
        &self,
        sink: &Location,
        rel: &str,
        live: Option<&BTreeSet<String>>,
    ) -> Result<bool> {
        let Claimed::Theirs(held) = claims::claim_at(sink, rel, &self.me).await? else {
            return Ok(true);
        };
        let holder_live = match live {
            Some(live) => live.contains(&held.run_id),
            None => self::live(sink).await?.contains(&held.run_id),
        };
        if holder_live {
            return Ok(false);
        }
        claims::take_at(sink, rel, &held.run_id, &self.me).await
    }
}

/// The run ids of the live runs on `sink`.
pub(super) async fn live(sink: &Location) -> Result<BTreeSet<String>> {
    Ok(running(sink).await?.0)
}

/// The live runs on `sink`: their run ids, and the indexes of their workers.
pub(super) async fn running(sink: &Location) -> Result<(BTreeSet<String>, BTreeSet<usize>)> {
    let live: Vec<lease::RunRecord> = lease::runs(sink)
        .await?
        .into_iter()
        .filter(lease::RunRecord::live)
        .collect();
    let workers = live
        .iter()
        .filter_map(|r| r.worker.split_once('/')?.0.parse().ok())
        .collect();
    Ok((live.into_iter().map(|r| r.run_id).collect(), workers))
}

/// After this worker's own tasks: runs the tasks of running workers that no run has
/// claimed,
/// the last first, `slots` at a time, listing again after each round (the workers they
/// belong to are still running); then the tasks whose claim a gone run holds. Returns
/// how many it started.
///
/// # Errors
/// A task's error, or the store's.
pub(super) async fn take_unclaimed<F>(
    plan: &Plan,
    count: usize,
    slots: usize,
    stop: &AtomicBool,
    drain: &AtomicBool,
    start: &impl Fn(Task) -> F,
    done: &mut impl FnMut(Ran),
) -> Result<usize>
where
    F: std::future::Future<Output = Result<Ran>> + Send + 'static,
{
    let mut started = 0;
    while !stop.load(Ordering::Relaxed) && !drain.load(Ordering::Relaxed) {
        let (claimed, committed) = claims::claimed_and_committed(&plan.sink).await?;
        // Only the tasks of workers that are running: one never started (an array run
        // a few at a time) or whose run ended runs its own tasks when it comes.
        let (live, running) = running(&plan.sink).await?;
        let open = |t: &&Task| !committed.contains(&t.id);
        let mut next: Vec<Task> = plan
            .tasks
            .iter()
            .rev()
            .filter(open)
            .filter(|t| !claimed.contains(&t.id) && running.contains(&(t.id % count.max(1))))
            .take(slots)
            .cloned()
            .collect();
        if next.is_empty() {
            // Every open task is claimed: by live runs, or by runs that are gone.
            let pending: Vec<&Task> = plan.tasks.iter().filter(open).collect();
            if pending.is_empty() {
                break;
            }
            for t in pending {
                let held =
                    crate::sink::get_json::<Claim>(&plan.sink, &claims::claim_path(t.id)).await?;
                if held.is_some_and(|c| !live.contains(&c.run_id)) {
                    next.push(t.clone());
                }
                if next.len() == slots {
                    break;
                }
            }
            if next.is_empty() {
                break;
            }
        }
        started += next.len();
        schedule(next, slots, stop, Some(drain), start, &mut *done).await?;
    }
    Ok(started)
}
