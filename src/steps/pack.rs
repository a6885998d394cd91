//! `pack`: concatenate the token lists of a task's documents and cut the stream into
//! rows of exactly `seq_len` tokens, the layout pretraining loaders read.
//!
//! Documents are taken in input order; `separator` (e.g. the EOS id, when `tokenize`
//! did not already append it) goes after each. The stream restarts at each task, so the
//! output does not depend on thread count or timing; what is left at the end of a task
//! (fewer than `seq_len` tokens) is dropped or padded, as `remainder` says, and counted.
//! Rows no longer correspond to documents, so the output has the packed column, and
//! with `boundaries` where each document's tokens are in a row, so that attention can be
//! masked per document: `cu_seqlens` (the cumulative lengths of the row's pieces,
//! `[0, …, seq_len]`, as FlashAttention's variable-length API and Megatron's packed
//! sequences take them) or `segment_ids` (per token, the index of its piece in the
//! row). A document cut at a row's end continues as the first piece of the next row;
//! a separator belongs to the document before it; a padded tail is a piece of its own.

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

/// Where the documents are in each packed row (see the module docs).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Boundaries {
    /// Only the packed tokens.
    #[default]
    None,
    /// A `cu_seqlens` column: `list<int32>`, 0, each piece's end, `seq_len`.
    CuSeqlens,
    /// A `segment_ids` column: `list<uint32>` of `seq_len`, the piece of each token.
    SegmentIds,
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
    /// Where each document is in a row: `none` (default), `cu_seqlens` or `segment_ids`.
    #[serde(default)]
    pub boundaries: Boundaries,
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
        let mut fields = vec![Field::new(
            &self.output,
            DataType::List(item.clone()),
            false,
        )];
        match self.boundaries {
            Boundaries::None => {}
            Boundaries::CuSeqlens => fields.push(Field::new(
                "cu_seqlens",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, false))),
                false,
            )),
            Boundaries::SegmentIds => fields.push(Field::new(
                "segment_ids",
                DataType::List(item.clone()),
                false,
            )),
        }
        if fields.len() > 1 && fields[0].name() == fields[1].name() {
            return Err(format!(
                "output `{}` is the name of the boundaries column; choose another output",
                self.output
            ));
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
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

/// What a task carries from one batch to the next: the tokens not yet in a row, and
/// where in them a document starts (the first one may have begun in an earlier row).
#[derive(Debug, Default)]
struct Carry {
    tokens: Vec<u32>,
    starts: Vec<usize>,
}

impl Carry {
    /// The first `n` tokens and the document starts among them, leaving the rest.
    fn take(&mut self, n: usize) -> (Vec<u32>, Vec<usize>) {
        let rest = self.tokens.split_off(n);
        let tokens = std::mem::replace(&mut self.tokens, rest);
        let split = self.starts.partition_point(|&s| s < n);
        let later: Vec<usize> = self.starts[split..].iter().map(|s| s - n).collect();
        self.starts.truncate(split);
        let starts = std::mem::replace(&mut self.starts, later);
        (tokens, starts)
    }
}

impl Pack {
    /// Rows of `seq_len` from `values`; `starts` are the document starts among them.
    fn rows(&self, values: Vec<u32>, starts: &[usize]) -> Result<RecordBatch, String> {
        let seq = self.opts.seq_len;
        let n = values.len() / seq;
        let list = ListArray::try_new(
            self.item.clone(),
            OffsetBuffer::from_lengths(std::iter::repeat_n(seq, n)),
            Arc::new(UInt32Array::from(values)),
            None,
        )
        .map_err(|e| e.to_string())?;
        let mut columns = vec![Arc::new(list) as ArrayRef];
        if self.opts.boundaries != Boundaries::None {
            // Each row's piece boundaries: 0, the starts inside the row, seq_len.
            let mut cuts: Vec<Vec<usize>> = vec![vec![0]; n];
            for &s in starts {
                let (row, at) = (s / seq, s % seq);
                if row < n && at > 0 {
                    cuts[row].push(at);
                }
            }
            columns.push(match self.opts.boundaries {
                Boundaries::CuSeqlens => {
                    let lens: Vec<usize> = cuts.iter().map(|c| c.len() + 1).collect();
                    let mut values = Vec::with_capacity(lens.iter().sum());
                    for c in &cuts {
                        values.extend(c.iter().map(|&v| v as i32));
                        values.push(seq as i32);
                    }
                    let item = Arc::new(Field::new_list_field(DataType::Int32, false));
                    Arc::new(
                        ListArray::try_new(
                            item,
                            OffsetBuffer::from_lengths(lens),
                            Arc::new(arrow::array::Int32Array::from(values)),
                            None,
                        )
                        .map_err(|e| e.to_string())?,
                    )
                }
                _ => {
                    let mut values = Vec::with_capacity(n * seq);
                    for c in &cuts {
                        let ends = c[1..].iter().chain(std::iter::once(&seq));
                        for (piece, (start, end)) in c.iter().zip(ends).enumerate() {
                            values.extend(std::iter::repeat_n(piece as u32, end - start));
                        }
                    }
                    Arc::new(
                        ListArray::try_new(
                            self.item.clone(),
                            OffsetBuffer::from_lengths(std::iter::repeat_n(seq, n)),
                            Arc::new(UInt32Array::from(values)),
                            None,
                        )
                        .map_err(|e| e.to_string())?,
                    )
                }
            });
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
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
        let carry: &mut Carry = cx.state(Carry::default)?;
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
            carry.starts.push(carry.tokens.len());
            carry.tokens.extend_from_slice(ids.values());
            carry.tokens.extend(self.opts.separator);
            documents += 1;
        }
        let full = carry.tokens.len() / seq * seq;
        let (values, starts) = carry.take(full);
        cx.count("documents", documents);
        cx.count("sequences", (values.len() / seq) as u64);
        self.rows(values, &starts).map_err(StepError::from)
    }

    fn finish(&self, cx: &mut StepContext) -> Result<Option<RecordBatch>, StepError> {
        let Carry {
            tokens: mut carry,
            mut starts,
        } = std::mem::take(cx.state(Carry::default)?);
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
                // The padding is a piece of its own.
                starts.push(carry.len());
                carry.resize(self.opts.seq_len, self.opts.pad_id);
                cx.count("padded_tokens", pad as u64);
                cx.count("sequences", 1);
                self.rows(carry, &starts).map(Some).map_err(StepError::from)
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

    fn lists<T: arrow::datatypes::ArrowPrimitiveType>(
        b: &RecordBatch,
        name: &str,
    ) -> Vec<Vec<T::Native>> {
        let l = b.column_by_name(name).expect(name).as_list::<i32>();
        (0..l.len())
            .map(|i| l.value(i).as_primitive::<T>().values().to_vec())
            .collect()
    }

    #[test]
    fn rows_say_where_each_document_is() {
        let bind = |boundaries: &str| {
            let opts: PackOptions = serde_json::from_value(serde_json::json!({
                "seq_len": 4, "separator": 0, "remainder": "pad", "pad_id": 9,
                "boundaries": boundaries
            }))
            .expect("options");
            opts.bind(&tokens(&[]).schema()).expect("binds")
        };
        // Documents 1 2 3 | 4 | 5 6 7 8 9, each followed by 0:
        //   row 0: 1 2 3 0 | row 1: 4 0 5 6 | row 2: 7 8 9 0 | tail: 10 0 + padding.
        let run = |step: &Arc<dyn Step>| {
            let mut cx = StepContext::default();
            let mut out = vec![
                step.apply(tokens(&[&[1, 2, 3], &[4]]), &mut cx).expect("a"),
                step.apply(tokens(&[&[5, 6, 7, 8, 9]]), &mut cx).expect("b"),
                step.apply(tokens(&[&[10]]), &mut cx).expect("c"),
            ];
            out.extend(step.finish(&mut cx).expect("finish"));
            let schema = out[0].schema();
            arrow::compute::concat_batches(&schema, &out).expect("concat")
        };
        let cu = run(&bind("cu_seqlens"));
        assert_eq!(
            rows(&cu),
            vec![
                vec![1, 2, 3, 0],
                vec![4, 0, 5, 6],
                vec![7, 8, 9, 0],
                vec![10, 0, 9, 9]
            ]
        );
        assert_eq!(
            lists::<arrow::datatypes::Int32Type>(&cu, "cu_seqlens"),
            vec![vec![0, 4], vec![0, 2, 4], vec![0, 4], vec![0, 2, 4]],
            "a document cut at a row's end continues as the next row's first piece"
        );
        let seg = run(&bind("segment_ids"));
        assert_eq!(
            lists::<UInt32Type>(&seg, "segment_ids"),
            vec![
                vec![0, 0, 0, 0],
                vec![0, 0, 1, 1],
                vec![0, 0, 0, 0],
                vec![0, 0, 1, 1]
            ]
        );
        // A document starting exactly at a row's start opens no empty piece:
        //   1 2 3 0 | 4 5 6 0 | 7 0 8 0.
        let step = bind("cu_seqlens");
        let mut cx = StepContext::default();
        let b = step
            .apply(tokens(&[&[1, 2, 3], &[4, 5, 6], &[7], &[8]]), &mut cx)
            .expect("apply");
        assert_eq!(
            lists::<arrow::datatypes::Int32Type>(&b, "cu_seqlens"),
            vec![vec![0, 4], vec![0, 4], vec![0, 2, 4]]
        );
        // Without `boundaries` the output is the packed column alone.
        let plain = bind("none");
        assert_eq!(plain.output_schema().fields().len(), 1);
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
