//! `min_max`: scales numeric columns to a range (default [0, 1]) with the minimum and
//! maximum fitted in a full pass (scikit-learn's MinMaxScaler).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::standardize::summaries;
use super::{ColumnStats, Fit, Layout, Summary, map_f64, need, numeric_column, one_output_each};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `min_max`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MinMaxOptions {
    /// Numeric columns to scale; each becomes float64.
    pub columns: Vec<String>,
    /// The target range `[low, high]` (default `[0, 1]`).
    #[serde(default = "unit")]
    pub range: [f64; 2],
    /// Clip values outside the fitted minimum and maximum (data not seen in the fit,
    /// with `stats_from`) to the range (default false, as scikit-learn).
    #[serde(default)]
    pub clip: bool,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

fn unit() -> [f64; 2] {
    [0.0, 1.0]
}

impl StepOptions for MinMaxOptions {
    const SUMMARY: &'static str = "scale numeric columns to [low, high] with the minimum and maximum of a full pass (or stats_from)";
    const EXAMPLE: &'static str = "- min_max: { columns: [clicks], range: [0, 1] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        self.build(input, Fit::moments(&self.columns))
    }

    fn bind_fitted(
        &self,
        input: &SchemaRef,
        stats: &serde_json::Value,
    ) -> Result<Arc<dyn Step>, String> {
        let stats = ColumnStats::<Summary>::from_json(stats, &self.columns)?;
        let mut params = Vec::new();
        for c in &self.columns {
            let s = &stats.columns[c];
            params.push((need(s.min, c, "minimum")?, need(s.max, c, "maximum")?));
        }
        self.build(input, Fit::Fitted(params))
    }
}

impl MinMaxOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Vec<(f64, f64)>>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the numeric columns to scale".into());
        }
        let [lo, hi] = self.range;
        if lo >= hi || !lo.is_finite() || !hi.is_finite() {
            return Err(format!(
                "range [{lo}, {hi}]: the low end must be below the high end"
            ));
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::Float64,
            |s, c| numeric_column(s, c, "min_max"),
        )?;
        Ok(Arc::new(MinMax {
            opts: self.clone(),
            inputs,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct MinMax {
    opts: MinMaxOptions,
    inputs: Vec<usize>,
    layout: Layout,
    fit: Fit<Vec<(f64, f64)>>,
}

impl Step for MinMax {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let params = self.fit.params()?;
        let [lo, hi] = self.opts.range;
        let clip = self.opts.clip;
        let made = self
            .inputs
            .iter()
            .zip(params)
            .map(|(&i, &(min, max))| -> Result<Vec<ArrayRef>, String> {
                // A constant column maps to the low end, as scikit-learn's.
                let width = if max > min { max - min } else { 1.0 };
                let scale = (hi - lo) / width;
                Ok(vec![map_f64(batch.column(i), |x| {
                    let y = (x - min) * scale + lo;
                    if clip { y.clamp(lo, hi) } else { y }
                })?])
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    delegate_fit!(columns);
}

impl super::Fitted for MinMax {
    fitted_columns!();

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        summaries(&self.opts.columns, accs)
            .to_json()
            .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::{fit_and_bind, floats};

    #[test]
    fn scales_to_the_range_with_a_suffix() {
        let b = crate::steps::test_util::batch();
        let opts: MinMaxOptions = serde_json::from_value(
            serde_json::json!({"columns": ["score"], "range": [-1, 1], "suffix": "_s"}),
        )
        .expect("options");
        let (step, stats) = fit_and_bind(&opts, &b);
        assert_eq!(stats["columns"]["score"]["min"], 0.5);
        let out = step.apply(b, &mut StepContext::default()).expect("applies");
        let names: Vec<&str> = out
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["id", "text", "score", "score_s"]);
        let want = [-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0];
        for (a, b) in floats(&out, "score_s").iter().zip(want) {
            assert!((a.expect("value") - b).abs() < 1e-12);
        }
    }
}
