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
//!
//! `strategy: best_fit` packs without cutting documents across rows, as in "Fewer
//! Truncations Improve Language Modeling" (Ding et al., 2024): a document longer than
//! `seq_len` is cut into `seq_len` chunks (the only cuts), and the chunks of a window of
//! the task's documents (`window` rows' worth of tokens) go into rows by best-fit
//! decreasing — longest first, each into the row whose free space is smallest but
//! enough, else a new row — and every row is padded to `seq_len`. Fewer documents are
//! split than by concatenation, at the cost of padding (`padded_tokens` of
//! `capacity_tokens`, the padding rate the run summary shows). Rows keep the order they
//! were opened in; the output depends on the task's documents and `window` only.

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

/// How documents go into rows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One stream cut every `seq_len` tokens (documents span rows; no padding but a
    /// task's tail).
    #[default]
    Concat,
    /// Best-fit decreasing over a window of documents: only documents longer than
    /// `seq_len` are cut; every row is padded.
    BestFit,
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
    /// `concat` (default) or `best_fit`.
    #[serde(default)]
    pub strategy: Strategy,
    /// With `best_fit`: rows' worth of tokens packed together (default 1024): a larger
    /// window pads less and holds more in memory (`window` × `seq_len` ids).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Add a `loss_mask` column: `list<uint8>` of `seq_len`, 1 for a document's token
    /// (its separator included), 0 for padding, for a trainer that takes the loss over
    /// real tokens only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loss_mask: bool,
}

fn default_window() -> usize {
    1024
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
        if self.window == 0 {
            return Err("window must be at least 1".into());
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
        if self.loss_mask {
            fields.push(Field::new(
                "loss_mask",
                DataType::List(Arc::new(Field::new_list_field(DataType::UInt8, false))),
                false,
            ));
        }
        if fields[1..].iter().any(|f| f.name() == fields[0].name()) {
            return Err(format!(
                "output `{}` is the name of the boundaries or loss mask column; choose \
                 another output",
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

/// What a `best_fit` task holds between batches: the chunks of the documents not packed
/// yet, in arrival order, and their tokens.
#[derive(Debug, Default)]
struct Window {
    chunks: Vec<Vec<u32>>,
    tokens: usize,
}

/// Best-fit decreasing: the chunks (each at most `seq` tokens) placed into rows, longest
/// first (ties in arrival order), each into the open row with the least free space that
/// holds it, else a new one. Returns the rows' chunk indices, rows in the order opened.
fn best_fit(chunks: &[Vec<u32>], seq: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.sort_by(|&a, &b| chunks[b].len().cmp(&chunks[a].len()).then(a.cmp(&b)));
    let mut rows: Vec<(Vec<usize>, usize)> = Vec::new();
    // Free space → the rows with that much, lowest row first.
    let mut free: std::collections::BTreeMap<usize, std::collections::BTreeSet<usize>> =
        std::collections::BTreeMap::new();
    for c in order {
        let len = chunks[c].len();
        let fit = free
            .range(len..)
            .next()
            .and_then(|(&room, rows)| rows.first().map(|&r| (room, r)));
        let row = match fit {
            Some((room, r)) => {
                if let Some(set) = free.get_mut(&room) {
                    set.remove(&r);
                    if set.is_empty() {
                        free.remove(&room);
                    }
                }
                r
            }
            None => {
                rows.push((Vec::new(), 0));
                rows.len() - 1
            }
        };
        rows[row].0.push(c);
        rows[row].1 += len;
        let room = seq - rows[row].1;
        if room > 0 {
            free.entry(room).or_default().insert(row);
        }
    }
    rows.into_iter().map(|(c, _)| c).collect()
}

impl Pack {
    /// Appends the rows best-fit makes of `window`'s chunks, each padded to `seq_len`,
    /// to `values` (and the piece starts to `starts`); counts the sequences, padding and
    /// capacity.
    fn fit(
        &self,
        window: Window,
        values: &mut Vec<u32>,
        starts: &mut Vec<usize>,
        pads: &mut Vec<(usize, usize)>,
        cx: &mut StepContext,
    ) {
        let seq = self.opts.seq_len;
        let rows = best_fit(&window.chunks, seq);
        values.reserve(rows.len() * seq);
        let mut padded = 0usize;
        for row in &rows {
            for &c in row {
                starts.push(values.len());
                values.extend_from_slice(&window.chunks[c]);
            }
            let pad = seq - values.len() % seq;
            if pad < seq {
                // The padding is a piece of its own.
                starts.push(values.len());
                pads.push((values.len(), pad));
                values.resize(values.len() + pad, self.opts.pad_id);
                padded += pad;
            }
        }
        cx.count("sequences", rows.len() as u64);
        cx.count("padded_tokens", padded as u64);
        cx.count("capacity_tokens", (rows.len() * seq) as u64);
    }

    /// Rows of `seq_len` from `values`; `starts` are the document starts among them,
    /// `pads` the padding (start, length).
    fn rows(
        &self,
        values: Vec<u32>,
        starts: &[usize],
        pads: &[(usize, usize)],
    ) -> Result<RecordBatch, String> {
        let seq = self.opts.seq_len;
        let n = values.len() / seq;
        let mask = self.opts.loss_mask.then(|| {
            let mut mask = vec![1u8; n * seq];
            for &(at, len) in pads {
                let end = (at + len).min(mask.len());
                if at < end {
                    mask[at..end].fill(0);
                }
            }
            mask
        });
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
        if let Some(mask) = mask {
            let item = Arc::new(Field::new_list_field(DataType::UInt8, false));
            columns.push(Arc::new(
                ListArray::try_new(
                    item,
                    OffsetBuffer::from_lengths(std::iter::repeat_n(seq, n)),
                    Arc::new(arrow::array::UInt8Array::from(mask)),
                    None,
                )
                .map_err(|e| e.to_string())?,
            ));
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

impl Pack {
    /// Calls `f` with each document's token ids, in order (a null list is no document).
    fn each_document(&self, lists: &ListArray, mut f: impl FnMut(&[u32])) -> Result<(), StepError> {
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
            f(ids.values());
        }
        Ok(())
    }

    /// `best_fit`: each document (with its separator) cut into chunks of at most
    /// `seq_len`, held until the window is full, then packed.
    fn apply_best_fit(
        &self,
        lists: &ListArray,
        cx: &mut StepContext,
    ) -> Result<RecordBatch, StepError> {
        let seq = self.opts.seq_len;
        let limit = self.opts.window.saturating_mul(seq);
        let mut documents = 0u64;
        let mut split = 0u64;
        // Windows fill document by document, whatever the batches: the rows depend on
        // the task's documents alone.
        let mut full: Vec<Window> = Vec::new();
        let window: &mut Window = cx.state(Window::default)?;
        self.each_document(lists, |ids| {
            let mut doc = ids.to_vec();
            doc.extend(self.opts.separator);
            if doc.len() > seq {
                split += 1;
            }
            window.tokens += doc.len();
            for chunk in doc.chunks(seq) {
                window.chunks.push(chunk.to_vec());
            }
            documents += 1;
            if window.tokens >= limit {
                full.push(std::mem::take(window));
            }
        })?;
        cx.count("documents", documents);
        cx.count("split_documents", split);
        let (mut values, mut starts, mut pads) = (Vec::new(), Vec::new(), Vec::new());
        for w in full {
            self.fit(w, &mut values, &mut starts, &mut pads, cx);
        }
        self.rows(values, &starts, &pads).map_err(StepError::from)
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
        if self.opts.strategy == Strategy::BestFit {
            return self.apply_best_fit(lists, cx);
        }
        let carry: &mut Carry = cx.state(Carry::default)?;
        let mut documents = 0u64;
        let mut split = 0u64;
        self.each_document(lists, |ids| {
            let at = carry.tokens.len();
            carry.starts.push(at);
            carry.tokens.extend_from_slice(ids);
            carry.tokens.extend(self.opts.separator);
            // The carry starts at a row boundary: a document crossing one is split.
            if at % seq + (carry.tokens.len() - at) > seq {
                split += 1;
            }
            documents += 1;
        })?;
        let full = carry.tokens.len() / seq * seq;
        let (values, starts) = carry.take(full);
        cx.count("documents", documents);
        cx.count("split_documents", split);
        cx.count("sequences", (values.len() / seq) as u64);
        cx.count("capacity_tokens", values.len() as u64);
        self.rows(values, &starts, &[]).map_err(StepError::from)
    }

    fn finish(&self, cx: &mut StepContext) -> Result<Option<RecordBatch>, StepError> {
        if self.opts.strategy == Strategy::BestFit {
            let window = std::mem::take(cx.state(Window::default)?);
            if window.chunks.is_empty() {
                return Ok(None);
            }
            let (mut values, mut starts, mut pads) = (Vec::new(), Vec::new(), Vec::new());
            self.fit(window, &mut values, &mut starts, &mut pads, cx);
            return self
                .rows(values, &starts, &pads)
                .map(Some)
                .map_err(StepError::from);
        }
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
                let pads = [(carry.len(), pad)];
                carry.resize(self.opts.seq_len, self.opts.pad_id);
                cx.count("padded_tokens", pad as u64);
                cx.count("sequences", 1);
                cx.count("capacity_tokens", self.opts.seq_len as u64);
                self.rows(carry, &starts, &pads)
                    .map(Some)
                    .map_err(StepError::from)
            }
        }
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
