//! `filter`: keep the rows for which a boolean SQL expression is true (null counts as
//! false, as in SQL `WHERE`).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::expr::CompiledExpr;
use super::{Step, StepContext, StepOptions};
use crate::steps::StepError;

/// A boolean SQL expression, e.g. `length(text) >= 200 AND lang = 'en'`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct FilterOptions(pub String);

impl StepOptions for FilterOptions {
    const SUMMARY: &'static str = "keep rows where a boolean SQL expression is true";
    const EXAMPLE: &'static str = "- filter: \"length(text) >= 200 AND lang = 'en'\"";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let expr = CompiledExpr::compile(&self.0, input)?;
        if expr.data_type != DataType::Boolean {
            return Err(format!(
                "expression `{}` gives {}, but a filter needs a boolean (true keeps the row)",
                self.0, expr.data_type
            ));
        }
        Ok(Arc::new(Filter {
            schema: input.clone(),
            expr,
        }))
    }
}

#[derive(Debug)]
struct Filter {
    schema: SchemaRef,
    expr: CompiledExpr,
}

impl Step for Filter {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        downstream.union(&self.expr.columns).cloned().collect()
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let mask = self.expr.evaluate(&batch)?;
        let mask = mask
            .as_boolean_opt()
            .ok_or("filter expression did not give booleans")?;
        let mask = if mask.null_count() > 0 {
            prep_null_mask_filter(mask)
        } else {
            mask.clone()
        };
        let out = filter_record_batch(&batch, &mask).map_err(|e| e.to_string())?;
        cx.count("dropped", (batch.num_rows() - out.num_rows()) as u64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;

    #[test]
    fn keeps_true_rows_and_drops_nulls() {
        let step = FilterOptions("length(text) > 1".into())
            .bind(&test_util::schema())
            .expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn non_boolean_is_a_type_error() {
        let err = FilterOptions("length(text)".into())
            .bind(&test_util::schema())
            .expect_err("not bool");
        assert!(err.contains("needs a boolean"), "{err}");
    }
}
