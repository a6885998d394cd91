//! `kiln run`: the run's outcome becomes a status, a report and an exit code. The run
//! itself is `runtime::execute`; a failure's record in the sink is the runtime's too.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{LogFormat, PipelineArgs, tokio_runtime};
use crate::error::{EXIT_OK, EXIT_TOO_MANY_ERRORS, Error, Result};
use crate::plan::Plan;
use crate::report::{Progress, ReportHead, Stats};
use crate::runtime::{self, ExecOptions, Outcome};
use crate::spec;

/// The flags of `kiln run` beyond the pipeline.
pub(super) struct RunFlags<'a> {
    pub(super) overwrite: bool,
    pub(super) worker: Option<&'a str>,
    pub(super) grace: std::time::Duration,
    pub(super) report: Option<PathBuf>,
    pub(super) stage_wait: runtime::StageWait,
    pub(super) own_tasks_only: bool,
}

/// `kiln run`: builds the plan, runs it with the signal watcher and the progress
/// display, then reports: the summary, `--report`, and the exit code of the outcome.
pub(super) fn cmd_run(
    args: &PipelineArgs,
    flags: RunFlags<'_>,
    quiet: bool,
    log_format: LogFormat,
) -> Result<i32> {
    let RunFlags {
        overwrite,
        worker,
        grace,
        report: report_path,
        stage_wait,
        own_tasks_only,
    } = flags;
    let pipeline = spec::load(&args.pipeline, &args.set)?;
    let join = runtime::Worker::anonymous(worker, &|k| std::env::var(k).ok());
    let worker = runtime::Worker::resolve(worker, &|k| std::env::var(k).ok())?;
    let rt = tokio_runtime()?;
    rt.block_on(async move {
        let plan = Plan::build(pipeline)
            .await
            .map_err(|e| spec::place_step_error(&args.pipeline, e))?;
        let step_names: Vec<String> = plan.steps.iter().map(|s| s.name.to_string()).collect();
        let stats = Arc::new(Stats::new(
            plan.objects.len() as u64,
            plan.input_bytes(),
            &step_names,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        #[expect(
            clippy::disallowed_methods,
            reason = "the watcher is aborted when the run ends"
        )]
        let signals = tokio::spawn(watch_signals(drain.clone(), stop.clone(), grace));
        let mut progress = Progress::start(stats.clone(), quiet);
        let (plan, outcome) = runtime::execute(
            plan,
            stats.clone(),
            ExecOptions {
                overwrite,
                worker,
                drain,
                stage_wait,
                own_tasks_only,
                join,
            },
            stop.clone(),
        )
        .await;
        progress.finish();
        signals.abort();
        let mut head = ReportHead {
            pipeline: plan.pipeline.name.clone(),
            pipeline_hash: plan.pipeline_hash.clone(),
            sink: plan.sink.display.clone(),
            tasks_total: plan.tasks.len(),
            threads: plan.threads,
            ..ReportHead::default()
        };
        // A dataset that left out more bad input than `run.max_error_ratio` allows is
        // complete, but the run exits 3 (every time it is run again, too).
        let too_many = match &outcome {
            Ok(Outcome::Completed { manifest, .. } | Outcome::AlreadyComplete(manifest)) => {
                manifest.too_many_errors(Some(plan.pipeline.run.max_error_ratio))
            }
            _ => None,
        };
        let mut code = match &outcome {
            Ok(Outcome::Completed { tasks_skipped, .. }) => {
                head.status = "succeeded".into();
                head.tasks_skipped = *tasks_skipped;
                EXIT_OK
            }
            Ok(Outcome::AlreadyComplete(_)) => {
                head.status = "already_complete".into();
                head.tasks_skipped = plan.tasks.len();
                EXIT_OK
            }
            Ok(Outcome::WorkerDone { tasks_skipped, .. }) => {
                head.status = "worker_done".into();
                head.tasks_skipped = *tasks_skipped;
                EXIT_OK
            }
            Err(e) => {
                head.status = if matches!(e, Error::Interrupted(_)) {
                    "interrupted".into()
                } else {
                    "failed".into()
                };
                head.error = Some(e.to_string());
                e.exit_code()
            }
        };
        if let Some(why) = &too_many {
            head.status = "too_many_errors".into();
            head.error = Some(why.clone());
            code = EXIT_TOO_MANY_ERRORS;
        }
        head.exit_code = code;
        let report = stats.report(head);
        if let Some(path) = report_path {
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            let body = crate::secrets::redact(&body).into_owned();
            std::fs::write(&path, body).map_err(|e| {
                Error::Usage(format!("--report {}: cannot write: {e}", path.display()))
            })?;
        }
        if matches!(log_format, LogFormat::Json) {
            // Log collectors get the summary as one structured event.
            let json = serde_json::to_string(&report).unwrap_or_default();
            tracing::info!(report = %json, "run {}", report.head.status);
        } else if !quiet {
            if matches!(outcome, Ok(Outcome::AlreadyComplete(_))) {
                eprintln!(
                    "{} is already complete for this pipeline; nothing to do",
                    plan.sink.display
                );
            } else {
                eprint!("{}", crate::secrets::redact(&report.summary()));
                if let Ok(Outcome::WorkerDone {
                    committed, worker, ..
                }) = &outcome
                {
                    let who = if worker.is_helper() {
                        format!("{worker}: the tasks it could take are committed")
                    } else {
                        format!("worker {worker}: its tasks are committed")
                    };
                    eprintln!(
                        "{who}; {committed} of {} tasks of the dataset are; the last run to \
                         finish (or `kiln finalize {}`) writes the manifest",
                        plan.tasks.len(),
                        plan.sink.display
                    );
                }
            }
        }
        if let Some(why) = too_many {
            eprintln!(
                "error: {}",
                crate::secrets::redact(&format!("{}: {why}", plan.sink.display))
            );
        }
        outcome.map(|_| code)
    })
}

/// First SIGINT/SIGTERM: start no new task and let running ones finish for `grace`,
/// then abandon them (their shards are never visible half-written) and exit 75. A second
/// signal exits at once, still without partial shards.
async fn watch_signals(drain: Arc<AtomicBool>, stop: Arc<AtomicBool>, grace: std::time::Duration) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            if n == 0 {
                tracing::warn!(
                    "stopping: no new tasks; running ones get {} to finish; a second signal exits at once",
                    humantime::format_duration(grace)
                );
                drain.store(true, Ordering::Relaxed);
                let stop = stop.clone();
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the grace timer only sets `stop`; the process exits when the run ends"
                )]
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    stop.store(true, Ordering::Relaxed);
                });
            } else {
                std::process::exit(crate::error::EXIT_RETRY);
            }
        }
    }
}
