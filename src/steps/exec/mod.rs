//! `exec`: a step in any language. Each batch goes to one of a pool of long-lived child
//! processes as an Arrow IPC stream on its stdin and comes back the same way on its
//! stdout ([`child`] has the frames); `python -m kiln.step module:function` (the Python
//! package in `python/kiln`) is the child side for a Python function.
//!
//! - **Schema.** Declared with `schema:`, or learnt when the step is bound by running the
//!   program on a batch of no rows (so `kiln validate` and `kiln plan` know the columns
//!   the steps after it get). Every batch the program returns must have those columns.
//! - **Order and determinism.** The step is batch-local: batches go to whichever child is
//!   free, on any thread, and the runtime puts the results back in order. Output is
//!   byte-identical for any number of processes when the program is a pure function of
//!   its batch, which exact resume needs anyway (docs/python.md).
//! - **Failures.** An error the program reports for a batch (a Python exception) is a
//!   data error about the batch: under `on_error: skip | dead_letter` the batch is left
//!   out and recorded (the dead letter holds the traceback, the object and the batch's
//!   rows); under `fail` it ends the run. A child that crashes or hangs past `timeout` is
//!   killed and replaced, and the batch tried once more; a second fault ends the run,
//!   naming the batch. Children die with kiln (`kiln_child`).

mod child;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::child::{Fault, Launch, Process, Reply};
use super::types::parse_type;
use super::{Step, StepContext, StepOptions};
use crate::pool::lock;
use crate::spec::Duration;
use crate::steps::StepError;

/// Options of `exec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecOptions {
    /// The program and its arguments, run from the directory kiln runs in. For a Python
    /// function: `[python3, -m, kiln.step, path/to/file.py:function]` (or
    /// `module:function`).
    pub command: Vec<String>,
    /// Child processes at most; default one per thread of the run. They start together
    /// when the run starts its tasks, beside the source's first reads.
    #[serde(default)]
    pub processes: Option<usize>,
    /// Longest a child may take over one batch before it is killed and the batch tried
    /// again in another child (default `10m`). A child's start (an interpreter and its
    /// imports) is not counted.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The columns the program returns (name: type, as `cast` writes types). Without it
    /// the program is run once on a batch of no rows when the step is bound.
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// Environment variables for the children, besides kiln's own.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Files the program's code is in, hashed into the pipeline's identity so that a
    /// changed step cannot resume a run made with the old one. Arguments of `command`
    /// that name a file (or `file.py:function`) are hashed anyway.
    #[serde(default)]
    pub files: Vec<String>,
}

const fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(600))
}

impl StepOptions for ExecOptions {
    const SUMMARY: &'static str = "run each batch through a program of yours (a Python function, \
         any language) in child processes, over Arrow IPC";
    const EXAMPLE: &'static str = "- exec: { command: [python3, -m, kiln.step, \
         examples/python-step/steps.py:clean], processes: 2 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.command.is_empty() {
            return Err("`command` is empty: give the program and its arguments".into());
        }
        if self.processes == Some(0) {
            return Err("`processes` must be at least 1".into());
        }
        let fingerprint = fingerprint(&self.command, &self.files)?;
        let pool = Pool {
            launch: Launch {
                // The function or script it runs: tells two `exec` steps apart in the log.
                label: format!("exec {}", self.command.last().map_or("", String::as_str)),
                command: self.command.clone(),
                env: self
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            max: self.processes,
            timeout: self.timeout.get(),
            state: Mutex::new(Children::default()),
            freed: Condvar::new(),
            filled: AtomicBool::new(false),
        };
        let (schema, declared) = match &self.schema {
            Some(columns) => {
                let mut fields = Vec::with_capacity(columns.len());
                for (name, type_name) in columns {
                    let t = parse_type(type_name)
                        .map_err(|e| format!("`schema`, column `{name}`: {e}"))?;
                    fields.push(arrow::datatypes::Field::new(name, t, true));
                }
                (
                    Schema::new_with_metadata(fields, input.metadata().clone()),
                    true,
                )
            }
            None => (probe(&pool, input)?, false),
        };
        Ok(Arc::new(Exec {
            schema: Arc::new(schema),
            declared,
            reads: input.fields().iter().map(|f| f.name().clone()).collect(),
            pool,
            fingerprint,
        }))
    }
}

/// The output schema: the program run on a batch of no rows.
fn probe(pool: &Pool, input: &SchemaRef) -> Result<Schema, String> {
    let what = |e: String| {
        format!(
            "running `{}` on a batch of no rows, to learn the columns it returns: {e}\n(declare \
             them with `schema:` if the program cannot take an empty batch)",
            pool.launch.command.join(" ")
        )
    };
    let empty = RecordBatch::new_empty(input.clone());
    match pool.call(&empty, 0).map_err(|e| what(e.to_string()))? {
        Reply::Raised(text) => Err(what(format!("it failed:\n{}", text.trim_end()))),
        Reply::Batch(ipc) => {
            let (schema, _) = decode_stream(ipc)
                .map_err(|e| what(format!("its answer is not an Arrow IPC stream: {e}")))?;
            let fields = schema.fields().clone();
            Ok(Schema::new_with_metadata(fields, input.metadata().clone()))
        }
    }
}

/// A digest of the files the program is in: `files`, and the arguments of `command` that
/// name a file (or a file before `:function`).
fn fingerprint(command: &[String], files: &[String]) -> Result<Option<String>, String> {
    use sha2::Digest;
    let paths: Vec<&str> = command
        .iter()
        .filter_map(|arg| {
            let before_colon = arg.rsplit_once(':').map(|(file, _)| file);
            before_colon
                .into_iter()
                .chain([arg.as_str()])
                .find(|p| std::path::Path::new(p).is_file())
        })
        .collect();
    let mut hash = sha2::Sha256::new();
    for f in files {
        let bytes =
            std::fs::read(f).map_err(|e| format!("cannot read `files` entry `{f}`: {e}"))?;
        hash.update(f.as_bytes());
        hash.update(&bytes);
    }
    for p in &paths {
        // Arguments are hashed if readable; a file that vanishes between the two reads
        // changes the digest, which is the point.
        if let Ok(bytes) = std::fs::read(p) {
            hash.update(p.as_bytes());
            hash.update(&bytes);
        }
    }
    if files.is_empty() && paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("exec:{:x}", hash.finalize())))
}

/// The step's children: idle ones, and how many are alive in all.
#[derive(Default)]
struct Children {
    idle: Vec<Process>,
    live: usize,
    started: usize,
}

struct Pool {
    launch: Launch,
    max: Option<usize>,
    timeout: std::time::Duration,
    state: Mutex<Children>,
    freed: Condvar,
    /// Set when every child has been started (`fill`): by the run's start (`warm`), or
    /// else by its first batch.
    filled: AtomicBool,
}

impl Pool {
    /// The most children alive at once.
    fn max(&self) -> usize {
        self.max.unwrap_or_else(rayon::current_num_threads).max(1)
    }

    /// An idle child, or a new one while fewer than the most are alive; else waits for
    /// one to be given back.
    fn take(&self) -> Result<Process, StepError> {
        let mut children = lock(&self.state);
        loop {
            if let Some(p) = children.idle.pop() {
                return Ok(p);
            }
            if children.live < self.max() {
                let id = Self::reserve(&mut children);
                drop(children);
                return self.start(id);
            }
            children = self
                .freed
                .wait(children)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Starts every child not yet alive, idle: their interpreters and imports start
    /// together, beside the source's first reads, not one by one as batches wait for them.
    fn fill(&self) -> Result<(), StepError> {
        let ids: Vec<usize> = {
            let mut children = lock(&self.state);
            let missing = self.max().saturating_sub(children.live);
            (0..missing).map(|_| Self::reserve(&mut children)).collect()
        };
        for id in ids {
            let p = self.start(id)?;
            self.give_back(p);
        }
        Ok(())
    }

    /// Counts a child about to start; its number.
    fn reserve(children: &mut Children) -> usize {
        children.live += 1;
        children.started += 1;
        children.started
    }

    fn start(&self, id: usize) -> Result<Process, StepError> {
        Process::start(&self.launch, id).map_err(|e| {
            lock(&self.state).live -= 1;
            self.freed.notify_one();
            StepError::io(
                format!("cannot start `{}`", self.launch.command.join(" ")),
                e,
            )
        })
    }

    fn give_back(&self, p: Process) {
        lock(&self.state).idle.push(p);
        self.freed.notify_one();
    }

    fn discard(&self, p: Process) {
        p.kill();
        lock(&self.state).live -= 1;
        self.freed.notify_one();
    }

    /// One batch through a child: a child that crashes or hangs is replaced and the batch
    /// tried once more in another.
    fn call(&self, batch: &RecordBatch, rows: usize) -> Result<Reply, StepError> {
        let mut first = None;
        for _ in 0..2 {
            let mut p = self.take()?;
            let fault = match p.call(batch, self.timeout) {
                Ok(reply) => {
                    self.give_back(p);
                    return Ok(reply);
                }
                Err(fault) => fault,
            };
            let id = p.id;
            self.discard(p);
            if let Fault::Protocol(_) = fault {
                return Err(child_error(format!("a batch of {rows} rows: {fault}")));
            }
            match first {
                None => {
                    tracing::warn!(
                        step = %self.launch.label,
                        child = id,
                        "{fault}; trying the batch of {rows} rows once more in another child"
                    );
                    first = Some(fault);
                }
                Some(before) => {
                    return Err(child_error(format!(
                        "a batch of {rows} rows failed twice, in two child processes: \
                         {before}; then {fault}"
                    )));
                }
            }
        }
        Err(StepError::internal("the exec step's retry loop ended"))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut idle = std::mem::take(&mut lock(&self.state).idle);
        // Every child's stdin closed first, so they exit together.
        for p in &mut idle {
            p.hang_up();
        }
        drop(idle);
    }
}

fn child_error(message: String) -> StepError {
    StepError::io(
        message,
        std::io::Error::other("the step's child process failed"),
    )
}

struct Exec {
    schema: SchemaRef,
    /// True if `schema:` declared it; false if the program's answer to no rows did.
    declared: bool,
    reads: BTreeSet<String>,
    pool: Pool,
    fingerprint: Option<String>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("command", &self.pool.launch.command)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Exec {
    /// The program's answer as a batch of the step's schema.
    fn output(&self, ipc: Vec<u8>) -> Result<RecordBatch, StepError> {
        let (got, batches) = decode_stream(ipc).map_err(|e| {
            StepError::data(format!(
                "the program's answer is not an Arrow IPC stream: {e}"
            ))
        })?;
        let same = got.fields().len() == self.schema.fields().len()
            && got
                .fields()
                .iter()
                .zip(self.schema.fields())
                .all(|(g, w)| g.name() == w.name() && g.data_type() == w.data_type());
        if !same {
            return Err(StepError::data(format!(
                "the program returned the columns ({}), not the step's ({}, {})",
                columns(&got),
                columns(&self.schema),
                if self.declared {
                    "as `schema:` declares"
                } else {
                    "as it returned for a batch of no rows"
                }
            )));
        }
        let batch = match <[RecordBatch; 1]>::try_from(batches) {
            Ok([one]) => one,
            Err(batches) => arrow::compute::concat_batches(&got, &batches)
                .map_err(|e| StepError::internal(format!("joining the program's batches: {e}")))?,
        };
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| StepError::data(format!("the program's answer: {e}")))
    }
}

/// An Arrow IPC stream's schema and batches, decoded without copying the buffers out
/// of `ipc` (they become the batches' memory).
fn decode_stream(ipc: Vec<u8>) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let mut buffer = Buffer::from_vec(ipc);
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::with_capacity(1);
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer)? {
            batches.push(batch);
        }
    }
    decoder.finish()?;
    let schema = decoder
        .schema()
        .ok_or_else(|| ArrowError::IpcError("the stream has no schema".into()))?;
    Ok((schema, batches))
}

fn columns(schema: &Schema) -> String {
    let c: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    c.join(", ")
}

impl Step for Exec {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, _downstream: &BTreeSet<String>) -> BTreeSet<String> {
        self.reads.clone()
    }

    fn batch_local(&self) -> bool {
        true
    }

    fn batch_faults(&self) -> bool {
        true
    }

    fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    fn warm(&self) {
        // A child that cannot start is reported by the first batch, which tries again.
        if !self.pool.filled.swap(true, Ordering::Relaxed) && self.pool.fill().is_err() {
            self.pool.filled.store(false, Ordering::Relaxed);
        }
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let rows = batch.num_rows();
        if !self.pool.filled.swap(true, Ordering::Relaxed) {
            self.pool.fill()?;
        }
        match self.pool.call(&batch, rows)? {
            Reply::Batch(ipc) => self.output(ipc),
            Reply::Raised(text) => Err(StepError::data(format!(
                "the program failed on a batch of {rows} rows:\n{}",
                text.trim_end()
            ))),
        }
    }
}
