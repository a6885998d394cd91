//! A full pass or a fit pass shared by several workers (`--worker I/N`, N > 1), through
//! the sink and with no coordinator (docs/workers.md, "Stages"):
//!
//! 1. Each worker observes its own tasks (task `t` is worker `t % N`'s, as in the main
//!    pass) and stores each task's part in the sink (`sink/stages.rs`) as soon as the
//!    task ends, so a worker killed half way keeps what it finished.
//! 2. It then waits until every task's part is there, listing the parts with a backoff
//!    (0.1 s doubling to 5 s). Parts of a worker with no live run record (dead, or not
//!    started) for `take_over_after` are computed by the waiting worker itself: a part
//!    depends only on the input and the steps, so two workers computing one write the
//!    same bytes and either may win. After `wait` with parts of live workers still
//!    missing it exits 75 ("run me again"); its parts stay stored.
//! 3. Every worker reads every part, in task order, and settles the steps as one worker
//!    would: the same parts in the same order give the same decisions and statistics, so
//!    the dataset is byte for byte the single run's.
//!
//! A dedup settles in **sections** instead ([`crate::steps::Sectioned`]): its parts are
//! stored split by key into `4 × N` sections (rounded up to a power of two, at most 128) (every record of one key in one section),
//! section `s` is merged by worker `s % min(N, tasks)` (a worker without tasks may have
//! ended already) from that section's byte range of every part (ranged reads) into its
//! decisions (duplicates; cluster edges), and after a second barrier every worker
//! settles from all sections' decisions, which are far smaller than the parts. Same
//! rules for take-over and waiting.
//!
//! Each part and section is claimed right before it is computed (`sink/claims.rs`), and
//! a waiting worker also computes the parts and sections of *running* workers that no
//! live run has claimed, so a slow worker finishes only what it started.
//!
//! A rerun reuses the stored parts: a stage's parts are each computed once (or twice
//! after a take-over race, with one result kept). The parts are removed when the
//! manifest is written.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};

use super::schedule::{observe_each, on_pool, settle};
use super::task::{Pass, TaskDone};
use super::worker::Worker;
use crate::error::{Error, Result};
use crate::plan::{Plan, Task};
use crate::sink::{lease, stages};
use crate::steps::{Kind, Part};

/// How long a worker waits at a stage (`kiln run --stage-wait`, `--take-over-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageWait {
    /// The longest a worker waits for parts of workers that are running.
    pub wait: Duration,
    /// A worker with no live run for this long has its parts computed by the others.
    pub take_over_after: Duration,
}

impl Default for StageWait {
    fn default() -> Self {
        StageWait {
            wait: Duration::from_secs(30 * 60),
            take_over_after: lease::EXPIRES,
        }
    }
}

/// How workers share a pass: this one, how long it waits, and its claims (a worker
/// claims each part and section before it computes it, so that an idle worker can take
/// those a slow one has not started).
#[derive(Debug, Clone)]
pub(super) struct Sharing {
    pub worker: Worker,
    pub wait: StageWait,
    pub claims: super::claims::Claims,
    /// Compute what running workers have not started (not with `--own-tasks-only`).
    pub take_unstarted: bool,
}

/// The gate of the items (task parts or sections: `what`) of the stage of step `k`: an
/// item is computed by the run that holds its claim, taken right before it starts, so
/// that a slow worker holds only what it is computing and an idle one can take the rest.
fn gate(env: &Pass, sharing: &Sharing, k: usize, what: &'static str) -> super::schedule::Gate {
    let (sink, claims) = (env.plan.sink.clone(), sharing.claims.clone());
    std::sync::Arc::new(move |i: usize| {
        let (sink, claims) = (sink.clone(), claims.clone());
        Box::pin(async move {
            let rel = crate::sink::claims::stage_claim_path(k, what, i);
            claims.acquire_item(&sink, &rel, None).await
        }) as BoxFuture<'static, Result<bool>>
    })
}

/// The pass of steps `from..=to` shared by the workers (see the module docs). Returns
/// the rows of the whole input and, per step, the statistics of a fitted step (None for
/// a full-pass one), as [`super::schedule::full_pass`] does on one worker.
pub(super) async fn shared_pass(
    env: &Pass,
    from: usize,
    to: usize,
    slots: usize,
    sharing: Sharing,
) -> Result<(u64, Vec<Option<serde_json::Value>>)> {
    let started = Instant::now();
    let plan = env.plan.clone();
    let n = sharing.worker.count;
    let sectioned = from == to
        && matches!(plan.steps[from].step.kind(), Kind::FullPass(p) if p.sectioned().is_some());
    // A power of two: each section is whole buckets of a key index (`steps/keys.rs`).
    let sections = if sectioned {
        (4 * n).next_power_of_two().clamp(1, 128)
    } else {
        0
    };
    let parts_missing = |have: &stages::Stored| -> Vec<usize> {
        plan.tasks
            .iter()
            .filter(|t| (from..=to).any(|k| !have.parts.contains(&(k, t.id))))
            .map(|t| t.id)
            .collect()
    };
    let mine: Vec<usize> = parts_missing(&stages::stored(&plan.sink).await?)
        .into_iter()
        .filter(|&t| sharing.worker.owns(t))
        .collect();
    let computed = mine.len();
    let parts_gate = gate(env, &sharing, from, "part");
    let observe = |ids: Vec<usize>| -> BoxFuture<'_, Result<()>> {
        let ids: BTreeSet<usize> = ids.into_iter().collect();
        let tasks: Vec<Task> = plan
            .tasks
            .iter()
            .filter(|t| ids.contains(&t.id))
            .cloned()
            .collect();
        let gate = Some(parts_gate.clone());
        Box::pin(async move {
            observe_each(
                env,
                from,
                to,
                slots,
                tasks,
                gate,
                store(env, from, sections),
            )
            .await?;
            Ok(())
        })
    };
    if !mine.is_empty() {
        observe(mine).await?;
    }
    let mut taken = barrier(env, from, &sharing, n, "part", &parts_missing, &observe).await?;
    let (rows, settled) = if sectioned {
        let sections_missing = |have: &stages::Stored| -> Vec<usize> {
            (0..sections)
                .filter(|s| !have.sections.contains(&(from, *s)))
                .collect()
        };
        let sections_gate = gate(env, &sharing, from, "section");
        let merge = |ids: Vec<usize>| -> BoxFuture<'_, Result<()>> {
            Box::pin(super::sections::merge(
                env,
                from,
                sections,
                ids,
                &sections_gate,
            ))
        };
        // Section `s` is merged by worker `s % owners`: only workers that have tasks (a
        // worker with none may have ended already).
        let owners = n.min(plan.tasks.len()).max(1);
        let mine: Vec<usize> = sections_missing(&stages::stored(&plan.sink).await?)
            .into_iter()
            .filter(|s| s % owners == sharing.worker.index)
            .collect();
        merge(mine).await?;
        taken += barrier(
            env,
            from,
            &sharing,
            owners,
            "section",
            &sections_missing,
            &merge,
        )
        .await?;
        super::sections::settle(env, from, sections).await?;
        (0, vec![None])
    } else {
        // Reading them counts as the sharing's cost (in `read_part`).
        let (rows, by_step) = read_parts(env, from, to).await?;
        (rows, settle(env, from, to, by_step).await?)
    };
    let names: Vec<&str> = plan.steps[from..=to].iter().map(|s| s.name).collect();
    tracing::info!(
        steps = names.join(", "),
        tasks = plan.tasks.len(),
        sections,
        computed,
        taken_over = taken,
        seconds = started.elapsed().as_secs_f64(),
        "stage settled from every worker's parts"
    );
    Ok((rows, settled))
}

/// Waits until nothing of `what` (task parts, or sections) is missing, taking over the
/// items of workers with no live run (item `i` is worker `i % owners`'s) with `compute`;
/// returns how many it took over. Its waiting counts as the sharing's cost.
async fn barrier<'a>(
    env: &'a Pass,
    k: usize,
    sharing: &Sharing,
    owners: usize,
    what: &str,
    missing: &impl Fn(&stages::Stored) -> Vec<usize>,
    compute: &impl Fn(Vec<usize>) -> BoxFuture<'a, Result<()>>,
) -> Result<usize> {
    let plan = &env.plan;
    let waiting = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut taken = 0;
    let n = sharing.worker.count;
    let owner = |i: usize| i % owners;
    // When each worker was first seen without a live run.
    let mut absent_since: BTreeMap<usize, Instant> = BTreeMap::new();
    loop {
        let left = missing(&stages::stored(&plan.sink).await?);
        if left.is_empty() {
            return Ok(taken);
        }
        // The other workers may have run this one's tasks and finished the dataset,
        // removing the stage's parts (the run then ends as complete, `execute`).
        if crate::sink::read_manifest(&plan.sink)
            .await?
            .is_some_and(|m| m.pipeline_hash == plan.pipeline_hash)
        {
            return Err(Error::Busy(
                "the other workers finished the dataset while this one waited at a stage".into(),
            ));
        }
        if env.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Interrupted("a signal"));
        }
        let (live_runs, live) = super::claims::running(&plan.sink).await?;
        // Items of running workers that no live run has started (a slow worker's, or
        // one whose claim a gone run holds): this worker computes them, the last first.
        let mut free = Vec::new();
        for &i in left.iter().rev() {
            if !sharing.take_unstarted || free.len() >= plan.threads.max(1) {
                break;
            }
            let rel = crate::sink::claims::stage_claim_path(k, what, i);
            if live.contains(&owner(i))
                && sharing
                    .claims
                    .acquire_item(&plan.sink, &rel, Some(&live_runs))
                    .await?
            {
                free.push(i);
            }
        }
        if !free.is_empty() {
            tracing::info!(
                count = free.len(),
                "computing stage {what}s that running workers have not started"
            );
            taken += free.len();
            compute(free).await?;
            continue;
        }
        let now = Instant::now();
        for w in 0..n {
            if live.contains(&w) {
                absent_since.remove(&w);
            } else {
                absent_since.entry(w).or_insert(now);
            }
        }
        let orphans: Vec<usize> = left
            .iter()
            .copied()
            .filter(|i| {
                absent_since
                    .get(&owner(*i))
                    .is_some_and(|since| now.duration_since(*since) >= sharing.wait.take_over_after)
            })
            .collect();
        if !orphans.is_empty() {
            let whose: BTreeSet<usize> = orphans.iter().map(|&i| owner(i)).collect();
            tracing::info!(
                count = orphans.len(),
                "taking over the stage {what}s of worker(s) {} (no live run)",
                whose
                    .iter()
                    .map(|w| format!("{w}/{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            taken += orphans.len();
            compute(orphans).await?;
            continue;
        }
        if waiting.elapsed() >= sharing.wait.wait {
            let first: Vec<String> = left
                .iter()
                .take(5)
                .map(|&i| format!("{i} (worker {}/{n})", owner(i)))
                .collect();
            return Err(Error::Busy(format!(
                "waited {} at the stage of `{}` for {} {what}s of other running workers: \
                 {}{}; this worker's share is stored: run it again to go on",
                humantime::format_duration(sharing.wait.wait),
                plan.steps[k].name,
                left.len(),
                first.join(", "),
                if left.len() > 5 { ", …" } else { "" }
            )));
        }
        let t = Instant::now();
        tokio::time::sleep(backoff).await;
        env.stats.add_shared_stages(t.elapsed());
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// What stores a task's parts as it ends: each step's part written to a local file on
/// the pass's pool (in `sections` sections for a sectioned step, else whole), then
/// uploaded behind its header line.
fn store(
    env: &Pass,
    from: usize,
    sections: usize,
) -> impl Fn(TaskDone) -> BoxFuture<'static, Result<()>> + Clone + Send + Sync + 'static {
    let env = env.clone();
    move |done: TaskDone| {
        let env = env.clone();
        Box::pin(async move {
            let task = done.record.task;
            let rows = done.record.rows_in;
            for (k, part) in (from..).zip(done.parts) {
                let mut header = header(&env.plan, k, task, rows);
                let step = env.plan.steps[k].step.clone();
                let (header, file) = on_pool(&env, move || -> Result<_> {
                    let mut f = tempfile::NamedTempFile::with_prefix("kiln-part-")
                        .map_err(|e| local(&header, e))?;
                    let failed = |e| Error::step_failed("a stage part", k, &header.step, None, e);
                    match step.kind() {
                        Kind::FullPass(p) if sections > 0 => {
                            let s = p.sectioned().ok_or_else(|| {
                                Error::Internal("sections of a step without".into())
                            })?;
                            header.sections = s
                                .write_sections(part, sections, f.as_file_mut())
                                .map_err(failed)?;
                        }
                        kind => kind.write_part(part, f.as_file_mut()).map_err(failed)?,
                    }
                    f.flush().map_err(|e| local(&header, e))?;
                    Ok((header, f))
                })
                .await??;
                put(&env, &stages::part_path(k, task), &header, file.path()).await?;
            }
            Ok(())
        })
    }
}

/// Uploads `file` behind `header` as one line of JSON, counted as the sharing's cost.
pub(super) async fn put(
    env: &Pass,
    rel: &str,
    header: &impl serde::Serialize,
    file: &std::path::Path,
) -> Result<()> {
    let mut line = serde_json::to_vec(header).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    let t = Instant::now();
    stages::put_part(&env.plan.sink, rel, &line, file).await?;
    env.stats.add_shared_stages(t.elapsed());
    Ok(())
}

pub(super) fn header(plan: &Plan, k: usize, task: usize, rows: u64) -> stages::PartHeader {
    stages::PartHeader {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline_hash: plan.pipeline_hash.clone(),
        step: plan.steps[k].name.to_string(),
        index: k + 1,
        task,
        rows,
        sections: Vec::new(),
    }
}

/// Refuses a stored header that is not what this run would write: another kiln version
/// (exit 2: every worker must run the same), or another pipeline, step or item.
pub(super) fn check<T: serde::Serialize>(
    shown: &str,
    found: &T,
    expected: &T,
    version: &str,
) -> Result<()> {
    let (f, e) = (
        serde_json::to_value(found).map_err(|e| Error::Internal(e.to_string()))?,
        serde_json::to_value(expected).map_err(|e| Error::Internal(e.to_string()))?,
    );
    let mine = env!("CARGO_PKG_VERSION");
    if version != mine {
        return Err(Error::Plan(format!(
            "{shown} was written by kiln {version}, this is kiln {mine}: every worker of a \
             dataset must run the same kiln version; run this worker with kiln {version} (or \
             start the dataset over with --overwrite)"
        )));
    }
    let same = |key: &str| f.get(key) == e.get(key);
    if [
        "pipeline_hash",
        "step",
        "index",
        "task",
        "section",
        "sections",
    ]
    .iter()
    .all(|k| same(k))
    {
        return Ok(());
    }
    Err(Error::sink(
        shown,
        format!(
            "holds {f}, not what this run expects ({e}); start the dataset over with --overwrite"
        ),
    ))
}

fn local(h: &stages::PartHeader, e: std::io::Error) -> Error {
    Error::sink(
        format!(
            "a local copy of the stage part of task {} (step {})",
            h.task, h.index
        ),
        format!("{e} (is the temporary directory full? set TMPDIR to a larger disk)"),
    )
}

/// Every task's parts from the sink, in task order: the rows of the whole input (from
/// the first step's headers) and each step's parts.
async fn read_parts(env: &Pass, from: usize, to: usize) -> Result<(u64, Vec<Vec<Part>>)> {
    let plan = env.plan.clone();
    let concurrency = plan.pipeline.run.io_concurrency.max(1);
    let fetched: Vec<(u64, Vec<Part>)> = futures::stream::iter(plan.tasks.clone())
        .map(|t| {
            let env = env.clone();
            async move {
                let mut rows = 0;
                let mut parts = Vec::with_capacity(to + 1 - from);
                for k in from..=to {
                    let (r, part) = read_part(&env, k, t.id).await?;
                    if k == from {
                        rows = r;
                    }
                    parts.push(part);
                }
                Ok::<_, Error>((rows, parts))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut by_step: Vec<Vec<Part>> = (from..=to).map(|_| Vec::new()).collect();
    let mut rows = 0;
    for (r, parts) in fetched {
        rows += r;
        for (column, part) in by_step.iter_mut().zip(parts) {
            column.push(part);
        }
    }
    Ok((rows, by_step))
}

/// One stored part, checked against this run (kiln version, pipeline, step, task).
async fn read_part(env: &Pass, k: usize, task: usize) -> Result<(u64, Part)> {
    let rel = stages::part_path(k, task);
    let shown = env.plan.sink.display_child(&rel);
    let expected = header(&env.plan, k, task, 0);
    let file =
        tempfile::NamedTempFile::with_prefix("kiln-part-").map_err(|e| local(&expected, e))?;
    let t = Instant::now();
    stages::get_part(&env.plan.sink, &rel, file.path()).await?;
    env.stats.add_shared_stages(t.elapsed());
    let step = env.plan.steps[k].step.clone();
    on_pool(env, move || -> Result<(u64, Part)> {
        let mut r = std::io::BufReader::new(file.reopen().map_err(|e| local(&expected, e))?);
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)
            .map_err(|e| local(&expected, e))?;
        let found: stages::PartHeader = serde_json::from_slice(&line)
            .map_err(|e| Error::sink(&shown, format!("not a kiln stage part: {e}")))?;
        check(&shown, &found, &expected, &found.kiln_version)?;
        let part = step
            .kind()
            .read_part(&mut r)
            .map_err(|e| Error::step_failed(&shown, k, &found.step, None, e))?;
        Ok((found.rows, part))
    })
    .await?
}
