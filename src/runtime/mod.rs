//! Executes a plan (DESIGN §4): tokio tasks list, read and upload; a rayon pool
//! decompresses, parses, runs the steps and encodes Parquet; bounded channels between
//! them carry the backpressure, so a slow sink slows the reader and memory stays bounded.
//!
//! Each task runs on one rayon thread from its first object to its last shard, so the
//! rows and bytes of every shard depend only on the input, never on the thread count.
//!
//! Over 600 lines, and not one role yet: orchestration (`execute`, `prepare`), the fit
//! driver, the scheduling loop of the main and full passes, and driving the steps with
//! the bad-row bisection are still here. Issue 20 splits them into `schedule`, `fit`,
//! `task` and `drive` as `read.rs` (object reading and slicing) already is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::formats::Decoded;
use crate::formats::reader::{ChannelReader, Chunks};
use crate::formats::{self, DecodeContext, ObjectInput, RandomAccess};
use crate::plan::{Plan, Task};
use crate::rejects::{RejectKind, Rejected, Rejects};
use crate::report::{Phase, Stats};
use crate::sink::writer::{Staged, TaskWriter, WriterConfig};
use crate::sink::{self, InputRecord, Manifest, SinkState, TaskRecord};
use crate::steps::sample::stable_key;
use crate::steps::{Kind, Observer, Part, StepContext};

mod cache;
mod read;
pub mod worker;
use cache::DecodedCache;
use read::{read_objects, slice_reader};
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
}

/// Stack of each CPU thread. DataFusion evaluates an expression by recursion over its
/// tree, one frame per operator: the longest expression kiln takes
/// (`steps::expr::MAX_TOKENS`) needs more than the default 2 MiB. Reserved, not used:
/// pages are touched only as deep as a thread goes.
const CPU_STACK: usize = 16 << 20;

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
    let mut plan = plan;
    let t = Instant::now();
    let prepared = prepare(&mut plan, &opts).await;
    // The sink is visibly in use from here until the run ends (see `sink::lease`).
    let (lease, prepared) = match prepared {
        Ok(ready @ Prepared::Ready { .. }) => {
            match sink::lease::acquire(&plan.sink, opts.worker.index, opts.worker.count).await {
                Ok(lease) => (Some(lease), Ok(ready)),
                Err(e) => (None, Err(e)),
            }
        }
        other => (None, other),
    };
    stats.add_protocol(t.elapsed());
    let mut cache = None;
    let (plan, prepared) = match prepared {
        Ok(Prepared::Ready {
            committed,
            mut stored,
        }) if plan.needs_fit() => match fit(plan, &mut stored, &stats, &stop).await {
            (plan, Ok(kept)) => {
                cache = kept;
                (plan, Ok(Prepared::Ready { committed, stored }))
            }
            (plan, Err(e)) => (plan, Err(e)),
        },
        other => (plan, other),
    };
    let plan = Arc::new(plan);
    let outcome = match prepared {
        Ok(Prepared::Complete(m)) => Ok(Outcome::AlreadyComplete(m)),
        Ok(Prepared::Ready { committed, stored }) => {
            run(plan.clone(), committed, &stored, stats, opts, stop, cache).await
        }
        Err(e) => Err(e),
    };
    if let Some(lease) = lease {
        lease.release().await;
    }
    (plan, outcome)
}

/// Gives the fitted steps their statistics: those of this sink's `_kiln/stats.json`
/// when an earlier run of this pipeline fitted them (a resume binds exactly what the
/// committed tasks were written with), else a fit: one full pass per group of fitted
/// steps ([`Plan::fit_group`]), each settled and bound with what it learned before the
/// next, then `_kiln/stats.json` written before any task commits. The stored plan's
/// schema follows the fitted steps (one-hot columns are known only now).
///
/// Returns the batches the fit passes decoded, when they fit in memory
/// ([`DecodedCache`]), for the transform pass.
async fn fit(
    mut plan: Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> (Plan, Result<Option<Arc<DecodedCache>>>) {
    let result = fit_steps(&mut plan, stored, stats, stop).await;
    (plan, result)
}

/// Whether a fit pass keeps what it decodes: when the stored input is no larger than
/// half of `run.memory_limit` (the decoded size is checked as the pass goes), and bad
/// input fails the run (under skip / dead_letter each pass decodes, so that the
/// rejections of the transform pass are its own).
fn decoded_cache(plan: &Plan) -> Option<Arc<DecodedCache>> {
    let budget = plan.pipeline.run.memory_limit.get() / 2;
    (plan.input_bytes() <= budget && plan.pipeline.run.on_error == crate::spec::OnError::Fail)
        .then(|| Arc::new(DecodedCache::new(budget)))
}

async fn fit_steps(
    plan: &mut Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<Arc<DecodedCache>>> {
    let mut cache = None;
    {
        if let Some(file) = sink::read_stats(&plan.sink).await?
            && file.pipeline_hash == plan.pipeline_hash
        {
            tracing::info!(
                "fitted statistics read back from {}",
                plan.sink.display_child(sink::STATS)
            );
            plan.fitted = file.steps;
            plan.rebind()?;
        } else {
            let started = Instant::now();
            let pool = Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .stack_size(CPU_STACK)
                    .num_threads(plan.threads)
                    .thread_name(|i| format!("kiln-fit-{i}"))
                    .build()
                    .map_err(|e| Error::Internal(format!("cannot start the thread pool: {e}")))?,
            );
            let io = Arc::new(Semaphore::new(plan.pipeline.run.io_concurrency));
            let slots = if plan.sequential { 1 } else { plan.threads };
            let mut rows = 0;
            let mut entries = Vec::new();
            cache = decoded_cache(plan);
            while let Some((from, to)) = plan.fit_group() {
                let cfg = Arc::new(plan.writer_config(tokio::runtime::Handle::current())?);
                // The pass runs on a copy; the group's steps are the same values as
                // `plan`'s. It decodes only the columns the fit reads, unless what it
                // decodes is kept for the passes after it.
                let keep = cache.as_ref().is_some_and(|c| c.accepting());
                let shared = Arc::new(plan.for_fit(from, to, !keep)?);
                let (seen, settled) = full_pass(
                    &shared,
                    from,
                    to,
                    stats,
                    slots,
                    &pool,
                    &cfg,
                    &io,
                    stop,
                    cache.as_ref().filter(|c| c.accepting()),
                )
                .await?;
                if entries.is_empty() {
                    rows = seen;
                }
                for (k, stats) in (from..=to).zip(settled) {
                    let name = plan.steps[k].name;
                    let stats = stats.ok_or_else(|| {
                        Error::Internal(format!(
                            "step {} `{name}` settled without statistics",
                            k + 1
                        ))
                    })?;
                    let serde_json::Value::Object(stats) = stats else {
                        return Err(Error::Internal(format!(
                            "step {} `{name}`: statistics are not an object",
                            k + 1
                        )));
                    };
                    let occurrence = plan.steps[..=k].iter().filter(|s| s.name == name).count();
                    entries.push(sink::StatsEntry {
                        index: k + 1,
                        step: name.to_string(),
                        occurrence,
                        stats,
                    });
                }
                plan.fitted.clone_from(&entries);
                plan.rebind()?;
            }
            let file = sink::StatsFile {
                kiln_version: env!("CARGO_PKG_VERSION").to_string(),
                name: plan.pipeline.name.clone(),
                pipeline_hash: plan.pipeline_hash.clone(),
                fitted_on: "fit".into(),
                rows,
                objects: plan.objects.len(),
                input_bytes: plan.input_bytes(),
                steps: entries,
            };
            // Bound from the JSON as written, so this run and a resumed one apply the
            // very same numbers.
            let body =
                serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(e.to_string()))?;
            let file: sink::StatsFile =
                serde_json::from_slice(&body).map_err(|e| Error::Internal(e.to_string()))?;
            sink::put_json(&plan.sink, sink::STATS, &file).await?;
            plan.fitted = file.steps;
            plan.rebind()?;
            tracing::info!(
                rows,
                seconds = started.elapsed().as_secs_f64(),
                "fitted statistics written to {}",
                plan.sink.display_child(sink::STATS)
            );
            if let Some(c) = cache.as_ref().filter(|c| c.accepting()) {
                tracing::info!(
                    bytes = c.used(),
                    "the fit pass kept the decoded input for the transform pass"
                );
            }
        }
        let fresh = plan.stored(stored.workers);
        stored.schema = fresh.schema;
        stored.features = fresh.features;
        stored.token_column = fresh.token_column;
        // One worker runs a fit (see `prepare`): rewriting the stored plan is safe, and
        // `kiln finalize` / `kiln status` then see the fitted schema.
        sink::put_json(&plan.sink, sink::PLAN, &*stored).await?;
        Ok(cache.filter(|c| c.accepting()))
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
/// put, and every worker and rerun follows the stored one, so objects added mid-run or a
/// different worker count cannot change who does what.
///
/// # Errors
/// [`Error::Plan`] (exit 2) for another pipeline's sink, a worker count that differs
/// from the stored plan's, or `--overwrite` with several workers.
pub async fn prepare(plan: &mut Plan, opts: &ExecOptions) -> Result<Prepared> {
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
    if n > 1
        && let Some(s) = plan.steps.iter().find(|s| s.step.kind().needs_pass())
    {
        return Err(Error::Plan(format!(
            "`{}` decides over the whole input in a local full pass, which this version runs \
             on one worker only; run it without --worker (or with 1/1)",
            s.name
        )));
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
    if stored.workers != n {
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
    plan.adopt(&stored)?;
    Ok(Prepared::Ready {
        committed,
        stored: Box::new(stored),
    })
}

async fn run(
    plan: Arc<Plan>,
    committed: BTreeMap<usize, TaskRecord>,
    stored: &sink::StoredPlan,
    stats: Arc<Stats>,
    opts: ExecOptions,
    stop: Arc<AtomicBool>,
    cache: Option<Arc<DecodedCache>>,
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
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .stack_size(CPU_STACK)
            .num_threads(plan.threads)
            .thread_name(|i| format!("kiln-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the thread pool: {e}")))?,
    );
    let handle = tokio::runtime::Handle::current();
    let writer_cfg = Arc::new(plan.writer_config(handle.clone())?);
    let io = Arc::new(Semaphore::new(plan.pipeline.run.io_concurrency));
    let slots = if plan.sequential { 1 } else { plan.threads };

    let mut records = committed;
    let mut running: JoinSet<Result<TaskRecord>> = JoinSet::new();
    let todo: Vec<Task> = plan
        .tasks
        .iter()
        .filter(|t| worker.owns(t.id) && !records.contains_key(&t.id))
        .cloned()
        .collect();
    if !todo.is_empty() {
        let redo: std::collections::BTreeSet<usize> = todo.iter().map(|t| t.id).collect();
        let sink = plan.sink.clone();
        let t = Instant::now();
        let removed = tokio::task::spawn_blocking(move || sink::clean_local_debris(&sink, &redo))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        stats.add_protocol(t.elapsed());
        if removed > 0 {
            tracing::info!("removed {removed} partly written files left by a killed run");
        }
        for k in (0..plan.steps.len())
            .filter(|k| matches!(plan.steps[*k].step.kind(), Kind::FullPass(_)))
        {
            full_pass(
                &plan,
                k,
                k,
                &stats,
                slots,
                &pool,
                &writer_cfg,
                &io,
                &stop,
                None,
            )
            .await?;
        }
    }
    stats.set_phase(Phase::Write);
    let mut pending = todo.into_iter();
    let mut first_error: Option<Error> = None;
    loop {
        while first_error.is_none()
            && running.len() < slots
            && !stop.load(Ordering::Relaxed)
            && !opts.drain.load(Ordering::Relaxed)
        {
            let Some(task) = pending.next() else { break };
            let (plan, stats, pool, cfg, io, stop, cache) = (
                plan.clone(),
                stats.clone(),
                pool.clone(),
                writer_cfg.clone(),
                io.clone(),
                stop.clone(),
                cache.clone(),
            );
            running.spawn(async move {
                let TaskDone {
                    record,
                    dead_letter,
                    staged,
                    ..
                } = run_task(
                    plan.clone(),
                    task,
                    Mode::Write,
                    stats.clone(),
                    pool,
                    cfg,
                    io,
                    stop,
                    cache,
                )
                .await?;
                if let Some(letters) = dead_letter {
                    sink::write_errors(&plan.sink, record.task, letters).await?;
                }
                let t = Instant::now();
                // The shards become objects, then the record commits them.
                staged.publish().await?;
                sink::commit_task(&plan.sink, &record).await?;
                stats.add_protocol(t.elapsed());
                Ok(record)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(record)) => {
                stats.add_step_counts(&record.step_counts);
                stats.add_rejected(&record.rejected);
                records.insert(record.task, record);
            }
            Ok(Err(e)) => {
                // First error wins; the others are told to stop and are drained. A task
                // that fails after a signal asked everything to stop failed because of it.
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
    if let Some(e) = first_error {
        return Err(e);
    }
    if plan
        .tasks
        .iter()
        .any(|t| worker.owns(t.id) && !records.contains_key(&t.id))
    {
        // Only a stop leaves one of this worker's tasks undone without an error.
        return Err(Error::Interrupted("a signal"));
    }
    // Other workers commit too: count what the sink holds now.
    let t = Instant::now();
    let mut all = sink::committed(&plan.sink).await?;
    stats.add_protocol(t.elapsed());
    all.extend(records);
    if !stored.missing(&all).is_empty() {
        return Ok(Outcome::WorkerDone {
            committed: all.len(),
            tasks_skipped: skipped,
        });
    }
    let t = Instant::now();
    let manifest = stored.manifest(&all);
    sink::finalize(&plan.sink, &manifest).await?;
    stats.add_protocol(t.elapsed());
    Ok(Outcome::Completed {
        manifest: Box::new(manifest),
        tasks_skipped: skipped,
    })
}

/// The full pass of steps `from..=to` (exact or near-duplicate removal; a group of
/// fitted steps): every task of the plan, committed or not and whoever owns it, is read
/// and run through the steps before `from`; each step of the group observes what
/// reaches `from` (an [`Observer`] per task and step); then each settles with every
/// task's part, in task order. Their counters are not the run's, so they go to a
/// scratch [`Stats`]. Returns the rows read and, for each step of the group, the
/// statistics a fitted step settled with (None for a full-pass step).
#[allow(clippy::too_many_arguments)]
async fn full_pass(
    plan: &Arc<Plan>,
    from: usize,
    to: usize,
    stats: &Stats,
    slots: usize,
    pool: &Arc<rayon::ThreadPool>,
    cfg: &Arc<WriterConfig>,
    io: &Arc<Semaphore>,
    stop: &Arc<AtomicBool>,
    cache: Option<&Arc<DecodedCache>>,
) -> Result<(u64, Vec<Option<serde_json::Value>>)> {
    let started = Instant::now();
    let names: Vec<String> = plan.steps.iter().map(|s| s.name.to_string()).collect();
    let scratch = Arc::new(Stats::new(
        plan.objects.len() as u64,
        plan.input_bytes(),
        &names,
    ));
    let fits = plan.steps[from..=to]
        .iter()
        .any(|s| s.step.kind().needs_fit());
    stats.set_phase(Phase::Pass {
        label: format!(
            "{} {}",
            if fits { "fit" } else { "full pass" },
            names[from..=to].join(", ")
        ),
        stats: scratch.clone(),
    });
    let mut running: JoinSet<Result<TaskDone>> = JoinSet::new();
    let mut pending = plan.tasks.iter().cloned();
    let mut first_error = None;
    // Each task's parts (one per step of the group), by task index.
    let mut parts: BTreeMap<usize, Vec<Part>> = BTreeMap::new();
    loop {
        while first_error.is_none() && running.len() < slots && !stop.load(Ordering::Relaxed) {
            let Some(task) = pending.next() else { break };
            running.spawn(run_task(
                plan.clone(),
                task,
                Mode::Observe(from, to),
                scratch.clone(),
                pool.clone(),
                cfg.clone(),
                io.clone(),
                stop.clone(),
                cache.cloned(),
            ));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let failed = match done {
            Ok(Ok(done)) => {
                parts.insert(done.record.task, done.parts);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(join) => Some(Error::Internal(format!("a task panicked: {join}"))),
        };
        if let Some(e) = failed {
            stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted("a signal"));
    }
    // Step k's parts in task order: the k-th of each task's.
    let mut by_step: Vec<Vec<Part>> = (from..=to).map(|_| Vec::new()).collect();
    for task_parts in parts.into_values() {
        for (column, part) in by_step.iter_mut().zip(task_parts) {
            column.push(part);
        }
    }
    let mut settled = Vec::new();
    for (k, parts) in (from..=to).zip(by_step) {
        let step = plan.steps[k].step.clone();
        let name = plan.steps[k].name;
        let (tx, rx) = oneshot::channel();
        pool.spawn(move || {
            let r = match step.kind() {
                Kind::FullPass(p) => p.settle(parts).map(|()| None),
                Kind::Fit(f) => f.settle(parts).map(Some),
                Kind::Map => Err("internal error: a map step in a full pass".to_string()),
            };
            let _ = tx.send(r);
        });
        let stats = rx
            .await
            .map_err(|_| Error::Internal("the settle task vanished".into()))?
            .map_err(|m| Error::Input {
                object: format!(
                    "step {} `{name}`, after its full pass over the input",
                    k + 1
                ),
                line: None,
                message: m,
            })?;
        settled.push(stats);
    }
    let names: Vec<&str> = plan.steps[from..=to].iter().map(|s| s.name).collect();
    let rows = Stats::get(&scratch.rows_in);
    tracing::info!(
        steps = names.join(", "),
        tasks = plan.tasks.len(),
        rows,
        seconds = started.elapsed().as_secs_f64(),
        "full pass settled"
    );
    Ok((rows, settled))
}

/// What a task run made: its commit record, under `dead_letter` its dead-letter file
/// when it left anything out, its staged shards, and in a full pass each observed
/// step's part.
struct TaskDone {
    record: TaskRecord,
    dead_letter: Option<crate::rejects::DeadLetters>,
    staged: Staged,
    parts: Vec<Part>,
}

/// Runs one task: a reader on tokio feeding the CPU side on rayon.
#[allow(clippy::too_many_arguments)]
async fn run_task(
    plan: Arc<Plan>,
    task: Task,
    mode: Mode,
    stats: Arc<Stats>,
    pool: Arc<rayon::ThreadPool>,
    cfg: Arc<WriterConfig>,
    io: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
    cache: Option<Arc<DecodedCache>>,
) -> Result<TaskDone> {
    // What an earlier fit pass decoded, if it was kept: the transform pass takes it, a
    // fit pass copies it (another may follow), and neither reads the objects.
    let cached = cache.as_ref().and_then(|c| match mode {
        Mode::Write => c.take(task.id),
        Mode::Observe(..) => c.get(task.id),
    });
    let keep = match (&cached, mode) {
        (None, Mode::Observe(..)) => cache.filter(|c| c.accepting()),
        _ => None,
    };
    let (obj_tx, obj_rx) = mpsc::channel::<Chunks>(1);
    #[expect(
        clippy::disallowed_methods,
        reason = "the reader is joined below, after the CPU side is done"
    )]
    let reader = if plan.format.random_access() || cached.is_some() {
        drop(obj_tx);
        None
    } else {
        Some(tokio::spawn(read_objects(
            plan.clone(),
            task.clone(),
            obj_tx,
            io,
            stats.clone(),
            stop.clone(),
        )))
    };
    let (done_tx, done_rx) = oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    {
        let (plan, task, stats) = (plan.clone(), task.clone(), stats.clone());
        pool.spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let input = match cached {
                    Some(batches) => Input::Cached(batches),
                    None => Input::Objects {
                        objects_rx: obj_rx,
                        keep,
                    },
                };
                cpu_task(&plan, &task, mode, input, &stats, cfg, handle, &stop)
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                Err(Error::Internal(format!(
                    "panic in task {}: {}",
                    task.id,
                    msg.unwrap_or_default()
                )))
            });
            let _ = done_tx.send(r);
        });
    }
    let result = done_rx
        .await
        .map_err(|_| Error::Internal("a CPU task vanished".into()))?;
    if let Some(r) = reader {
        // The reader ends on its own once the CPU side drops its receivers. When a read
        // failed (and was not an object left out under skip / dead_letter), its store
        // error is the cause of whatever the decoder saw.
        if let Ok(Err(read)) = r.await {
            return Err(read);
        }
    }
    let TaskOutput {
        shards,
        staged,
        rows_in,
        step_counts,
        mut rejects,
        parts,
    } = result?;
    let step_counts = if step_counts.iter().all(|c| c.is_empty()) {
        Vec::new()
    } else {
        step_counts
    };
    let record = TaskRecord {
        task: task.id,
        pipeline_hash: plan.pipeline_hash.clone(),
        inputs: plan.objects[task.objects.clone()]
            .iter()
            .map(|o| InputRecord {
                path: o.display.clone(),
                bytes: o.size,
            })
            .collect(),
        rows_out: shards.iter().map(|s| s.rows).sum(),
        rows_in,
        shards,
        step_counts,
        rejected: rejects.counts(),
        committed_at: sink::now_rfc3339(),
    };
    let letters = rejects.take_letters();
    let dead_letter = (!letters.is_empty()).then_some(letters);
    Ok(TaskDone {
        record,
        dead_letter,
        staged,
        parts,
    })
}

/// The objects a task finishes: a slice that is not an object's last finishes none.
fn objects_finished(plan: &Plan, task: &Task) -> u64 {
    match &task.range {
        Some(r)
            if plan
                .objects
                .get(task.objects.start)
                .is_some_and(|o| r.end < o.size) =>
        {
            0
        }
        _ => task.objects.len() as u64,
    }
}

/// What the CPU side of a task made.
struct TaskOutput {
    shards: Vec<sink::ShardRecord>,
    /// The shards' uploads, completed when the task commits.
    staged: Staged,
    /// Records read: rows decoded and records a decoder left out.
    rows_in: u64,
    /// Each step's named counters.
    step_counts: Vec<BTreeMap<String, u64>>,
    rejects: Rejects,
    /// In a full pass: each observed step's part.
    parts: Vec<Part>,
}

/// Where a task's batches come from.
enum Input {
    /// The objects, read and decoded; `keep`: a fit pass that keeps what it decodes.
    Objects {
        objects_rx: mpsc::Receiver<Chunks>,
        keep: Option<Arc<DecodedCache>>,
    },
    /// What an earlier fit pass decoded.
    Cached(Vec<cache::Decoded>),
}

/// What a task run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Decode, apply every step, write and commit shards.
    Write,
    /// The full pass of the steps `from..=to`: apply the steps before `from` and hand
    /// what reaches it to each one's observer; nothing is written.
    Observe(usize, usize),
}

/// The CPU side of a task: decode → steps → encode, on one rayon thread.
#[allow(clippy::too_many_arguments)]
fn cpu_task(
    plan: &Plan,
    task: &Task,
    mode: Mode,
    input: Input,
    stats: &Arc<Stats>,
    cfg: Arc<WriterConfig>,
    handle: tokio::runtime::Handle,
    stop: &AtomicBool,
) -> Result<TaskOutput> {
    let mut writer = TaskWriter::new(cfg, task.id, stats.clone());
    // Keyed by the path below the source prefix, so a sample is the same wherever the
    // data lives: another clone's directory, a bucket, a different store.
    let first = &plan.objects[task.objects.start].path;
    let relative = plan.source.base.relative(first);
    let mut key = if relative.is_empty() {
        first.filename().unwrap_or_default().to_string()
    } else {
        relative
    };
    if let Some(r) = &task.range {
        key.push_str(&format!("#{}", r.start));
    }
    let task_key = stable_key(&key);
    let mut contexts: Vec<StepContext> = plan
        .steps
        .iter()
        .map(|_| StepContext::for_task(task.id, task_key))
        .collect();
    let mut observers: Vec<Box<dyn Observer + '_>> = match mode {
        Mode::Write => Vec::new(),
        Mode::Observe(from, to) => plan.steps[from..=to]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.step
                    .kind()
                    .observer(task.id)
                    .unwrap_or_else(|| Err("internal error: a map step in a full pass".into()))
                    .map_err(|m| {
                        step_error(plan, from + i, &plan.objects[task.objects.start].display, m)
                    })
            })
            .collect::<Result<_>>()?,
    };
    let mut rows_in = 0u64;
    let mut rejects = Rejects::new(plan.pipeline.run.on_error, task.id);
    let (mut objects_rx, keep) = match input {
        Input::Objects { objects_rx, keep } => (Some(objects_rx), keep),
        Input::Cached(batches) => {
            for (i, batch) in batches {
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted("a signal"));
                }
                if plan.steps.iter().any(|s| s.step.exhausted()) {
                    break;
                }
                let n = batch.num_rows() as u64;
                rows_in += n;
                Stats::add(&stats.rows_in, n);
                let object = &plan.objects[i].display;
                handle_batch(
                    plan,
                    mode,
                    &mut contexts,
                    &mut observers,
                    stats,
                    &mut writer,
                    batch,
                    object,
                    &mut rejects,
                )?;
            }
            // Read once by this run, in its first fit pass.
            Stats::add(&stats.objects_done, objects_finished(plan, task));
            Stats::add(&stats.bytes_done, task.bytes);
            Stats::add(&stats.bytes_read, task.bytes);
            (None, None)
        }
    };
    // The decoded batches, kept for the passes after this fit pass while they fit.
    let mut kept: Vec<cache::Decoded> = Vec::new();
    let mut kept_bytes = 0u64;
    let mut keeping = keep.is_some();
    for i in task.objects.clone() {
        let Some(objects_rx) = objects_rx.as_mut() else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted("a signal"));
        }
        if plan.steps.iter().any(|s| s.step.exhausted()) {
            break;
        }
        let obj = &plan.objects[i];
        let object = match &task.range {
            Some(r) => DecodeContext::slice_name(&obj.display, r),
            None => obj.display.clone(),
        };
        let cx = DecodeContext {
            schema: plan.input_schema.clone(),
            schema_origin: plan.schema_origin.clone(),
            strict: plan.strict,
            object: object.clone(),
            batch_rows: plan.batch_rows,
            csv: plan.pipeline.source.csv.clone(),
            projection: plan.decode_projection.clone(),
            on_error: plan.pipeline.run.on_error,
            on_mismatch: plan.pipeline.source.on_schema_mismatch,
            max_record_bytes: formats::max_record_bytes(
                plan.pipeline.run.memory_limit.get(),
                plan.threads,
            ),
            slice: task.range.clone(),
        };
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        let mut in_emit = Duration::ZERO;
        // Rows of this object handed on, and whether a step (not the decoder) failed.
        let mut object_rows = 0u64;
        let mut step_failed = false;
        let mut emit = |decoded: Decoded| -> Result<bool> {
            let batch = match decoded {
                Decoded::Batch(b) => b,
                Decoded::Rejected(r) => {
                    rows_in += 1;
                    Stats::add(&stats.rows_in, 1);
                    Stats::add(&stats.rows_rejected, 1);
                    rejects.add_undecoded(r);
                    return Ok(!stop.load(Ordering::Relaxed));
                }
            };
            let t = Instant::now();
            let n = batch.num_rows() as u64;
            rows_in += n;
            object_rows += n;
            Stats::add(&stats.rows_in, n);
            if keeping {
                kept_bytes += batch.get_array_memory_size() as u64;
                if keep.as_ref().is_some_and(|c| kept_bytes > c.budget()) {
                    keeping = false;
                    kept = Vec::new();
                } else {
                    kept.push((i, batch.clone()));
                }
            }
            let done = handle_batch(
                plan,
                mode,
                &mut contexts,
                &mut observers,
                stats,
                &mut writer,
                batch,
                &obj.display,
                &mut rejects,
            );
            step_failed = done.is_err();
            done?;
            in_emit += t.elapsed();
            Ok(!stop.load(Ordering::Relaxed) && !plan.steps.iter().any(|s| s.step.exhausted()))
        };
        let decoded = if plan.format.random_access() {
            let ra = RandomAccess {
                store: plan.source.base.store.clone(),
                path: obj.path.clone(),
                size: obj.size,
                handle: handle.clone(),
                stats: Some(stats.clone()),
            };
            let r = plan.format.decode(ObjectInput::Random(ra), &cx, &mut emit);
            Stats::add(
                &stats.bytes_done,
                task.range.as_ref().map_or(obj.size, |r| r.end - r.start),
            );
            r
        } else {
            let t = Instant::now();
            let chunks = objects_rx
                .blocking_recv()
                .ok_or_else(|| Error::Internal("the reader stopped early".into()))?;
            waited += t.elapsed();
            let raw = ChannelReader::new(chunks, &mut waited);
            // A slice comes out decompressed (a seekable zstd object's frames are
            // decompressed before the records are cut).
            match &task.range {
                Some(r) => slice_reader(plan, i, r, raw, &handle).and_then(|raw| {
                    formats::decompress(formats::Compression::None, raw)
                        .map_err(|e| Error::input(&object, None, e))
                }),
                None => formats::decompress_buffered(plan.compressions[i], raw)
                    .map_err(|e| Error::input(&object, None, e)),
            }
            .and_then(|input| {
                plan.format
                    .decode(ObjectInput::Stream(input), &cx, &mut emit)
            })
            .map_err(|e| annotate_compression(e, plan.compressions[i]))
        };
        if let Err(e) = decoded {
            // Under skip / dead_letter an object that cannot be read (corrupt, cut short,
            // gone, forbidden) is left out from where it failed; a step's error, a
            // retryable store error and a stop are not the object's fault.
            if !rejects.tolerant() || step_failed || !object_fault(&e) {
                return Err(e);
            }
            Stats::add(&stats.objects_rejected, 1);
            rejects.add(object_rejection(&object, object_rows, e));
        }
        Stats::add(&stats.objects_done, objects_finished(plan, task).min(1));
        stats.decode.add_waiting(waited);
        stats
            .decode
            .add_working(started.elapsed().saturating_sub(waited + in_emit));
    }
    // A decoder told to stop returns early like one that reached the end: never commit
    // a task cut short by a signal.
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted("a signal"));
    }
    let last = plan
        .objects
        .get(task.objects.end.saturating_sub(1))
        .map(|o| o.display.clone())
        .unwrap_or_default();
    if let Mode::Observe(from, _) = mode {
        if let Some(cache) = keep.filter(|_| keeping) {
            cache.offer(task.id, kept, kept_bytes);
        }
        let parts = observers
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.finish().map_err(|m| step_error(plan, from + i, &last, m)))
            .collect::<Result<_>>()?;
        return Ok(TaskOutput {
            shards: Vec::new(),
            staged: Staged::default(),
            rows_in,
            step_counts: Vec::new(),
            rejects,
            parts,
        });
    }
    // Rows a step held back (the tail of a `pack`) flow through the steps after it.
    for s in 0..plan.steps.len() {
        let tail = plan.steps[s]
            .step
            .finish(&mut contexts[s])
            .map_err(|m| step_error(plan, s, &last, m))?;
        if let Some(batch) = tail
            && batch.num_rows() > 0
        {
            Stats::add(&stats.steps[s].rows_out, batch.num_rows() as u64);
            run_steps(
                plan,
                &mut contexts,
                stats,
                &mut writer,
                s + 1,
                batch,
                &last,
                &mut rejects,
            )?;
        }
    }
    let (shards, staged) = writer.finish()?;
    let step_counts = contexts.into_iter().map(|c| c.counts).collect();
    Ok(TaskOutput {
        shards,
        staged,
        rows_in,
        step_counts,
        rejects,
        parts: Vec::new(),
    })
}

/// Errors that are the object's own: bad bytes, or a store that will not hand it over
/// (not found, forbidden). Not: a step's error, a retryable store error, a stop, a bug.
fn object_fault(e: &Error) -> bool {
    match e {
        Error::Input { .. } => true,
        Error::Store { .. } => e.exit_code() != crate::error::EXIT_RETRY,
        _ => false,
    }
}

/// The record of an object left out from where it failed.
fn object_rejection(object: &str, rows_before: u64, e: Error) -> Rejected {
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
        stage: "object".into(),
        error,
        record: None,
    }
}

/// One decoded batch of `object` through the task's steps: written (`Write`) or handed
/// to the observers of a full pass's steps (`Observe`).
#[allow(clippy::too_many_arguments)]
fn handle_batch(
    plan: &Plan,
    mode: Mode,
    contexts: &mut [StepContext],
    observers: &mut [Box<dyn Observer + '_>],
    stats: &Stats,
    writer: &mut TaskWriter,
    batch: arrow::record_batch::RecordBatch,
    object: &str,
    rejects: &mut Rejects,
) -> Result<()> {
    match mode {
        Mode::Write => run_steps(plan, contexts, stats, writer, 0, batch, object, rejects),
        Mode::Observe(from, to) => {
            observe_steps(plan, contexts, observers, from, to, batch, object, rejects)
        }
    }
}

fn step_error(plan: &Plan, s: usize, object: &str, message: String) -> Error {
    Error::input(
        object,
        None,
        format!("step {} `{}`: {message}", s + 1, plan.steps[s].name),
    )
}

/// The full pass of steps `from..=to`: `batch` through the steps before `from`, then
/// to the observer of each step of the group (all see the batch that reaches `from`).
/// Rows left out under skip / dead_letter are left out here as in the main pass.
#[allow(clippy::too_many_arguments)]
fn observe_steps(
    plan: &Plan,
    contexts: &mut [StepContext],
    observers: &mut [Box<dyn Observer + '_>],
    from: usize,
    to: usize,
    mut batch: arrow::record_batch::RecordBatch,
    object: &str,
    rejects: &mut Rejects,
) -> Result<()> {
    for (s, (planned, cx)) in plan.steps.iter().zip(contexts.iter_mut()).enumerate() {
        let rows = batch.num_rows() as u64;
        if s >= from {
            observers[s - from]
                .observe(&batch, cx.rows_before)
                .map_err(|m| step_error(plan, s, object, m))?;
            cx.rows_before += rows;
            if s == to {
                return Ok(());
            }
            continue;
        }
        batch = if rejects.tolerant() && planned.step.row_local() {
            apply_leaving_out_bad_rows(plan, s, cx, batch, object, rejects)?
        } else {
            planned
                .step
                .apply(batch, cx)
                .map_err(|m| step_error(plan, s, object, m))?
        };
        cx.rows_before += rows;
        if batch.num_rows() == 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs `batch` through the steps from index `from` on, and writes what comes out.
#[allow(clippy::too_many_arguments)]
fn run_steps(
    plan: &Plan,
    contexts: &mut [StepContext],
    stats: &Stats,
    writer: &mut TaskWriter,
    from: usize,
    mut batch: arrow::record_batch::RecordBatch,
    object: &str,
    rejects: &mut Rejects,
) -> Result<()> {
    for (s, (planned, cx)) in plan
        .steps
        .iter()
        .zip(contexts.iter_mut())
        .enumerate()
        .skip(from)
    {
        let st = &stats.steps[s];
        let rows = batch.num_rows() as u64;
        Stats::add(&st.rows_in, rows);
        let ts = Instant::now();
        batch = if rejects.tolerant() && planned.step.row_local() {
            let before = rejects.rows;
            let out = apply_leaving_out_bad_rows(plan, s, cx, batch, object, rejects)?;
            let left_out = rejects.rows - before;
            Stats::add(&st.rows_rejected, left_out);
            Stats::add(&stats.rows_rejected, left_out);
            out
        } else {
            planned
                .step
                .apply(batch, cx)
                .map_err(|m| step_error(plan, s, object, m))?
        };
        st.timer.add_working(ts.elapsed());
        cx.rows_before += rows;
        Stats::add(&st.rows_out, batch.num_rows() as u64);
        if batch.num_rows() == 0 {
            return Ok(());
        }
    }
    Stats::add(&stats.rows_out, batch.num_rows() as u64);
    let te = Instant::now();
    writer.write(&batch)?;
    stats.encode.add_working(te.elapsed());
    Ok(())
}

/// Applies row-local step `s`; when it fails, applies it again to halves of the batch,
/// down to the single rows that fail, which are left out and recorded. The rows that
/// pass keep their order. A step's counters only count the parts that passed.
fn apply_leaving_out_bad_rows(
    plan: &Plan,
    s: usize,
    cx: &mut StepContext,
    batch: arrow::record_batch::RecordBatch,
    object: &str,
    rejects: &mut Rejects,
) -> Result<arrow::record_batch::RecordBatch> {
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
                error,
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

/// A read error inside a compressed stream is almost always a truncated or corrupt
/// object: say so.
fn annotate_compression(e: Error, c: formats::Compression) -> Error {
    match e {
        Error::Input {
            object,
            line,
            message,
        } if c != formats::Compression::None && message.starts_with("cannot read") => {
            Error::Input {
                object,
                line,
                message: format!(
                    "{message} ({} stream is truncated or corrupt; re-upload the object)",
                    c.name()
                ),
            }
        }
        other => other,
    }
}
