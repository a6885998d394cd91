//! Spec + listing → what will run: the objects, the schema after every step, the tasks,
//! the sink layout. `kiln validate` builds a plan and stops; `kiln run` executes it.
//!
//! A plan is a value: built by [`Plan::build`], it changes only by constructors that
//! consume it and return the next one ([`Plan::adopt`] a stored plan,
//! [`Plan::with_fitted`] statistics).
//!
//! The rooms: `listing.rs` (objects, format, compression, where the sink may be),
//! `schema.rs` (declared or inferred input schema, the files' schema), `bind.rs` (steps
//! bound to their schemas, fit groups, binding again after a fit), `tasks.rs` (grouping
//! and slicing objects into tasks), `identity.rs` (the output hash, the stored plan and
//! adopting it). This file holds the plan's types, [`Plan::build`] putting them
//! together.

mod bind;
mod identity;
mod listing;
mod schema;
mod sources;
mod tasks;

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::formats::{self, Compression, SourceFormat};
use crate::sink::records::StatsEntry;
use crate::sink::writer::{Shards, WriterConfig};
use crate::spec::{FormatName, Pipeline};
use crate::steps::Step;
use crate::storage::{Location, Object, SourceUri};
use bind::{last_schema, load_stats};
pub use identity::pipeline_hash;
use schema::file_schema;
pub use tasks::{Cuts, MIN_SLICE, make_tasks};

/// A step bound to its input schema.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: &'static str,
    pub step: Arc<dyn Step>,
}

/// A group of consecutive objects: the unit of commit and resume.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: usize,
    pub objects: Range<usize>,
    pub bytes: u64,
    /// For a slice of one large object: the bytes whose lines are this task's (see
    /// `formats::reader::LineRange`). `None`: whole objects.
    pub range: Option<Range<u64>>,
    /// The slice is of a gzip object of one member flushed into independent blocks
    /// (`formats::members::blocks`), not of one of many members.
    pub inside_member: bool,
}

/// One input of the plan: a `source`, or one of `sources` by name, and how its objects
/// are read.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its name under `sources:`; None for `source`.
    pub name: Option<String>,
    /// The pipeline file's section for it.
    pub spec: crate::spec::Source,
    pub source: SourceUri,
    /// Its objects in [`Plan::objects`].
    pub objects: Range<usize>,
    pub format_name: FormatName,
    /// How its objects decode: for a named input, to the pipeline's input schema (its own
    /// steps applied and the `source` column added, `sources.rs`).
    pub format: Arc<dyn SourceFormat>,
    /// The ImageFolder classes of its listing, with `labels: folder`.
    pub classes: Option<Arc<formats::files::Classes>>,
    /// The schema its objects decode to (for Parquet, only the columns it uses).
    pub schema: SchemaRef,
    pub schema_origin: String,
    /// Inferred (records must match it), not declared.
    pub strict: bool,
}

impl Input {
    /// The input `name` (`spec`) reads, from its listing: its objects at `offset` in the
    /// plan's, which it returns with their compressions for the plan to hold.
    fn of_listing(
        name: Option<String>,
        spec: &crate::spec::Source,
        listing: listing::Listing,
        offset: usize,
        (schema, schema_origin, strict): (SchemaRef, String, bool),
    ) -> (Input, Vec<Object>, Vec<Compression>) {
        let listing::Listing {
            source,
            objects,
            format_name,
            format,
            classes,
            compressions,
        } = listing;
        let input = Input {
            name,
            spec: spec.clone(),
            source,
            objects: offset..offset + objects.len(),
            format_name,
            format,
            classes,
            schema,
            schema_origin,
            strict,
        };
        (input, objects, compressions)
    }
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: Pipeline,
    pub pipeline_hash: String,
    /// The inputs: one, or one per `sources:` entry, their objects in listing order one
    /// input after the other.
    pub inputs: Vec<Input>,
    pub objects: Vec<Object>,
    pub compressions: Vec<Compression>,
    /// Schema of the batches entering `steps` (one input: as read, only the columns the
    /// pipeline uses for Parquet; several: what every input's own steps make, with
    /// `source`).
    pub input_schema: SchemaRef,
    pub steps: Vec<PlannedStep>,
    /// Schema after the last step.
    pub output_schema: SchemaRef,
    /// Schema of the files (the output without partition columns).
    pub file_schema: SchemaRef,
    pub tasks: Vec<Task>,
    pub sink: Location,
    pub threads: usize,
    /// Tasks run one at a time, in order (a step needs a global row order).
    pub sequential: bool,
    /// The full-pass step the stages left to decide in the main pass
    /// ([`Plan::in_order_step`]); its tasks then run one at a time, in order.
    pub in_order: Option<usize>,
    /// Why an object larger than `run.task_bytes` runs as one task, when one does.
    pub unsplit: Option<&'static str>,
    /// Rows per batch (`run.batch_rows`, or sized from the sampled rows).
    pub batch_rows: usize,
    /// The statistics the fitted steps are bound with: from `stats_from`, from this
    /// sink's `_kiln/stats.json` (resume), or from this run's fit.
    pub fitted: Vec<StatsEntry>,
    /// Where `fitted` came from (`stats_from`'s sink), for stats.json.
    pub stats_origin: Option<String>,
    /// Columns of the input schema the decoder reads (see [`Plan::for_fit`]). None: all.
    pub decode_projection: Option<Vec<usize>>,
}

const MIN_BATCH_ROWS: u64 = 1024;
const MAX_BATCH_ROWS: usize = 8192;

/// What the inputs of a pipeline come to: the plan's inputs, objects and tasks, and
/// the pipeline's steps bound to what enters them.
struct Built {
    inputs: Vec<Input>,
    objects: Vec<Object>,
    compressions: Vec<Compression>,
    input_schema: SchemaRef,
    steps: Vec<PlannedStep>,
    tasks: Vec<Task>,
    unsplit: Option<&'static str>,
    batch_rows: usize,
    /// Digests of files the inputs' own steps read (a tokenizer), for the output hash.
    fingerprints: Vec<String>,
}

/// Rows per batch: `run.batch_rows`, or about 4 MiB of decoded input (the decoder, the
/// batch and the steps' outputs each hold about that much per task).
fn batch_rows(pipeline: &Pipeline, sampled_bytes: Option<u64>) -> usize {
    pipeline.run.batch_rows.unwrap_or_else(|| {
        let avg = sampled_bytes
            .map_or(0, |b| b / pipeline.source().infer_rows.max(1) as u64)
            .max(1);
        ((4 << 20) / avg).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS as u64) as usize
    })
}

/// A pipeline with one `source`: its listing, its schema, the steps bound to it.
async fn one_input(
    pipeline: &Pipeline,
    fitted: &[StatsEntry],
    required: Option<&str>,
) -> Result<Built> {
    let listing = listing::list(pipeline).await?;
    let schema::Settled {
        schema: full_schema,
        origin: schema_origin,
        strict,
        sampled_bytes,
    } = schema::settle(pipeline, &listing).await?;
    let full_schema = Arc::new(full_schema);
    let (input_schema, steps) = bind::bind_for_input(
        pipeline,
        &full_schema,
        listing.format.random_access(),
        fitted,
        required,
    )?;
    let output_schema = last_schema(&steps, &input_schema);
    let (tasks, unsplit) = tasks::plan_tasks(pipeline, &listing, &steps, &output_schema).await?;
    let (input, objects, compressions) = Input::of_listing(
        None,
        pipeline.source(),
        listing,
        0,
        (input_schema.clone(), schema_origin, strict),
    );
    Ok(Built {
        inputs: vec![input],
        objects,
        compressions,
        input_schema,
        steps,
        tasks,
        unsplit,
        batch_rows: batch_rows(pipeline, sampled_bytes),
        fingerprints: Vec::new(),
    })
}

impl Plan {
    /// Lists the source, settles the schema, binds every step and checks the sink.
    ///
    /// # Errors
    /// [`Error::Plan`] / [`Error::Step`] (exit 2) for anything that stops the pipeline
    /// from running on this input; [`Error::Input`] when the first object cannot be read.
    pub async fn build(pipeline: Pipeline) -> Result<Plan> {
        crate::storage::http::set_max_concurrency(pipeline.run.io_concurrency);
        let (fitted, stats_origin, stats_digest) = match &pipeline.stats_from {
            Some(uri) => {
                let (file, digest) = load_stats(uri, &pipeline).await?;
                (file.steps, Some(uri.clone()), Some(digest))
            }
            None => (Vec::new(), None, None),
        };
        let required = stats_origin.as_deref();
        let built = if pipeline.sources.is_empty() {
            one_input(&pipeline, &fitted, required).await?
        } else {
            sources::inputs(&pipeline, &fitted, required).await?
        };
        let Built {
            inputs,
            objects,
            compressions,
            input_schema,
            steps,
            tasks,
            unsplit,
            batch_rows,
            fingerprints,
        } = built;
        if let Some(from) = &stats_origin
            && fitted.is_empty()
        {
            tracing::warn!("stats_from: {from} holds no statistics");
        }
        let output_schema = last_schema(&steps, &input_schema);
        let classes = match inputs.as_slice() {
            [one] => one.classes.clone(),
            _ => None,
        };
        let file_schema = file_schema(&pipeline, &output_schema, classes.as_deref())?;
        let sink = listing::open_sink_for(&pipeline, &inputs, &objects)?;
        let sequential = steps.iter().any(|s| s.step.needs_global_order());
        let threads = pipeline.run.threads.resolve();
        let pipeline_hash = identity::output_hash(&pipeline, &steps, fingerprints, stats_digest);
        Ok(Plan {
            pipeline_hash,
            pipeline,
            inputs,
            objects,
            compressions,
            input_schema,
            steps,
            output_schema,
            file_schema,
            tasks,
            sink,
            threads,
            sequential,
            in_order: None,
            unsplit,
            batch_rows,
            fitted,
            stats_origin,
            decode_projection: None,
        })
    }

    /// The input object `i` belongs to.
    pub fn input_of(&self, i: usize) -> &Input {
        self.inputs
            .iter()
            .find(|input| input.objects.contains(&i))
            .unwrap_or(&self.inputs[0])
    }

    /// The longest record a decoder holds in this run (see
    /// [`formats::DecodeContext::max_record_bytes`]).
    pub fn max_record_bytes(&self) -> u64 {
        formats::max_record_bytes(self.pipeline.run.memory_limit.get(), self.threads)
    }

    /// The memory a full-pass step's decisions may take (a dedup's first positions
    /// deciding in one pass, its clusters and drop lists settling): a quarter of
    /// `run.memory_limit`, unless the step's own `memory` says otherwise. Past it they
    /// go to disk.
    pub fn step_memory(&self) -> u64 {
        self.pipeline.run.memory_limit.get() / 4
    }

    /// What the shard writer needs: the sink section's settings, the schemas and this
    /// plan's identity (see [`WriterConfig::new`]).
    ///
    /// # Errors
    /// As [`WriterConfig::new`].
    pub fn writer_config(&self, handle: tokio::runtime::Handle) -> Result<WriterConfig> {
        WriterConfig::new(
            &self.pipeline.sink,
            &self.sink,
            Shards {
                output_schema: &self.output_schema,
                file_schema: &self.file_schema,
                pipeline: &self.pipeline.name,
                pipeline_hash: &self.pipeline_hash,
                memory_limit: self.pipeline.run.memory_limit.get(),
                threads: self.threads.max(1),
                vocabulary: self.vocabulary(),
                input_bytes: self.input_bytes(),
            },
            handle,
        )
    }

    /// The largest vocabulary of the pipeline's `tokenize` steps, if it has any.
    pub fn vocabulary(&self) -> Option<u64> {
        self.steps.iter().filter_map(|s| s.step.vocabulary()).max()
    }

    /// Total stored bytes of the input.
    pub fn input_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    /// The input the plan reads when it has one (`source:`), else None.
    pub fn single_input(&self) -> Option<&Input> {
        match self.inputs.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}
