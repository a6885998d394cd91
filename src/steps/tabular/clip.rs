//! `clip`: bounds numeric columns, by constants or by quantiles fitted in a full pass
//! (winsorizing).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Acc, ColumnStats, Fit, Layout, Need, Summary, map_f64, numeric_column, one_output_each,
};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `clip`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipOptions {
    /// Numeric columns; each keeps its type (integer bounds from quantiles are rounded
    /// inwards).
    pub columns: Vec<String>,
    /// Values below become `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Values above become `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Bounds at these quantiles of each column instead, e.g. `[0.01, 0.99]`, fitted
    /// in a full pass (or taken from `stats_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<[f64; 2]>,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// A column's fitted bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bounds {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    #[serde(flatten)]
    pub summary: Summary,
}

type Params = Vec<(Option<f64>, Option<f64>)>;

impl StepOptions for ClipOptions {
    const SUMMARY: &'static str =
        "bound numeric columns by constants, or by quantiles fitted in a full pass (winsorize)";
    const EXAMPLE: &'static str = "- clip: { columns: [income], quantiles: [0.01, 0.99] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        match self.quantiles {
            Some(_) => {
                let fit = Fit::fitting(
                    self.columns
                        .iter()
                        .map(|c| (c.clone(), Need::Quantiles))
                        .collect(),
                    0,
                );
                self.build(input, fit)
            }
            None => {
                if self.min.is_none() && self.max.is_none() {
                    return Err("give `min`, `max` (or both), or `quantiles: [low, high]`".into());
                }
                let p = self.columns.iter().map(|_| (self.min, self.max)).collect();
                self.build(input, Fit::Fitted(p))
            }
        }
    }

    fn bind_fitted(
        &self,
        input: &SchemaRef,
        stats: &serde_json::Value,
    ) -> Result<Arc<dyn Step>, String> {
        if self.quantiles.is_none() {
            return self.bind(input);
        }
        let stats = ColumnStats::<Bounds>::from_json(stats, &self.columns)?;
        let p = self
            .columns
            .iter()
            .map(|c| (stats.columns[c].lower, stats.columns[c].upper))
            .collect();
        self.build(input, Fit::Fitted(p))
    }
}

impl ClipOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Params>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the numeric columns to clip".into());
        }
        if let (Some(a), Some(b)) = (self.min, self.max)
            && a > b
        {
            return Err(format!("min {a} is above max {b}"));
        }
        if self.quantiles.is_some() && (self.min.is_some() || self.max.is_some()) {
            return Err("give either min/max or quantiles, not both".into());
        }
        if let Some([a, b]) = self.quantiles
            && !(0.0 <= a && a < b && b <= 1.0)
        {
            return Err(format!("quantiles [{a}, {b}]: need 0 <= low < high <= 1"));
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            DataType::clone,
            |s, c| numeric_column(s, c, "clip"),
        )?;
        let types = inputs
            .iter()
            .map(|&i| input.field(i).data_type().clone())
            .collect();
        Ok(Arc::new(Clip {
            opts: self.clone(),
            inputs,
            types,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct Clip {
    opts: ClipOptions,
    inputs: Vec<usize>,
    types: Vec<DataType>,
    layout: Layout,
    fit: Fit<Params>,
}

impl Step for Clip {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let params = self.fit.params()?;
        let mut made = Vec::with_capacity(self.inputs.len());
        for ((&i, &(lo, hi)), t) in self.inputs.iter().zip(params).zip(&self.types) {
            let (mut lo, mut hi) = (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY));
            if t.is_integer() {
                (lo, hi) = (lo.ceil(), hi.floor());
            }
            let y = map_f64(batch.column(i), |x| x.max(lo).min(hi))?;
            let y: ArrayRef = if t == &DataType::Float64 {
                y
            } else {
                arrow::compute::cast(&y, t).map_err(|e| e.to_string())?
            };
            made.push(vec![y]);
        }
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    delegate_fit!(columns);
}

impl super::Fitted for Clip {
    fitted_columns!();

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        let [a, b] = self.opts.quantiles.unwrap_or([0.0, 1.0]);
        ColumnStats {
            columns: self
                .opts
                .columns
                .iter()
                .zip(accs)
                .map(|(c, acc)| {
                    let bounds = match acc {
                        Acc::Num(m) => Bounds {
                            lower: m.quantile(a),
                            upper: m.quantile(b),
                            summary: m.summary(),
                        },
                        Acc::Cat(_) => Bounds {
                            lower: None,
                            upper: None,
                            summary: Summary::default(),
                        },
                    };
                    (c.clone(), bounds)
                })
                .collect(),
        }
        .to_json()
        .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::fit_and_bind;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    #[test]
    fn constants_keep_the_integer_type() {
        let b = crate::steps::test_util::batch();
        let opts: ClipOptions =
            serde_json::from_value(serde_json::json!({"columns": ["id"], "min": 2, "max": 3}))
                .expect("options");
        let out = opts
            .bind(&b.schema())
            .expect("binds")
            .apply(b, &mut StepContext::default())
            .expect("applies");
        assert_eq!(
            out.column(0).as_primitive::<Int64Type>().values(),
            &[2, 2, 3, 3]
        );
    }

    #[test]
    fn quantile_bounds_winsorize() {
        let x: ArrayRef = Arc::new(Int64Array::from((0..=100).collect::<Vec<i64>>()));
        let b = RecordBatch::try_from_iter(vec![("x", x)]).expect("batch");
        let opts: ClipOptions =
            serde_json::from_value(serde_json::json!({"columns": ["x"], "quantiles": [0.1, 0.9]}))
                .expect("options");
        let (step, stats) = fit_and_bind(&opts, &b);
        let lower = stats["columns"]["x"]["lower"].as_f64().expect("lower");
        assert!((lower - 10.0).abs() <= 1.0, "{stats}");
        let out = step.apply(b, &mut StepContext::default()).expect("applies");
        let v = out.column(0).as_primitive::<Int64Type>();
        assert!(v.value(0) >= 9 && v.value(0) <= 11, "{v:?}");
        assert!(v.value(100) >= 89 && v.value(100) <= 91, "{v:?}");
        assert_eq!(v.value(50), 50);
    }
}
