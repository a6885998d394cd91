//! The stages before the main pass, in pipeline order: a full pass for each full-pass
//! step (`dedup.exact`, `dedup.minhash`) and a fit pass for each group of fitted steps
//! ([`Plan::fit_group`]). Each stage runs the steps before it as they are settled, so it
//! sees their output: a fit after a dedup learns from the rows the dedup keeps, and a
//! dedup after a fit compares the transformed rows.
//!
//! The last step needing a pass may instead decide in the main pass ([`Plan::in_order`],
//! `in_order.rs`): exact dedup reads the input once.
//!
//! Fitted steps get their statistics before any task commits: from this sink's
//! `_kiln/stats.json` when an earlier run of this pipeline fitted them (a resume binds
//! exactly what the committed tasks were written with), else from their fit passes,
//! after which `_kiln/stats.json` is written and the stored plan takes the fitted schema
//! (one-hot columns are known only then). Full passes decide nothing that is stored:
//! every run that has tasks to do runs them again (the same input gives the same
//! decisions).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::cache::DecodedCache;
use super::schedule::full_pass;
use super::shared::{Sharing, shared_pass};
use super::task::Pass;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::report::Stats;
use crate::sink;
use crate::steps::Kind;

/// Runs the stages (see the module docs). `work`: this worker has tasks to do in the
/// main pass; without, a full pass runs only when a fit after it needs its decisions.
///
/// Returns the plan with every fitted step bound and every full-pass step settled, and
/// the batches the fit passes decoded when they fit in memory ([`DecodedCache`]), for
/// the main pass. On failure, the plan as it was given.
pub(super) async fn stages(
    plan: Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    work: bool,
    sharing: Option<Sharing>,
) -> (Plan, Result<Option<Arc<DecodedCache>>>) {
    // On failure the run reports the plan as built (its hash, its sink, its tasks).
    let built = plan.clone();
    match run_stages(plan, stored, stats, stop, work, sharing).await {
        Ok((staged, cache)) => (staged, Ok(cache)),
        Err(e) => (built, Err(e)),
    }
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

/// What this run fits: the statistics of each fitted group so far, in pipeline order.
struct Fitting {
    started: Instant,
    rows: u64,
    entries: Vec<sink::StatsEntry>,
}

async fn run_stages(
    mut plan: Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    work: bool,
    sharing: Option<Sharing>,
) -> Result<(Plan, Option<Arc<DecodedCache>>)> {
    let had_fit = plan.needs_fit();
    let mut fitting = None;
    let mut cache = None;
    if had_fit {
        if let Some(file) = sink::read_fitted(&plan.sink, &plan.pipeline_hash).await? {
            tracing::info!(
                "fitted statistics read back from {}",
                plan.sink.display_child(sink::STATS)
            );
            plan = plan.with_fitted(file.steps)?;
        } else {
            fitting = Some(Fitting {
                started: Instant::now(),
                rows: 0,
                entries: Vec::new(),
            });
            // The fit pass of one worker sees a share of the tasks: nothing to keep.
            cache = decoded_cache(&plan).filter(|_| sharing.is_none());
        }
    }
    if plan.steps.iter().any(|s| s.step.kind().needs_pass()) {
        let pool = super::cpu_pool(plan.threads, "pass")?;
        let io = Arc::new(Semaphore::new(plan.pipeline.run.io_concurrency));
        let slots = if plan.sequential { 1 } else { plan.threads };
        let batches = super::drive::in_flight(&plan);
        let pass = |plan: Arc<Plan>, cache: Option<Arc<DecodedCache>>| -> Result<Pass> {
            Ok(Pass {
                cfg: Arc::new(plan.writer_config(tokio::runtime::Handle::current())?),
                plan,
                stats: stats.clone(),
                pool: pool.clone(),
                io: io.clone(),
                stop: stop.clone(),
                cache,
                batches: batches.clone(),
            })
        };
        let mut k = 0;
        while k < plan.steps.len() {
            match plan.steps[k].step.kind() {
                Kind::Map => k += 1,
                Kind::FullPass(_) => {
                    // Earlier datasets it dedups against are checked before any input
                    // is read.
                    super::index::against(&plan, k).await?;
                    // Its decisions are needed by the main pass, or by a fit after it;
                    // the last step needing a pass may decide in the main pass itself.
                    let fit_after = plan.steps[k..].iter().any(|s| s.step.kind().needs_fit());
                    if plan.in_order_step() == Some(k) && sharing.is_none() {
                        plan.in_order = Some(k);
                    } else if work || fit_after {
                        let env = pass(Arc::new(plan.clone()), None)?;
                        match &sharing {
                            Some(sharing) => {
                                shared_pass(&env, k, k, slots, sharing.clone()).await?
                            }
                            None => full_pass(&env, k, k, slots).await?,
                        };
                    }
                    k += 1;
                }
                Kind::Fit(_) => {
                    let (from, to) = plan.fit_group().ok_or_else(|| {
                        Error::Internal(format!("step {} needs a fit but has no group", k + 1))
                    })?;
                    let fitting = fitting.as_mut().ok_or_else(|| {
                        Error::Internal(format!(
                            "step {} needs a fit after its statistics were read",
                            k + 1
                        ))
                    })?;
                    // The pass runs on a copy; the group's steps are the same values as
                    // `plan`'s. It decodes only the columns the fit reads, unless what
                    // it decodes is kept for the passes after it.
                    let keep = cache.as_ref().is_some_and(|c| c.accepting());
                    let fit_plan = Arc::new(plan.for_fit(from, to, !keep)?);
                    let env = pass(fit_plan, cache.clone().filter(|c| c.accepting()))?;
                    let (seen, settled) = match &sharing {
                        Some(sharing) => {
                            shared_pass(&env, from, to, slots, sharing.clone()).await?
                        }
                        None => full_pass(&env, from, to, slots).await?,
                    };
                    if fitting.entries.is_empty() {
                        fitting.rows = seen;
                    }
                    for (j, stats) in (from..=to).zip(settled) {
                        fitting.entries.push(entry(&plan, j, stats)?);
                    }
                    // Bound from the statistics as they will read back from stats.json,
                    // so this run and a resumed one apply the very same numbers; the
                    // steps before the group (settled full passes among them) stay.
                    let as_stored = sink::as_stored(&fitting.entries)?;
                    plan = plan.with_fitted_from(from, as_stored)?;
                    k = to + 1;
                }
            }
        }
    }
    if let Some(fitting) = fitting {
        let file = sink::StatsFile {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            name: plan.pipeline.name.clone(),
            pipeline_hash: plan.pipeline_hash.clone(),
            fitted_on: "fit".into(),
            rows: fitting.rows,
            objects: plan.objects.len(),
            input_bytes: plan.input_bytes(),
            steps: fitting.entries,
        };
        sink::write_stats(&plan.sink, &file).await?;
        tracing::info!(
            rows = fitting.rows,
            seconds = fitting.started.elapsed().as_secs_f64(),
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
    if had_fit {
        let fresh = plan.stored(stored.workers);
        stored.schema = fresh.schema;
        stored.features = fresh.features;
        stored.token_column = fresh.token_column;
        // Every worker that fits computes the same statistics from the same parts, so
        // each writes the same stats.json and the same plan: replacing them is safe.
        sink::replace_plan(&plan.sink, stored).await?;
    }
    Ok((plan, cache.filter(|c| c.accepting())))
}

/// The stats.json entry of fitted step `k` from what it settled with.
fn entry(plan: &Plan, k: usize, settled: Option<serde_json::Value>) -> Result<sink::StatsEntry> {
    let name = plan.steps[k].name;
    let stats = settled.ok_or_else(|| {
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
    Ok(sink::StatsEntry {
        index: k + 1,
        step: name.to_string(),
        occurrence,
        stats,
    })
}
