//! One task: a reader on tokio feeding the CPU side on one rayon thread, which decodes
//! each object (or slice) and hands the batches to [`Drive`]; the task's commit record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::cache::{self, DecodedCache};
use super::drive::{Drive, Driven, Mode};
use super::job::{Work, object_fault, object_rejection};
use super::read::{read_objects, slice_reader};
use crate::error::{Error, Result};
use crate::formats::reader::{ChannelReader, Chunks};
use crate::formats::{self, DecodeContext, ObjectInput, RandomAccess};
use crate::formats::{Decoded, Piece};
use crate::plan::{Plan, Task};
use crate::pool::{Budget, panic_message};
use crate::report::Stats;
use crate::sink::writer::{Staged, WriterConfig};
use crate::sink::{self, InputRecord, TaskRecord};
use crate::steps::Part;
use crate::steps::sample::stable_key;

/// What every task of one pass shares.
#[derive(Clone)]
pub(super) struct Pass {
    pub plan: Arc<Plan>,
    pub stats: Arc<Stats>,
    pub pool: Arc<rayon::ThreadPool>,
    pub cfg: Arc<WriterConfig>,
    /// Bounds the object reads in flight (`run.io_concurrency`).
    pub io: Arc<Semaphore>,
    pub stop: Arc<AtomicBool>,
    /// What an earlier fit pass decoded, or a fit pass that may keep what it decodes.
    pub cache: Option<Arc<DecodedCache>>,
    /// Batches in the steps at once, over all tasks (see [`super::drive`]); None on one
    /// thread.
    pub batches: Option<Arc<Budget>>,
}

/// What a task run made: its commit record, under `dead_letter` its dead-letter file
/// when it left anything out, its staged shards, and in a full pass each observed
/// step's part.
pub(super) struct TaskDone {
    pub record: TaskRecord,
    pub dead_letter: Option<crate::rejects::DeadLetters>,
    pub staged: Staged,
    pub parts: Vec<Part>,
}

/// Runs one task: a reader on tokio feeding the CPU side on rayon.
pub(super) async fn run_task(env: Pass, task: Task, mode: Mode) -> Result<TaskDone> {
    let (plan, cache) = (env.plan.clone(), env.cache.clone());
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
    // A task's objects are of one input.
    let from = plan.input_of(task.objects.start);
    #[expect(
        clippy::disallowed_methods,
        reason = "the reader is joined below, after the CPU side is done"
    )]
    let reader = if from.format.random_access() || cached.is_some() {
        drop(obj_tx);
        None
    } else {
        Some(tokio::spawn(read_objects(
            plan.clone(),
            task.clone(),
            obj_tx,
            env.io.clone(),
            env.stats.clone(),
            env.stop.clone(),
        )))
    };
    let (done_tx, done_rx) = oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    {
        let (env, task) = (env.clone(), task.clone());
        let (pool, io) = (env.pool.clone(), handle.clone());
        crate::pool::spawn_owner(
            pool,
            io,
            Box::new(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let input = match cached {
                        Some(batches) => Input::Cached(batches),
                        None => Input::Objects {
                            objects_rx: obj_rx,
                            keep,
                        },
                    };
                    cpu_task(&env, &task, mode, input, handle)
                }))
                .unwrap_or_else(|p| {
                    Err(Error::Internal(format!(
                        "panic in task {}: {}",
                        task.id,
                        panic_message(&*p)
                    )))
                });
                let _ = done_tx.send(r);
            }),
        );
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
    let Driven {
        rows_in,
        shards,
        staged,
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
pub(super) fn objects_finished(plan: &Plan, task: &Task) -> u64 {
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

/// What a decoder hands the task: decoded rows, or a piece of the object for a job to
/// decode.
enum Handed {
    Decoded(Decoded),
    Piece(Piece),
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

/// The CPU side of a task: decode on this rayon thread; the steps and the encoding on
/// every thread of the pool ([`Drive`]). Returns what driving the steps made.
fn cpu_task(
    env: &Pass,
    task: &Task,
    mode: Mode,
    input: Input,
    handle: tokio::runtime::Handle,
) -> Result<Driven> {
    let (plan, stats, stop) = (&*env.plan, &env.stats, &*env.stop);
    // Keyed by the path below the source prefix, so a sample is the same wherever the
    // data lives: another clone's directory, a bucket, a different store.
    let first = &plan.objects[task.objects.start].path;
    let from = plan.input_of(task.objects.start);
    let relative = from.source.base.relative(first);
    let mut key = if relative.is_empty() {
        first.filename().unwrap_or_default().to_string()
    } else {
        relative
    };
    // Under `sources:`, two inputs may hold objects of one name.
    if let Some(name) = &from.name {
        key = format!("{name}:{key}");
    }
    if let Some(r) = &task.range {
        key.push_str(&format!("#{}", r.start));
    }
    let task_key = stable_key(&key);
    let mut drive = Drive::new(
        &env.plan,
        (task.id, task_key),
        mode,
        stats,
        env.cfg.clone(),
        &plan.objects[task.objects.start].display,
        env.batches.clone(),
    )?;
    let (mut objects_rx, keep) = match input {
        Input::Objects { objects_rx, keep } => (Some(objects_rx), keep),
        Input::Cached(batches) => {
            for (i, batch) in batches {
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted("a signal"));
                }
                if drive.exhausted() {
                    break;
                }
                drive.batch(batch, &plan.objects[i].display)?;
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
        if drive.exhausted() {
            break;
        }
        let obj = &plan.objects[i];
        let object = match &task.range {
            Some(r) => DecodeContext::slice_name(&obj.display, r),
            None => obj.display.clone(),
        };
        let cx = DecodeContext {
            schema: from.schema.clone(),
            schema_origin: from.schema_origin.clone(),
            strict: from.strict,
            object: object.clone(),
            batch_rows: plan.batch_rows,
            csv: from.spec.csv.clone(),
            projection: plan.decode_projection.clone(),
            on_error: plan.pipeline.run.on_error,
            on_mismatch: from.spec.on_schema_mismatch,
            max_record_bytes: formats::max_record_bytes(
                plan.pipeline.run.memory_limit.get(),
                plan.threads,
            ),
            slice: task.range.clone(),
        };
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        let mut in_emit = Duration::ZERO;
        // With other threads to decode on (and nothing to keep), a format that frames
        // hands over pieces of the object, which the jobs decode.
        let framing = (drive.parallel() && keep.is_none() && from.format.frames())
            .then(|| Arc::new(cx.clone()));
        let mut emit = |handed: Handed| -> Result<bool> {
            let batch = match handed {
                Handed::Decoded(Decoded::Batch(b)) => b,
                Handed::Decoded(Decoded::Rejected(r)) => {
                    drive.undecoded(r)?;
                    return Ok(!stop.load(Ordering::Relaxed));
                }
                Handed::Piece(piece) => {
                    let t = Instant::now();
                    drive.work(Work::Parse(piece), &obj.display)?;
                    in_emit += t.elapsed();
                    return Ok(!stop.load(Ordering::Relaxed)
                        && !drive.exhausted()
                        && !drive.faulted(&obj.display));
                }
            };
            let t = Instant::now();
            if keeping {
                kept_bytes += batch.get_array_memory_size() as u64;
                if keep.as_ref().is_some_and(|c| kept_bytes > c.budget()) {
                    keeping = false;
                    kept = Vec::new();
                } else {
                    kept.push((i, batch.clone()));
                }
            }
            drive.batch(batch, &obj.display)?;
            in_emit += t.elapsed();
            Ok(!stop.load(Ordering::Relaxed) && !drive.exhausted())
        };
        let decoded = if from.format.random_access() {
            let ra = RandomAccess {
                store: from.source.base.store.clone(),
                path: obj.path.clone(),
                size: obj.size,
                handle: handle.clone(),
                stats: Some(stats.clone()),
            };
            let r = match &framing {
                Some(cx) => from
                    .format
                    .frame(ObjectInput::Random(ra), cx, &mut |p| emit(Handed::Piece(p))),
                None => from.format.decode(ObjectInput::Random(ra), &cx, &mut |d| {
                    emit(Handed::Decoded(d))
                }),
            };
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
                Some(_) => slice_reader(plan, i, task, raw, &handle).and_then(|raw| {
                    formats::decompress(formats::Compression::None, raw)
                        .map_err(|e| Error::input(&object, None, e))
                }),
                None => formats::decompress_buffered(plan.compressions[i], raw)
                    .map_err(|e| Error::input(&object, None, e)),
            }
            .and_then(|input| match &framing {
                Some(cx) => from.format.frame(ObjectInput::Stream(input), cx, &mut |p| {
                    emit(Handed::Piece(p))
                }),
                None => from
                    .format
                    .decode(ObjectInput::Stream(input), &cx, &mut |d| {
                        emit(Handed::Decoded(d))
                    }),
            })
            .map_err(|e| annotate_compression(e, plan.compressions[i]))
        };
        if let Err(e) = decoded {
            // What reached the steps before the fault comes first: a step's error there
            // is the run's error, as on one thread.
            drive.settle()?;
            // Under skip / dead_letter an object that cannot be read (corrupt, cut short,
            // gone, forbidden) is left out from where it failed; a step's error, a
            // retryable store error and a stop are not the object's fault.
            if !drive.rejects.tolerant() || !object_fault(&e) {
                return Err(e);
            }
            // Unless a piece of it failed first, in row order: then it is left out from
            // there, and this later error is part of what is left out.
            if !drive.faulted(&obj.display) {
                Stats::add(&stats.objects_rejected, 1);
                let rows = drive.rows_of(&obj.display);
                drive.rejects.add(object_rejection(&object, rows, e));
            }
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
    if let Some(cache) = keep.filter(|_| keeping && matches!(mode, Mode::Observe(..))) {
        cache.offer(task.id, kept, kept_bytes);
    }
    drive.finish(&last)
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
