//! `log1p`: `ln(1 + x)` of numeric columns, for skewed counts and amounts.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Layout, numeric_column, one_output_each, to_f64};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `log1p`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Log1pOptions {
    /// Numeric columns; each becomes float64. A value below −1 has no logarithm: it
    /// becomes null and is counted as `out_of_domain` in the report.
    pub columns: Vec<String>,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

impl StepOptions for Log1pOptions {
    const SUMMARY: &'static str =
        "ln(1 + x) of numeric columns; values below -1 become null (counted)";
    const EXAMPLE: &'static str = "- log1p: { columns: [income, clicks] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the numeric columns".into());
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::Float64,
            |s, c| numeric_column(s, c, "log1p"),
        )?;
        Ok(Arc::new(Log1p {
            inputs,
            names: self.columns.clone(),
            layout,
        }))
    }
}

#[derive(Debug)]
struct Log1p {
    inputs: Vec<usize>,
    names: Vec<String>,
    layout: Layout,
}

impl Step for Log1p {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.extend(self.names.iter().cloned());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let mut bad = 0u64;
        let mut made = Vec::with_capacity(self.inputs.len());
        for &i in &self.inputs {
            let x = to_f64(batch.column(i))?;
            let out: Float64Array = if x
                .values()
                .iter()
                .zip(0..)
                .any(|(v, j)| *v < -1.0 && x.is_valid(j))
            {
                x.iter()
                    .map(|v| match v {
                        Some(v) if v < -1.0 => {
                            bad += 1;
                            None
                        }
                        v => v.map(f64::ln_1p),
                    })
                    .collect()
            } else {
                x.unary(f64::ln_1p)
            };
            made.push(vec![Arc::new(out) as ArrayRef]);
        }
        cx.count("out_of_domain", bad);
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::floats;

    #[test]
    fn logs_and_counts_values_below_minus_one() {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.0),
            Some(-2.0),
            None,
            Some(9.0),
        ]));
        let b = RecordBatch::try_from_iter(vec![("x", x)]).expect("batch");
        let opts: Log1pOptions =
            serde_json::from_value(serde_json::json!({"columns": ["x"]})).expect("options");
        let step = opts.bind(&b.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(b, &mut cx).expect("applies");
        assert_eq!(floats(&out, "x"), [Some(0.0), None, None, Some(10f64.ln())]);
        assert_eq!(cx.counts["out_of_domain"], 1);
    }
}
