//! `select`: keep these columns, in this order.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// Column names to keep, in output order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SelectOptions(pub Vec<String>);

impl StepOptions for SelectOptions {
    const SUMMARY: &'static str = "keep only the listed columns, in the listed order";
    const EXAMPLE: &'static str = "- select: [id, url, text]";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.0.is_empty() {
            return Err("select needs at least one column".into());
        }
        let mut seen = BTreeSet::new();
        let mut indices = Vec::with_capacity(self.0.len());
        for name in &self.0 {
            if !seen.insert(name) {
                return Err(format!("column `{name}` is listed twice"));
            }
            indices.push(column_index(input, name)?);
        }
        let schema = Arc::new(input.project(&indices).map_err(|e| e.to_string())?);
        Ok(Arc::new(Project { indices, schema }))
    }
}

/// Projection by column index; shared by `select` and `drop`.
#[derive(Debug)]
pub(crate) struct Project {
    pub(crate) indices: Vec<usize>,
    pub(crate) schema: SchemaRef,
}

impl Project {
    pub(crate) fn new(input: &Schema, indices: Vec<usize>) -> Result<Self, String> {
        let schema = Arc::new(input.project(&indices).map_err(|e| e.to_string())?);
        Ok(Project { indices, schema })
    }
}

impl Step for Project {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|n| downstream.contains(*n))
            .cloned()
            .collect()
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        batch.project(&self.indices).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;

    #[test]
    fn keeps_listed_columns_in_order() {
        let step = SelectOptions(vec!["score".into(), "id".into()])
            .bind(&test_util::schema())
            .expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["score", "id"]);
        assert_eq!(out.num_rows(), 4);
    }

    #[test]
    fn unknown_column_is_refused() {
        let err = SelectOptions(vec!["nope".into()])
            .bind(&test_util::schema())
            .expect_err("unknown");
        assert!(
            err.contains("no column `nope`") && err.contains("id, text, score"),
            "{err}"
        );
    }
}
