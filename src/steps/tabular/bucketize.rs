//! `bucketize`: numeric columns to bucket ids, by explicit boundaries or by quantile
//! boundaries fitted in a full pass.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Acc, ColumnStats, Fit, Layout, Need, Summary, numeric_column, one_output_each, to_f64,
};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `bucketize`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketizeOptions {
    /// Numeric columns; each becomes an int32 bucket id: the number of boundaries at or
    /// below the value (numpy's `digitize`), so `n` boundaries make `n + 1` buckets.
    /// Nulls and NaN stay null.
    pub columns: Vec<String>,
    /// Explicit boundaries, ascending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundaries: Option<Vec<f64>>,
    /// Instead: this many buckets of about equal population, from quantiles fitted in a
    /// full pass (or taken from `stats_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<usize>,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// A column's fitted boundaries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boundaries {
    pub boundaries: Vec<f64>,
    #[serde(flatten)]
    pub summary: Summary,
}

impl StepOptions for BucketizeOptions {
    const SUMMARY: &'static str =
        "numeric columns to int32 bucket ids, by explicit boundaries or fitted quantiles";
    const EXAMPLE: &'static str = "- bucketize: { columns: [age], boundaries: [18, 30, 45, 65] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        match (&self.boundaries, self.quantiles) {
            (Some(b), None) => {
                if b.iter().any(|v| v.is_nan()) || b.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("boundaries must be strictly ascending numbers".into());
                }
                let p = self.columns.iter().map(|_| b.clone()).collect();
                self.build(input, Fit::Fitted(p))
            }
            (None, Some(n)) => {
                if n < 2 {
                    return Err("quantiles: ask for at least 2 buckets".into());
                }
                let fit = Fit::fitting(
                    self.columns
                        .iter()
                        .map(|c| (c.clone(), Need::Quantiles))
                        .collect(),
                    0,
                );
                self.build(input, fit)
            }
            _ => Err("give either `boundaries: [..]` or `quantiles: <number of buckets>`".into()),
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
        let stats = ColumnStats::<Boundaries>::from_json(stats, &self.columns)?;
        let p = self
            .columns
            .iter()
            .map(|c| stats.columns[c].boundaries.clone())
            .collect();
        self.build(input, Fit::Fitted(p))
    }
}

impl BucketizeOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Vec<Vec<f64>>>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the numeric columns to bucketize".into());
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::Int32,
            |s, c| numeric_column(s, c, "bucketize"),
        )?;
        Ok(Arc::new(Bucketize {
            opts: self.clone(),
            inputs,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct Bucketize {
    opts: BucketizeOptions,
    inputs: Vec<usize>,
    layout: Layout,
    fit: Fit<Vec<Vec<f64>>>,
}

impl Step for Bucketize {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let params = self.fit.params()?;
        let mut made = Vec::with_capacity(self.inputs.len());
        for (&i, bounds) in self.inputs.iter().zip(params) {
            let x = to_f64(batch.column(i))?;
            let out: Int32Array = x
                .iter()
                .map(|v| {
                    v.filter(|v| !v.is_nan())
                        .map(|v| bounds.partition_point(|b| *b <= v) as i32)
                })
                .collect();
            made.push(vec![Arc::new(out) as ArrayRef]);
        }
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    delegate_fit!(columns);
}

impl super::Fitted for Bucketize {
    fitted_columns!();

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        let n = self.opts.quantiles.unwrap_or(2);
        ColumnStats {
            columns: self
                .opts
                .columns
                .iter()
                .zip(accs)
                .map(|(c, acc)| {
                    let (mut boundaries, summary) = match acc {
                        Acc::Num(m) => (
                            (1..n)
                                .filter_map(|k| m.quantile(k as f64 / n as f64))
                                .collect::<Vec<f64>>(),
                            m.summary(),
                        ),
                        Acc::Cat(_) => (Vec::new(), Summary::default()),
                    };
                    // Heavy ties give equal quantiles: one boundary each.
                    boundaries.dedup();
                    (
                        c.clone(),
                        Boundaries {
                            boundaries,
                            summary,
                        },
                    )
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
    use arrow::array::{AsArray, Float64Array};
    use arrow::datatypes::Int32Type;

    #[test]
    fn explicit_boundaries_follow_digitize() {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-5.0),
            Some(18.0),
            Some(29.9),
            None,
            Some(f64::NAN),
            Some(99.0),
        ]));
        let b = RecordBatch::try_from_iter(vec![("x", x)]).expect("batch");
        let opts: BucketizeOptions = serde_json::from_value(
            serde_json::json!({"columns": ["x"], "boundaries": [18, 30, 65]}),
        )
        .expect("options");
        let out = opts
            .bind(&b.schema())
            .expect("binds")
            .apply(b, &mut StepContext::default())
            .expect("applies");
        let v: Vec<Option<i32>> = out.column(0).as_primitive::<Int32Type>().iter().collect();
        assert_eq!(v, [Some(0), Some(1), Some(1), None, None, Some(3)]);
    }

    #[test]
    fn quantile_buckets_have_equal_population() {
        let x: ArrayRef = Arc::new(Float64Array::from(
            (0..1000).map(f64::from).collect::<Vec<_>>(),
        ));
        let b = RecordBatch::try_from_iter(vec![("x", x)]).expect("batch");
        let opts: BucketizeOptions =
            serde_json::from_value(serde_json::json!({"columns": ["x"], "quantiles": 4}))
                .expect("options");
        let (step, stats) = fit_and_bind(&opts, &b);
        assert_eq!(
            stats["columns"]["x"]["boundaries"].as_array().map(Vec::len),
            Some(3)
        );
        let out = step.apply(b, &mut StepContext::default()).expect("applies");
        let mut sizes = [0usize; 4];
        for v in out.column(0).as_primitive::<Int32Type>().values() {
            sizes[*v as usize] += 1;
        }
        for s in sizes {
            assert!((240..=260).contains(&s), "{sizes:?}");
        }
    }
}
