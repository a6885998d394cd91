//! `derive`: add (or replace) columns computed by SQL expressions. Each expression sees
//! the columns derived before it in the same step.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::expr::CompiledExpr;
use super::text::with_field;
use super::{Step, StepContext, StepOptions};
use crate::steps::StepError;

/// New column name → SQL expression.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DeriveOptions(pub IndexMap<String, String>);

impl StepOptions for DeriveOptions {
    const SUMMARY: &'static str = "add or replace columns computed from SQL expressions";
    const EXAMPLE: &'static str =
        "- derive: { n_chars: \"length(text)\", host: \"split_part(url, '/', 3)\" }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.0.is_empty() {
            return Err("derive needs at least one `name: expression`".into());
        }
        let mut schema = input.clone();
        let mut outputs = Vec::with_capacity(self.0.len());
        let mut reads = BTreeSet::new();
        for (name, sql) in &self.0 {
            let expr =
                CompiledExpr::compile(sql, &schema).map_err(|e| format!("column `{name}`: {e}"))?;
            for c in &expr.columns {
                // Columns derived earlier in this step are not inputs of the step.
                if input.index_of(c).is_ok()
                    && !outputs
                        .iter()
                        .any(|(n, _, _): &(String, usize, CompiledExpr)| n == c)
                {
                    reads.insert(c.clone());
                }
            }
            let field = Field::new(name, expr.data_type.clone(), true);
            let (next, index) = with_field(&schema, name, field);
            schema = next;
            outputs.push((name.clone(), index, expr));
        }
        let produced = outputs.iter().map(|(n, _, _)| n.clone()).collect();
        Ok(Arc::new(Derive {
            schema,
            outputs,
            reads,
            produced,
        }))
    }
}

#[derive(Debug)]
struct Derive {
    schema: SchemaRef,
    outputs: Vec<(String, usize, CompiledExpr)>,
    reads: BTreeSet<String>,
    produced: BTreeSet<String>,
}

impl Step for Derive {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need: BTreeSet<String> = downstream.difference(&self.produced).cloned().collect();
        need.extend(self.reads.iter().cloned());
        need
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let mut current = batch;
        for (name, index, expr) in &self.outputs {
            let values = expr
                .evaluate(&current)
                .map_err(|e| format!("column `{name}`: {e}"))?;
            let mut columns = current.columns().to_vec();
            let mut fields: Vec<Field> = current
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            let field = Field::new(name, values.data_type().clone(), true);
            if *index < columns.len() {
                columns[*index] = values;
                fields[*index] = field;
            } else {
                columns.push(values);
                fields.push(field);
            }
            current = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(|e| e.to_string())?;
        }
        current
            .with_schema(self.schema.clone())
            .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    #[test]
    fn derives_chained_columns() {
        let opts = DeriveOptions(IndexMap::from([
            ("n".to_string(), "length(text)".to_string()),
            ("n2".to_string(), "n * 2".to_string()),
        ]));
        let step = opts.bind(&test_util::schema()).expect("binds");
        let out = step
            .apply(test_util::batch(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.num_columns(), 5);
        assert_eq!(out.column(4).as_primitive::<Int64Type>().value(1), 10);
        let need = step.required_input(&BTreeSet::from(["n2".to_string()]));
        assert_eq!(need, BTreeSet::from(["text".to_string()]));
    }
}
