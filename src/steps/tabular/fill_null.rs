//! `fill_null`: replaces nulls with a constant, or with a column's mean, median or
//! mode fitted in a full pass (or taken from `stats_from`).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, Scalar, StringArray,
    UInt64Array,
};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Acc, ColumnStats, Fit, Layout, Need, categorical_column, numeric_column};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions, column_index};

/// Options of `fill_null`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillNullOptions {
    /// Column → constant (`comment: ""`, `clicks: 0`, `active: false`), converted to
    /// the column's type.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub value: IndexMap<String, serde_json::Value>,
    /// Numeric columns filled with their mean (integer columns become float64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean: Vec<String>,
    /// Numeric columns filled with their median (t-digest estimate; integer columns
    /// become float64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub median: Vec<String>,
    /// Columns filled with their most frequent value (the smallest of equally
    /// frequent ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mode: Vec<String>,
}

/// A fitted column's fill value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FillValue {
    /// `mean`, `median` or `mode`.
    pub strategy: String,
    /// The value nulls become.
    pub value: serde_json::Value,
    /// Values and nulls in the fitted data.
    pub count: u64,
    pub nulls: u64,
}

impl StepOptions for FillNullOptions {
    const SUMMARY: &'static str = "replace nulls with constants, or with each column's mean, median or mode (full pass or stats_from)";
    const EXAMPLE: &'static str = "- fill_null: { value: { comment: \"\", clicks: 0 }, mean: [age], median: [income], mode: [country] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let fitted = self.fitted_columns();
        if fitted.is_empty() {
            return self.build(input, Fit::Fitted(Vec::new()));
        }
        let need = fitted
            .iter()
            .map(|(c, s)| {
                let n = match *s {
                    "mean" => Need::Moments,
                    "median" => Need::Quantiles,
                    _ => Need::Counts,
                };
                (c.to_string(), n)
            })
            .collect();
        self.build(input, Fit::fitting(need, super::DEFAULT_MAX_DISTINCT))
    }

    fn bind_fitted(
        &self,
        input: &SchemaRef,
        stats: &serde_json::Value,
    ) -> Result<Arc<dyn Step>, String> {
        let names: Vec<String> = self
            .fitted_columns()
            .iter()
            .map(|(c, _)| c.to_string())
            .collect();
        if names.is_empty() {
            return self.bind(input);
        }
        let stats = ColumnStats::<FillValue>::from_json(stats, &names)?;
        let values = names
            .iter()
            .map(|c| stats.columns[c].value.clone())
            .collect();
        self.build(input, Fit::Fitted(values))
    }
}

impl FillNullOptions {
    /// (column, strategy) of the columns whose fill value is fitted.
    fn fitted_columns(&self) -> Vec<(&str, &'static str)> {
        let mut out: Vec<(&str, &'static str)> = Vec::new();
        out.extend(self.mean.iter().map(|c| (c.as_str(), "mean")));
        out.extend(self.median.iter().map(|c| (c.as_str(), "median")));
        out.extend(self.mode.iter().map(|c| (c.as_str(), "mode")));
        out
    }

    /// `fitted`: one fill value per fitted column (empty before the fit).
    fn build(
        &self,
        input: &SchemaRef,
        fit: Fit<Vec<serde_json::Value>>,
    ) -> Result<Arc<dyn Step>, String> {
        let strategies = self.fitted_columns();
        if self.value.is_empty() && strategies.is_empty() {
            return Err(
                "nothing to fill: give `value: {column: constant}`, `mean`, `median` or `mode`"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        let mut fills: Vec<(usize, DataType, Option<ArrayRef>)> = Vec::new();
        for (c, v) in &self.value {
            if !seen.insert(c.as_str()) {
                return Err(format!("column `{c}` is filled twice"));
            }
            let i = column_index(input, c)?;
            let t = input.field(i).data_type().clone();
            let scalar = constant(v, &t).map_err(|e| format!("value of `{c}`: {e}"))?;
            fills.push((i, t, Some(scalar)));
        }
        for (k, (c, strategy)) in strategies.iter().enumerate() {
            if !seen.insert(c) {
                return Err(format!("column `{c}` is filled twice"));
            }
            let (i, t) = if *strategy == "mode" {
                let i = categorical_column(input, c, "fill_null: mode")
                    .or_else(|_| numeric_column(input, c, "fill_null: mode"))?;
                (i, input.field(i).data_type().clone())
            } else {
                let i = numeric_column(input, c, &format!("fill_null: {strategy}"))?;
                let t = input.field(i).data_type();
                (
                    i,
                    if t.is_integer() {
                        DataType::Float64
                    } else {
                        t.clone()
                    },
                )
            };
            let scalar = match &fit {
                Fit::Fitted(values) => Some(
                    constant(&values[k], &t)
                        .map_err(|e| format!("the fitted {strategy} of `{c}`: {e}"))?,
                ),
                Fit::Fitting(..) => None,
            };
            fills.push((i, t, scalar));
        }
        let items: Vec<(usize, Vec<Field>)> = fills
            .iter()
            .map(|(i, t, _)| (*i, vec![input.field(*i).clone().with_data_type(t.clone())]))
            .collect();
        let layout = Layout::new(input, &items, false)?;
        Ok(Arc::new(FillNull {
            opts: self.clone(),
            fills,
            layout,
            fit,
        }))
    }
}

/// `v` as a one-row array of type `t`.
fn constant(v: &serde_json::Value, t: &DataType) -> Result<ArrayRef, String> {
    let raw: ArrayRef = match v {
        serde_json::Value::String(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        serde_json::Value::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Arc::new(Int64Array::from(vec![i])),
            (None, Some(u), _) => Arc::new(UInt64Array::from(vec![u])),
            (_, _, Some(f)) => {
                if t.is_integer() && f.fract() != 0.0 {
                    return Err(format!("{f} is not a whole number, and the column is {t}"));
                }
                Arc::new(Float64Array::from(vec![f]))
            }
            _ => return Err(format!("{n} is not a number kiln can read")),
        },
        other => {
            return Err(format!(
                "{other} is not a constant (give a string, number or boolean)"
            ));
        }
    };
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    let out = arrow::compute::cast_with_options(&raw, t, &opts)
        .map_err(|e| format!("{v} does not fit the column's type {t}: {e}"))?;
    if out.is_null(0) {
        return Err(format!("{v} does not fit the column's type {t}"));
    }
    Ok(out)
}

/// `a` with its nulls replaced by `fill`, built in one pass into buffers of the exact
/// size: runs of valid values are copied whole. (arrow's `zip` goes through
/// `MutableArrayData`, which grows its buffers as it goes; on the strings of a wide
/// table that was most of this step's time.)
fn fill_strings(a: &StringArray, fill: &str) -> Result<StringArray, String> {
    let Some(nulls) = a.nulls() else {
        return Ok(a.clone());
    };
    let offsets = a.value_offsets();
    let data = a.value_data();
    let at = |i: usize| offsets[i] as usize;
    let size = at(a.len()) - at(0) + a.null_count() * fill.len();
    let too_big = || format!("the filled column holds more than {} bytes", i32::MAX);
    if size > i32::MAX as usize {
        return Err(too_big());
    }
    let mut values: Vec<u8> = Vec::with_capacity(size);
    let mut out: Vec<i32> = Vec::with_capacity(a.len() + 1);
    out.push(0);
    let fill_to = |values: &mut Vec<u8>, out: &mut Vec<i32>, n: usize| {
        for _ in 0..n {
            values.extend_from_slice(fill.as_bytes());
            out.push(values.len() as i32);
        }
    };
    let mut next = 0;
    for (start, end) in nulls.valid_slices() {
        fill_to(&mut values, &mut out, start - next);
        // Offsets of the run, moved from where it starts in `a` to where it lands.
        let shift = values.len() as i64 - offsets[start] as i64;
        values.extend_from_slice(&data[at(start)..at(end)]);
        out.extend(
            offsets[start + 1..=end]
                .iter()
                .map(|&o| (o as i64 + shift) as i32),
        );
        next = end;
    }
    fill_to(&mut values, &mut out, a.len() - next);
    StringArray::try_new(
        arrow::buffer::OffsetBuffer::new(out.into()),
        values.into(),
        None,
    )
    .map_err(|e| e.to_string())
}

#[derive(Debug)]
struct FillNull {
    opts: FillNullOptions,
    /// (input column, output type, fill value; none before the fit).
    fills: Vec<(usize, DataType, Option<ArrayRef>)>,
    layout: Layout,
    fit: Fit<Vec<serde_json::Value>>,
}

impl Step for FillNull {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        self.fit.params()?;
        let mut filled = 0u64;
        let mut made = Vec::with_capacity(self.fills.len());
        for (i, t, value) in &self.fills {
            let a = batch.column(*i);
            let a = if a.data_type() == t {
                a.clone()
            } else {
                arrow::compute::cast(a, t).map_err(|e| e.to_string())?
            };
            let nulls = a.null_count();
            if nulls == 0 {
                made.push(vec![a]);
                continue;
            }
            let value = value
                .as_ref()
                .ok_or("internal error: fill_null ran before its fit")?;
            filled += nulls as u64;
            let out = match (a.as_string_opt::<i32>(), value.as_string_opt::<i32>()) {
                (Some(a), Some(v)) => Arc::new(fill_strings(a, v.value(0))?) as ArrayRef,
                _ => {
                    let mask = arrow::compute::is_not_null(&a).map_err(|e| e.to_string())?;
                    arrow::compute::kernels::zip::zip(&mask, &a, &Scalar::new(value.clone()))
                        .map_err(|e| e.to_string())?
                }
            };
            made.push(vec![out]);
        }
        cx.count("filled", filled);
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.extend(
            self.opts.value.keys().cloned().chain(
                self.opts
                    .fitted_columns()
                    .iter()
                    .map(|(c, _)| c.to_string()),
            ),
        );
        need
    }

    delegate_fit!();
}

impl super::Fitted for FillNull {
    fn fitter(&self) -> Result<&super::Fitter, StepError> {
        self.fit.fitter()
    }

    fn writes(&self) -> BTreeSet<String> {
        self.opts
            .value
            .keys()
            .cloned()
            .chain(
                self.opts
                    .fitted_columns()
                    .iter()
                    .map(|(c, _)| c.to_string()),
            )
            .collect()
    }

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        let strategies = self.opts.fitted_columns();
        let mut columns = IndexMap::new();
        for ((c, strategy), acc) in strategies.iter().zip(accs) {
            let (value, count, nulls) = match acc {
                Acc::Num(m) => {
                    let s = m.summary();
                    let v = if *strategy == "median" {
                        m.quantile(0.5)
                    } else {
                        s.mean
                    };
                    let v = v.ok_or_else(|| {
                            format!("column `{c}` has no values to take its {strategy} from (every row is null)")
                        })?;
                    (serde_json::json!(v), s.count, s.nulls)
                }
                Acc::Cat(counts) => {
                    let v = counts.mode().ok_or_else(|| {
                        format!(
                            "column `{c}` has no values to take its mode from (every row is null)"
                        )
                    })?;
                    let n: u64 = counts.values.values().sum();
                    (serde_json::json!(v), n, counts.nulls)
                }
            };
            columns.insert(
                c.to_string(),
                FillValue {
                    strategy: strategy.to_string(),
                    value,
                    count,
                    nulls,
                },
            );
        }
        ColumnStats { columns }.to_json().map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::{fit_and_bind, floats};

    #[test]
    fn strings_are_filled_run_by_run() {
        let whole = StringArray::from(vec![
            None,
            Some("a"),
            Some("bc"),
            None,
            None,
            Some(""),
            Some("dé"),
            None,
        ]);
        let cases = [
            (whole.clone(), vec!["-", "a", "bc", "-", "-", "", "dé", "-"]),
            // A slice: offsets that do not start at zero.
            (whole.slice(2, 5), vec!["bc", "-", "-", "", "dé"]),
        ];
        // A null slot may still point at bytes: they must not leak into the output.
        let hidden = StringArray::try_new(
            arrow::buffer::OffsetBuffer::new(vec![0, 3, 6, 7].into()),
            b"abcdefg".to_vec().into(),
            Some(arrow::buffer::NullBuffer::from(vec![true, false, true])),
        )
        .expect("an array");
        for (a, want) in cases.into_iter().chain([(hidden, vec!["abc", "-", "g"])]) {
            let got = fill_strings(&a, "-").expect("filled");
            assert_eq!(got.null_count(), 0);
            assert_eq!(got.iter().flatten().collect::<Vec<_>>(), want);
        }
    }

    fn batch() -> RecordBatch {
        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(4), Some(1)]));
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            None,
            Some("y"),
            Some("y"),
        ]));
        let f: ArrayRef = Arc::new(Float64Array::from(vec![None, Some(2.5), None, Some(0.5)]));
        RecordBatch::try_from_iter(vec![("n", n), ("s", s), ("f", f)]).expect("batch")
    }

    #[test]
    fn constants_take_the_column_type() {
        let opts: FillNullOptions =
            serde_json::from_value(serde_json::json!({"value": {"n": 0, "s": "", "f": -1}}))
                .expect("options");
        let step = opts.bind(&batch().schema()).expect("binds");
        assert!(!step.kind().needs_fit());
        let mut cx = StepContext::default();
        let out = step.apply(batch(), &mut cx).expect("applies");
        assert_eq!(out.schema_ref().field(0).data_type(), &DataType::Int64);
        assert_eq!(out.column(1).as_string::<i32>().value(1), "");
        assert_eq!(
            floats(&out, "f"),
            [Some(-1.0), Some(2.5), Some(-1.0), Some(0.5)]
        );
        assert_eq!(cx.counts["filled"], 4);
        let bad: FillNullOptions =
            serde_json::from_value(serde_json::json!({"value": {"n": "abc"}})).expect("options");
        let err = bad.bind(&batch().schema()).expect_err("not a number");
        assert!(err.contains("value of `n`"), "{err}");
    }

    #[test]
    fn mean_median_and_mode_come_from_the_fit() {
        let opts: FillNullOptions = serde_json::from_value(
            serde_json::json!({"mean": ["n"], "median": ["f"], "mode": ["s"]}),
        )
        .expect("options");
        let (step, stats) = fit_and_bind(&opts, &batch());
        assert_eq!(stats["columns"]["n"]["value"], 2.0);
        assert_eq!(stats["columns"]["s"]["value"], "y");
        let out = step
            .apply(batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(
            floats(&out, "n"),
            [Some(1.0), Some(2.0), Some(4.0), Some(1.0)]
        );
        assert_eq!(out.column(1).as_string::<i32>().value(1), "y");
        let f = floats(&out, "f");
        assert!(
            f[0].expect("filled") >= 0.5 && f[0].expect("filled") <= 2.5,
            "{f:?}"
        );
    }
}
