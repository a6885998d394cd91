//! Tabular feature steps: what scikit-learn's preprocessors, tf.Transform and Ray Data's
//! preprocessors do, on Arrow batches.
//!
//! Stateless transforms (`clip` with bounds, `log1p`, `bucketize` with boundaries,
//! `hash_bucket`, `fill_null` with constants) map each batch on its own. The others
//! are **fitted**: bound without statistics, such a step [`needs a
//! fit`](super::Kind::Fit); the runtime runs a full pass in which the batches
//! reaching it go to a [`Fitter`] (running moments, a t-digest for quantiles, value
//! counts for vocabularies, each per task and merged in task order so the result never
//! depends on scheduling), asks it for its statistics as JSON, writes them to the sink's
//! `_kiln/stats.json`, and binds the step again *with* them. The same binding takes
//! statistics from another sink's `stats_from`, which is how statistics fitted on
//! training data are applied to validation and test data without leakage.
//!
//! The rooms: `fit.rs` is the fit side every fitted step shares (accumulators, the
//! fitter, stored column statistics); `vocab.rs` the vocabularies of `one_hot` and
//! `ordinal`; one file per step. This file holds what binding and applying share: the
//! macros that write a fitted step's `Step`/`Fitted` methods, column checks and
//! conversions, and the [`Layout`] of transformed columns.

/// The `Step` methods of a fitted tabular step with a `fit: Fit<_>` field: its kind (a
/// fit until bound with statistics), and for a step transforming `self.opts.columns`
/// (`columns`) the columns it reads. The step implements [`Fitted`] too.
macro_rules! delegate_fit {
    () => {
        fn kind(&self) -> crate::steps::Kind<'_> {
            if self.fit.needs_fit() {
                crate::steps::Kind::Fit(self)
            } else {
                crate::steps::Kind::Map
            }
        }
    };
    (columns) => {
        delegate_fit!();

        fn required_input(
            &self,
            downstream: &std::collections::BTreeSet<String>,
        ) -> std::collections::BTreeSet<String> {
            let mut need = downstream.clone();
            need.extend(self.opts.columns.iter().cloned());
            need
        }
    };
}

/// The `StepOptions::bind` and `bind_fitted` of a vocabulary step's options (`one_hot`,
/// `ordinal`): fields `columns`, `vocabulary`, `max_distinct` and a `build(input, fit)`.
macro_rules! vocabulary_binding {
    () => {
        fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
            super::vocab::bind_with(
                &self.columns,
                &self.vocabulary,
                self.max_distinct,
                None,
                |fit| self.build(input, fit),
            )
        }

        fn bind_fitted(
            &self,
            input: &SchemaRef,
            stats: &serde_json::Value,
        ) -> Result<Arc<dyn Step>, String> {
            super::vocab::bind_with(
                &self.columns,
                &self.vocabulary,
                self.max_distinct,
                Some(stats),
                |fit| self.build(input, fit),
            )
        }
    };
}

/// The [`Fitted`] methods of a step transforming `self.opts.columns` in place or beside
/// them with `self.opts.suffix`: its fitter and the columns it writes.
macro_rules! fitted_columns {
    () => {
        fn fitter(&self) -> Result<&super::Fitter, StepError> {
            self.fit.fitter()
        }

        fn writes(&self) -> std::collections::BTreeSet<String> {
            self.opts
                .columns
                .iter()
                .map(|c| super::out_name(c, &self.opts.suffix))
                .collect()
        }
    };
}

pub mod bucketize;
pub mod clip;
pub mod fill_null;
mod fit;
mod fit_wire;
pub mod hash_bucket;
pub mod log1p;
pub mod min_max;
pub mod one_hot;
pub mod ordinal;
pub mod standardize;
mod vocab;

pub use fit::*;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

/// The index of numeric column `name`, or why it cannot be used.
pub(crate) fn numeric_column(schema: &SchemaRef, name: &str, step: &str) -> Result<usize, String> {
    let i = super::column_index(schema, name)?;
    let t = schema.field(i).data_type();
    if t.is_numeric() {
        Ok(i)
    } else {
        Err(format!(
            "column `{name}` is {t}; {step} needs numbers (cast it first, e.g. \
             `cast: {{ {name}: float64 }}`)"
        ))
    }
}

/// The index of a column a vocabulary can count (strings, integers, booleans).
pub(crate) fn categorical_column(
    schema: &SchemaRef,
    name: &str,
    step: &str,
) -> Result<usize, String> {
    let i = super::column_index(schema, name)?;
    let t = schema.field(i).data_type();
    let ok = matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
    ) || t.is_integer()
        || matches!(t, DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8);
    if ok {
        Ok(i)
    } else {
        Err(format!(
            "column `{name}` is {t}; {step} takes strings, integers or booleans"
        ))
    }
}

/// A numeric column as float64 (a no-op for float64).
pub(crate) fn to_f64(a: &ArrayRef) -> Result<Float64Array, String> {
    if let Some(f) = a.as_primitive_opt::<Float64Type>() {
        return Ok(f.clone());
    }
    let c = arrow::compute::cast_with_options(a, &DataType::Float64, &CastOptions::default())
        .map_err(|e| format!("cannot read {} as float64: {e}", a.data_type()))?;
    Ok(c.as_primitive::<Float64Type>().clone())
}

/// A categorical column as utf8: its values' text form, which is what vocabularies hold.
pub(crate) fn as_strings(a: &ArrayRef) -> Result<ArrayRef, String> {
    if a.data_type() == &DataType::Utf8 {
        return Ok(a.clone());
    }
    arrow::compute::cast(a, &DataType::Utf8)
        .map_err(|e| format!("cannot read {} as text: {e}", a.data_type()))
}

/// Where transformed columns go: in place of their input, or (with a suffix) as new
/// columns right after it. One input column may become several (one-hot).
#[derive(Debug)]
pub(crate) struct Layout {
    pub schema: SchemaRef,
    /// Per output column: an input column kept as is, or output `j` of item `k`.
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Keep(usize),
    New(usize, usize),
}

/// One output column of type `out` per input column of `columns` (found and
/// type-checked by `find`), named `<column><suffix>` beside its input or in its place:
/// the input columns' indices and the layout of the output.
pub(super) fn one_output_each(
    input: &SchemaRef,
    columns: &[String],
    suffix: &Option<String>,
    out: impl Fn(&DataType) -> DataType,
    find: impl Fn(&SchemaRef, &str) -> Result<usize, String>,
) -> Result<(Vec<usize>, Layout), String> {
    let mut items = Vec::new();
    for c in columns {
        let i = find(input, c)?;
        let field = Field::new(out_name(c, suffix), out(input.field(i).data_type()), true);
        items.push((i, vec![field]));
    }
    let layout = Layout::new(input, &items, suffix.is_some())?;
    Ok((items.into_iter().map(|(i, _)| i).collect(), layout))
}

/// `serde` defaults the tabular options share.
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_one() -> u64 {
    1
}
pub(super) fn default_max_distinct() -> usize {
    DEFAULT_MAX_DISTINCT
}

impl Layout {
    /// `items`: (input column index, output fields). `keep_input`: the input column stays
    /// (before its outputs).
    pub fn new(
        input: &SchemaRef,
        items: &[(usize, Vec<Field>)],
        keep_input: bool,
    ) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut slots = Vec::new();
        for (i, f) in input.fields().iter().enumerate() {
            let item = items.iter().position(|(c, _)| *c == i);
            if item.is_none() || keep_input {
                fields.push(f.as_ref().clone());
                slots.push(Slot::Keep(i));
            }
            if let Some(k) = item {
                for (j, out) in items[k].1.iter().enumerate() {
                    fields.push(out.clone());
                    slots.push(Slot::New(k, j));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for f in &fields {
            if !seen.insert(f.name().as_str()) {
                return Err(format!(
                    "the output would have two columns named `{}`; choose another suffix or prefix",
                    f.name()
                ));
            }
        }
        Ok(Layout {
            schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
            slots,
        })
    }

    /// The output batch: `batch`'s kept columns and `made[k][j]`.
    pub fn assemble(
        &self,
        batch: &RecordBatch,
        made: Vec<Vec<ArrayRef>>,
    ) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = self
            .slots
            .iter()
            .map(|s| match *s {
                Slot::Keep(i) => batch.column(i).clone(),
                Slot::New(k, j) => made[k][j].clone(),
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// The output name of column `name` under an optional suffix.
pub(crate) fn out_name(name: &str, suffix: &Option<String>) -> String {
    match suffix {
        Some(s) => format!("{name}{s}"),
        None => name.to_string(),
    }
}

/// Maps each numeric column of `cols` to a float64 column with `f` (nulls stay null).
pub(crate) fn map_f64(a: &ArrayRef, f: impl Fn(f64) -> f64) -> Result<ArrayRef, String> {
    let x = to_f64(a)?;
    let y: Float64Array = x.unary(f);
    Ok(Arc::new(y))
}

/// Reads an optional `f64` statistic, or says what is missing.
pub(crate) fn need(v: Option<f64>, column: &str, what: &str) -> Result<f64, String> {
    v.ok_or_else(|| {
        format!("column `{column}` has no values to compute its {what} from (every row is null)")
    })
}

#[cfg(test)]
pub(crate) mod tests_util {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;
    use arrow::record_batch::RecordBatch;

    use crate::steps::{Step, StepOptions};

    /// Fits `opts` on `batch` (as one task) and binds it with the statistics.
    pub fn fit_and_bind(
        opts: &impl StepOptions,
        batch: &RecordBatch,
    ) -> (Arc<dyn Step>, serde_json::Value) {
        let step = opts.bind(&batch.schema()).expect("binds");
        let crate::steps::Kind::Fit(fit) = step.kind() else {
            panic!("bound without statistics, the step needs a fit");
        };
        let parts = crate::steps::test_util::observe_tasks(step.kind(), &[(0, vec![batch])]);
        let stats = fit.settle(parts).expect("settles");
        // Through JSON text, as the runtime does.
        let stats: serde_json::Value =
            serde_json::from_str(&stats.to_string()).expect("round trip");
        let fitted = opts
            .bind_fitted(&batch.schema(), &stats)
            .expect("binds fitted");
        assert!(!fitted.kind().needs_fit());
        (fitted, stats)
    }

    pub fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        let a = b.column_by_name(name).expect("column");
        let a = a.as_primitive::<Float64Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect()
    }
}
