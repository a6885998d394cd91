//! `split`: deterministic train/validation/test assignment by a hash of a key column.
//!
//! A row's split is a function of its key and the seed only (XXH3-64 of the key's
//! text, mapped to [0, 1) and compared with the cumulative fractions), so the same
//! document lands in the same split on every run, worker and thread count, and when the
//! dataset grows. Pairs with `partition_by: [split]` in the sink.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text::{put_column, with_field};
use super::{Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// Options of `split`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitOptions {
    /// The column whose value decides the split (a document id, a URL).
    pub key: String,
    /// Split name → fraction; the fractions must sum to 1. Default
    /// `{train: 0.98, validation: 0.01, test: 0.01}`.
    #[serde(default = "default_fractions")]
    pub fractions: IndexMap<String, f64>,
    /// Seed of the hash; another seed gives another, equally deterministic, split.
    #[serde(default)]
    pub seed: u64,
    /// The output column (default `split`).
    #[serde(default = "default_output")]
    pub output: String,
}

fn default_fractions() -> IndexMap<String, f64> {
    IndexMap::from([
        ("train".to_string(), 0.98),
        ("validation".to_string(), 0.01),
        ("test".to_string(), 0.01),
    ])
}

fn default_output() -> String {
    "split".into()
}

impl StepOptions for SplitOptions {
    const SUMMARY: &'static str =
        "add a `split` column: deterministic train/validation/test by hash of a key";
    const EXAMPLE: &'static str =
        "- split: { key: id, fractions: { train: 0.98, validation: 0.01, test: 0.01 }, seed: 0 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let key = column_index(input, &self.key)?;
        if self.fractions.is_empty() {
            return Err("`fractions` is empty".into());
        }
        let mut bounds = Vec::with_capacity(self.fractions.len());
        let mut total = 0.0;
        for (name, f) in &self.fractions {
            if !(0.0..=1.0).contains(f) {
                return Err(format!("fraction of `{name}` must be in [0, 1], found {f}"));
            }
            total += f;
            bounds.push((name.clone(), total));
        }
        if (total - 1.0).abs() > 1e-9 {
            return Err(format!("the fractions sum to {total}, not 1"));
        }
        let (schema, index) = with_field(
            input,
            &self.output,
            Field::new(&self.output, DataType::Utf8, false),
        );
        Ok(Arc::new(Split {
            opts: self.clone(),
            key,
            bounds,
            index,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Split {
    opts: SplitOptions,
    key: usize,
    /// Split name and the upper end of its interval of [0, 1).
    bounds: Vec<(String, f64)>,
    index: usize,
    schema: SchemaRef,
}

impl Split {
    fn pick(&self, key: &str) -> &str {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.opts.seed);
        // The top 53 bits give a uniform double in [0, 1).
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        self.bounds
            .iter()
            .find(|(_, b)| u < *b)
            .or(self.bounds.last())
            .map(|(n, _)| n.as_str())
            .unwrap_or_default()
    }
}

impl Step for Split {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        need.insert(self.opts.key.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let keys = arrow::compute::cast(batch.column(self.key), &DataType::Utf8)
            .map_err(|e| format!("key `{}`: {e}", self.opts.key))?;
        let keys = keys
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("the key column did not cast to strings")?;
        let mut names = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            if keys.is_null(i) {
                return Err(StepError::data(
                    "the key is null: split needs a key on every row (filter nulls out \
                     first, or choose another key)",
                )
                .in_column(&self.opts.key)
                .at_row(i));
            }
            names.push(self.pick(keys.value(i)));
        }
        for (name, _) in &self.bounds {
            cx.count(name, names.iter().filter(|n| *n == name).count() as u64);
        }
        let values: ArrayRef = Arc::new(StringArray::from(names));
        put_column(&batch, &self.schema, self.index, values).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_function_of_key_and_seed_with_the_asked_fractions() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("doc-{i}")).collect();
        let batch = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(StringArray::from(ids.clone())) as ArrayRef,
        )])
        .expect("batch");
        let opts: SplitOptions = serde_json::from_value(serde_json::json!({
            "key": "id", "fractions": {"train": 0.8, "val": 0.1, "test": 0.1}
        }))
        .expect("options");
        let step = opts.bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let whole = step.apply(batch.clone(), &mut cx).expect("whole");
        let train = cx.counts["train"] as f64 / 20_000.0;
        assert!((0.78..0.82).contains(&train), "{train}");
        assert_eq!(cx.counts.values().sum::<u64>(), 20_000);
        // Batch boundaries and order do not matter: row 7 alone gets the same split.
        let one = step
            .apply(batch.slice(7, 1), &mut StepContext::default())
            .expect("one");
        let col = |b: &RecordBatch, i: usize| {
            b.column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(i).to_string())
                .unwrap_or_default()
        };
        assert_eq!(col(&one, 0), col(&whole, 7));
        // Another seed is another split.
        let other: SplitOptions = serde_json::from_value(serde_json::json!({
            "key": "id", "seed": 1, "fractions": {"train": 0.8, "val": 0.1, "test": 0.1}
        }))
        .expect("options");
        let moved = other
            .bind(&batch.schema())
            .expect("binds")
            .apply(batch, &mut StepContext::default())
            .expect("applies");
        assert!((0..1000).any(|i| col(&moved, i) != col(&whole, i)));
    }

    #[test]
    fn bad_fractions_are_refused() {
        let schema = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )])
        .expect("batch")
        .schema();
        let opts: SplitOptions = serde_json::from_value(
            serde_json::json!({"key": "id", "fractions": {"train": 0.9, "val": 0.2}}),
        )
        .expect("options");
        assert!(opts.bind(&schema).expect_err("sum").contains("sum to"));
    }
}
