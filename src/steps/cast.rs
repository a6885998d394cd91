//! `cast`: change column types. A value that does not convert is an error naming the
//! column and the value (never a silent null).

use std::sync::Arc;

use arrow::compute::{CastOptions as ArrowCastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::parse_type;
use super::{Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// Column → type name (`int64`, `float32`, `string`, `timestamp`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CastOptions(pub IndexMap<String, String>);

impl StepOptions for CastOptions {
    const SUMMARY: &'static str = "change column types; values that do not convert are errors";
    const EXAMPLE: &'static str =
        "- cast: { score: float32, n_links: int32, timestamp: timestamp }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut casts = Vec::new();
        for (name, type_name) in &self.0 {
            let i = column_index(input, name)?;
            let to = parse_type(type_name).map_err(|e| format!("column `{name}`: {e}"))?;
            let from = fields[i].data_type().clone();
            if !can_cast_types(&from, &to) {
                return Err(format!("column `{name}`: cannot cast {from} to {to}"));
            }
            fields[i] = fields[i].clone().with_data_type(to.clone());
            casts.push((i, to));
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        Ok(Arc::new(Cast { schema, casts }))
    }
}

#[derive(Debug)]
struct Cast {
    schema: SchemaRef,
    casts: Vec<(usize, DataType)>,
}

impl Step for Cast {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let options = ArrowCastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        let mut columns = batch.columns().to_vec();
        for (i, to) in &self.casts {
            columns[*i] = cast_with_options(&columns[*i], to, &options)
                .map_err(|e| format!("column `{}`: {e}", self.schema.field(*i).name()))?;
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;

    fn opts(col: &str, ty: &str) -> CastOptions {
        CastOptions(IndexMap::from([(col.to_string(), ty.to_string())]))
    }

    #[test]
    fn casts_numbers() {
        let step = opts("score", "int32")
            .bind(&test_util::schema())
            .expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.schema().field(2).data_type(), &DataType::Int32);
    }

    #[test]
    fn unconvertible_value_names_column_and_value() {
        let step = opts("text", "int64")
            .bind(&test_util::schema())
            .expect("binds");
        let err = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect_err("fails")
            .to_string();
        assert!(
            err.contains("column `text`") && err.contains("'a'"),
            "{err}"
        );
    }

    #[test]
    fn unknown_type_is_refused() {
        assert!(
            opts("id", "integr")
                .bind(&test_util::schema())
                .expect_err("bad")
                .contains("unknown type")
        );
    }
}
