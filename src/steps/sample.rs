//! `sample`: keep a deterministic pseudo-random fraction of rows.
//!
//! Whether a row is kept is a hash of (seed, task, position of the row among the rows
//! this step sees in its task), so the sample does not depend on batch sizes, thread
//! count or timing, and a rerun keeps exactly the same rows.

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepContext, StepOptions};
use crate::steps::StepError;

/// Options of `sample`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleOptions {
    /// Fraction of rows to keep, in [0, 1].
    pub fraction: f64,
    /// Seed; the same seed keeps the same rows.
    #[serde(default)]
    pub seed: u64,
}

impl StepOptions for SampleOptions {
    const SUMMARY: &'static str = "keep a deterministic random fraction of rows";
    const EXAMPLE: &'static str = "- sample: { fraction: 0.1, seed: 42 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(format!(
                "fraction must be between 0 and 1, found {}",
                self.fraction
            ));
        }
        // Compare hashes against a threshold on the u64 range.
        let threshold = (self.fraction * u64::MAX as f64) as u64;
        Ok(Arc::new(Sample {
            schema: input.clone(),
            seed: self.seed,
            threshold,
            all: self.fraction >= 1.0,
        }))
    }
}

#[derive(Debug)]
struct Sample {
    schema: SchemaRef,
    seed: u64,
    threshold: u64,
    all: bool,
}

/// SplitMix64's finalizer: a specified mixer, so samples never change with a Rust release
/// (std's hashers make no such promise).
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Step for Sample {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        if self.all {
            return Ok(batch);
        }
        let base = splitmix64(self.seed ^ splitmix64(cx.task_key));
        let keep: BooleanArray = (0..batch.num_rows() as u64)
            .map(|i| Some(splitmix64(base ^ (cx.rows_before + i)) < self.threshold))
            .collect();
        let out = filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
        cx.count("dropped", (batch.num_rows() - out.num_rows()) as u64);
        Ok(out)
    }
}

/// The stable 64-bit key of a string (a task's first object path below the source
/// prefix), for [`StepContext`]:
/// FNV-1a, which is specified and so stable across Rust releases and platforms.
pub fn stable_key(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn ids(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(Int64Array::from_iter_values(0..n)) as _,
        )])
        .expect("batch")
    }

    #[test]
    fn same_rows_whatever_the_batching() {
        let step = SampleOptions {
            fraction: 0.3,
            seed: 7,
        }
        .bind(&ids(1).schema())
        .expect("binds");
        let whole = step
            .apply(ids(1000), &mut StepContext::new(9))
            .expect("whole");
        let mut cx = StepContext::new(9);
        let first = step.apply(ids(1000).slice(0, 400), &mut cx).expect("first");
        cx.rows_before = 400;
        let second = step
            .apply(ids(1000).slice(400, 600), &mut cx)
            .expect("second");
        assert_eq!(whole.num_rows(), first.num_rows() + second.num_rows());
        assert!(
            (250..350).contains(&whole.num_rows()),
            "kept {}",
            whole.num_rows()
        );
    }

    #[test]
    fn fraction_out_of_range_is_refused() {
        assert!(
            SampleOptions {
                fraction: 1.5,
                seed: 0
            }
            .bind(&ids(1).schema())
            .is_err()
        );
    }
}
