//! `rename`: give columns new names.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// Old name → new name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct RenameOptions(pub IndexMap<String, String>);

impl StepOptions for RenameOptions {
    const SUMMARY: &'static str = "rename columns (old: new)";
    const EXAMPLE: &'static str = "- rename: { text: content, url: source_url }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (old, new) in &self.0 {
            let i = column_index(input, old)?;
            fields[i] = fields[i].clone().with_name(new);
        }
        let mut seen = BTreeSet::new();
        for f in &fields {
            if !seen.insert(f.name()) {
                return Err(format!(
                    "after renaming, two columns are named `{}`",
                    f.name()
                ));
            }
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        let back = self.0.iter().map(|(o, n)| (n.clone(), o.clone())).collect();
        Ok(Arc::new(Rename { schema, back }))
    }
}

#[derive(Debug)]
struct Rename {
    schema: SchemaRef,
    back: IndexMap<String, String>,
}

impl Step for Rename {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        downstream
            .iter()
            .map(|n| self.back.get(n).unwrap_or(n).clone())
            .collect()
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;

    #[test]
    fn renames_and_maps_required_columns_back() {
        let opts = RenameOptions(IndexMap::from([(
            "text".to_string(),
            "content".to_string(),
        )]));
        let step = opts.bind(&test_util::schema()).expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.schema().field(1).name(), "content");
        let need = step.required_input(&BTreeSet::from(["content".to_string()]));
        assert_eq!(need, BTreeSet::from(["text".to_string()]));
    }

    #[test]
    fn clash_is_refused() {
        let opts = RenameOptions(IndexMap::from([("text".to_string(), "id".to_string())]));
        assert!(
            opts.bind(&test_util::schema())
                .expect_err("clash")
                .contains("two columns")
        );
    }
}
