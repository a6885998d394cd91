//! `limit`: keep the first N rows of the dataset, in listing order.
//!
//! "First" is across the whole input, so a pipeline with `limit` runs its tasks one
//! after the other in listing order; reading stops once the limit is reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepContext, StepOptions};
use crate::steps::StepError;

/// The number of rows to keep.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LimitOptions(pub u64);

impl StepOptions for LimitOptions {
    const SUMMARY: &'static str = "keep the first N rows (in input order) and stop reading";
    const EXAMPLE: &'static str = "- limit: 1000";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        Ok(Arc::new(Limit {
            schema: input.clone(),
            remaining: AtomicU64::new(self.0),
        }))
    }
}

#[derive(Debug)]
struct Limit {
    schema: SchemaRef,
    remaining: AtomicU64,
}

impl Step for Limit {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let rows = batch.num_rows() as u64;
        // Tasks run one at a time under a limit, so this is the only writer.
        let remaining = self.remaining.load(Ordering::Acquire);
        let keep = rows.min(remaining);
        self.remaining.store(remaining - keep, Ordering::Release);
        Ok(batch.slice(0, keep as usize))
    }

    fn exhausted(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    fn needs_global_order(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;

    #[test]
    fn stops_after_n_rows_across_batches() {
        let step = LimitOptions(6).bind(&test_util::schema()).expect("binds");
        let mut cx = StepContext::default();
        assert_eq!(
            step.apply(test_util::batch(), &mut cx)
                .expect("a")
                .num_rows(),
            4
        );
        assert!(!step.exhausted());
        assert_eq!(
            step.apply(test_util::batch(), &mut cx)
                .expect("b")
                .num_rows(),
            2
        );
        assert!(step.exhausted());
        assert_eq!(
            step.apply(test_util::batch(), &mut cx)
                .expect("c")
                .num_rows(),
            0
        );
    }
}
