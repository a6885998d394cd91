//! The command line (DESIGN §2): clap definitions and one function per command.
//!
//! Over 600 lines, and more than one role: argument definitions, running, status and
//! exit codes, and the `kiln plan`/`status` renderings. Issue 20 splits it into
//! `cli/{run,show}.rs` with exit codes decided by the error's kind.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{EXIT_OK, EXIT_TOO_MANY_ERRORS, EXIT_USAGE, Error, Result};
use crate::plan::Plan;
use crate::report::{Progress, ReportHead, Stats, counted};
use crate::runtime::{self, ExecOptions, Outcome};
use crate::spec;

/// kiln: declarative ML data preprocessing, raw files to training-ready Parquet shards.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress and no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// The pipeline file (YAML).
    pub pipeline: PathBuf,
    /// Override a field of the pipeline file: `--set run.threads=4`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline.
    Run {
        #[command(flatten)]
        args: PipelineArgs,
        /// Delete what the sink holds (another pipeline's output) before running.
        #[arg(long)]
        overwrite: bool,
        /// Write a machine-readable summary of the run to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// On SIGTERM/SIGINT, let running tasks finish for up to this long (no new task
        /// starts), then abandon what is left and exit 75. Keep it below the scheduler's
        /// own grace period (Kubernetes: 30s). A second signal exits at once.
        #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_grace)]
        grace: std::time::Duration,
        /// Run only this worker's share of the tasks: INDEX/COUNT, e.g. 0/4. Default:
        /// from KILN_WORKER/KILN_WORKERS, SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or
        /// AWS_BATCH_JOB_ARRAY_INDEX (with KILN_WORKERS), else the only worker.
        #[arg(long, value_name = "I/N")]
        worker: Option<String>,
    },
    /// Check a pipeline against its source (schema, steps, sink) without running it.
    Validate {
        #[command(flatten)]
        args: PipelineArgs,
    },
    /// Show what would run: objects, schema after each step, tasks, sink layout.
    Plan {
        #[command(flatten)]
        args: PipelineArgs,
        /// Show the tasks of this worker (INDEX/COUNT).
        #[arg(long, value_name = "I/N")]
        worker: Option<String>,
    },
    /// Tasks done and to do, rows and bytes of a (possibly running) dataset.
    Status {
        /// The sink: a path or a file://, s3://, gs:// or az:// prefix.
        sink: String,
    },
    /// Write the manifest and _SUCCESS of a dataset whose tasks are all committed
    /// (after a multi-worker run whose last worker did not get to it).
    Finalize {
        /// The sink: a path or a file://, s3://, gs:// or az:// prefix.
        sink: String,
    },
    /// Summarise a kiln dataset (splits, rows, tokens, columns, the pipeline), or show the
    /// schema, row groups and first rows of a file or glob.
    Inspect {
        /// A path, or a file://, s3://, gs://, az:// or https:// URI, or a glob over one.
        /// Stores are reached as configured by the environment (AWS_ENDPOINT_URL, ...).
        uri: String,
        /// Rows to show (files: 10 by default; a dataset: none unless given, then from
        /// its first shard).
        #[arg(short = 'n', long)]
        rows: Option<usize>,
    },
    /// List every step with its options and an example.
    Steps {
        /// Show one step's options in full.
        name: Option<String>,
    },
    /// Print the JSON Schema of the pipeline file.
    Schema,
}

/// How long freed memory stays mapped before the allocator returns it to the OS (set by
/// the binary at start; `MIMALLOC_PURGE_DELAY`, in ms, overrides it). mimalloc's 1 s
/// default returned and faulted in again the same buffers all run long: on bench job A,
/// ~210k page faults against ~120-140k with 3 s, and one process with two threads then
/// spent more CPU than two one-thread workers. Longer delays save little more, and let
/// freed memory pile up before it is returned: a 300 MB object's peak RSS grew by 40-80
/// MB over a 100 MB one with 10 s, 25-40 with 3 s, 25-35 with 1 s (tests/s3).
pub const ALLOCATOR_PURGE_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    // Before anything can print: the values of secret-named variables (credentials,
    // and what `${VAR}` of them expands to) are scrubbed from every output.
    crate::secrets::register_env();
    init_logging(&cli);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Run {
            args,
            overwrite,
            report,
            worker,
            grace,
        } => cmd_run(
            &args,
            RunFlags {
                overwrite,
                worker: worker.as_deref(),
                grace,
                report,
            },
            quiet,
            cli.log_format,
        ),
        Command::Validate { args } => cmd_validate(&args).map_err(|e| {
            // validate answers 0 or 2: anything that keeps the plan from being built is
            // a problem with the pipeline as it stands.
            let code = EXIT_USAGE;
            (e, code)
        }),
        Command::Plan { args, worker } => cmd_plan(&args, worker.as_deref()).map_err(|e| {
            let code = e.exit_code();
            (e, code)
        }),
        Command::Status { sink } => cmd_status(&sink).map_err(|e| {
            let code = e.exit_code();
            (e, code)
        }),
        Command::Finalize { sink } => cmd_finalize(&sink).map_err(|e| {
            let code = e.exit_code();
            (e, code)
        }),
        Command::Inspect { uri, rows } => cmd_inspect(&uri, rows).map_err(|e| {
            let code = e.exit_code();
            (e, code)
        }),
        Command::Steps { name } => cmd_steps(name.as_deref()).map_err(|e| {
            let code = e.exit_code();
            (e, code)
        }),
        Command::Schema => print_out(&format!("{:#}\n", spec::json_schema())).map_err(|e| (e, 1)),
    };
    match result {
        Ok(code) => code,
        Err((e, code)) => {
            if is_broken_pipe(&e) {
                return EXIT_OK;
            }
            eprintln!("error: {}", crate::secrets::redact(&e.to_string()));
            code
        }
    }
}

fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Internal(m) if m.contains("Broken pipe"))
}

fn print_out(s: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    out.write_all(crate::secrets::redact(s).as_bytes())
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(EXIT_OK)
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("kiln={level}")));
    let builder = tracing_subscriber::fmt()
        .with_writer(crate::secrets::Stderr::default)
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
            std::env::var_os("CLICOLOR_FORCE"),
        ))
        .with_target(false);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Whether log lines on stderr carry ANSI colours: on a terminal only, unless
/// `CLICOLOR_FORCE` (set and not `0`) forces them or `NO_COLOR` (set and not empty)
/// turns them off (<https://no-color.org>, <https://bixense.com/clicolors/>). A log
/// file or a pipe gets plain text.
fn colour(
    terminal: bool,
    no_color: Option<std::ffi::OsString>,
    force: Option<std::ffi::OsString>,
) -> bool {
    if force.is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    terminal
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    // tokio only waits on I/O; two workers keep many requests in flight.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kiln-io")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the I/O runtime: {e}")))
}

fn parse_grace(s: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like `30s`: {e}"))
}

/// The flags of `kiln run` beyond the pipeline.
struct RunFlags<'a> {
    overwrite: bool,
    worker: Option<&'a str>,
    grace: std::time::Duration,
    report: Option<PathBuf>,
}

fn cmd_run(
    args: &PipelineArgs,
    flags: RunFlags<'_>,
    quiet: bool,
    log_format: LogFormat,
) -> std::result::Result<i32, (Error, i32)> {
    let RunFlags {
        overwrite,
        worker,
        grace,
        report: report_path,
    } = flags;
    let fail = |e: Error| {
        let c = e.exit_code();
        (e, c)
    };
    let pipeline = spec::load(&args.pipeline, &args.set).map_err(fail)?;
    let worker = runtime::Worker::resolve(worker, &|k| std::env::var(k).ok()).map_err(fail)?;
    let rt = tokio_runtime().map_err(fail)?;
    rt.block_on(async move {
        let plan = Plan::build(pipeline)
            .await
            .map_err(|e| fail(spec::place_step_error(&args.pipeline, e)))?;
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
        // A failed or stopped worker leaves a record for `kiln status`, once the sink
        // holds this dataset's plan (a run refused before that wrote nothing).
        if let Err(e) = &outcome
            && too_many.is_none()
            && matches!(crate::sink::read_plan(&plan.sink).await, Ok(Some(p)) if p.pipeline_hash == plan.pipeline_hash)
        {
            let record = crate::sink::FailureRecord {
                worker: worker.to_string(),
                exit_code: code,
                retryable: code == crate::error::EXIT_RETRY,
                error: crate::secrets::redact(&e.to_string()).into_owned(),
                at: crate::sink::now_rfc3339(),
                kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            if let Err(e) = crate::sink::record_failure(&plan.sink, worker.index, &record).await {
                tracing::warn!("could not record the failure in the sink: {e}");
            }
        }
        let report = stats.report(head);
        if let Some(path) = report_path {
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            let body = crate::secrets::redact(&body).into_owned();
            std::fs::write(&path, body).map_err(|e| {
                fail(Error::Usage(format!(
                    "--report {}: cannot write: {e}",
                    path.display()
                )))
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
                if let Ok(Outcome::WorkerDone { committed, .. }) = &outcome {
                    eprintln!(
                        "worker {worker}: its tasks are committed; {committed} of {} tasks of the dataset are; \
                         the last worker to finish (or `kiln finalize {}`) writes the manifest",
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
        match outcome {
            Ok(_) => Ok(code),
            Err(e) => Err((e, code)),
        }
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

fn cmd_validate(args: &PipelineArgs) -> Result<i32> {
    let pipeline = spec::load(&args.pipeline, &args.set)?;
    let rt = tokio_runtime()?;
    let plan = rt
        .block_on(Plan::build(pipeline))
        .map_err(|e| spec::place_step_error(&args.pipeline, e))?;
    print_out(&format!(
        "{}: ok — {} ({}), {}, {}, sink {}\n",
        args.pipeline.display(),
        counted(plan.objects.len() as u64, "object"),
        spec::ByteSize(plan.input_bytes()),
        counted(plan.steps.len() as u64, "step"),
        counted(plan.output_schema.fields().len() as u64, "output column"),
        plan.sink.display
    ))
}

fn cmd_plan(args: &PipelineArgs, worker: Option<&str>) -> Result<i32> {
    use std::fmt::Write as _;
    let pipeline = spec::load(&args.pipeline, &args.set)?;
    let explicit = worker.is_some();
    let worker = runtime::Worker::resolve(worker, &|k| std::env::var(k).ok())?;
    let rt = tokio_runtime()?;
    let mut plan = rt
        .block_on(Plan::build(pipeline))
        .map_err(|e| spec::place_step_error(&args.pipeline, e))?;
    // A sink that already holds a stored plan decides the listing and the tasks.
    let stored = rt.block_on(crate::sink::read_plan(&plan.sink))?;
    if let Some(stored) = &stored {
        plan.adopt(stored)?;
    }
    // Statistics an earlier run fitted into this sink give the fitted schema.
    let mut fitted_in_sink = false;
    if plan.needs_fit()
        && let Some(file) = rt.block_on(crate::sink::read_stats(&plan.sink))?
        && file.pipeline_hash == plan.pipeline_hash
    {
        plan.fitted = file.steps;
        plan.rebind()?;
        fitted_in_sink = true;
    }
    let p = &plan.pipeline;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pipeline  {} (hash {})",
        p.name,
        &plan.pipeline_hash[..16]
    );
    let _ = writeln!(
        s,
        "source    {} → {}, {}",
        p.source.uri,
        counted(plan.objects.len() as u64, "object"),
        spec::ByteSize(plan.input_bytes())
    );
    for (o, c) in plan.objects.iter().zip(&plan.compressions).take(5) {
        let _ = writeln!(
            s,
            "            {} ({}, {})",
            o.display,
            spec::ByteSize(o.size),
            c.name()
        );
    }
    if plan.objects.len() > 5 {
        let _ = writeln!(s, "            … {} more", plan.objects.len() - 5);
    }
    let _ = writeln!(
        s,
        "format    {:?}, schema from {}",
        plan.format_name, plan.schema_origin
    );
    let _ = writeln!(
        s,
        "read      {}",
        crate::inspect::fmt_schema(&plan.input_schema)
    );
    for (i, st) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "step {:<4} {} → {}{}",
            i + 1,
            st.name,
            crate::inspect::fmt_schema(st.step.output_schema()),
            if st.step.kind().needs_fit() {
                "  [fitted in a full pass before the run; columns made from what it learns appear after it]"
            } else {
                ""
            }
        );
    }
    if let Some(from) = &plan.stats_origin {
        let _ = writeln!(s, "stats     fitted statistics from {from}");
    } else if fitted_in_sink {
        let _ = writeln!(
            s,
            "stats     fitted statistics from {}",
            plan.sink.display_child(crate::sink::STATS)
        );
    }
    let _ = writeln!(
        s,
        "tasks     {} (≈{} each), {} threads{}{}",
        plan.tasks.len(),
        p.run.task_bytes,
        plan.threads,
        if plan.sequential {
            ", run in order (limit)"
        } else {
            ""
        },
        match &stored {
            Some(st) => format!(
                "; stored plan in the sink: {} worker{}",
                st.workers,
                if st.workers == 1 { "" } else { "s" }
            ),
            None => String::new(),
        }
    );
    let sliced = plan.tasks.iter().filter(|t| t.range.is_some()).count();
    if sliced > 0 {
        let _ = writeln!(
            s,
            "            {sliced} of them slices of objects larger than run.task_bytes ({})",
            if plan.format_name == crate::spec::FormatName::Parquet {
                "whole row groups each"
            } else {
                "whole records each"
            }
        );
    }
    let whole: Vec<&crate::storage::Object> = plan
        .tasks
        .iter()
        .filter(|t| t.range.is_none() && t.bytes > p.run.task_bytes.get() && t.objects.len() == 1)
        .map(|t| &plan.objects[t.objects.start])
        .collect();
    if let Some(first) = whole.first() {
        let _ = writeln!(
            s,
            "note      {} object{} larger than run.task_bytes cannot be split ({}) and run{} as \
             one task each, e.g. {}",
            whole.len(),
            if whole.len() == 1 { "" } else { "s" },
            plan.unsplit.unwrap_or("this format"),
            if whole.len() == 1 { "s" } else { "" },
            first.display
        );
    }
    if explicit || worker.count > 1 {
        let mine: Vec<_> = plan.tasks.iter().filter(|t| worker.owns(t.id)).collect();
        let _ = writeln!(
            s,
            "worker    {worker}: {} task{}, {}",
            mine.len(),
            if mine.len() == 1 { "" } else { "s" },
            spec::ByteSize(mine.iter().map(|t| t.bytes).sum())
        );
        for t in mine {
            let first = &plan.objects[t.objects.start];
            let _ = writeln!(
                s,
                "            task {:05}: {} object{} from {} ({})",
                t.id,
                t.objects.len(),
                if t.objects.len() == 1 { "" } else { "s" },
                first.display,
                spec::ByteSize(t.bytes)
            );
        }
    }
    let example = crate::sink::writer::shard_name(
        &p.sink
            .partition_by
            .iter()
            .map(|c| format!("{c}=<value>/"))
            .collect::<String>(),
        0,
        0,
    );
    let _ = writeln!(
        s,
        "sink      {}{} … ({:?}, ≤{} rows or ≤{} a shard)",
        plan.sink.display, example, p.sink.compression, p.sink.max_rows, p.sink.max_bytes
    );
    let _ = writeln!(
        s,
        "files     {}",
        crate::inspect::fmt_schema(&plan.file_schema)
    );
    print_out(&s)
}

/// A sink as `status` and `finalize` see it: its stored plan, commit records and
/// manifest.
type SinkView = (
    crate::storage::Location,
    crate::sink::StoredPlan,
    std::collections::BTreeMap<usize, crate::sink::TaskRecord>,
    Option<crate::sink::Manifest>,
);

fn read_sink(rt: &tokio::runtime::Runtime, uri: &str) -> Result<SinkView> {
    let sink = crate::storage::open(uri, &spec::Storage::default())?;
    rt.block_on(async {
        let stored = crate::sink::read_plan(&sink).await?.ok_or_else(|| {
            Error::Plan(format!(
                "{} holds no kiln plan (no {}); is it a kiln sink, and has a run started?",
                sink.display,
                crate::sink::PLAN
            ))
        })?;
        let records = crate::sink::committed(&sink).await?;
        let manifest = crate::sink::read_manifest(&sink).await?;
        Ok((sink, stored, records, manifest))
    })
}

fn cmd_status(uri: &str) -> Result<i32> {
    use std::fmt::Write as _;
    let rt = tokio_runtime()?;
    let (sink, stored, records, manifest) = read_sink(&rt, uri)?;
    let missing = stored.missing(&records);
    let rows: u64 = records.values().map(|r| r.rows_out).sum();
    let rows_in: u64 = records.values().map(|r| r.rows_in).sum();
    let shards: usize = records.values().map(|r| r.shards.len()).sum();
    let bytes: u64 = records
        .values()
        .flat_map(|r| r.shards.iter())
        .map(|s| s.bytes)
        .sum();
    let mut s = String::new();
    let runs = rt.block_on(crate::sink::lease::runs(&sink))?;
    let live = runs.iter().filter(|r| r.live()).count();
    let state = if manifest.is_some() && missing.is_empty() {
        "complete".to_string()
    } else if missing.is_empty() {
        "all tasks committed, no manifest yet (run `kiln finalize`)".to_string()
    } else if live > 0 {
        format!("in progress ({})", counted(live as u64, "live run"))
    } else {
        "incomplete: no run is working on it now (run the missing workers, or the same \
         command again to resume)"
            .to_string()
    };
    let _ = writeln!(
        s,
        "dataset   {} ({}, hash {})",
        sink.display,
        stored.name,
        &stored.pipeline_hash[..16.min(stored.pipeline_hash.len())]
    );
    let _ = writeln!(s, "state     {state}");
    let _ = writeln!(
        s,
        "tasks     {} of {} committed, {} worker{}",
        records.len(),
        stored.tasks.len(),
        stored.workers,
        if stored.workers == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "rows      {rows_in} in → {rows} out · {shards} shards, {}",
        spec::ByteSize(bytes)
    );
    let mut rejected = crate::rejects::RejectCounts::default();
    for r in records.values() {
        rejected.add(&r.rejected);
    }
    if !rejected.is_empty() {
        let stages: Vec<String> = rejected
            .by_stage
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "left out  {}, {} ({}){}",
            counted(rejected.rows, "record"),
            counted(rejected.objects, "object"),
            stages.join(" · "),
            if stored.pipeline.pointer("/run/on_error")
                == Some(&serde_json::Value::from("dead_letter"))
            {
                " — see _kiln/errors/"
            } else {
                ""
            }
        );
    }
    for r in &runs {
        let _ = if r.live() {
            writeln!(s, "running   {}", r.describe())
        } else {
            writeln!(
                s,
                "dead      {} — no heartbeat for {}s: killed or lost; its tasks are redone \
                 by the next run of worker {}",
                r.describe(),
                r.age().as_secs(),
                r.worker
            )
        };
    }
    let failures = rt.block_on(crate::sink::failures(&sink))?;
    if let Some(last) = failures.last() {
        let retryable = failures.iter().filter(|f| f.retryable).count();
        let error: String = last.error.chars().take(160).collect();
        let _ = writeln!(
            s,
            "failures  {} run{} failed or stopped ({retryable} retryable); last: worker {} at {}, exit {}: {error}",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" },
            last.worker,
            last.at,
            last.exit_code,
        );
    }
    if !missing.is_empty() {
        let show: Vec<String> = missing
            .iter()
            .take(20)
            .map(|t| format!("{t} (worker {})", t % stored.workers))
            .collect();
        let _ = writeln!(
            s,
            "to do     {}{}",
            show.join(", "),
            if missing.len() > 20 { ", …" } else { "" }
        );
    }
    print_out(&s)
}

fn cmd_finalize(uri: &str) -> Result<i32> {
    let rt = tokio_runtime()?;
    let (sink, stored, records, manifest) = read_sink(&rt, uri)?;
    let missing = stored.missing(&records);
    if !missing.is_empty() {
        return Err(Error::Plan(format!(
            "{}: {} of {} tasks are not committed yet (first: task {}, worker {}); run the \
             missing workers first",
            sink.display,
            missing.len(),
            stored.tasks.len(),
            missing[0],
            missing[0] % stored.workers
        )));
    }
    let manifest = match manifest {
        Some(m) => m,
        None => stored.manifest(&records),
    };
    rt.block_on(crate::sink::finalize(&sink, &manifest))?;
    print_out(&format!(
        "{} is complete: {} tasks, {} shards, {} rows\n",
        sink.display,
        records.len(),
        manifest.shards.len(),
        manifest.rows
    ))?;
    match manifest.too_many_errors(None) {
        Some(why) => {
            eprintln!(
                "error: {}",
                crate::secrets::redact(&format!("{}: {why}", sink.display))
            );
            Ok(EXIT_TOO_MANY_ERRORS)
        }
        None => Ok(EXIT_OK),
    }
}

fn cmd_inspect(uri: &str, rows: Option<usize>) -> Result<i32> {
    let rt = tokio_runtime()?;
    print_out(&crate::inspect::inspect(&rt, uri, rows)?)
}

fn cmd_steps(name: Option<&str>) -> Result<i32> {
    use std::fmt::Write as _;
    let mut s = String::new();
    match name {
        None => {
            let width = crate::steps::STEPS
                .iter()
                .map(|st| st.name.len())
                .max()
                .unwrap_or(8);
            for st in crate::steps::STEPS {
                let _ = writeln!(s, "{:<width$}  {}", st.name, st.summary);
                for line in st.example.lines() {
                    let _ = writeln!(s, "{:<width$}  {line}", "");
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "`kiln steps NAME` shows one step's options in full.");
        }
        Some(n) => {
            let st = crate::steps::STEPS
                .iter()
                .find(|st| st.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> = crate::steps::STEPS.iter().map(|s| s.name).collect();
                    Error::Usage(format!(
                        "no step `{n}`; the steps are: {}",
                        names.join(", ")
                    ))
                })?;
            let _ = writeln!(
                s,
                "{}: {}\n\nexample:\n  {}\n\n{}\n(`kiln schema` has the whole JSON Schema.)",
                st.name,
                st.summary,
                st.example.replace('\n', "\n  "),
                options_table(&serde_json::to_value((st.options_schema)()).unwrap_or_default())
            );
        }
    }
    print_out(&s)
}

/// A step's options as a table (option, type, default, first sentence of its doc) from
/// its JSON Schema, the way `--help` shows flags.
fn options_table(schema: &serde_json::Value) -> String {
    use serde_json::Value;
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .rsplit('/')
                .next()
                .and_then(|name| defs.get(name))
                .cloned()
                .unwrap_or_else(|| v.clone()),
            None => v.clone(),
        }
    };
    let type_of = |v: &Value| -> String {
        let v = resolve(v);
        if let Some(t) = v.get("type") {
            return match t {
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect::<Vec<_>>()
                    .join(" | "),
                Value::String(t) if t == "array" => {
                    let item = v
                        .pointer("/items/type")
                        .and_then(Value::as_str)
                        .unwrap_or("value");
                    format!("list of {item}")
                }
                other => other.as_str().unwrap_or("value").to_string(),
            };
        }
        if let Some(e) = v.get("enum").and_then(Value::as_array) {
            return e
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ");
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = v.get(key).and_then(Value::as_array) {
                let names: Vec<String> = alts
                    .iter()
                    .filter(|a| a.get("type") != Some(&Value::from("null")))
                    .map(|a| {
                        a.get("$ref")
                            .and_then(Value::as_str)
                            .and_then(|r| r.rsplit('/').next())
                            .map(str::to_string)
                            .or_else(|| a.get("const").and_then(Value::as_str).map(str::to_string))
                            .or_else(|| a.get("type").and_then(Value::as_str).map(str::to_string))
                            .unwrap_or_else(|| "value".into())
                    })
                    .collect();
                return names.join(" | ");
            }
        }
        v.get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or("value")
            .to_string()
    };
    let first_sentence = |v: &Value| -> String {
        let d = v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " ");
        // The first ". " that does not end an abbreviation (e.g., i.e.).
        let end = d
            .match_indices(". ")
            .map(|(i, _)| i)
            .find(|&i| !d[..i].ends_with("e.g") && !d[..i].ends_with("i.e"));
        match end {
            Some(i) => d[..=i].to_string(),
            None => d,
        }
    };
    let top = resolve(schema);
    let Some(props) = top.get("properties").and_then(Value::as_object) else {
        return format!("takes: {} — {}", type_of(&top), first_sentence(&top));
    };
    let required: Vec<&str> = top
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows: Vec<[String; 4]> = props
        .iter()
        .map(|(name, v)| {
            let default = match v.get("default") {
                Some(Value::Null) => "-".into(),
                Some(d) => d.to_string(),
                None if required.contains(&name.as_str()) => "required".into(),
                None => "-".into(),
            };
            [name.clone(), type_of(v), default, first_sentence(v)]
        })
        .collect();
    let w: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(["option", "type", "default"][i].len())
                .min(40)
        })
        .collect();
    let mut out = format!(
        "{:<a$}  {:<b$}  {:<c$}  what\n",
        "option",
        "type",
        "default",
        a = w[0],
        b = w[1],
        c = w[2]
    );
    for r in rows {
        out.push_str(&format!(
            "{:<a$}  {:<b$}  {:<c$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            a = w[0],
            b = w[1],
            c = w[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_options_print_as_a_table() {
        let st = crate::steps::STEPS
            .iter()
            .find(|s| s.name == "tokenize")
            .expect("tokenize");
        let table = options_table(&serde_json::to_value((st.options_schema)()).expect("json"));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("option"), "{table}");
        assert!(table.contains("column"), "{table}");
        assert!(
            lines.len() < 30,
            "a line per option, not the raw schema:\n{table}"
        );
        assert!(!table.contains("\"$schema\""), "{table}");
    }

    #[test]
    fn the_allocator_keeps_freed_memory_for_the_delay() {
        if std::env::var_os(kiln_alloc::PURGE_DELAY_VAR).is_some() {
            return; // the user's value wins; nothing to check
        }
        // mimalloc 3's default purge delay: the option number kiln_alloc uses is right.
        assert_eq!(kiln_alloc::purge_delay_ms(), 1_000);
        kiln_alloc::keep_freed_memory_for(ALLOCATOR_PURGE_DELAY);
        assert_eq!(kiln_alloc::purge_delay_ms(), 3_000);
    }

    #[test]
    fn colour_only_on_a_terminal_unless_told() {
        let v = |s: &str| Some(std::ffi::OsString::from(s));
        assert!(colour(true, None, None));
        assert!(
            !colour(false, None, None),
            "a pipe or a log file gets plain text"
        );
        assert!(!colour(true, v("1"), None));
        assert!(colour(true, v(""), None), "an empty NO_COLOR is unset");
        assert!(colour(false, v("1"), v("1")), "CLICOLOR_FORCE wins");
        assert!(!colour(false, None, v("0")));
    }
}
