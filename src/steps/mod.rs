//! Steps: values built from their YAML options that map Arrow batches to batches.
//!
//! Adding a step is one new file (its options struct, [`StepOptions`] impl and tests)
//! and one line in the [`registry!`] table below; the conformance suite
//! (`conformance.rs`) then runs its `EXAMPLE` through empty, all-null, wrong-typed and
//! missing columns and on 1 and 2 threads.

mod cast;
mod components;
#[cfg(test)]
mod conformance;
mod dedup_exact;
mod dedup_minhash;
mod derive;
mod drop;
mod drops;
mod exec;
pub mod expr;
mod filter;
pub mod image;
pub mod keys;
use image::{crop, decode, encode, resize, tensor};
mod limit;
pub mod mix;
mod pack;
mod rename;
pub mod sample;
mod select;
mod spill;
mod split;
pub mod tabular;
use tabular::{
    bucketize, clip, fill_null, hash_bucket, log1p, min_max, one_hot, ordinal, standardize,
};
pub(crate) mod text;
use text::{
    decode as text_decode, extract, language, normalize, pii, quality, stats, tokenize, url_filter,
};
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use crate::error::{StepError, StepErrorKind};

/// A step bound to its input schema, ready to run. One value serves every task.
///
/// Every step maps batches ([`Step::apply`]); a map step implements
/// [`Step::output_schema`], [`Step::apply`] and, when it reads columns by name,
/// [`Step::required_input`]; the rest have defaults. A step whose decisions need the whole
/// input says so through [`Step::kind`]: a [`FullPass`] (exact and near-duplicate
/// removal) or a [`FitPass`] (a fitted step bound without statistics).
pub trait Step: Send + Sync + std::fmt::Debug {
    /// The schema of the batches this step emits.
    fn output_schema(&self) -> &SchemaRef;

    /// Maps one batch. An empty result batch is fine; the runtime drops it.
    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError>;

    /// The input columns this step reads, given the columns needed after it. Used to
    /// decode only the columns a pipeline uses.
    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        downstream.clone()
    }

    /// Whether the runtime must first run a pass over the whole input for this step.
    fn kind(&self) -> Kind<'_> {
        Kind::Map
    }

    /// True when each output row depends on its input row alone and `apply` keeps no
    /// state between batches (`cast`, `derive`, `filter`, the image steps). Under
    /// `on_error: skip | dead_letter`, a batch such a step fails on is applied again in
    /// parts to find the rows that fail, which are left out; any other step's error
    /// ends the run.
    fn row_local(&self) -> bool {
        false
    }

    /// True when `apply` depends on nothing but the batch and what the step was bound
    /// with: not on `cx.rows_before`, `cx.task_key` or `cx.state`, nor on anything the
    /// step changes as it runs (`cx.counts` is fine: counters are summed). The runtime
    /// then applies the step to several batches of one task at once, each on any thread
    /// with a context of its own, and puts the results back in order. Every row-local
    /// step is batch-local; `sample`, `limit`, `pack` and the dedup steps are not. The
    /// conformance suite checks the claim (two halves apart give what one context gives).
    fn batch_local(&self) -> bool {
        self.row_local()
    }

    /// True when a data error of `apply` is about the batch as a whole, not a row of it
    /// (an `exec` step's child raised): under `on_error: skip | dead_letter` the batch is
    /// left out and recorded, with its rows and its place in the task, instead of ending
    /// the run. Row-local steps leave out rows instead; other steps' errors end the run.
    fn batch_faults(&self) -> bool {
        false
    }

    /// True once the step will emit no more rows (a reached `limit`), so reading stops.
    fn exhausted(&self) -> bool {
        false
    }

    /// True if its output depends on the order tasks run in across the whole dataset;
    /// the runtime then runs tasks one after the other, in listing order.
    fn needs_global_order(&self) -> bool {
        false
    }

    /// Called once after the last batch of a task: rows a step held back (the tail of
    /// a `pack`) go downstream here. Nothing by default.
    fn finish(&self, _cx: &mut StepContext) -> Result<Option<RecordBatch>, StepError> {
        Ok(None)
    }

    /// A digest of files the step reads besides the data (a tokenizer), so that the
    /// pipeline hash changes when they do. None for steps that read none.
    fn fingerprint(&self) -> Option<String> {
        None
    }

    /// For a step that makes token ids: how many ids its vocabulary has (a Megatron sink
    /// stores ids below 65,500 as `uint16`). None for other steps.
    fn vocabulary(&self) -> Option<u64> {
        None
    }

    /// Called, on the run's thread pool, when a run is about to send the step batches:
    /// what is slow to start (`exec`'s child processes) starts now, beside the source's
    /// first reads, instead of when the first batch waits for it. Best effort: an error
    /// here shows at the first batch. Nothing by default.
    fn warm(&self) {}
}

/// The lifecycle of a bound step.
#[derive(Clone, Copy)]
pub enum Kind<'a> {
    /// Maps each batch with what it was bound with.
    Map,
    /// Decides over the whole input before its main pass: the runtime runs every task
    /// through the steps before it, hands what reaches it to a per-task [`Observer`],
    /// and calls [`FullPass::settle`] with every task's part; then the main pass applies
    /// what it decided.
    FullPass(&'a dyn FullPass),
    /// Bound without statistics: the runtime observes the input as for a full pass,
    /// takes the statistics [`FitPass::settle`] returns (written to `_kiln/stats.json`),
    /// and binds the step again with them ([`StepOptions::bind_fitted`]).
    Fit(&'a dyn FitPass),
}

impl<'a> Kind<'a> {
    /// True for a step that needs a pass over the whole input first.
    pub fn needs_pass(&self) -> bool {
        !matches!(self, Kind::Map)
    }

    /// True for a step bound without its statistics.
    pub fn needs_fit(&self) -> bool {
        matches!(self, Kind::Fit(_))
    }

    /// A fresh observer for task `task`; None for a map step.
    pub fn observer(self, task: usize) -> Option<Result<Box<dyn Observer + 'a>, StepError>> {
        match self {
            Kind::Map => None,
            Kind::FullPass(p) => Some(p.observer(task)),
            Kind::Fit(f) => Some(f.observer(task)),
        }
    }

    /// Writes a task's part for another worker to read ([`Kind::read_part`]): a stage
    /// across workers stores each task's part in the sink (docs/workers.md).
    pub fn write_part(self, part: Part, out: &mut dyn Write) -> Result<(), StepError> {
        match self {
            Kind::Map => Err(StepError::internal("a map step has no part")),
            Kind::FullPass(p) => p.write_part(part, out),
            Kind::Fit(f) => f.write_part(part, out),
        }
    }

    /// Reads a part [`Kind::write_part`] wrote.
    pub fn read_part(self, input: &mut dyn Read) -> Result<Part, StepError> {
        match self {
            Kind::Map => Err(StepError::internal("a map step has no part")),
            Kind::FullPass(p) => p.read_part(input),
            Kind::Fit(f) => f.read_part(input),
        }
    }
}

/// What one task of a full pass keeps for one step: it sees the task's batches in order
/// and ends with its [`Part`]. Parts are independent of each other, so tasks run in any
/// order, on any thread (or worker), and the settled result depends only on the input.
pub trait Observer: Send {
    /// Takes note of a batch that reaches the step; `rows_before` rows of this task
    /// reached it before.
    fn observe(&mut self, batch: &RecordBatch, rows_before: u64) -> Result<(), StepError>;

    /// The task has no more batches: what it found.
    fn finish(self: Box<Self>) -> Result<Part, StepError>;
}

/// What one task's [`Observer`] found, for the step's `settle` (which knows its type).
pub type Part = Box<dyn std::any::Any + Send>;

/// A step that decides over the whole input (see [`Kind::FullPass`]).
pub trait FullPass: Send + Sync {
    /// An observer for the task with index `task` in the plan.
    fn observer(&self, task: usize) -> Result<Box<dyn Observer + '_>, StepError>;

    /// Every task's part, in task order; decides what the main pass does. A step with
    /// an index ([`FullPass::index`]) hands each distinct key to `keys`, in key order:
    /// a key an earlier dataset holds is a copy of an earlier row. `budget`: the bytes
    /// its decisions may take in memory (the step's own `memory` option overrides it);
    /// past it they go to the step's spill directory.
    fn settle(
        &self,
        parts: Vec<Part>,
        keys: &mut keys::KeyIndex,
        budget: u64,
    ) -> Result<(), StepError>;

    /// A part as bytes, for a stage across workers; the part is consumed.
    fn write_part(&self, part: Part, out: &mut dyn Write) -> Result<(), StepError>;

    /// A part from what [`FullPass::write_part`] wrote (of any kiln worker of the same
    /// version).
    fn read_part(&self, input: &mut dyn Read) -> Result<Part, StepError>;

    /// The step's side that decides in the main pass itself, when a row's fate depends
    /// only on the rows before it in input order (exact dedup: a copy of an earlier row
    /// goes). None for a step that needs every row first (near-dedup clusters).
    fn in_order(&self) -> Option<&dyn InOrder> {
        None
    }

    /// The step's side that settles in sections, for a stage across workers: each
    /// worker merges some sections of every task's part, and every worker settles from
    /// the sections' (much smaller) decisions. None: every worker settles from every part.
    fn sectioned(&self) -> Option<&dyn Sectioned> {
        None
    }

    /// What the step's key index is (`against:`, `_kiln/index/`; `steps/keys.rs`):
    /// None for a step without one.
    fn index(&self) -> Option<keys::IndexSpec> {
        None
    }
}

/// A full-pass step whose part splits by key into sections that decide independently
/// (every record of one key is in one section), so that settling is shared by the
/// workers of a stage ([`FullPass::sectioned`], docs/workers.md).
pub trait Sectioned: Send + Sync {
    /// Writes a task's part as `sections` sections one after the other; returns the
    /// byte offset where each section ends. The part is consumed.
    fn write_sections(
        &self,
        part: Part,
        sections: usize,
        out: &mut dyn Write,
    ) -> Result<Vec<u64>, StepError>;

    /// One section of every task's part (each as [`FullPass::read_part`] reads it), in
    /// task order: that section's decisions, written to `out`. `keys`: the section's
    /// buckets of the key index, and `budget`, as [`FullPass::settle`] takes them.
    fn merge_section(
        &self,
        parts: Vec<Part>,
        keys: &mut keys::KeyIndex,
        budget: u64,
        out: &mut dyn Write,
    ) -> Result<(), StepError>;

    /// Every section's decisions, in section order: decides what the main pass does,
    /// within `budget` as [`FullPass::settle`].
    fn settle_sections(
        &self,
        decided: Vec<Box<dyn Read + Send>>,
        budget: u64,
    ) -> Result<(), StepError>;
}

/// A full-pass step deciding in the main pass ([`FullPass::in_order`]): the runtime runs
/// the main pass's tasks one at a time, in task order, and the step decides each row as
/// it arrives from what it kept of the rows before it, so the input is read once. When
/// what it keeps outgrows its budget, the runtime ends this at a task boundary: the
/// tasks left get a full pass, settled with [`InOrder::end`]'s part first.
pub trait InOrder: Send + Sync {
    /// Starts deciding in order, within `budget` bytes of state. `known`: the parts of
    /// the tasks the main pass does not run (committed by an earlier run), observed as
    /// in a full pass, in task order.
    fn begin(&self, known: Vec<Part>, budget: u64) -> Result<(), StepError>;

    /// True when the state outgrew the budget given to [`InOrder::begin`].
    fn over_budget(&self) -> bool;

    /// Stops deciding in order: what it kept, as a part for [`FullPass::settle`] ahead
    /// of the parts of the tasks left (all of which come after every row it saw).
    fn end(&self) -> Result<Part, StepError>;

    /// The step's key index from `parts` (what [`InOrder::end`] kept once every task
    /// ran, or the parts of every task): each distinct key to `keys`, in key order.
    fn write_index(&self, parts: Vec<Part>, keys: &mut keys::KeyIndex) -> Result<(), StepError>;
}

/// A fitted step before its fit (see [`Kind::Fit`]).
pub trait FitPass: Send + Sync {
    /// The columns its fit reads and the columns the step writes. Adjacent fitted steps
    /// whose reads do not meet an earlier one's writes are fitted in one pass.
    fn fit_columns(&self) -> (BTreeSet<String>, BTreeSet<String>);

    /// An observer for the task with index `task` in the plan.
    fn observer(&self, task: usize) -> Result<Box<dyn Observer + '_>, StepError>;

    /// Every task's part, in task order: the statistics, as `_kiln/stats.json` stores
    /// them and [`StepOptions::bind_fitted`] reads them.
    fn settle(&self, parts: Vec<Part>) -> Result<serde_json::Value, StepError>;

    /// A part as bytes, for a stage across workers (as [`FullPass::write_part`]).
    fn write_part(&self, part: Part, out: &mut dyn Write) -> Result<(), StepError>;

    /// A part from what [`FitPass::write_part`] wrote.
    fn read_part(&self, input: &mut dyn Read) -> Result<Part, StepError>;
}

/// Downcasts each part to what `step`'s observers return.
pub(crate) fn parts<T: 'static>(parts: Vec<Part>, step: &str) -> Result<Vec<T>, StepError> {
    parts
        .into_iter()
        .map(|p| {
            p.downcast::<T>().map(|b| *b).map_err(|_| {
                StepError::internal(format!("a part of `{step}`'s pass has another type"))
            })
        })
        .collect()
}

/// What a step may know about where a batch sits in its task, and what it keeps
/// between the batches of one task.
#[derive(Debug, Default)]
pub struct StepContext {
    /// The task's index in the plan.
    pub task: usize,
    /// A stable key of the task (hash of its first object's path).
    pub task_key: u64,
    /// Rows this step has seen in this task before the current batch.
    pub rows_before: u64,
    /// Named counters (tokens, drops per rule, redactions), summed over the task and
    /// then into the run's report and the task's commit record.
    pub counts: BTreeMap<String, u64>,
    /// State a step carries from one batch of a task to the next.
    pub state: Option<Box<dyn std::any::Any + Send>>,
}

impl StepContext {
    pub fn new(task_key: u64) -> Self {
        StepContext {
            task_key,
            ..Default::default()
        }
    }

    pub fn for_task(task: usize, task_key: u64) -> Self {
        StepContext {
            task,
            task_key,
            ..Default::default()
        }
    }

    /// Adds `n` to the counter `name`.
    pub fn count(&mut self, name: &str, n: u64) {
        if n == 0 && self.counts.contains_key(name) {
            return;
        }
        *self.counts.entry(name.to_string()).or_default() += n;
    }

    /// The step's state, created by `init` on first use.
    pub fn state<T: Send + 'static>(
        &mut self,
        init: impl FnOnce() -> T,
    ) -> Result<&mut T, StepError> {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        self.state
            .as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .ok_or_else(|| StepError::internal("a step's state has another type"))
    }
}

/// What every step's options implement.
pub trait StepOptions {
    /// One line for `kiln steps`.
    const SUMMARY: &'static str;
    /// A YAML example for `kiln steps` and the docs.
    const EXAMPLE: &'static str;
    /// Checks the options against the input schema and builds the step.
    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String>;

    /// Builds a fitted step from statistics (its own fit's, or another sink's through
    /// `stats_from`). Steps without statistics ignore them.
    fn bind_fitted(
        &self,
        input: &SchemaRef,
        _stats: &serde_json::Value,
    ) -> Result<Arc<dyn Step>, String> {
        self.bind(input)
    }
}

/// Description of a registered step, for `kiln steps`.
pub struct StepInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
    pub options_schema: fn() -> serde_json::Value,
}

macro_rules! registry {
    ($( $variant:ident => $name:literal, $module:ident :: $opts:ident; )*) => {
        /// One entry of `steps:` in the pipeline file: `- <name>: <options>`.
        // A pipeline has a handful of steps: boxing the larger option structs would
        // save nothing worth the noise.
        #[expect(
            clippy::large_enum_variant,
            reason = "a pipeline holds a few step specs, parsed once; boxing them buys nothing"
        )]
        #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
        pub enum StepSpec {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant($module::$opts),
            )*
        }

        impl StepSpec {
            /// The name users write in the pipeline file.
            pub fn name(&self) -> &'static str {
                match self { $( StepSpec::$variant(_) => $name, )* }
            }

            /// Builds the step for batches of `input`.
            pub fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
                match self { $( StepSpec::$variant(o) => o.bind(input), )* }
            }

            /// Builds the step with fitted statistics.
            pub fn bind_fitted(&self, input: &SchemaRef, stats: &serde_json::Value) -> Result<Arc<dyn Step>, String> {
                match self { $( StepSpec::$variant(o) => o.bind_fitted(input, stats), )* }
            }
        }

        /// Every step kiln knows, in the order `kiln steps` lists them.
        pub const STEPS: &[StepInfo] = &[
            $( StepInfo {
                name: $name,
                summary: <$module::$opts as StepOptions>::SUMMARY,
                example: <$module::$opts as StepOptions>::EXAMPLE,
                options_schema: || serde_json::to_value(schemars::schema_for!($module::$opts)).unwrap_or_default(),
            }, )*
        ];
    };
}

registry! {
    Select => "select", select::SelectOptions;
    Drop => "drop", drop::DropOptions;
    Rename => "rename", rename::RenameOptions;
    Cast => "cast", cast::CastOptions;
    Filter => "filter", filter::FilterOptions;
    Derive => "derive", derive::DeriveOptions;
    Limit => "limit", limit::LimitOptions;
    Sample => "sample", sample::SampleOptions;
    TextDecode => "text.decode", text_decode::DecodeOptions;
    TextNormalize => "text.normalize", normalize::NormalizeOptions;
    TextQuality => "text.quality", quality::QualityOptions;
    TextLanguage => "text.language", language::LanguageOptions;
    TextStats => "text.stats", stats::StatsOptions;
    TextPii => "text.pii", pii::PiiOptions;
    UrlFilter => "url.filter", url_filter::UrlFilterOptions;
    HtmlExtract => "html.extract", extract::ExtractOptions;
    Tokenize => "tokenize", tokenize::TokenizeOptions;
    Pack => "pack", pack::PackOptions;
    Mix => "mix", mix::MixOptions;
    Split => "split", split::SplitOptions;
    DedupExact => "dedup.exact", dedup_exact::DedupExactOptions;
    DedupMinhash => "dedup.minhash", dedup_minhash::MinhashOptions;
    FillNull => "fill_null", fill_null::FillNullOptions;
    Standardize => "standardize", standardize::StandardizeOptions;
    MinMax => "min_max", min_max::MinMaxOptions;
    Clip => "clip", clip::ClipOptions;
    Log1p => "log1p", log1p::Log1pOptions;
    Bucketize => "bucketize", bucketize::BucketizeOptions;
    OneHot => "one_hot", one_hot::OneHotOptions;
    Ordinal => "ordinal", ordinal::OrdinalOptions;
    HashBucket => "hash_bucket", hash_bucket::HashBucketOptions;
    ImageDecode => "image.decode", decode::DecodeOptions;
    ImageResize => "image.resize", resize::ResizeOptions;
    ImageCenterCrop => "image.center_crop", crop::CenterCropOptions;
    ImageEncode => "image.encode", encode::EncodeOptions;
    ImageToTensor => "image.to_tensor", tensor::ToTensorOptions;
    Exec => "exec", exec::ExecOptions;
}

/// Finds `name` in `schema`, or says which columns exist.
pub(crate) fn column_index(schema: &SchemaRef, name: &str) -> Result<usize, String> {
    schema
        .index_of(name)
        .map_err(|_| unknown_column(schema, name))
}

pub(crate) fn unknown_column(schema: &SchemaRef, name: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    format!(
        "no column `{name}`; the columns here are: {}",
        names.join(", ")
    )
}

#[cfg(test)]
pub(crate) mod test_util;
