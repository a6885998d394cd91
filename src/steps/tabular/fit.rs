//! The fit side of the fitted tabular steps: mergeable accumulators per column (running
//! moments, a t-digest for quantiles, bounded value counts), the [`Fitter`] that keeps
//! one per task and merges them in task order, the [`Fitted`] trait a step implements
//! (from which its [`FitPass`] follows), and the statistics as `_kiln/stats.json` stores
//! them ([`ColumnStats`], [`Summary`]).

use std::collections::{BTreeSet, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::record_batch::RecordBatch;
use datafusion_functions_aggregate_common::tdigest::TDigest;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::fit_wire::WireAcc;
use super::{as_strings, to_f64};
use crate::steps::{FitPass, Observer, Part, StepError};

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

    fn write_part(&self, part: Part, out: &mut dyn std::io::Write) -> Result<(), StepError> {
        let accs = crate::steps::parts::<TaskAccs>(vec![part], "a fitted step")?;
        let wire: Vec<WireAcc> = accs.iter().flatten().map(WireAcc::from).collect();
        serde_json::to_writer(out, &wire)
            .map_err(|e| StepError::internal(format!("cannot write a fit's part: {e}")))
    }

    fn read_part(&self, input: &mut dyn std::io::Read) -> Result<Part, StepError> {
        let fitter = self.fitter()?;
        let wire: Vec<WireAcc> = serde_json::from_reader(input).map_err(|e| {
            StepError::internal(format!("a stored part of a fit does not read back: {e}"))
        })?;
        if wire.len() != fitter.columns.len() {
            return Err(StepError::internal(format!(
                "a stored part of a fit has {} columns, the step fits {}",
                wire.len(),
                fitter.columns.len()
            )));
        }
        let accs: TaskAccs = wire
            .into_iter()
            .map(WireAcc::into_acc)
            .collect::<Result<_, _>>()?;
        Ok(Box::new(accs))
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
                .ok_or_else(|| crate::steps::unknown_column(&batch.schema(), name))?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
