//! `hash_bucket`: the hashing trick for high-cardinality categoricals: each value goes
//! to bucket `xxh3_64(text form, seed) mod num_buckets`, with no fit and no vocabulary.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Layout, as_strings, categorical_column, one_output_each};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `hash_bucket`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashBucketOptions {
    /// Columns (strings, integers, booleans); each becomes a uint32 bucket id. A value
    /// hashes by its text form, so `42` and `"42"` share a bucket. Nulls stay null.
    pub columns: Vec<String>,
    /// Number of buckets.
    pub num_buckets: u32,
    /// Seed of the hash (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

impl StepOptions for HashBucketOptions {
    const SUMMARY: &'static str =
        "hashing trick: categorical values to uint32 buckets, xxh3(value) mod num_buckets";
    const EXAMPLE: &'static str =
        "- hash_bucket: { columns: [user_id], num_buckets: 100000, suffix: _bucket }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the columns to hash".into());
        }
        if self.num_buckets == 0 {
            return Err("num_buckets must be at least 1".into());
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::UInt32,
            |s, c| categorical_column(s, c, "hash_bucket"),
        )?;
        Ok(Arc::new(HashBucket {
            n: u64::from(self.num_buckets),
            seed: self.seed,
            inputs,
            names: self.columns.clone(),
            layout,
        }))
    }
}

#[derive(Debug)]
struct HashBucket {
    n: u64,
    seed: u64,
    inputs: Vec<usize>,
    names: Vec<String>,
    layout: Layout,
}

impl Step for HashBucket {
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

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let mut made = Vec::with_capacity(self.inputs.len());
        for &i in &self.inputs {
            let s = as_strings(batch.column(i))?;
            let s = s.as_string::<i32>();
            let out: UInt32Array = (0..s.len())
                .map(|r| {
                    s.is_valid(r).then(|| {
                        (xxhash_rust::xxh3::xxh3_64_with_seed(s.value(r).as_bytes(), self.seed)
                            % self.n) as u32
                    })
                })
                .collect();
            made.push(vec![Arc::new(out) as ArrayRef]);
        }
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::UInt32Type;

    #[test]
    fn equal_text_forms_share_a_bucket_and_nulls_stay_null() {
        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(42), None, Some(7)]));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["42", "x", "7"]));
        let b = RecordBatch::try_from_iter(vec![("n", n), ("s", s)]).expect("batch");
        let opts: HashBucketOptions =
            serde_json::from_value(serde_json::json!({"columns": ["n", "s"], "num_buckets": 1000}))
                .expect("options");
        let out = opts
            .bind(&b.schema())
            .expect("binds")
            .apply(b, &mut StepContext::default())
            .expect("applies");
        let n = out.column(0).as_primitive::<UInt32Type>();
        let s = out.column(1).as_primitive::<UInt32Type>();
        assert_eq!(n.value(0), s.value(0));
        assert_eq!(n.value(2), s.value(2));
        assert!(n.is_null(1));
        assert!(n.values().iter().all(|v| *v < 1000));
        assert_eq!(
            u64::from(s.value(0)),
            xxhash_rust::xxh3::xxh3_64_with_seed(b"42", 0) % 1000,
            "documented hash"
        );
    }
}
