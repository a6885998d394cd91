//! `drop`: remove these columns.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::select::Project;
use super::{Step, StepOptions, column_index};

/// Column names to remove.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DropOptions(pub Vec<String>);

impl StepOptions for DropOptions {
    const SUMMARY: &'static str = "remove the listed columns";
    const EXAMPLE: &'static str = "- drop: [timestamp, n_links]";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let mut dropped = Vec::with_capacity(self.0.len());
        for name in &self.0 {
            dropped.push(column_index(input, name)?);
        }
        let keep: Vec<usize> = (0..input.fields().len())
            .filter(|i| !dropped.contains(i))
            .collect();
        if keep.is_empty() {
            return Err("drop would remove every column".into());
        }
        Ok(Arc::new(Project::new(input, keep)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::{StepContext, test_util};

    #[test]
    fn removes_listed_columns() {
        let step = DropOptions(vec!["text".into()])
            .bind(&test_util::schema())
            .expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.num_columns(), 2);
        assert!(out.schema().index_of("text").is_err());
    }

    #[test]
    fn dropping_everything_is_refused() {
        let all = vec!["id".into(), "text".into(), "score".into()];
        assert!(DropOptions(all).bind(&test_util::schema()).is_err());
    }
}
