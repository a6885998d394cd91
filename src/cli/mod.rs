//! The command line (README "Commands"): the clap definitions, `main` (one command, its exit
//! code from the error's kind), logging, and printing to stdout.
//!
//! The rooms: `run.rs` is `kiln run` (signals, progress, report, exit code of the
//! outcome); `show.rs` the commands that read a pipeline or a sink (`validate`, `plan`,
//! `status`, `finalize`, `inspect`); `steps.rs` the step reference (`kiln steps`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{EXIT_OK, EXIT_USAGE, Error, Result};
use crate::spec;

mod run;
mod show;
mod steps;

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
        /// With several workers and a dedup or fitted step: how long a worker that has
        /// done its share of a stage waits for running workers' parts before it exits
        /// 75 (its parts are kept: run it again to go on).
        #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_grace)]
        stage_wait: std::time::Duration,
        /// With several workers: a worker with no live run for this long has its share
        /// of a stage computed by a waiting worker.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_grace)]
        take_over_after: std::time::Duration,
        /// With several workers: run only this worker's own tasks and stage parts (and a
        /// dead worker's), never those a slower worker has not started: each worker's
        /// share stays `t % N`, for schedulers that bound each array task's time.
        #[arg(long)]
        own_tasks_only: bool,
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
        /// Print the plan as one JSON object (objects, schemas after each step, tasks,
        /// sink) for programs: `kiln.plan()` in Python reads it.
        #[arg(long)]
        json: bool,
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
    // validate answers 0 or 2: anything that keeps the plan from being built is a
    // problem with the pipeline as it stands. Every other command exits with the code
    // of its error's kind.
    let validate = matches!(cli.command, Command::Validate { .. });
    let result = match cli.command {
        Command::Run {
            args,
            overwrite,
            report,
            worker,
            grace,
            stage_wait,
            take_over_after,
            own_tasks_only,
        } => run::cmd_run(
            &args,
            run::RunFlags {
                overwrite,
                worker: worker.as_deref(),
                grace,
                report,
                stage_wait: crate::runtime::StageWait {
                    wait: stage_wait,
                    take_over_after,
                },
                own_tasks_only,
            },
            quiet,
            cli.log_format,
        ),
        Command::Validate { args } => show::cmd_validate(&args),
        Command::Plan { args, worker, json } => show::cmd_plan(&args, worker.as_deref(), json),
        Command::Status { sink } => show::cmd_status(&sink),
        Command::Finalize { sink } => show::cmd_finalize(&sink),
        Command::Inspect { uri, rows } => show::cmd_inspect(&uri, rows),
        Command::Steps { name } => steps::cmd_steps(name.as_deref()),
        Command::Schema => print_out(&format!("{:#}\n", spec::json_schema())),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e.to_string()));
            if validate { EXIT_USAGE } else { e.exit_code() }
        }
    }
}

/// `kiln status | head -1`: the reader left, which is not kiln's failure.
fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn print_out(s: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    out.write_all(crate::secrets::redact(s).as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
