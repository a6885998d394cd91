//! The commands that show a pipeline or a sink and change nothing but a finished
//! dataset's manifest: `validate`, `plan`, `status`, `finalize`, `inspect`.
//!
//! One role, though over 600 lines: the read-only commands, which share reading a sink's
//! stored plan and records (`read_sink`) and the plan's text and JSON forms.

use std::fmt::Write as _;

use super::{PipelineArgs, print_out, tokio_runtime};
use crate::error::{EXIT_OK, EXIT_TOO_MANY_ERRORS, Error, Result};
use crate::plan::Plan;
use crate::report::counted;
use crate::runtime;
use crate::spec;

pub(super) fn cmd_validate(args: &PipelineArgs) -> Result<i32> {
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

pub(super) fn cmd_plan(args: &PipelineArgs, worker: Option<&str>, json: bool) -> Result<i32> {
    let pipeline = spec::load(&args.pipeline, &args.set)?;
    let explicit = worker.is_some();
    let worker = runtime::Worker::resolve(worker, &|k| std::env::var(k).ok())?;
    let rt = tokio_runtime()?;
    let plan = rt
        .block_on(Plan::build(pipeline))
        .map_err(|e| spec::place_step_error(&args.pipeline, e))?;
    // A sink that already holds a stored plan decides the listing and the tasks.
    let stored = rt.block_on(crate::sink::read_plan(&plan.sink))?;
    let plan = match &stored {
        Some(stored) => plan.adopt(stored)?,
        None => plan,
    };
    // Statistics an earlier run fitted into this sink give the fitted schema.
    let fitted = if plan.needs_fit() {
        rt.block_on(crate::sink::read_fitted(&plan.sink, &plan.pipeline_hash))?
    } else {
        None
    };
    let fitted_in_sink = fitted.is_some();
    let plan = match fitted {
        Some(file) => plan.with_fitted(file.steps)?,
        None => plan,
    };
    if json {
        let value = plan_json(&plan, &worker, stored.as_ref().map(|s| s.workers));
        return print_out(&format!("{value:#}\n"));
    }
    let p = &plan.pipeline;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pipeline  {} (hash {})",
        p.name,
        &plan.pipeline_hash[..16]
    );
    for input in &plan.inputs {
        let objects = &plan.objects[input.objects.clone()];
        let bytes: u64 = objects.iter().map(|o| o.size).sum();
        let _ = writeln!(
            s,
            "{:<9} {} → {}, {}",
            input.name.as_deref().unwrap_or("source"),
            input.spec.uri,
            counted(objects.len() as u64, "object"),
            spec::ByteSize(bytes)
        );
        let compressions = &plan.compressions[input.objects.clone()];
        for (o, c) in objects.iter().zip(compressions).take(5) {
            let _ = writeln!(
                s,
                "            {} ({}, {})",
                o.display,
                spec::ByteSize(o.size),
                c.name()
            );
        }
        if objects.len() > 5 {
            let _ = writeln!(s, "            … {} more", objects.len() - 5);
        }
        let _ = writeln!(
            s,
            "format    {:?}, schema from {}",
            input.format_name, input.schema_origin
        );
        if input.name.is_some() {
            let _ = writeln!(s, "read      {}", crate::inspect::fmt_schema(&input.schema));
            for (i, step) in input.spec.steps.iter().enumerate() {
                let _ = writeln!(s, "  own {:<4} {}", i + 1, step.name());
            }
        }
    }
    if plan.inputs.len() > 1 {
        let _ = writeln!(
            s,
            "sources   {} inputs, read one after the other in name order; each row's `source` names its input",
            plan.inputs.len()
        );
    }
    let _ = writeln!(
        s,
        "read      {}",
        crate::inspect::fmt_schema(&plan.input_schema)
    );
    let in_order = plan.in_order_step();
    for (i, st) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "step {:<4} {} → {}{}",
            i + 1,
            st.name,
            crate::inspect::fmt_schema(st.step.output_schema()),
            match st.step.kind() {
                crate::steps::Kind::Fit(_) => {
                    "  [fitted in a pass before the run, on the output of the steps before it; columns made from what it learns appear after it]"
                }
                crate::steps::Kind::FullPass(_) if in_order == Some(i) => {
                    "  [decides as rows arrive, in input order: one pass, tasks one at a time]"
                }
                crate::steps::Kind::FullPass(_) => {
                    "  [decides in a full pass before the run, on the output of the steps before it]"
                }
                crate::steps::Kind::Map => "",
            }
        );
        if let Some(crate::steps::StepSpec::Mix(o)) = p.steps.get(i) {
            let _ = writeln!(s, "          mixes {}", o.expected());
        }
        if let crate::steps::Kind::FullPass(p) = st.step.kind()
            && let Some(index) = p.index()
        {
            for earlier in &index.against {
                let _ = writeln!(
                    s,
                    "          against {earlier} (its key index {}/{})",
                    crate::layout::INDEX_DIR,
                    index.id
                );
            }
            if index.write {
                let _ = writeln!(
                    s,
                    "          stores its key index in {}",
                    plan.sink
                        .display_child(&format!("{}/{}/", crate::layout::INDEX_DIR, index.id))
                );
            }
        }
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
        } else if in_order.is_some() {
            ", run in order (one-pass dedup)"
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
            if plan
                .single_input()
                .is_some_and(|i| i.format_name == crate::spec::FormatName::Parquet)
            {
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
    let example = crate::sink::writer::shard_stem(
        &p.sink
            .partition_by
            .iter()
            .map(|c| format!("{c}=<value>/"))
            .collect::<String>(),
        0,
        0,
    );
    let _ = match p.sink.format {
        spec::SinkFormat::Parquet => writeln!(
            s,
            "sink      {}{example}.parquet … ({:?}, ≤{} rows or ≤{} a shard)",
            plan.sink.display, p.sink.compression, p.sink.max_rows, p.sink.max_bytes
        ),
        spec::SinkFormat::Megatron => writeln!(
            s,
            "sink      {}{example}.bin + .idx … (Megatron indexed dataset, {} ids, a row a \
             document; ≤{} documents or ≤{} of ids a shard)",
            plan.sink.display,
            crate::sink::megatron::Dtype::choose(
                p.sink
                    .megatron
                    .as_ref()
                    .map(|m| m.dtype)
                    .unwrap_or_default(),
                plan.vocabulary()
            )
            .name(),
            p.sink.max_rows,
            p.sink.max_bytes
        ),
        spec::SinkFormat::Webdataset => writeln!(
            s,
            "sink      {}{example}.tar … (WebDataset: a sample's columns as members \
             <key>.<column>.<type>; ≤{} samples or ≤{} a shard)",
            plan.sink.display, p.sink.max_rows, p.sink.max_bytes
        ),
        spec::SinkFormat::Mds => writeln!(
            s,
            "sink      {}{example}.mds … (MosaicML Streaming MDS, index.json at finalize; ≤{} \
             samples or ≤{} a shard)",
            plan.sink.display, p.sink.max_rows, p.sink.max_bytes
        ),
    };
    if let Some(window) = p.sink.shuffle.as_ref().and_then(|sh| sh.window) {
        let _ = writeln!(
            s,
            "shuffle   within windows of {window} rows of each task, as they are written (a \
             local shuffle: rows stay in their window and task)"
        );
    } else if let Some(sh) = &p.sink.shuffle {
        let _ = writeln!(
            s,
            "shuffle   seed {}: each task scatters its rows into {} bucket(s) (≈{} of input \
             each); the shards are written from the buckets once every task is committed",
            sh.seed,
            crate::sink::shuffle::bucket_count(plan.input_bytes(), sh.bucket_bytes.get()),
            sh.bucket_bytes
        );
    }
    let _ = writeln!(
        s,
        "files     {}",
        crate::inspect::fmt_schema(&plan.file_schema)
    );
    print_out(&s)
}

/// `kiln plan --json`: what the text shows, as one object.
fn plan_json(
    plan: &Plan,
    worker: &runtime::Worker,
    stored_workers: Option<usize>,
) -> serde_json::Value {
    use serde_json::json;
    let p = &plan.pipeline;
    let in_order = plan.in_order_step();
    let steps: Vec<_> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let pass = match st.step.kind() {
                crate::steps::Kind::Fit(_) => "fit",
                crate::steps::Kind::FullPass(_) if in_order == Some(i) => "one",
                crate::steps::Kind::FullPass(_) => "full",
                crate::steps::Kind::Map => "none",
            };
            json!({"name": st.name, "pass": pass, "columns": columns(st.step.output_schema())})
        })
        .collect();
    let tasks: Vec<_> = plan
        .tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "objects": t.objects.len(),
                "first_object": plan.objects[t.objects.start].display,
                "bytes": t.bytes,
                "range": t.range.as_ref().map(|r| [r.start, r.end]),
                "worker": (0..worker.count)
                    .find(|&index| runtime::Worker { index, count: worker.count }.owns(t.id)),
            })
        })
        .collect();
    json!({
        "pipeline": p.name,
        "pipeline_hash": plan.pipeline_hash,
        "source": plan.single_input().map(|i| input_json(plan, i)),
        "sources": (plan.inputs.len() > 1).then(|| {
            plan.inputs
                .iter()
                .map(|i| (i.name.clone().unwrap_or_default(), input_json(plan, i)))
                .collect::<serde_json::Map<_, _>>()
        }),
        "input_columns": columns(&plan.input_schema),
        "steps": steps,
        "tasks": tasks,
        "task_bytes": p.run.task_bytes.get(),
        "threads": plan.threads,
        "workers": worker.count,
        "stored_plan_workers": stored_workers,
        "sink": {
            "uri": plan.sink.display,
            "format": p.sink.format,
            "partition_by": p.sink.partition_by,
            "columns": columns(&plan.file_schema),
        },
    })
}

/// A schema's columns as `kiln plan --json` shows them.
fn columns(schema: &arrow::datatypes::Schema) -> Vec<serde_json::Value> {
    schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
        .collect()
}

/// One input of `plan` as `kiln plan --json` shows it.
fn input_json(plan: &Plan, input: &crate::plan::Input) -> serde_json::Value {
    let range = input.objects.clone();
    serde_json::json!({
        "uri": input.spec.uri,
        "objects": plan.objects[range.clone()].iter().zip(&plan.compressions[range.clone()]).map(|(o, c)| {
            serde_json::json!({"path": o.display, "bytes": o.size, "compression": c.name()})
        }).collect::<Vec<_>>(),
        "bytes": plan.objects[range].iter().map(|o| o.size).sum::<u64>(),
        "format": format!("{:?}", input.format_name).to_lowercase(),
        "schema_origin": input.schema_origin,
        "columns": columns(&input.schema),
        "steps": input.spec.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
    })
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

/// One line per step whose stage the sink holds parts of: how many tasks' parts and
/// sections' decisions are stored (`kiln status` while workers share a stage).
fn stage_lines(
    staged: &crate::sink::stages::Stored,
    stored: &crate::sink::StoredPlan,
) -> Vec<String> {
    let steps: std::collections::BTreeSet<usize> = staged
        .parts
        .iter()
        .chain(&staged.sections)
        .map(|(k, _)| *k)
        .collect();
    steps
        .into_iter()
        .map(|k| {
            let name = stored
                .pipeline
                .pointer(&format!("/steps/{k}"))
                .and_then(|v| v.as_object())
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_else(|| "?".into());
            let parts = staged.parts.iter().filter(|(j, _)| *j == k).count();
            let sections = staged.sections.iter().filter(|(j, _)| *j == k).count();
            let mut line = format!(
                "step {} `{name}`: parts of {parts} of {} tasks stored",
                k + 1,
                stored.tasks.len()
            );
            if sections > 0 {
                line.push_str(&format!(", {} merged", counted(sections as u64, "section")));
            }
            line
        })
        .collect()
}

pub(super) fn cmd_status(uri: &str) -> Result<i32> {
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
    if manifest.is_none() {
        let staged = rt.block_on(crate::sink::stages::stored(&sink))?;
        for line in stage_lines(&staged, &stored) {
            let _ = writeln!(s, "stage     {line}");
        }
    }
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
    // What each run holds: the tasks it claimed that are not committed yet (several
    // workers claim every task before it starts, `sink/claims.rs`).
    let mut holds: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    if !runs.is_empty() {
        let (claimed, committed) =
            rt.block_on(crate::sink::claims::claimed_and_committed(&sink))?;
        for t in claimed.difference(&committed) {
            let path = crate::sink::claims::claim_path(*t);
            if let Some(c) = rt.block_on(crate::sink::get_json::<crate::sink::claims::Claim>(
                &sink, &path,
            ))? {
                holds.entry(c.run_id).or_default().push(*t);
            }
        }
    }
    let held = |r: &crate::sink::lease::RunRecord| match holds.get(&r.run_id) {
        Some(ts) => format!(
            "; holds task{} {}",
            if ts.len() == 1 { "" } else { "s" },
            ts.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    for r in &runs {
        let _ = if r.live() {
            writeln!(s, "running   {}{}", r.describe(), held(r))
        } else {
            writeln!(
                s,
                "dead      {}{} — no heartbeat for {}s: killed or lost; its tasks are redone \
                 by a worker that finishes its own, or by {}",
                r.describe(),
                held(r),
                r.age().as_secs(),
                if r.is_helper() {
                    "the next run that reaches them".to_string()
                } else {
                    format!("the next run of worker {}", r.worker)
                }
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

pub(super) fn cmd_finalize(uri: &str) -> Result<i32> {
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
    let shuffled = stored
        .pipeline
        .pointer("/sink/shuffle")
        .and_then(|s| serde_json::from_value::<spec::ShuffleSpec>(s.clone()).ok())
        .is_some_and(|s| s.global());
    let manifest = match manifest {
        Some(m) => m,
        None if shuffled => {
            return Err(Error::Plan(format!(
                "{}: every task is committed, but a shuffled dataset's shards are written \
                 after them (sink.shuffle): run the pipeline again (`kiln run`) to write them",
                sink.display
            )));
        }
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

pub(super) fn cmd_inspect(uri: &str, rows: Option<usize>) -> Result<i32> {
    let rt = tokio_runtime()?;
    print_out(&crate::inspect::inspect(&rt, uri, rows)?)
}
