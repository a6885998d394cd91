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
//! Over 600 lines for one role: what every fitted tabular step shares (running moments,
//! value counts, the fitter, stored column statistics, binding with or without them);
//! the steps are in their own files. The repeated option and bind blocks of
//! `one_hot`/`ordinal` and `min_max`/`standardize` are issue 20's to fold.

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
pub mod hash_bucket;
pub mod log1p;
pub mod min_max;
pub mod one_hot;
pub mod ordinal;
pub mod standardize;
mod vocab;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_functions_aggregate_common::tdigest::TDigest;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{FitPass, Observer, Part};
use crate::steps::StepError;

/// Centroids of the quantile sketch. DataFusion's `approx_percentile_cont` uses 100;
/// 1000 keeps the rank error of a median well under 0.1% at a few kilobytes per column.
const TDIGEST_SIZE: usize = 1000;

/// Distinct values a vocabulary counts per column by default before it refuses: the
/// bound on a fit's memory (about 100 MB at a few dozen bytes per value).
pub const DEFAULT_MAX_DISTINCT: usize = 1_000_000;

/// What a fit computes for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Count, nulls, mean, variance, min, max.
    Moments,
    /// Moments and a quantile sketch.
    Quantiles,
    /// How often each value occurs (for vocabularies and the mode).
    Counts,
}

/// Running statistics of a numeric column, mergeable across tasks (Chan et al.'s
/// parallel variance). NaN counts as missing, like pandas' `skipna`.
#[derive(Debug, Clone)]
pub(crate) struct Moments {
    pub count: u64,
    pub nulls: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
    pub digest: Option<TDigest>,
}

impl Moments {
    fn new(quantiles: bool) -> Self {
        Moments {
            count: 0,
            nulls: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            digest: quantiles.then(|| TDigest::new(TDIGEST_SIZE)),
        }
    }

    fn add(&mut self, a: &Float64Array) {
        let mut values: Vec<f64> = Vec::with_capacity(a.len() - a.null_count());
        if a.null_count() == 0 {
            values.extend(a.values().iter().copied().filter(|v| !v.is_nan()));
        } else {
            values.extend(a.iter().flatten().filter(|v| !v.is_nan()));
        }
        self.nulls += (a.len() - values.len()) as u64;
        if values.is_empty() {
            return;
        }
        // Two passes over the batch, then one merge: as accurate as numpy's pairwise sum
        // for the batch sizes here.
        let n = values.len() as f64;
        let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
        for &v in &values {
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        let mean = sum / n;
        let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let batch = Moments {
            count: values.len() as u64,
            nulls: 0,
            mean,
            m2,
            min,
            max,
            digest: None,
        };
        self.merge_moments(&batch);
        if let Some(d) = &mut self.digest {
            *d = d.merge_unsorted_f64(values);
        }
    }

    fn merge_moments(&mut self, o: &Moments) {
        self.nulls += o.nulls;
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            (self.count, self.mean, self.m2) = (o.count, o.mean, o.m2);
        } else {
            let (na, nb) = (self.count as f64, o.count as f64);
            let n = na + nb;
            let delta = o.mean - self.mean;
            self.mean += delta * nb / n;
            self.m2 += o.m2 + delta * delta * na * nb / n;
            self.count += o.count;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn merge(&mut self, o: &Moments) {
        self.merge_moments(o);
        if let (Some(a), Some(b)) = (&mut self.digest, &o.digest) {
            *a = TDigest::merge_digests([&*a, b]);
        }
    }

    /// The value below which a fraction `q` of the values lie (t-digest estimate;
    /// exact at 0 and 1).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        self.digest.as_ref().map(|d| d.estimate_quantile(q))
    }

    pub fn summary(&self) -> Summary {
        let some = |v: f64| (self.count > 0 && v.is_finite()).then_some(v);
        Summary {
            count: self.count,
            nulls: self.nulls,
            mean: some(self.mean),
            std: some((self.m2 / self.count.max(1) as f64).sqrt()),
            std_sample: (self.count > 1)
                .then(|| (self.m2 / (self.count - 1) as f64).sqrt())
                .filter(|v| v.is_finite()),
            min: some(self.min),
            max: some(self.max),
            median: self.digest.as_ref().and_then(|_| self.quantile(0.5)),
        }
    }
}

/// A numeric column's statistics as `_kiln/stats.json` records them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Values counted (not null, not NaN).
    pub count: u64,
    /// Nulls and NaNs.
    pub nulls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Population standard deviation (ddof 0, as scikit-learn and numpy's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// Sample standard deviation (ddof 1, as pandas and Polars' default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std_sample: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// From the quantile sketch, when the step needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
}

/// How often each value of a column occurs, bounded by `max_distinct`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    pub values: HashMap<String, u64, foldhash::fast::RandomState>,
    pub nulls: u64,
}

impl Counts {
    fn add(&mut self, a: &ArrayRef, column: &str, max_distinct: usize) -> Result<(), String> {
        let strings = as_strings(a)?;
        let strings = strings.as_string::<i32>();
        self.nulls += strings.null_count() as u64;
        for v in strings.iter().flatten() {
            match self.values.get_mut(v) {
                Some(n) => *n += 1,
                None => {
                    if self.values.len() >= max_distinct {
                        return Err(too_many_values(column, max_distinct));
                    }
                    self.values.insert(v.to_string(), 1);
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, o: &Counts, column: &str, max_distinct: usize) -> Result<(), String> {
        self.nulls += o.nulls;
        for (v, n) in &o.values {
            match self.values.get_mut(v.as_str()) {
                Some(m) => *m += n,
                None => {
                    if self.values.len() >= max_distinct {
                        return Err(too_many_values(column, max_distinct));
                    }
                    self.values.insert(v.clone(), *n);
                }
            }
        }
        Ok(())
    }

    /// The most frequent value (the smallest of equally frequent ones).
    pub fn mode(&self) -> Option<&str> {
        self.values
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(v, _)| v.as_str())
    }
}

fn too_many_values(column: &str, max_distinct: usize) -> String {
    format!(
        "column `{column}` has more than {max_distinct} distinct values, the bound on what a \
         fit counts (`max_distinct`); use hash_bucket for a high-cardinality column, or \
         raise max_distinct"
    )
}

/// The accumulator of one column.
#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Num(Moments),
    Cat(Counts),
}

/// What one task observed: an accumulator per fitted column.
type TaskAccs = Vec<Acc>;

/// The fit side of a fitted step: an accumulator per column for each task, merged in
/// task order.
#[derive(Debug)]
pub(crate) struct Fitter {
    columns: Vec<(String, Need)>,
    max_distinct: usize,
}

/// What a fitted tabular step supplies; the [`FitPass`] contract follows from it.
pub(crate) trait Fitted: Send + Sync {
    /// Its fitter (an error once the step is fitted).
    fn fitter(&self) -> Result<&Fitter, StepError>;
    /// The columns the step writes.
    fn writes(&self) -> BTreeSet<String>;
    /// Its statistics from the merged accumulators, one per fitted column.
    fn stats(&self, accs: Vec<Acc>) -> Result<serde_json::Value, StepError>;
}

impl<T: Fitted> FitPass for T {
    fn fit_columns(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let reads = self.fitter().map(Fitter::reads).unwrap_or_default();
        (reads, self.writes())
    }

    fn observer(&self, _task: usize) -> Result<Box<dyn Observer + '_>, StepError> {
        let fitter = self.fitter()?;
        Ok(Box::new(FitObserver {
            fitter,
            accs: fitter.fresh(),
        }))
    }

    fn settle(&self, parts: Vec<Part>) -> Result<serde_json::Value, StepError> {
        let accs = self.fitter()?.merge(parts)?;
        self.stats(accs)
    }
}

/// One task of a fit pass.
struct FitObserver<'a> {
    fitter: &'a Fitter,
    accs: TaskAccs,
}

impl Observer for FitObserver<'_> {
    /// Columns are found by name: in a pass that fits several steps at once, the batch
    /// is the one that reaches the first of them.
    fn observe(&mut self, batch: &RecordBatch, _rows_before: u64) -> Result<(), StepError> {
        for ((name, _), acc) in self.fitter.columns.iter().zip(self.accs.iter_mut()) {
            let a = batch
                .column_by_name(name)
                .ok_or_else(|| super::unknown_column(&batch.schema(), name))?;
            match acc {
                Acc::Num(m) => m.add(&to_f64(a)?),
                Acc::Cat(c) => c.add(a, name, self.fitter.max_distinct)?,
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Part, StepError> {
        Ok(Box::new(self.accs))
    }
}

impl Fitter {
    pub fn new(columns: Vec<(String, Need)>, max_distinct: usize) -> Self {
        Fitter {
            columns,
            max_distinct,
        }
    }

    fn fresh(&self) -> TaskAccs {
        self.columns
            .iter()
            .map(|(_, need)| match need {
                Need::Moments => Acc::Num(Moments::new(false)),
                Need::Quantiles => Acc::Num(Moments::new(true)),
                Need::Counts => Acc::Cat(Counts::default()),
            })
            .collect()
    }

    /// The columns it reads, for grouping fits into one pass.
    pub fn reads(&self) -> BTreeSet<String> {
        self.columns.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Every task's accumulators (its parts, in task order) merged: one per column, in
    /// the order the step named them.
    pub fn merge(&self, parts: Vec<Part>) -> Result<Vec<Acc>, StepError> {
        let mut out = self.fresh();
        for accs in crate::steps::parts::<TaskAccs>(parts, "a fitted step")? {
            for ((acc, other), (name, _)) in out.iter_mut().zip(&accs).zip(&self.columns) {
                match (acc, other) {
                    (Acc::Num(a), Acc::Num(b)) => a.merge(b),
                    (Acc::Cat(a), Acc::Cat(b)) => a.merge(b, name, self.max_distinct)?,
                    _ => {
                        return Err(StepError::internal("accumulators of two kinds"));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A fitted step's statistics, column by column, as stored in `_kiln/stats.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnStats<T> {
    pub columns: IndexMap<String, T>,
}

impl<T: Serialize + for<'de> Deserialize<'de>> ColumnStats<T> {
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        serde_json::to_value(self).map_err(|e| format!("internal error: {e}"))
    }

    /// Reads statistics, and checks they cover every column in `wanted`.
    pub fn from_json(v: &serde_json::Value, wanted: &[String]) -> Result<Self, String> {
        let s: Self = serde_json::from_value(v.clone())
            .map_err(|e| format!("the statistics do not fit this step: {e}"))?;
        if let Some(c) = wanted.iter().find(|c| !s.columns.contains_key(*c)) {
            let have: Vec<&str> = s.columns.keys().map(String::as_str).collect();
            return Err(format!(
                "the statistics have no entry for column `{c}` (they cover: {}); fit them on \
                 a pipeline that transforms it",
                have.join(", ")
            ));
        }
        Ok(s)
    }
}

/// The fitting state of a step: statistics to fit, or fitted ones.
#[derive(Debug)]
pub(crate) enum Fit<P> {
    /// Bound without statistics: the fit pass observes through this fitter.
    Fitting(Fitter),
    Fitted(P),
}

impl<P> Fit<P> {
    pub fn fitting(columns: Vec<(String, Need)>, max_distinct: usize) -> Self {
        Fit::Fitting(Fitter::new(columns, max_distinct))
    }

    /// Bound to be fitted on the moments (count, mean, deviation, range) of `columns`.
    pub fn moments(columns: &[String]) -> Self {
        Self::fitting(
            columns.iter().map(|c| (c.clone(), Need::Moments)).collect(),
            0,
        )
    }

    pub fn params(&self) -> Result<&P, StepError> {
        match self {
            Fit::Fitted(p) => Ok(p),
            Fit::Fitting(..) => Err(StepError::internal("a fitted step ran before its fit")),
        }
    }

    pub fn needs_fit(&self) -> bool {
        matches!(self, Fit::Fitting(..))
    }

    pub fn fitter(&self) -> Result<&Fitter, StepError> {
        match self {
            Fit::Fitting(f) => Ok(f),
            Fit::Fitted(_) => Err(StepError::internal("a fitted step was observed")),
        }
    }
}

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
mod tests {
    use super::*;

    fn f64s(v: &[Option<f64>]) -> Float64Array {
        Float64Array::from(v.to_vec())
    }

    #[test]
    fn moments_merge_equals_one_pass() {
        let all: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0)
            .collect();
        let mut one = Moments::new(true);
        one.add(&Float64Array::from(all.clone()));
        let mut parts = Moments::new(true);
        for chunk in all.chunks(77) {
            let mut m = Moments::new(true);
            m.add(&Float64Array::from(chunk.to_vec()));
            parts.merge(&m);
        }
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let var = all.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        for m in [&one, &parts] {
            let s = m.summary();
            assert_eq!(s.count, 1000);
            assert!((s.mean.expect("mean") - mean).abs() < 1e-9);
            assert!((s.std.expect("std") - var.sqrt()).abs() < 1e-9);
            assert_eq!(s.min, Some(-7.0));
            assert_eq!(s.max, Some(43.0));
        }
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        let median = parts.quantile(0.5).expect("median");
        let rank = sorted.partition_point(|v| *v < median) as f64 / n;
        assert!(
            (rank - 0.5).abs() < 0.02,
            "median {median} sits at rank {rank}"
        );
    }

    #[test]
    fn nulls_and_nans_are_missing() {
        let mut m = Moments::new(false);
        m.add(&f64s(&[Some(1.0), None, Some(f64::NAN), Some(3.0)]));
        let s = m.summary();
        assert_eq!((s.count, s.nulls), (2, 2));
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.std_sample, Some(2f64.sqrt()));
    }

    #[test]
    fn counts_are_bounded_and_the_mode_is_deterministic() {
        let a: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some("b"),
            Some("a"),
        ]));
        let mut c = Counts::default();
        c.add(&a, "x", 10).expect("counts");
        assert_eq!(c.mode(), Some("a"), "ties go to the smallest value");
        assert_eq!(c.nulls, 1);
        let err = Counts::default().add(&a, "x", 1).expect_err("bounded");
        assert!(err.contains("hash_bucket"), "{err}");
    }
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
