//! Executes a plan (docs/architecture.md): tokio tasks list, read and upload; a rayon pool
//! decompresses, parses, runs the steps and encodes Parquet; bounded channels between
//! them carry the backpressure, so a slow sink slows the reader and memory stays bounded.
//!
//! Each task runs on one rayon thread from its first object to its last shard, so the
//! rows and bytes of every shard depend only on the input, never on the thread count.
//!
//! The rooms: this file orchestrates one run (`execute`: prepare the sink and the plan,
//! stages, the main pass, finalize); `stages.rs` runs the full and fit passes in
//! pipeline order; `shared.rs` shares such a pass among workers through the sink
//! (`sections.rs`: a dedup's sections);
//! `in_order.rs` is the main pass of a step deciding as rows arrive (exact dedup in one
//! pass); `schedule.rs` runs the tasks of a pass; `task.rs` is one task (reader on
//! tokio, CPU side on rayon); `drive.rs` drives the steps of a task; `read.rs` reads
//! objects and slices; `cache.rs` keeps a fit pass's decoded batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::plan::{Plan, Task};
use crate::report::{Phase, Stats};
use crate::sink::{self, Manifest, SinkState, TaskRecord};

mod cache;
mod claims;
mod drive;
mod elastic;
mod in_order;
mod index;
mod job;
mod read;
mod schedule;
mod sections;
mod shared;
mod shuffle;
mod stages;
mod task;
pub mod worker;
use cache::DecodedCache;
use drive::Mode;
use schedule::schedule;
pub use shared::StageWait;
use stages::stages;
use task::{Pass, TaskDone, objects_finished, run_task};
pub use worker::Worker;

/// Outcome of [`execute`].
#[derive(Debug)]
pub enum Outcome {
    /// Every task is committed and the manifest written.
    Completed {
        manifest: Box<Manifest>,
        tasks_skipped: usize,
    },
    /// The sink already held this pipeline's complete output.
    AlreadyComplete(Box<Manifest>),
    /// This worker's tasks are committed; other workers' are not all yet. The last
    /// worker to finish (or `kiln finalize`) writes the manifest.
    WorkerDone {
        committed: usize,
        tasks_skipped: usize,
        /// The worker this run was: the one asked for, or a helper it joined as.
        worker: Worker,
    },
}

/// Knobs of one execution that are not part of the pipeline.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub overwrite: bool,
    pub worker: Worker,
    /// Set on the first SIGTERM/SIGINT: start no new task, let running ones finish.
    /// (The `stop` flag passed beside it abandons running tasks too.)
    pub drain: Arc<AtomicBool>,
    /// How long a worker waits at a stage shared with other workers.
    pub stage_wait: StageWait,
    /// Never run the tasks, nor compute the stage parts and sections, a slower worker
    /// has not started (`--own-tasks-only`).
    pub own_tasks_only: bool,
    /// Nothing named this run's worker (no `--worker`, no scheduler's variables): on a
    /// sink whose plan has other workers, or whose only worker is running, it joins as
    /// a helper ([`Worker::helper`]) instead of being refused.
    pub join: bool,
}

/// Stack of each CPU thread. DataFusion evaluates an expression by recursion over its
/// tree, one frame per operator: the longest expression kiln takes
/// (`steps::expr::MAX_TOKENS`) needs more than the default 2 MiB. Reserved, not used:
/// pages are touched only as deep as a thread goes.
const CPU_STACK: usize = 16 << 20;

/// The rayon pool of a pass: `threads` threads named `kiln-{name}-{i}`.
fn cpu_pool(threads: usize, name: &'static str) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .stack_size(CPU_STACK)
        .num_threads(threads)
        .thread_name(move |i| format!("kiln-{name}-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Internal(format!("cannot start the thread pool: {e}")))
}

/// Runs this worker's share of the plan; the last worker to finish writes the manifest.
/// Returns the plan as run (it follows the sink's stored plan, see [`prepare`]).
///
/// # Errors
/// The first error of any task, after the others have stopped; committed tasks stay
/// committed, so running again resumes.
pub async fn execute(
    plan: Plan,
    stats: Arc<Stats>,
    opts: ExecOptions,
    stop: Arc<AtomicBool>,
) -> (Arc<Plan>, Result<Outcome>) {
    let t = Instant::now();
    // Before this run's record exists: a file written since is another live run's.
    let since = std::time::SystemTime::now();
    let mut opts = opts;
    let (plan, prepared) = match prepare(&plan, &opts).await {
        // From here on the run follows the sink's stored plan.
        Ok(Prepared::Ready { committed, stored }) => match plan.clone().adopt(&stored) {
            Ok(adopted) => (adopted, Ok(Prepared::Ready { committed, stored })),
            Err(e) => (plan, Err(e)),
        },
        other => (plan, other),
    };
    // The sink is visibly in use from here until the run ends (see `sink::lease`).
    let (lease, prepared) = match prepared {
        Ok(Prepared::Ready { committed, stored }) => {
            match elastic::lease(&plan, &mut opts, stored.workers).await {
                Ok(lease) => (Some(lease), Ok(Prepared::Ready { committed, stored })),
                Err(e) => (None, Err(e)),
            }
        }
        other => (None, other),
    };
    let worker = opts.worker;
    stats.add_protocol(t.elapsed());
    // Each task is claimed under this run's record before it starts (`claims.rs`), so
    // a helper can join any run; on several workers stage parts and sections too.
    let claims = lease
        .as_ref()
        .map(|l| claims::Claims::new(l.run_id.clone(), worker));
    let mut cache = None;
    let (plan, prepared) = match prepared {
        Ok(Prepared::Ready {
            committed,
            mut stored,
        }) if plan.steps.iter().any(|s| s.step.kind().needs_pass()) => {
            let work = plan
                .tasks
                .iter()
                .any(|t| worker.owns(t.id) && !committed.contains_key(&t.id));
            let sharing =
                claims
                    .clone()
                    .filter(|_| worker.count > 1)
                    .map(|claims| shared::Sharing {
                        worker,
                        wait: opts.stage_wait,
                        claims,
                        take_unstarted: !opts.own_tasks_only,
                    });
            match stages(plan, &mut stored, &stats, &stop, work, sharing).await {
                (plan, Ok(kept)) => {
                    cache = kept;
                    (plan, Ok(Prepared::Ready { committed, stored }))
                }
                (plan, Err(e)) if worker.count > 1 => {
                    // The other workers may have run this one's tasks and finished the
                    // dataset (removing the stage's parts) while it was in a stage.
                    match sink::read_manifest(&plan.sink).await {
                        Ok(Some(m)) if m.pipeline_hash == plan.pipeline_hash => {
                            tracing::info!(
                                "the other workers finished the dataset while this one was in a stage"
                            );
                            // What this worker stored since they cleaned up.
                            match sink::remove_scratch(&plan.sink).await {
                                Ok(()) => (plan, Ok(Prepared::Complete(Box::new(m)))),
                                Err(e) => (plan, Err(e)),
                            }
                        }
                        _ => (plan, Err(e)),
                    }
                }
                (plan, Err(e)) => (plan, Err(e)),
            }
        }
        other => (plan, other),
    };
    let plan = Arc::new(plan);
    let outcome = match prepared {
        Ok(Prepared::Complete(m)) => Ok(Outcome::AlreadyComplete(m)),
        Ok(Prepared::Ready { committed, stored }) => {
            run(
                plan.clone(),
                committed,
                &stored,
                stats,
                opts,
                stop,
                cache,
                claims,
                since,
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        record_failure(&plan, &worker, e).await;
    }
    if let Some(lease) = lease {
        lease.release().await;
    }
    (plan, outcome)
}

/// A failed or stopped worker leaves a record for `kiln status`, once the sink holds
/// this dataset's plan (a run refused before that wrote nothing there).
async fn record_failure(plan: &Plan, worker: &Worker, e: &Error) {
    if !matches!(sink::read_plan(&plan.sink).await, Ok(Some(p)) if p.pipeline_hash == plan.pipeline_hash)
    {
        return;
    }
    let code = e.exit_code();
    let record = sink::FailureRecord {
        worker: worker.to_string(),
        exit_code: code,
        retryable: code == crate::error::EXIT_RETRY,
        error: crate::secrets::redact(&e.to_string()).into_owned(),
        at: sink::now_rfc3339(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if let Err(e) = sink::record_failure(&plan.sink, worker.index, &record).await {
        tracing::warn!("could not record the failure in the sink: {e}");
    }
}

/// What the sink said before the run.
pub enum Prepared {
    /// This pipeline's dataset is complete.
    Complete(Box<Manifest>),
    /// Ready to run: the tasks already committed (by earlier runs or other workers)
    /// and the stored plan this run follows.
    Ready {
        committed: BTreeMap<usize, TaskRecord>,
        stored: Box<sink::StoredPlan>,
    },
}

/// Checks the sink (refusing another pipeline's output), then settles the plan: the
/// first worker stores its listing and task split in `_kiln/plan.json` by a conditional
/// put, and every worker and rerun follows the stored one ([`Plan::adopt`]), so objects
/// added mid-run or a different worker count cannot change who does what.
///
/// # Errors
/// [`Error::Plan`] (exit 2) for another pipeline's sink, a worker count that differs
/// from the stored plan's, or `--overwrite` with several workers.
pub async fn prepare(plan: &Plan, opts: &ExecOptions) -> Result<Prepared> {
    let n = opts.worker.count;
    if n > 1 && opts.overwrite {
        return Err(Error::Usage(
            "--overwrite cannot be combined with several workers: each would delete the \
             others' output; clear the sink once, then start the workers"
                .into(),
        ));
    }
    if n > 1 && plan.sequential {
        return Err(Error::Plan(
            "`limit` keeps the first rows in listing order, which needs one worker; \
             run it without --worker"
                .into(),
        ));
    }
    if opts.overwrite {
        sink::lease::refuse_if_in_use(&plan.sink, "--overwrite").await?;
    }
    let current = plan.pipeline_json();
    let committed =
        match sink::prepare(&plan.sink, &plan.pipeline_hash, &current, opts.overwrite).await? {
            SinkState::Complete(m) => return Ok(Prepared::Complete(m)),
            SinkState::Empty => BTreeMap::new(),
            SinkState::Partial(c) => c,
        };
    let stored = sink::settle_plan(&plan.sink, &plan.stored(n)).await?;
    // A run naming no worker joins the workers of a plan for another count as a helper
    // while one of them is running (else it would wait for nothing: say what to run).
    let joins = stored.workers != n
        && opts.join
        && !opts.own_tasks_only
        && sink::lease::runs(&plan.sink)
            .await?
            .iter()
            .any(sink::lease::RunRecord::live);
    if stored.workers != n && !joins {
        return Err(Error::Plan(format!(
            "{} splits this dataset among {} worker{}, but this worker is {} of {n}; run \
             every worker with --worker I/{} (or KILN_WORKERS={}) until the dataset is \
             complete, or start over with --overwrite",
            plan.sink.display_child(sink::PLAN),
            stored.workers,
            if stored.workers == 1 { "" } else { "s" },
            opts.worker.index,
            stored.workers,
            stored.workers,
        )));
    }
    Ok(Prepared::Ready {
        committed,
        stored: Box::new(stored),
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one run's parts, each made once in `execute`"
)]
async fn run(
    plan: Arc<Plan>,
    committed: BTreeMap<usize, TaskRecord>,
    stored: &sink::StoredPlan,
    stats: Arc<Stats>,
    opts: ExecOptions,
    stop: Arc<AtomicBool>,
    cache: Option<Arc<DecodedCache>>,
    claims: Option<claims::Claims>,
    since: std::time::SystemTime,
) -> Result<Outcome> {
    let worker = opts.worker;
    let skipped = plan
        .tasks
        .iter()
        .filter(|t| worker.owns(t.id) && committed.contains_key(&t.id))
        .count();
    for t in plan.tasks.iter().filter(|t| committed.contains_key(&t.id)) {
        Stats::add(&stats.bytes_done, t.bytes);
        Stats::add(&stats.objects_done, objects_finished(&plan, t));
    }
    let pool = cpu_pool(plan.threads, "cpu")?;
    let env = Pass {
        plan: plan.clone(),
        stats: stats.clone(),
        pool,
        cfg: Arc::new(plan.writer_config(tokio::runtime::Handle::current())?),
        io: Arc::new(Semaphore::new(plan.pipeline.run.io_concurrency)),
        stop: stop.clone(),
        cache,
        batches: drive::in_flight(&plan),
    };
    let slots = if plan.sequential { 1 } else { plan.threads };

    // What a step deciding in order must know of before this run's tasks.
    let known: Vec<Task> = match plan.in_order {
        Some(_) => plan
            .tasks
            .iter()
            .filter(|t| committed.contains_key(&t.id))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mut records = committed;
    let todo: Vec<Task> = plan
        .tasks
        .iter()
        .filter(|t| worker.owns(t.id) && !records.contains_key(&t.id))
        .cloned()
        .collect();
    // What a killed run left half written: not while another run (a helper) is live, and
    // only files older than this run, as a helper that joined since may be writing its
    // tasks now. (Otherwise a task's debris is removed when its claim is taken from a run
    // that is gone, `claims.rs`.)
    if !todo.is_empty() && worker.count == 1 && claims::live(&plan.sink).await?.len() <= 1 {
        let redo: std::collections::BTreeSet<usize> = todo.iter().map(|t| t.id).collect();
        let sink = plan.sink.clone();
        let t = Instant::now();
        let removed = tokio::task::spawn_blocking(move || {
            sink::clean_local_debris(&sink, &redo, Some(since))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        stats.add_protocol(t.elapsed());
        if removed > 0 {
            tracing::info!("removed {removed} partly written files left by a killed run");
        }
    }
    if !todo.is_empty() {
        // Children of `exec` steps start now, beside the first reads.
        env.pool
            .install(|| plan.steps.iter().for_each(|s| s.step.warm()));
    }
    stats.set_phase(Phase::Write);
    let start = |task: Task| {
        let env = env.clone();
        let claims = claims.clone();
        async move {
            // Among workers: claimed first, unless another live run holds it.
            if let Some(c) = &claims
                && !c.acquire(&env.plan.sink, task.id).await?
            {
                return Ok(claims::Ran::Elsewhere);
            }
            let TaskDone {
                record,
                dead_letter,
                staged,
                ..
            } = run_task(env.clone(), task, Mode::Write).await?;
            if let Some(letters) = dead_letter {
                sink::write_errors(&env.plan.sink, record.task, letters).await?;
            }
            let t = Instant::now();
            // The shards become objects, then the record commits them.
            staged.publish().await?;
            sink::commit_task(&env.plan.sink, &record).await?;
            env.stats.add_protocol(t.elapsed());
            Ok(claims::Ran::Committed(record))
        }
    };
    let mut done = |ran: claims::Ran| {
        if let claims::Ran::Committed(record) = ran {
            stats.add_step_counts(&record.step_counts);
            stats.add_rejected(&record.rejected);
            records.insert(record.task, record);
        }
    };
    let todo = match plan.in_order {
        // A step decides in the main pass: the tasks run one at a time, in order, until
        // it is done or its state outgrows its budget.
        Some(k) if !todo.is_empty() => {
            in_order::main_pass(&env, k, known, todo, &opts.drain, &start, &mut done).await?
        }
        Some(k) => {
            in_order::index_if_missing(&env, k).await?;
            todo
        }
        None => todo,
    };
    schedule(todo, slots, &stop, Some(&opts.drain), &start, &mut done).await?;
    // Then the tasks of dead workers, those no run has started, and those whose claim a
    // gone run (a helper that died) holds. A helper then goes on until the runs it joined
    // have committed what they hold: it must not leave with exit 0 beside a run that died
    // (its record not yet expired, on another host) whose tasks nobody would then finish.
    // It waits, taking over what becomes free, up to `--stage-wait`.
    let waited = Instant::now();
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        elastic::take_over(&plan, worker, slots, &stop, &opts.drain, &start, &mut done).await?;
        if !opts.own_tasks_only {
            let taken = claims::take_unclaimed(
                &plan,
                worker.count,
                slots,
                &stop,
                &opts.drain,
                &start,
                &mut done,
            )
            .await?;
            if taken > 0 {
                tracing::info!("ran {taken} task(s) no other worker had started");
            }
        }
        if !worker.is_helper()
            || opts.drain.load(std::sync::atomic::Ordering::Relaxed)
            || stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            break;
        }
        let held = elastic::held(&plan, worker.count).await?;
        if held.is_empty() {
            break;
        }
        if waited.elapsed() > opts.stage_wait.wait {
            return Err(Error::Busy(format!(
                "tasks {held:?} are still held by other runs after {:?} (--stage-wait); \
                 run again to finish them",
                opts.stage_wait.wait
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
    if opts.drain.load(std::sync::atomic::Ordering::Relaxed)
        || stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        // A stop leaves tasks undone without an error.
        return Err(Error::Interrupted("a signal"));
    }
    // Other workers commit too (some of this worker's tasks among them, on several
    // workers): count what the sink holds now.
    let t = Instant::now();
    let mut all = sink::committed(&plan.sink).await?;
    stats.add_protocol(t.elapsed());
    all.extend(records);
    // One worker alone leaves a task undone only when stopped; with a helper, the
    // helper may be running it.
    if worker.count == 1
        && plan.tasks.iter().any(|t| !all.contains_key(&t.id))
        && claims::live(&plan.sink).await?.len() <= 1
    {
        return Err(Error::Interrupted("a signal"));
    }
    if !stored.missing(&all).is_empty() {
        return Ok(Outcome::WorkerDone {
            committed: all.len(),
            tasks_skipped: skipped,
            worker,
        });
    }
    let t = Instant::now();
    let manifest = if plan
        .pipeline
        .sink
        .shuffle
        .as_ref()
        .is_some_and(crate::spec::ShuffleSpec::global)
    {
        // The tasks scattered their rows: the shards are written now, bucket by bucket.
        let sharing = claims.as_ref().map(|claims| shuffle::Sharing {
            claims,
            wait: opts.stage_wait.wait,
        });
        let shards = match shuffle::gather(&plan, &stats, &all, sharing).await {
            Ok(shards) => shards,
            // Another run (a worker, a helper) may have gathered every bucket and
            // finished the dataset (removing the scattered parts) while this one gathered.
            Err(e) => match sink::read_manifest(&plan.sink).await? {
                Some(m) if m.pipeline_hash == plan.pipeline_hash => {
                    tracing::info!(
                        "the other workers finished the dataset while this one gathered"
                    );
                    sink::remove_scratch(&plan.sink).await?;
                    return Ok(Outcome::AlreadyComplete(Box::new(m)));
                }
                _ => return Err(e),
            },
        };
        stored.manifest_of(&all, shards)
    } else {
        stored.manifest(&all)
    };
    sink::finalize(&plan.sink, &manifest).await?;
    stats.add_protocol(t.elapsed());
    Ok(Outcome::Completed {
        manifest: Box::new(manifest),
        tasks_skipped: skipped,
    })
}
