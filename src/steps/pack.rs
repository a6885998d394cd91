//! `pack`: concatenate the token lists of a task's documents and cut the stream into
//! rows of exactly `seq_len` tokens, the layout pretraining loaders read.
//!
//! Documents are taken in input order; `separator` (e.g. the EOS id, when `tokenize`
//! did not already append it) goes after each. The stream restarts at each task, so the
//! output does not depend on thread count or timing; what is left at the end of a task
//! (fewer than `seq_len` tokens) is dropped or padded, as `remainder` says, and counted.
//! Rows no longer correspond to documents, so the output has the packed column only.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// What happens to the last, short sequence of a task.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Remainder {
    /// Dropped (counted as `dropped_tokens`).
    #[default]
    Drop,
    /// Padded with `pad_id` to `seq_len` (counted as `padded_tokens`).
    Pad,
}

/// Options of `pack`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackOptions {
    /// Tokens per output row.
    pub seq_len: usize,
    /// The token-list column (default `tokens`).
    #[serde(default = "default_column")]
    pub column: String,
    /// The output column (default `input_ids`).
    #[serde(default = "default_output")]
    pub output: String,
    /// A token id put after every document (none by default).
    #[serde(default)]
    pub separator: Option<u32>,
    /// `drop` (default) or `pad` the last short sequence of each task.
    #[serde(default)]
    pub remainder: Remainder,
    /// The padding id for `remainder: pad` (default 0).
    #[serde(default)]
    pub pad_id: u32,
}

fn default_column() -> String {
    "tokens".into()
}

fn default_output() -> String {
    "input_ids".into()
}

impl StepOptions for PackOptions {
    const SUMMARY: &'static str =
        "concatenate token lists and cut them into rows of exactly seq_len tokens";
    const EXAMPLE: &'static str = "- pack: { seq_len: 2048, column: tokens, remainder: drop }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        if self.seq_len == 0 {
            return Err("seq_len must be at least 1".into());
        }
        let source = column_index(input, &self.column)?;
        match input.field(source).data_type() {
            DataType::List(f) if f.data_type().is_integer() => {}
            DataType::LargeList(f) if f.data_type().is_integer() => {}
            other => {
                return Err(format!(
                    "column `{}` is {other}, not a list of token ids; put `tokenize` before `pack`",
                    self.column
                ));
            }
        }
        let item = Arc::new(Field::new_list_field(DataType::UInt32, false));
        let schema = Arc::new(Schema::new_with_metadata(
            vec![Field::new(
                &self.output,
                DataType::List(item.clone()),
                false,
            )],
            input.metadata().clone(),
        ));
        Ok(Arc::new(Pack {
            opts: self.clone(),
            source,
            item,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Pack {
    opts: PackOptions,
    source: usize,
    item: Arc<Field>,
    schema: SchemaRef,
}

impl Pack {
    fn rows(&self, values: Vec<u32>) -> Result<RecordBatch, String> {
        let n = values.len() / self.opts.seq_len;
        let list = ListArray::try_new(
            self.item.clone(),
            OffsetBuffer::from_lengths(std::iter::repeat_n(self.opts.seq_len, n)),
            Arc::new(UInt32Array::from(values)),
            None,
        )
        .map_err(|e| e.to_string())?;
        RecordBatch::try_new(self.schema.clone(), vec![Arc::new(list) as ArrayRef])
            .map_err(|e| e.to_string())
    }
}

impl Step for Pack {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, _downstream: &BTreeSet<String>) -> BTreeSet<String> {
        BTreeSet::from([self.opts.column.clone()])
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let col = batch.column(self.source);
        let col = arrow::compute::cast(
            col,
            &DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, true))),
        )
        .map_err(|e| StepError::from(e).in_column(&self.opts.column))?;
        let lists = col.as_list::<i32>();
        let seq = self.opts.seq_len;
        let carry: &mut Vec<u32> = cx.state(Vec::new)?;
        let mut documents = 0u64;
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            let ids = lists.value(i);
            let ids = ids.as_primitive::<UInt32Type>();
            if ids.null_count() > 0 {
                return Err(StepError::data("a token id in the list is null")
                    .in_column(&self.opts.column)
                    .at_row(i));
            }
            carry.extend_from_slice(ids.values());
            carry.extend(self.opts.separator);
            documents += 1;
        }
        let full = carry.len() / seq * seq;
        let rest = carry.split_off(full);
        let values = std::mem::replace(carry, rest);
        cx.count("documents", documents);
        cx.count("sequences", (values.len() / seq) as u64);
        self.rows(values).map_err(StepError::from)
    }

    fn finish(&self, cx: &mut StepContext) -> Result<Option<RecordBatch>, StepError> {
        let mut carry: Vec<u32> = std::mem::take(cx.state(Vec::new)?);
        if carry.is_empty() {
            return Ok(None);
        }
        match self.opts.remainder {
            Remainder::Drop => {
                cx.count("dropped_tokens", carry.len() as u64);
                Ok(None)
            }
            Remainder::Pad => {
                let pad = self.opts.seq_len - carry.len();
                carry.resize(self.opts.seq_len, self.opts.pad_id);
                cx.count("padded_tokens", pad as u64);
                cx.count("sequences", 1);
                self.rows(carry).map(Some).map_err(StepError::from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(docs: &[&[u32]]) -> RecordBatch {
        let list = ListArray::from_iter_primitive::<UInt32Type, _, _>(
            docs.iter()
                .map(|d| Some(d.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
        );
        RecordBatch::try_from_iter(vec![("tokens", Arc::new(list) as ArrayRef)]).expect("batch")
    }

    fn rows(b: &RecordBatch) -> Vec<Vec<u32>> {
        let l = b.column(0).as_list::<i32>();
        (0..l.len())
            .map(|i| l.value(i).as_primitive::<UInt32Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn packs_across_batches_and_pads_or_drops_the_tail() {
        let opts: PackOptions =
            serde_json::from_value(serde_json::json!({"seq_len": 4, "separator": 0}))
                .expect("options");
        let step = opts.bind(&tokens(&[]).schema()).expect("binds");
        let mut cx = StepContext::default();
        let a = step.apply(tokens(&[&[1, 2, 3], &[4]]), &mut cx).expect("a");
        assert_eq!(rows(&a), vec![vec![1, 2, 3, 0]]);
        let b = step.apply(tokens(&[&[5, 6, 7, 8, 9]]), &mut cx).expect("b");
        assert_eq!(rows(&b), vec![vec![4, 0, 5, 6], vec![7, 8, 9, 0]]);
        let c = step.apply(tokens(&[&[10]]), &mut cx).expect("c");
        assert_eq!(c.num_rows(), 0);
        assert!(step.finish(&mut cx).expect("finish").is_none());
        assert_eq!(cx.counts["dropped_tokens"], 2);
        assert_eq!(cx.counts["sequences"], 3);

        let opts: PackOptions = serde_json::from_value(
            serde_json::json!({"seq_len": 4, "remainder": "pad", "pad_id": 99}),
        )
        .expect("options");
        let step = opts.bind(&tokens(&[]).schema()).expect("binds");
        let mut cx = StepContext::default();
        step.apply(tokens(&[&[1, 2, 3, 4, 5]]), &mut cx).expect("a");
        let tail = step.finish(&mut cx).expect("finish").expect("a padded row");
        assert_eq!(rows(&tail), vec![vec![5, 99, 99, 99]]);
        assert_eq!(cx.counts["padded_tokens"], 3);
    }

    #[test]
    fn refuses_a_text_column() {
        let texts: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a"]));
        let batch = RecordBatch::try_from_iter(vec![("tokens", texts)]).expect("batch");
        let opts: PackOptions =
            serde_json::from_value(serde_json::json!({"seq_len": 4})).expect("options");
        let err = opts.bind(&batch.schema()).expect_err("not tokens");
        assert!(err.contains("put `tokenize` before `pack`"), "{err}");
    }
}
