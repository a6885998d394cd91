//! `standardize`: z-scores, `(x − mean) / std`, with the mean and standard deviation
//! fitted in a full pass (or taken from `stats_from`).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Acc, ColumnStats, Fit, Layout, Summary, map_f64, need, numeric_column, one_output_each,
};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `standardize`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardizeOptions {
    /// Numeric columns to scale; each becomes float64.
    pub columns: Vec<String>,
    /// Delta degrees of freedom of the standard deviation: 0 (population, as
    /// scikit-learn's StandardScaler; the default) or 1 (sample, as pandas and Polars).
    #[serde(default)]
    pub ddof: u8,
    /// Subtract the mean (default true).
    #[serde(default = "super::default_true")]
    pub with_mean: bool,
    /// Divide by the standard deviation (default true).
    #[serde(default = "super::default_true")]
    pub with_std: bool,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

impl StepOptions for StandardizeOptions {
    const SUMMARY: &'static str = "z-score numeric columns with the mean and standard deviation of a full pass (or stats_from)";
    const EXAMPLE: &'static str = "- standardize: { columns: [age, income], ddof: 0 }";

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
            let mean = if self.with_mean {
                need(s.mean, c, "mean")?
            } else {
                0.0
            };
            let std = if !self.with_std {
                1.0
            } else if self.ddof == 1 {
                // One value has no sample deviation: scale by 1, as for a constant column.
                s.std_sample.unwrap_or(0.0)
            } else {
                need(s.std, c, "standard deviation")?
            };
            // A constant column: scikit-learn scales by 1 instead of dividing by zero.
            params.push((mean, if std == 0.0 { 1.0 } else { std }));
        }
        self.build(input, Fit::Fitted(params))
    }
}

impl StandardizeOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Vec<(f64, f64)>>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the numeric columns to standardize".into());
        }
        if self.ddof > 1 {
            return Err(format!(
                "ddof is {}; use 0 (population) or 1 (sample)",
                self.ddof
            ));
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::Float64,
            |s, c| numeric_column(s, c, "standardize"),
        )?;
        Ok(Arc::new(Standardize {
            opts: self.clone(),
            inputs,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct Standardize {
    opts: StandardizeOptions,
    inputs: Vec<usize>,
    layout: Layout,
    fit: Fit<Vec<(f64, f64)>>,
}

impl Step for Standardize {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let params = self.fit.params()?;
        let made = self
            .inputs
            .iter()
            .zip(params)
            .map(|(&i, &(mean, std))| -> Result<Vec<ArrayRef>, String> {
                Ok(vec![map_f64(batch.column(i), |x| (x - mean) / std)?])
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    delegate_fit!(columns);
}

impl super::Fitted for Standardize {
    fitted_columns!();

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        summaries(&self.opts.columns, accs)
            .to_json()
            .map_err(StepError::from)
    }
}

/// Each numeric accumulator's summary, by column.
pub(super) fn summaries(columns: &[String], accs: Vec<Acc>) -> ColumnStats<Summary> {
    ColumnStats {
        columns: columns
            .iter()
            .zip(accs)
            .map(|(c, a)| {
                let s = match a {
                    Acc::Num(m) => m.summary(),
                    Acc::Cat(_) => Summary::default(),
                };
                (c.clone(), s)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::{fit_and_bind, floats};

    #[test]
    fn z_scores_with_population_and_sample_std() {
        let b = crate::steps::test_util::batch();
        for (ddof, std) in [(0u8, 1.118_033_988_749_895), (1, 1.290_994_448_735_805_7)] {
            let opts: StandardizeOptions = serde_json::from_value(
                serde_json::json!({"columns": ["score", "id"], "ddof": ddof}),
            )
            .expect("options");
            let (step, stats) = fit_and_bind(&opts, &b);
            assert_eq!(stats["columns"]["score"]["mean"], 2.0);
            let out = step
                .apply(b.clone(), &mut StepContext::default())
                .expect("applies");
            assert_eq!(out.schema().field(0).data_type(), &DataType::Float64);
            let score = floats(&out, "score");
            let want: Vec<f64> = [0.5, 1.5, 2.5, 3.5]
                .iter()
                .map(|x| (x - 2.0) / std)
                .collect();
            for (a, b) in score.iter().zip(&want) {
                assert!(
                    (a.expect("value") - b).abs() < 1e-12,
                    "{score:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn refuses_text_columns() {
        let opts: StandardizeOptions =
            serde_json::from_value(serde_json::json!({"columns": ["text"]})).expect("options");
        let err = opts
            .bind(&crate::steps::test_util::schema())
            .expect_err("text");
        assert!(err.contains("needs numbers"), "{err}");
    }
}
