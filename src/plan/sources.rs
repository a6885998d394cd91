//! A pipeline of several named inputs (`sources:`): each input listed, its schema
//! settled and its own steps bound as if it were a pipeline of its own
//! ([`Pipeline::for_input`]); what they make must agree, and becomes, with a `source`
//! column naming the input, the schema the pipeline's steps are bound to. The inputs'
//! objects and tasks follow one another in the order of their names.
//!
//! An input's own steps run where its objects decode: its format is wrapped
//! ([`FromSource`]) so that every batch it decodes, on whatever thread decodes it,
//! leaves through those steps, gains the `source` column and has the columns in the
//! pipeline's order. The runtime then sees one input schema, as for `source:`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::bind::{bind_for_input, bind_steps, last_schema};
use super::{Built, Input, PlannedStep, Task, batch_rows, listing, schema, tasks};
use crate::error::{Error, Result};
use crate::formats::{DecodeContext, Decoded, Emit, EmitPiece, ObjectInput, Piece, SourceFormat};
use crate::sink::records::StatsEntry;
use crate::spec::{Pipeline, SOURCE_COLUMN};
use crate::steps::StepContext;

/// Lists and binds every input of a `sources:` pipeline, then binds the pipeline's steps
/// to what they make.
pub(super) async fn inputs(
    pipeline: &Pipeline,
    fitted: &[StatsEntry],
    required: Option<&str>,
) -> Result<Built> {
    let mut built = Built {
        inputs: Vec::new(),
        objects: Vec::new(),
        compressions: Vec::new(),
        input_schema: Arc::new(Schema::empty()),
        steps: Vec::new(),
        tasks: Vec::new(),
        unsplit: None,
        // The smallest of the inputs' (there is at least one: `load` checks).
        batch_rows: usize::MAX,
        fingerprints: Vec::new(),
    };
    let mut made: Vec<(String, SchemaRef)> = Vec::new();
    let mut owns: Vec<Vec<PlannedStep>> = Vec::new();
    for (name, spec) in &pipeline.sources {
        let at = format!("sources.{name}");
        let own = pipeline.for_input(spec);
        let listing = listing::list(&own).await.map_err(|e| in_input(&at, e))?;
        let settled = schema::settle(&own, &listing)
            .await
            .map_err(|e| in_input(&at, e))?;
        let full = Arc::new(settled.schema);
        let (schema, steps) =
            bind_for_input(&own, &full, listing.format.random_access(), &[], None)
                .map_err(|e| in_input(&at, e))?;
        for (i, s) in steps.iter().enumerate() {
            if s.step.kind().needs_pass() || s.step.needs_global_order() || !s.step.batch_local() {
                return Err(Error::Plan(format!(
                    "{at}.steps: step {} `{}` needs more than one batch at a time (a whole \
                     pass, the input's order, or a count across batches); an input's own \
                     steps map each batch on its own — put it in the pipeline's `steps`, \
                     where every input's rows arrive",
                    i + 1,
                    s.name
                )));
            }
        }
        let out = last_schema(&steps, &schema);
        if out.index_of(SOURCE_COLUMN).is_ok() {
            return Err(Error::Plan(format!(
                "{at}: its rows already have a `{SOURCE_COLUMN}` column, the one kiln adds \
                 to name each row's input; rename or drop it in {at}.steps"
            )));
        }
        built
            .fingerprints
            .extend(steps.iter().filter_map(|s| s.step.fingerprint()));
        let (tasks, unsplit) = tasks::plan_tasks(&own, &listing, &steps, &out)
            .await
            .map_err(|e| in_input(&at, e))?;
        let offset = built.objects.len();
        let first_task = built.tasks.len();
        built.tasks.extend(tasks.into_iter().map(|t| Task {
            id: first_task + t.id,
            objects: t.objects.start + offset..t.objects.end + offset,
            ..t
        }));
        built.unsplit = built.unsplit.or(unsplit);
        built.batch_rows = built
            .batch_rows
            .min(batch_rows(&own, settled.sampled_bytes));
        made.push((name.clone(), out.clone()));
        // Its format is wrapped below, once the pipeline's input schema is known.
        let (input, objects, compressions) = Input::of_listing(
            Some(name.clone()),
            spec,
            listing,
            offset,
            (schema, settled.origin, settled.strict),
        );
        built.inputs.push(input);
        built.objects.extend(objects);
        built.compressions.extend(compressions);
        owns.push(steps);
    }
    let input_schema = agree(&made)?;
    for (input, own) in built.inputs.iter_mut().zip(owns) {
        let name = input.name.clone().unwrap_or_default();
        let out = last_schema(&own, &input.schema);
        let order = input_schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == SOURCE_COLUMN {
                    Ok(None)
                } else {
                    out.index_of(f.name())
                        .map(Some)
                        .map_err(|e| Error::Internal(e.to_string()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        input.format = Arc::new(FromSource {
            inner: input.format.clone(),
            adapter: Arc::new(Adapter {
                name,
                steps: own,
                order,
                schema: input_schema.clone(),
            }),
        });
    }
    built.steps = bind_steps(pipeline, &input_schema, fitted, required)?;
    built.input_schema = input_schema;
    Ok(built)
}

/// The error of planning one input, saying which.
fn in_input(at: &str, e: Error) -> Error {
    match e {
        Error::Plan(m) => Error::Plan(format!("{at}: {m}")),
        Error::Step {
            index,
            step,
            message,
        } => Error::Plan(format!("{at}.steps: step {index} `{step}`: {message}")),
        other => other,
    }
}

/// The pipeline's input schema: the columns every input makes (the same names and
/// types, in the first input's order), then `source`. A column nullable in one input
/// is nullable.
fn agree(made: &[(String, SchemaRef)]) -> Result<SchemaRef> {
    let Some((first, schema)) = made.first() else {
        return Err(Error::Plan("sources: name at least one input".into()));
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, other) in &made[1..] {
        let names = |s: &SchemaRef| {
            s.fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (a, b) = (names(schema), names(other));
        if a != b {
            let only = |x: &std::collections::BTreeSet<String>,
                        y: &std::collections::BTreeSet<String>| {
                x.difference(y).cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(Error::Plan(format!(
                "sources: `{first}` and `{name}` make different columns (only in `{first}`: \
                 [{}]; only in `{name}`: [{}]); bring every input to the same columns with \
                 its own steps (`select`, `rename`, `derive`)",
                only(&a, &b),
                only(&b, &a)
            )));
        }
        for f in &mut fields {
            let Ok(g) = other.field_with_name(f.name()) else {
                continue;
            };
            if g.data_type() != f.data_type() {
                return Err(Error::Plan(format!(
                    "sources: column `{}` is {} in `{first}` and {} in `{name}`; make them \
                     one type with a `cast` in an input's steps",
                    f.name(),
                    f.data_type(),
                    g.data_type()
                )));
            }
            if g.is_nullable() {
                f.set_nullable(true);
            }
        }
    }
    fields.push(Field::new(SOURCE_COLUMN, DataType::Utf8, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// An input's format, decoding to the pipeline's input schema: its own steps applied
/// to each batch, the `source` column added, the columns in the pipeline's order.
#[derive(Debug)]
struct FromSource {
    inner: Arc<dyn SourceFormat>,
    adapter: Arc<Adapter>,
}

/// What [`FromSource`] does to each batch.
#[derive(Debug)]
struct Adapter {
    name: String,
    steps: Vec<PlannedStep>,
    /// For each column of `schema`: its index in what the steps make, or None for
    /// `source`.
    order: Vec<Option<usize>>,
    schema: SchemaRef,
}

impl Adapter {
    fn adapt(&self, d: Decoded, object: &str) -> Result<Decoded> {
        let Decoded::Batch(mut batch) = d else {
            return Ok(d);
        };
        for (i, s) in self.steps.iter().enumerate() {
            let mut cx = StepContext::default();
            batch = s.step.apply(batch, &mut cx).map_err(|e| {
                Error::step_failed(
                    object,
                    i,
                    &format!("{} (sources.{})", s.name, self.name),
                    None,
                    e,
                )
            })?;
        }
        let n = batch.num_rows();
        let name: ArrayRef = Arc::new(StringArray::from(vec![self.name.as_str(); n]));
        let columns: Vec<ArrayRef> = self
            .order
            .iter()
            .map(|o| match o {
                Some(i) => batch.column(*i).clone(),
                None => name.clone(),
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Decoded::Batch)
            .map_err(|e| Error::Internal(format!("sources.{}: {e}", self.name)))
    }
}

impl SourceFormat for FromSource {
    fn random_access(&self) -> bool {
        self.inner.random_access()
    }

    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema> {
        self.inner.infer_schema(input, rows, cx)
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let object = cx.object.clone();
        self.inner
            .decode(input, cx, &mut |d| emit(self.adapter.adapt(d, &object)?))
    }

    fn frames(&self) -> bool {
        self.inner.frames()
    }

    fn frame(
        &self,
        input: ObjectInput<'_>,
        cx: &Arc<DecodeContext>,
        emit: &mut EmitPiece<'_>,
    ) -> Result<()> {
        self.inner.frame(input, cx, &mut |piece: Piece| {
            let me = self.adapter.clone();
            let object = cx.object.clone();
            emit(Piece::new(piece.bytes, move || {
                let (decoded, ended) = piece.run();
                let mut out = Vec::with_capacity(decoded.len());
                for d in decoded {
                    match me.adapt(d, &object) {
                        Ok(d) => out.push(d),
                        Err(e) => return (out, Err(e)),
                    }
                }
                (out, ended)
            }))
        })
    }
}
