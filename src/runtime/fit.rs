//! The fit: fitted steps get their statistics before any task commits, from this
//! sink's `_kiln/stats.json` (a resume) or from fit passes over the input, which are
//! then written there; the stored plan takes the fitted schema.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::cache::DecodedCache;
use super::schedule::full_pass;
use super::task::Pass;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::report::Stats;
use crate::sink;

/// Gives the fitted steps their statistics: those of this sink's `_kiln/stats.json`
/// when an earlier run of this pipeline fitted them (a resume binds exactly what the
/// committed tasks were written with), else a fit: one full pass per group of fitted
/// steps ([`Plan::fit_group`]), each settled and bound with what it learned before the
/// next, then `_kiln/stats.json` written before any task commits. The stored plan's
/// schema follows the fitted steps (one-hot columns are known only now).
///
/// Returns the batches the fit passes decoded, when they fit in memory
/// ([`DecodedCache`]), for the transform pass.
pub(super) async fn fit(
    plan: Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> (Plan, Result<Option<Arc<DecodedCache>>>) {
    // On failure the run reports the plan as built (its hash, its sink, its tasks).
    let built = plan.clone();
    match fit_steps(plan, stored, stats, stop).await {
        Ok((fitted, cache)) => (fitted, Ok(cache)),
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

async fn fit_steps(
    plan: Plan,
    stored: &mut sink::StoredPlan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> Result<(Plan, Option<Arc<DecodedCache>>)> {
    let (plan, cache) = match sink::read_fitted(&plan.sink, &plan.pipeline_hash).await? {
        Some(file) => {
            tracing::info!(
                "fitted statistics read back from {}",
                plan.sink.display_child(sink::STATS)
            );
            (plan.with_fitted(file.steps)?, None)
        }
        None => fit_passes(plan, stats, stop).await?,
    };
    let fresh = plan.stored(stored.workers);
    stored.schema = fresh.schema;
    stored.features = fresh.features;
    stored.token_column = fresh.token_column;
    // One worker runs a fit (see `prepare`): replacing the stored plan is safe.
    sink::replace_plan(&plan.sink, stored).await?;
    Ok((plan, cache.filter(|c| c.accepting())))
}

/// One full pass per group of fitted steps, each group bound with what it learned
/// before the next; then `_kiln/stats.json`, and the plan bound from it as written.
async fn fit_passes(
    mut plan: Plan,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> Result<(Plan, Option<Arc<DecodedCache>>)> {
    let started = Instant::now();
    let pool = super::cpu_pool(plan.threads, "fit")?;
    let io = Arc::new(Semaphore::new(plan.pipeline.run.io_concurrency));
    let slots = if plan.sequential { 1 } else { plan.threads };
    let mut rows = 0;
    let mut entries = Vec::new();
    let cache = decoded_cache(&plan);
    while let Some((from, to)) = plan.fit_group() {
        let cfg = Arc::new(plan.writer_config(tokio::runtime::Handle::current())?);
        // The pass runs on a copy; the group's steps are the same values as `plan`'s.
        // It decodes only the columns the fit reads, unless what it decodes is kept
        // for the passes after it.
        let keep = cache.as_ref().is_some_and(|c| c.accepting());
        let pass = Pass {
            plan: Arc::new(plan.for_fit(from, to, !keep)?),
            stats: stats.clone(),
            pool: pool.clone(),
            cfg,
            io: io.clone(),
            stop: stop.clone(),
            cache: cache.clone().filter(|c| c.accepting()),
        };
        let (seen, settled) = full_pass(&pass, from, to, slots).await?;
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
        plan = plan.with_fitted(entries.clone())?;
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
    let written = sink::write_stats(&plan.sink, &file).await?;
    let plan = plan.with_fitted(written.steps)?;
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
    Ok((plan, cache))
}
