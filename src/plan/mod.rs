//! Spec + listing → what will run: the objects, the schema after every step, the tasks,
//! the sink layout. `kiln validate` builds a plan and stops; `kiln run` executes it.
//!
//! Over 600 lines, and more than one role: `Plan::build` (listing, format detection,
//! inference, binding, tasks, hashing), the stored plan it makes for the sink, adopting
//! a stored plan and fitted statistics. Issue 20 splits it into listing, schema, bind,
//! tasks and identity.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::formats::{
    self, Compression, DecodeContext, ObjectInput, RandomAccess, SourceFormat,
    reader::BlockingObjectReader,
};
use crate::sink::writer::WriterConfig;
use crate::spec::{FormatName, Pipeline, SinkCompression};
use crate::steps::{Kind, Step, types::parse_type};
use crate::storage::{Location, Object, SourceUri};

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
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: Pipeline,
    pub pipeline_hash: String,
    pub source: SourceUri,
    pub objects: Vec<Object>,
    pub compressions: Vec<Compression>,
    pub format_name: FormatName,
    pub format: Arc<dyn SourceFormat>,
    /// The ImageFolder classes of the listing, with `source.labels: folder`.
    pub classes: Option<Arc<formats::files::Classes>>,
    /// Schema of the input as read (only the columns the pipeline uses, for Parquet).
    pub input_schema: SchemaRef,
    pub schema_origin: String,
    pub strict: bool,
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
    /// Why an object larger than `run.task_bytes` runs as one task, when one does.
    pub unsplit: Option<&'static str>,
    /// Rows per batch (`run.batch_rows`, or sized from the sampled rows).
    pub batch_rows: usize,
    /// The statistics the fitted steps are bound with: from `stats_from`, from this
    /// sink's `_kiln/stats.json` (resume), or from this run's fit.
    pub fitted: Vec<crate::sink::StatsEntry>,
    /// Where `fitted` came from (`stats_from`'s sink), for stats.json.
    pub stats_origin: Option<String>,
    /// Columns of `input_schema` the decoder reads (see [`Plan::for_fit`]). None: all.
    pub decode_projection: Option<Vec<usize>>,
}

const MIN_BATCH_ROWS: u64 = 1024;
const MAX_BATCH_ROWS: usize = 8192;

/// The hash that identifies a pipeline's output: everything but `run` and `sink.uri`,
/// which never change the rows or bytes written. (So the same pipeline writes the same
/// bytes into any sink.) `run.on_error` decides whether a task with bad input commits,
/// not what a committed task holds: a task committed under `fail` had nothing to leave
/// out, so a run resumed with `skip` (the usual fix for a failed run) keeps it.
pub fn pipeline_hash(p: &Pipeline) -> String {
    let mut sink = serde_json::to_value(&p.sink).unwrap_or_default();
    if let Some(obj) = sink.as_object_mut() {
        obj.remove("uri");
    }
    let identity = serde_json::json!({
        "version": p.version, "name": p.name, "source": p.source, "steps": p.steps, "sink": sink,
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binds every step to the schema before it. A fitted step finds its statistics in
/// `fitted` by name and occurrence; with `stats_from` (`required`), a fitted step without
/// an entry there is an error, else it is bound to be fitted.
fn bind_steps(
    p: &Pipeline,
    input: &SchemaRef,
    fitted: &[crate::sink::StatsEntry],
    required: Option<&str>,
) -> Result<Vec<PlannedStep>> {
    let mut schema = input.clone();
    let mut out = Vec::with_capacity(p.steps.len());
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, spec) in p.steps.iter().enumerate() {
        let error = |message| Error::Step {
            index: i + 1,
            step: spec.name().to_string(),
            message,
        };
        let occurrence = {
            let n = seen.entry(spec.name()).or_default();
            *n += 1;
            *n
        };
        let mut step = spec.bind(&schema).map_err(error)?;
        if step.kind().needs_fit() {
            let entry = fitted
                .iter()
                .find(|e| e.step == spec.name() && e.occurrence == occurrence);
            match (entry, required) {
                (Some(e), _) => {
                    let stats = serde_json::Value::Object(e.stats.clone());
                    step = spec.bind_fitted(&schema, &stats).map_err(|m| {
                        error(match required {
                            Some(from) => format!("statistics from {from}: {m}"),
                            None => m,
                        })
                    })?;
                }
                (None, Some(from)) => {
                    let have: Vec<String> = fitted
                        .iter()
                        .map(|e| format!("{} #{}", e.step, e.occurrence))
                        .collect();
                    return Err(error(format!(
                        "stats_from: {from} has no statistics for this step (the {} `{}` of \
                         the pipeline); it has: {}. Fit them with a pipeline that has this step",
                        ordinal(occurrence),
                        spec.name(),
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    )));
                }
                (None, None) => {}
            }
        }
        schema = step.output_schema().clone();
        out.push(PlannedStep {
            name: spec.name(),
            step,
        });
    }
    Ok(out)
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `schema` with the `huggingface` metadata `datasets` reads its features from, when
/// it has image columns (the Image feature) or class ids (ClassLabel).
fn with_hf_metadata(schema: &Schema, classes: Option<&formats::files::Classes>) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.remove("huggingface");
    let labels = classes.map(formats::files::Classes::class_labels);
    if let Some(md) = crate::hf::huggingface_metadata(schema, labels.as_ref()) {
        metadata.insert("huggingface".to_string(), md);
    }
    Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
}

fn declared_schema(p: &Pipeline) -> Result<Option<Schema>> {
    let Some(cols) = &p.source.schema else {
        return Ok(None);
    };
    let mut fields = Vec::with_capacity(cols.len());
    for (name, ty) in cols {
        let t = parse_type(ty).map_err(|e| Error::Plan(format!("source.schema.{name}: {e}")))?;
        fields.push(Field::new(name, t, true));
    }
    Ok(Some(Schema::new(fields)))
}

impl Plan {
    /// Lists the source, settles the schema, binds every step and checks the sink.
    ///
    /// # Errors
    /// [`Error::Plan`] / [`Error::Step`] (exit 2) for anything that stops the pipeline
    /// from running on this input; [`Error::Input`] when the first object cannot be read.
    pub async fn build(pipeline: Pipeline) -> Result<Plan> {
        crate::storage::http::set_max_concurrency(pipeline.run.io_concurrency);
        let source = SourceUri::parse(&pipeline.source.uri, &pipeline.storage)?;
        let objects = source.list().await?;
        if objects.is_empty() {
            return Err(Error::Plan(format!(
                "source.uri `{}` matched no objects{}",
                pipeline.source.uri,
                if source.pattern().is_some() {
                    "; check the glob"
                } else {
                    "; check that the path exists"
                }
            )));
        }
        let format_name = match pipeline.source.format {
            Some(f) => f,
            None => formats::format_from_name(objects[0].path.as_ref()).ok_or_else(|| {
                Error::Plan(format!(
                    "cannot tell the format of `{}` from its name; set source.format (jsonl, csv, parquet, text)",
                    objects[0].display
                ))
            })?,
        };
        if pipeline.source.format.is_none()
            && let Some(other) = objects
                .iter()
                .find(|o| formats::format_from_name(o.path.as_ref()) != Some(format_name))
        {
            return Err(Error::Plan(format!(
                "source.uri matches objects of different formats: `{}` and `{}`; narrow the glob or set source.format",
                objects[0].display, other.display
            )));
        }
        let classes = formats::files::Classes::of_source(
            &pipeline.source,
            objects.iter().map(|o| o.display.as_str()),
        )?;
        let format = formats::format_for_source(format_name, &pipeline.source, classes.clone())?;
        let compressions: Vec<Compression> = objects
            .iter()
            .map(|o| Compression::resolve(pipeline.source.compression, o.path.as_ref()))
            .collect();

        let mut sampled_bytes = None;
        let (full_schema, schema_origin, strict) = match (declared_schema(&pipeline)?, format_name)
        {
            (Some(_), FormatName::Text) => {
                return Err(Error::Plan(
                    "source.schema: the text format has a fixed schema (path, line, text)".into(),
                ));
            }
            (Some(_), FormatName::Files) => {
                return Err(Error::Plan(
                    "source.schema: the files format has a fixed schema (path, bytes; label, \
                     label_id with source.labels)"
                        .into(),
                ));
            }
            (Some(s), _) => (s, "source.schema".to_string(), false),
            (None, _) => {
                // The first object with any bytes: an empty one has no rows to infer from.
                // Under skip / dead_letter an object that cannot be read or holds no good
                // record is no evidence of the schema either (decoding leaves it out
                // too): the next one is tried.
                let candidates: Vec<usize> = objects
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.size > 0)
                    .map(|(i, _)| i)
                    .collect();
                let tolerant = pipeline.run.on_error != crate::spec::OnError::Fail;
                let mut found = None;
                let mut passed_over: Vec<String> = Vec::new();
                for &at in candidates.iter().chain(candidates.is_empty().then_some(&0)) {
                    let first = &objects[at];
                    match infer_from(&pipeline, &format, &source, first, compressions[at]).await {
                        Ok((schema, _)) if schema.fields().is_empty() && tolerant => {
                            passed_over
                                .push(format!("{}: no fields in its first records", first.display));
                        }
                        Ok((schema, sampled)) => {
                            found = Some((schema, sampled, first.display.clone()));
                            break;
                        }
                        Err(e @ Error::Input { .. }) if tolerant => {
                            tracing::warn!(
                                "schema not inferred from {}: {e}; trying the next object",
                                first.display
                            );
                            passed_over.push(e.to_string());
                        }
                        Err(e) => return Err(e),
                    }
                }
                let Some((schema, sampled, origin)) = found else {
                    return Err(Error::Plan(format!(
                        "the schema could not be inferred from any object ({}); declare \
                         source.schema",
                        passed_over.join("; ")
                    )));
                };
                if schema.fields().is_empty() {
                    return Err(Error::Plan(format!(
                        "the first records of `{origin}` have no fields (`{{}}`, or the object \
                         is empty), so no column could be inferred; declare source.schema"
                    )));
                }
                sampled_bytes = sampled;
                (schema, origin, true)
            }
        };
        let full_schema = Arc::new(full_schema);

        let (fitted, stats_origin, stats_digest) = match &pipeline.stats_from {
            Some(uri) => {
                let (file, digest) = load_stats(uri, &pipeline).await?;
                (file.steps, Some(uri.clone()), Some(digest))
            }
            None => (Vec::new(), None, None),
        };
        let required = stats_origin.as_deref();

        // Bind once on the full schema to learn which columns are used, then (for
        // formats that can skip columns) bind again on just those.
        let mut steps = bind_steps(&pipeline, &full_schema, &fitted, required)?;
        let mut input_schema = full_schema.clone();
        if format.random_access() {
            let need = columns_read(&steps, &last_schema(&steps, &full_schema));
            let keep: Vec<usize> = (0..full_schema.fields().len())
                .filter(|&i| need.contains(full_schema.field(i).name()))
                .collect();
            if keep.len() < full_schema.fields().len() && !keep.is_empty() {
                input_schema = Arc::new(
                    full_schema
                        .project(&keep)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                );
                steps = bind_steps(&pipeline, &input_schema, &fitted, required)?;
            }
        }
        if let Some(from) = &stats_origin
            && fitted.is_empty()
        {
            tracing::warn!("stats_from: {from} holds no statistics");
        }
        let output_schema = last_schema(&steps, &input_schema);
        let file_schema = file_schema(&pipeline, &output_schema, classes.as_deref())?;

        let sink = crate::storage::open(&pipeline.sink.uri, &pipeline.storage)?;
        // A sink inside the listed prefix would be read back by the next run. (A source
        // that names one object lists nothing else.)
        let single_object = source.pattern().is_none()
            && objects.len() == 1
            && objects[0].path == source.base.prefix;
        if !single_object && sink.is_inside(&source.base) {
            return Err(Error::Plan(format!(
                "sink.uri `{}` lies inside the source `{}`; a later run would read its own output",
                pipeline.sink.uri, pipeline.source.uri
            )));
        }
        // A sink is a folder: a file of that name would fail only at the first write.
        if let Some(local) = sink.identity.strip_prefix("file://") {
            let path = std::path::Path::new(local.trim_end_matches('/'));
            if path.is_file() {
                return Err(Error::Plan(format!(
                    "sink.uri `{}` is an existing file; a sink is a folder — choose another \
                     path, or remove the file",
                    pipeline.sink.uri
                )));
            }
        }

        // Text rows carry their line number, which a slice cannot know: text is cut
        // only when no step and no output column uses `line`.
        let line_used = format_name == FormatName::Text
            && columns_read(&steps, &output_schema).contains("line");
        // Large zstd objects in the seekable format can be cut at their frames: read
        // their seek tables (a range request or two each, a few at a time).
        let task_bytes = pipeline.run.task_bytes.get();
        let framed: Vec<usize> = (0..objects.len())
            .filter(|&i| {
                compressions[i] == Compression::Zstd
                    && objects[i].size > task_bytes.max(MIN_SLICE)
                    && split_rule(&pipeline, format_name, Compression::None, line_used, None)
                        .is_ok()
            })
            .collect();
        let frames: std::collections::HashMap<usize, Vec<u64>> =
            futures::stream::iter(framed.into_iter().map(|i| {
                let store = source.base.store.clone();
                let o = objects[i].clone();
                async move {
                    let f = formats::seekable::frames(store.as_ref(), &o.path, o.size)
                        .await
                        .map_err(|e| Error::store("read the seek table of", &o.display, e))?;
                    Ok::<_, Error>(f.map(|f| (i, f.boundaries())))
                }
            }))
            .buffered(8)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let rule = |i: usize| {
            split_rule(
                &pipeline,
                format_name,
                compressions[i],
                line_used,
                frames.get(&i),
            )
        };
        let tasks = make_tasks(&objects, task_bytes, |i| rule(i).unwrap_or(Cuts::None));
        let unsplit = tasks
            .iter()
            .filter(|t| t.range.is_none() && t.objects.len() == 1)
            .filter(|t| t.bytes > pipeline.run.task_bytes.get())
            .find_map(|t| rule(t.objects.start).err());
        let batch_rows = pipeline.run.batch_rows.unwrap_or_else(|| {
            // About 4 MiB of decoded input per batch: the decoder, the batch and the
            // steps' outputs each hold about that much per task.
            let avg = sampled_bytes
                .map_or(0, |b| b / pipeline.source.infer_rows.max(1) as u64)
                .max(1);
            ((4 << 20) / avg).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS as u64) as usize
        });
        let sequential = steps.iter().any(|s| s.step.needs_global_order());
        let threads = pipeline.run.threads.resolve();
        // Files a step reads (a tokenizer) are part of what the output is: a changed
        // tokenizer.json must not resume into a sink written with the old one.
        let mut files: Vec<String> = steps.iter().filter_map(|s| s.step.fingerprint()).collect();
        // So are statistics from another sink (their content, not where they live).
        files.extend(stats_digest);
        let pipeline_hash = if files.is_empty() {
            pipeline_hash(&pipeline)
        } else {
            let digest =
                Sha256::digest(format!("{}|{}", pipeline_hash(&pipeline), files.join("|")));
            digest.iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(Plan {
            classes,
            pipeline_hash,
            pipeline,
            source,
            objects,
            compressions,
            format_name,
            format,
            input_schema,
            schema_origin,
            strict,
            steps,
            output_schema,
            file_schema,
            tasks,
            sink,
            threads,
            sequential,
            unsplit,
            batch_rows,
            fitted,
            stats_origin,
            decode_projection: None,
        })
    }

    /// The plan a fit pass of steps `from..=to` runs: the steps up to `to` (the group's
    /// own step values, which hold what they observe), and for CSV only the columns
    /// those steps read decoded (a fit of five numeric columns skips parsing the text
    /// and timestamps) when `project`.
    ///
    /// # Errors
    /// As binding the steps.
    pub fn for_fit(&self, from: usize, to: usize, project: bool) -> Result<Plan> {
        let mut p = self.clone();
        p.steps.truncate(to + 1);
        if !project || self.format_name != FormatName::Csv || self.decode_projection.is_some() {
            return Ok(p);
        }
        let mut need: BTreeSet<String> = BTreeSet::new();
        for s in &self.steps[from..=to] {
            match s.step.kind() {
                Kind::Fit(f) => need.extend(f.fit_columns().0),
                _ => return Ok(p),
            }
        }
        for s in self.steps[..from].iter().rev() {
            need = s.step.required_input(&need);
        }
        let keep: Vec<usize> = (0..self.input_schema.fields().len())
            .filter(|&i| need.contains(self.input_schema.field(i).name()))
            .collect();
        if keep.is_empty() || keep.len() == self.input_schema.fields().len() {
            return Ok(p);
        }
        let projected = Arc::new(
            self.input_schema
                .project(&keep)
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        let mut prefix = self.pipeline.clone();
        prefix.steps.truncate(from);
        let mut steps = bind_steps(
            &prefix,
            &projected,
            &self.fitted,
            self.stats_origin.as_deref(),
        )?;
        steps.extend(self.steps[from..=to].iter().cloned());
        p.steps = steps;
        p.decode_projection = Some(keep);
        Ok(p)
    }

    /// The longest record a decoder holds in this run (see
    /// [`DecodeContext::max_record_bytes`]).
    pub fn max_record_bytes(&self) -> u64 {
        formats::max_record_bytes(self.pipeline.run.memory_limit.get(), self.threads)
    }

    /// True while a fitted step has no statistics yet.
    pub fn needs_fit(&self) -> bool {
        self.steps.iter().any(|s| s.step.kind().needs_fit())
    }

    /// The next steps to fit in one pass: the first step that needs a fit and the
    /// fitted steps right after it whose fits read no column an earlier one of them
    /// writes (so observing them all on the batch that reaches the first is exact).
    pub fn fit_group(&self) -> Option<(usize, usize)> {
        let from = self.steps.iter().position(|s| s.step.kind().needs_fit())?;
        let Kind::Fit(first) = self.steps[from].step.kind() else {
            return None;
        };
        let (_, mut written) = first.fit_columns();
        let mut to = from;
        for s in &self.steps[from + 1..] {
            let Kind::Fit(f) = s.step.kind() else {
                break;
            };
            let (reads, writes) = f.fit_columns();
            if reads.iter().any(|c| written.contains(c)) {
                break;
            }
            written.extend(writes);
            to += 1;
        }
        Some((from, to))
    }

    /// Binds the steps again with `self.fitted` (after a fit, or statistics read back
    /// for a resumed run), and follows the schemas they now make.
    ///
    /// # Errors
    /// As [`Plan::build`]'s binding.
    pub fn rebind(&mut self) -> Result<()> {
        self.steps = bind_steps(
            &self.pipeline,
            &self.input_schema,
            &self.fitted,
            self.stats_origin.as_deref(),
        )?;
        self.output_schema = last_schema(&self.steps, &self.input_schema);
        self.file_schema =
            file_schema(&self.pipeline, &self.output_schema, self.classes.as_deref())?;
        self.sequential = self.steps.iter().any(|s| s.step.needs_global_order());
        Ok(())
    }

    /// Parquet writer settings from the sink section.
    pub fn writer_properties(&self) -> Result<WriterProperties> {
        let s = &self.pipeline.sink;
        let compression = match s.compression {
            SinkCompression::Zstd => PqCompression::ZSTD(
                ZstdLevel::try_new(s.compression_level.unwrap_or(3))
                    .map_err(|e| Error::Plan(format!("sink.compression_level: {e}")))?,
            ),
            SinkCompression::Snappy => PqCompression::SNAPPY,
            SinkCompression::Lz4 => PqCompression::LZ4_RAW,
            SinkCompression::None => PqCompression::UNCOMPRESSED,
        };
        // Open pages and dictionaries are what the writer's size estimate over-counts
        // (see `TaskWriter`): keep them small next to max_bytes so shards land near it.
        let page = (s.max_bytes.get() / 64).clamp(64 << 10, 1 << 20) as usize;
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_data_page_size_limit(page)
            .set_dictionary_page_size_limit(page)
            .set_max_row_group_row_count(Some(s.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes() as usize))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("kiln version {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("kiln.pipeline".to_string(), self.pipeline.name.clone()),
                KeyValue::new("kiln.pipeline_hash".to_string(), self.pipeline_hash.clone()),
            ]))
            .build())
    }

    /// Buffered bytes that close a row group: `sink.row_group_bytes`, but never more
    /// than a quarter of each thread's share of `run.memory_limit`.
    pub fn row_group_bytes(&self) -> u64 {
        let share = self.pipeline.run.memory_limit.get() / self.threads.max(1) as u64 / 4;
        self.pipeline
            .sink
            .row_group_bytes
            .get()
            .min(share)
            .max(1 << 20)
    }

    /// What the shard writer needs.
    pub fn writer_config(&self, handle: tokio::runtime::Handle) -> Result<WriterConfig> {
        let partition_cols = self
            .pipeline
            .sink
            .partition_by
            .iter()
            .map(|n| self.output_schema.index_of(n).map(|i| (i, n.clone())))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let file_cols = (0..self.output_schema.fields().len())
            .filter(|i| !partition_cols.iter().any(|(p, _)| p == i))
            .collect();
        Ok(WriterConfig {
            store: self.sink.store.clone(),
            root: self.sink.prefix.clone(),
            display: self.sink.display.clone(),
            file_schema: self.file_schema.clone(),
            partition_cols,
            file_cols,
            props: self.writer_properties()?,
            max_rows: self.pipeline.sink.max_rows,
            max_bytes: self.pipeline.sink.max_bytes.get(),
            handle,
        })
    }

    /// This plan as stored in the sink for `workers` workers.
    /// The pipeline as stored in the sink: JSON, secrets redacted.
    pub fn pipeline_json(&self) -> serde_json::Value {
        let mut p = serde_json::to_value(&self.pipeline).unwrap_or_default();
        crate::secrets::redact_json(&mut p);
        p
    }

    pub fn stored(&self, workers: usize) -> crate::sink::StoredPlan {
        use crate::sink::{ColumnRecord, InputRecord, StoredPlan, StoredTask};
        StoredPlan {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.pipeline.name.clone(),
            pipeline_hash: self.pipeline_hash.clone(),
            pipeline: self.pipeline_json(),
            created_at: crate::sink::now_rfc3339(),
            workers,
            schema: self
                .file_schema
                .fields()
                .iter()
                .map(|f| ColumnRecord {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            partition_by: self.pipeline.sink.partition_by.clone(),
            objects: self
                .objects
                .iter()
                .map(|o| InputRecord {
                    path: o.path.to_string(),
                    bytes: o.size,
                })
                .collect(),
            tasks: self
                .tasks
                .iter()
                .map(|t| StoredTask {
                    start: t.objects.start,
                    end: t.objects.end,
                    bytes: t.bytes,
                    range: t.range.as_ref().map(|r| [r.start, r.end]),
                })
                .collect(),
            features: crate::hf::features(
                &self.file_schema,
                self.classes.as_ref().map(|c| c.class_labels()).as_ref(),
            ),
            token_column: self
                .file_schema
                .fields()
                .iter()
                .find(|f| crate::sink::columns::is_token_column(f.data_type()))
                .map(|f| f.name().clone()),
        }
    }

    /// Follows a stored plan: its listing and its tasks replace this run's (objects
    /// added since it was stored are not read; objects it names must still be there).
    ///
    /// # Errors
    /// [`Error::Plan`] when the stored plan is another pipeline's or does not fit.
    pub fn adopt(&mut self, stored: &crate::sink::StoredPlan) -> Result<()> {
        if stored.pipeline_hash != self.pipeline_hash {
            return Err(Error::Plan(format!(
                "{} holds the plan of another pipeline ({}); choose another sink or pass --overwrite",
                self.sink.display_child(crate::sink::PLAN),
                stored.name
            )));
        }
        let base = &self.source.base;
        self.objects = stored
            .objects
            .iter()
            .map(|o| {
                let path = object_store::path::Path::parse(&o.path)
                    .unwrap_or_else(|_| object_store::path::Path::from(o.path.as_str()));
                let rel = base.relative(&path);
                let display = if rel.is_empty() || path == base.prefix {
                    base.display.trim_end_matches('/').to_string()
                } else {
                    base.display_child(&rel)
                };
                Object {
                    path,
                    size: o.bytes,
                    display,
                }
            })
            .collect();
        self.compressions = self
            .objects
            .iter()
            .map(|o| Compression::resolve(self.pipeline.source.compression, o.path.as_ref()))
            .collect();
        if self.classes.is_some() {
            // Labels come from the stored listing, like everything else.
            self.classes = formats::files::Classes::of_source(
                &self.pipeline.source,
                self.objects.iter().map(|o| o.display.as_str()),
            )?;
            self.file_schema = with_hf_metadata(&self.file_schema, self.classes.as_deref());
            self.format = formats::format_for_source(
                self.format_name,
                &self.pipeline.source,
                self.classes.clone(),
            )?;
        }
        if stored
            .tasks
            .iter()
            .any(|t| t.start > t.end || t.end > self.objects.len())
        {
            return Err(Error::Plan(format!(
                "{} is corrupt (a task outside the listing); delete it to plan again",
                self.sink.display_child(crate::sink::PLAN)
            )));
        }
        self.tasks = stored
            .tasks
            .iter()
            .enumerate()
            .map(|(id, t)| Task {
                id,
                objects: t.start..t.end,
                bytes: t.bytes,
                range: t.range.map(|[a, b]| a..b),
            })
            .collect();
        Ok(())
    }

    /// Total stored bytes of the input.
    pub fn input_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// The schema of the files: the output without its partition columns.
/// The schema inferred from the first `source.infer_rows` records of `first`, and the
/// bytes those records took (to size tasks).
async fn infer_from(
    pipeline: &Pipeline,
    format: &Arc<dyn SourceFormat>,
    source: &SourceUri,
    first: &Object,
    compression: Compression,
) -> Result<(Schema, Option<u64>)> {
    let cx = DecodeContext {
        schema: Arc::new(Schema::empty()),
        schema_origin: first.display.clone(),
        strict: true,
        object: first.display.clone(),
        batch_rows: MAX_BATCH_ROWS,
        csv: pipeline.source.csv.clone(),
        projection: None,
        // Under skip / dead_letter, malformed records among those sampled
        // are passed over (decoding leaves them out too).
        on_error: pipeline.run.on_error,
        on_mismatch: crate::spec::OnSchemaMismatch::Fail,
        max_record_bytes: super::formats::max_record_bytes(
            pipeline.run.memory_limit.get(),
            pipeline.run.threads.resolve(),
        ),
        slice: None,
    };
    let (f, obj, c, rows) = (
        format.clone(),
        first.clone(),
        compression,
        pipeline.source.infer_rows,
    );
    let store = source.base.store.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(Schema, Option<u64>)> {
        if f.random_access() {
            let ra = RandomAccess {
                store,
                path: obj.path.clone(),
                size: obj.size,
                handle,
                stats: None,
            };
            // The sample's size, as the streaming formats measure it.
            let (schema, row_bytes) =
                f.infer_schema_and_row_bytes(ObjectInput::Random(ra), rows, &cx)?;
            Ok((schema, row_bytes.map(|b| b * rows as u64)))
        } else {
            let raw = BlockingObjectReader::new(store, obj.path.clone(), obj.size, handle);
            let input =
                formats::decompress(c, raw).map_err(|e| Error::input(&obj.display, None, e))?;
            let counted = formats::reader::Counting::new(input);
            let bytes = counted.counter();
            let schema = f.infer_schema(ObjectInput::Stream(Box::new(counted)), rows, &cx)?;
            Ok((
                schema,
                Some(bytes.load(std::sync::atomic::Ordering::Relaxed)),
            ))
        }
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

fn file_schema(
    pipeline: &Pipeline,
    output_schema: &SchemaRef,
    classes: Option<&formats::files::Classes>,
) -> Result<SchemaRef> {
    let mut file_fields = Vec::new();
    for name in &pipeline.sink.partition_by {
        output_schema.index_of(name).map_err(|_| {
            Error::Plan(format!(
                "sink.partition_by: {}",
                crate::steps::unknown_column(output_schema, name)
            ))
        })?;
    }
    for f in output_schema.fields() {
        if !pipeline.sink.partition_by.contains(f.name()) {
            file_fields.push(f.clone());
        }
    }
    if file_fields.is_empty() {
        return Err(Error::Plan(
            "sink.partition_by: every column is a partition column; the files would be empty"
                .into(),
        ));
    }
    for f in &file_fields {
        if let Some(path) = empty_struct(f.name(), f.data_type()) {
            return Err(Error::Plan(format!(
                "column `{path}` is a struct with no fields (`{{}}` in the records the schema \
                 was inferred from), which Parquet cannot store; drop it (`- drop: [{}]`) or \
                 declare its fields in source.schema",
                f.name()
            )));
        }
    }
    Ok(with_hf_metadata(&Schema::new(file_fields), classes))
}

/// The path of the first struct without fields inside a column of type `t`, if any.
fn empty_struct(path: &str, t: &arrow::datatypes::DataType) -> Option<String> {
    use arrow::datatypes::DataType;
    match t {
        DataType::Struct(fields) if fields.is_empty() => Some(path.to_string()),
        DataType::Struct(fields) => fields
            .iter()
            .find_map(|f| empty_struct(&format!("{path}.{}", f.name()), f.data_type())),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            empty_struct(&format!("{path}[]"), f.data_type())
        }
        DataType::Map(f, _) => empty_struct(path, f.data_type()),
        _ => None,
    }
}

/// Reads `stats_from`'s `_kiln/stats.json`, and the SHA-256 of its content.
async fn load_stats(uri: &str, pipeline: &Pipeline) -> Result<(crate::sink::StatsFile, String)> {
    let location = crate::storage::open(uri, &pipeline.storage)?;
    let shown = location.display_child(crate::sink::STATS);
    let file = crate::sink::read_stats(&location).await?.ok_or_else(|| {
        Error::Plan(format!(
            "stats_from: there is no {shown}; point it at the sink of a run whose pipeline \
             fitted the statistics (one with standardize, one_hot, fill_null: mean, ...)"
        ))
    })?;
    let text = serde_json::to_string(&file.steps).map_err(|e| Error::Internal(e.to_string()))?;
    let digest = Sha256::digest(text.as_bytes());
    Ok((file, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The input columns that `steps` read or pass on to `output`.
fn columns_read(steps: &[PlannedStep], output: &SchemaRef) -> BTreeSet<String> {
    let mut need: BTreeSet<String> = output.fields().iter().map(|f| f.name().clone()).collect();
    for s in steps.iter().rev() {
        need = s.step.required_input(&need);
    }
    need
}

fn last_schema(steps: &[PlannedStep], input: &SchemaRef) -> SchemaRef {
    steps
        .last()
        .map_or_else(|| input.clone(), |s| s.step.output_schema().clone())
}

/// Whether an object of this format and compression can be cut into tasks, or why not.
/// `frames`: the frame starts of a seekable zstd object.
fn split_rule(
    pipeline: &Pipeline,
    format: FormatName,
    compression: Compression,
    line_used: bool,
    frames: Option<&Vec<u64>>,
) -> std::result::Result<Cuts, &'static str> {
    if !pipeline.source.split {
        return Err("source.split is false");
    }
    match format {
        // Row groups are found from the footer, whatever codec the pages use.
        FormatName::Parquet => Ok(Cuts::Anywhere),
        FormatName::Files => Err("the files format makes one row of each object"),
        FormatName::Text if line_used => Err(
            "text rows number their lines from the start of the object; drop the `line` column to split",
        ),
        FormatName::Jsonl | FormatName::Csv | FormatName::Text => match (compression, frames) {
            (Compression::None, _) => Ok(Cuts::Anywhere),
            (Compression::Zstd, Some(starts)) => Ok(Cuts::At(starts.clone())),
            (Compression::Zstd, None) => Err(
                "a zstd stream without a seek table must be read from its start; write it in \
                 zstd's seekable format to split it",
            ),
            (Compression::Gzip, _) => Err("gzip streams must be read from the start"),
        },
    }
}

/// Where an object larger than `run.task_bytes` may be cut into tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cuts {
    /// Not at all: one task.
    None,
    /// At any byte (the slice finds its first record itself).
    Anywhere,
    /// Only at these offsets (the frames of a seekable zstd object).
    At(Vec<u64>),
}

/// The smallest slice of an object worth a task (and a request) of its own.
pub const MIN_SLICE: u64 = 4 << 10;

/// Groups consecutive objects into tasks of about `task_bytes` stored bytes. An object
/// larger than that is cut into slices of `task_bytes` when `splittable(i)` says its
/// records can be found from any offset (see [`split_rule`]), so one large object
/// spreads over threads and workers.
pub fn make_tasks(
    objects: &[Object],
    task_bytes: u64,
    splittable: impl Fn(usize) -> Cuts,
) -> Vec<Task> {
    let task_bytes = task_bytes.max(1);
    let mut tasks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    let flush = |tasks: &mut Vec<Task>, start: usize, end: usize, bytes: u64| {
        if start < end {
            tasks.push(Task {
                id: tasks.len(),
                objects: start..end,
                bytes,
                range: None,
            });
        }
    };
    for (i, o) in objects.iter().enumerate() {
        let cuts = if o.size > task_bytes.max(MIN_SLICE) {
            splittable(i)
        } else {
            Cuts::None
        };
        if cuts != Cuts::None {
            flush(&mut tasks, start, i, bytes);
            let slice = task_bytes.max(MIN_SLICE);
            let mut push = |at: u64, end: u64| {
                tasks.push(Task {
                    id: tasks.len(),
                    objects: i..i + 1,
                    bytes: end - at,
                    range: Some(at..end),
                });
            };
            match cuts {
                Cuts::Anywhere => {
                    let mut at = 0;
                    while at < o.size {
                        let end = (at + slice).min(o.size);
                        push(at, end);
                        at = end;
                    }
                }
                Cuts::At(points) => {
                    // Whole frames of about `slice` bytes; the last slice runs to the
                    // object's end (past its last frame: the seek table).
                    let mut at = 0;
                    for &p in points.iter().filter(|&&p| p > 0 && p < o.size) {
                        if p - at >= slice {
                            push(at, p);
                            at = p;
                        }
                    }
                    push(at, o.size);
                }
                Cuts::None => {}
            }
            (start, bytes) = (i + 1, 0);
            continue;
        }
        if i > start && bytes + o.size > task_bytes {
            flush(&mut tasks, start, i, bytes);
            (start, bytes) = (i, 0);
        }
        bytes += o.size;
    }
    flush(&mut tasks, start, objects.len(), bytes);
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;

    #[test]
    fn tasks_group_consecutive_objects_by_bytes() {
        let k = MIN_SLICE;
        let objs: Vec<Object> = [40 * k, 40 * k, 40 * k, 200 * k, 10 * k]
            .iter()
            .enumerate()
            .map(|(i, &size)| Object {
                path: Path::from(format!("o{i}")),
                size,
                display: format!("o{i}"),
            })
            .collect();
        let tasks = make_tasks(&objs, 100 * k, |_| Cuts::None);
        let ranges: Vec<_> = tasks.iter().map(|t| t.objects.clone()).collect();
        assert_eq!(ranges, [0..2, 2..3, 3..4, 4..5]);
        // The 200-byte object, splittable, becomes two slices.
        let tasks = make_tasks(&objs, 100 * k, |i| {
            if i == 3 { Cuts::Anywhere } else { Cuts::None }
        });
        let parts: Vec<_> = tasks
            .iter()
            .map(|t| (t.objects.clone(), t.range.clone()))
            .collect();
        assert_eq!(
            parts,
            [
                (0..2, None),
                (2..3, None),
                (3..4, Some(0..100 * k)),
                (3..4, Some(100 * k..200 * k)),
                (4..5, None)
            ]
        );
        // Frames: cut only at their starts, whole frames of at least a slice each.
        let tasks = make_tasks(&objs, 100 * k, |i| {
            if i == 3 {
                Cuts::At(vec![0, 30 * k, 90 * k, 120 * k, 150 * k, 190 * k])
            } else {
                Cuts::None
            }
        });
        let slices: Vec<_> = tasks.iter().filter_map(|t| t.range.clone()).collect();
        assert_eq!(slices, [0..120 * k, 120 * k..200 * k]);
    }
}
