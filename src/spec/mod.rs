//! Exactly what the pipeline file says (docs/pipeline.md): serde types, loading with `${VAR}`
//! expansion, `--set` overrides and the JSON Schema for editors.
//!
//! One role, though over 600 lines: this file is the pipeline file's types, each with
//! the doc comment `kiln schema` and editors show; loading, variables, `--set` and
//! error placement are the other files of this folder.
//!
//! The YAML crate is `serde-saphyr`: serde_yaml is deprecated upstream and its forks are
//! thin maintenance; serde-saphyr deserializes straight into these types (no untyped
//! tree in between, so every error keeps its line and column), never panics on malformed
//! input, bounds resource use with budgets, and implements `${VAR}` / `${VAR:-default}`
//! itself, redacting expanded values from its error messages so a secret passed through
//! the environment never reaches a log.

mod interpolate;
mod load;
mod locate;
mod ordered;
mod storage;

pub use crate::size::ByteSize;
pub use load::{load, load_str};

/// A step's error, placed in the pipeline file: `file:line:col: step N `name`: …` at the
/// value it quotes (an expression's syntax error at the fault itself). Other errors, and
/// a file that cannot be read again, pass through unchanged.
pub fn place_step_error(file: &std::path::Path, e: crate::error::Error) -> crate::error::Error {
    let crate::error::Error::Step {
        index,
        step,
        message,
    } = &e
    else {
        return e;
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return e;
    };
    match locate::step_error(&text, index.saturating_sub(1), message) {
        Some((line, col)) => crate::error::Error::Spec {
            file: format!("{}:{line}:{col}", file.display()),
            message: format!("step {index} `{step}`: {message}"),
        },
        None => e,
    }
}
pub use storage::{Duration, Retry, Storage};

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steps::StepSpec;

/// A pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Version of the file format; always `1`.
    pub version: u32,
    /// Name of the pipeline, recorded in the sink's manifest.
    pub name: String,
    /// Free text, recorded in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the raw data comes from. A pipeline has `source` or `sources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Several named inputs read as one dataset (a pretraining mixture: `web`, `code`,
    /// `books`), each with its own `uri`, format options and `steps`; every row gets a
    /// `source` column naming its input, and a `mix` step weights them. Read in the
    /// order of their names (the order a `--set` or a stored pipeline keeps).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, Source>,
    /// Transformations applied in order to every batch.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Where the Parquet shards go.
    pub sink: Sink,
    /// A sink of another run whose fitted statistics (`_kiln/stats.json`: means,
    /// vocabularies, quantiles) the fitted steps use instead of fitting on this input:
    /// fit on training data, apply the same transform to validation and test data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_from: Option<String>,
    /// How to run: concurrency, threads, memory. Never changes the output.
    #[serde(default)]
    pub run: Run,
    /// How to reach object stores: endpoint, region, addressing, retries. Never
    /// credentials, and never changes the output.
    #[serde(default, skip_serializing_if = "is_default_storage")]
    pub storage: Storage,
}

/// The column a `sources:` pipeline adds: the name of the input a row comes from.
pub const SOURCE_COLUMN: &str = "source";

impl Pipeline {
    /// The source of a pipeline reading one input: `source`, or the first of
    /// `sources` (the plan builds one such pipeline per input, [`Pipeline::for_input`]).
    pub fn source(&self) -> &Source {
        match (&self.source, self.sources.values().next()) {
            (Some(s), _) | (None, Some(s)) => s,
            // `load` refuses a pipeline with neither.
            (None, None) => &NO_SOURCE,
        }
    }

    /// The inputs: `source` unnamed, or each of `sources`, in name order.
    pub fn inputs(&self) -> Vec<(Option<&str>, &Source)> {
        match &self.source {
            Some(s) => vec![(None, s)],
            None => self
                .sources
                .iter()
                .map(|(n, s)| (Some(n.as_str()), s))
                .collect(),
        }
    }

    /// This pipeline reading `source` alone, with that input's own steps as its steps.
    pub fn for_input(&self, source: &Source) -> Pipeline {
        Pipeline {
            source: Some(Source {
                steps: Vec::new(),
                ..source.clone()
            }),
            sources: BTreeMap::new(),
            steps: source.steps.clone(),
            ..self.clone()
        }
    }
}

static NO_SOURCE: std::sync::LazyLock<Source> = std::sync::LazyLock::new(|| Source {
    uri: String::new(),
    format: None,
    compression: CompressionName::Auto,
    schema: None,
    on_schema_mismatch: OnSchemaMismatch::default(),
    infer_rows: default_infer_rows(),
    csv: CsvOptions::default(),
    warc: None,
    labels: None,
    split: true,
    steps: Vec::new(),
});

fn is_default_storage(s: &Storage) -> bool {
    *s == Storage::default()
}

/// The input objects and how to decode them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A path, a `file://`, `s3://`, `gs://`, `az://` or `https://` URI, or a glob over
    /// any of them (`*`, `**`, `?`, `{a,b}`, `[ab]`). A directory or prefix means every
    /// object below it.
    pub uri: String,
    /// Input format; inferred from the extension when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatName>,
    /// Compression of the objects; `auto` infers it from the extension (`.gz`, `.zst`).
    #[serde(default)]
    pub compression: CompressionName,
    /// Declared schema, column name → type (`int64`, `float64`, `string`, `bool`,
    /// `timestamp`, ...). When omitted the schema is inferred from the first object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<IndexMap<String, String>>,
    /// What to do with an object whose columns differ from the schema (`source.schema`,
    /// or the one inferred from the first object): `fail` refuses it naming both;
    /// `cast` matches columns by name, converts values to the schema's types (a value
    /// that does not convert is a bad record, see `run.on_error`) and leaves out columns
    /// the schema lacks; `null_fill` is `cast`, and a column the object lacks is null.
    #[serde(default)]
    pub on_schema_mismatch: OnSchemaMismatch,
    /// Rows read from the first object to infer the schema.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// CSV options.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Web-archive options (`format: warc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warc: Option<WarcOptions>,
    /// `folder`: with the `files` format, add `label` (the object's folder name) and
    /// `label_id` (its index among the listing's sorted folder names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelsFrom>,
    /// Cut an object larger than `run.task_bytes` into several tasks (so it runs on every
    /// thread and worker at once): JSONL, CSV and text by byte ranges aligned to records
    /// (zstd in the seekable format at its frames, gzip of many members at its members),
    /// a `.warc.gz` at its record members, Parquet by row groups. A gzip stream of one
    /// member and plain zstd streams are read whole. `false`: one task per
    /// large object (for a CSV whose quoted fields hold line breaks where a cut falls).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub split: bool,
    /// Under `sources:`, steps for this input alone, before the pipeline's `steps`
    /// (bring each input to the one schema: `select`, `rename`, `cast`, `derive`,
    /// `filter`, the text steps). Only steps that map each batch on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSpec>,
}

const fn default_infer_rows() -> usize {
    1000
}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatName {
    /// One JSON object per line (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// Delimited text with a header (`.csv`, `.tsv`).
    Csv,
    /// Apache Parquet (`.parquet`, `.pq`).
    Parquet,
    /// One row per line: `path`, `line`, `text` (`.txt`, `.text`).
    Text,
    /// One row per object: `path` and `bytes` (images: `.jpg`, `.jpeg`, `.png`, `.webp`;
    /// any binary with `format: files`).
    Files,
    /// Web archives, one row per record: WARC 1.0/1.1 and Common Crawl's WET and WAT
    /// (`.warc`, `.wet`, `.wat`, usually gzipped): `warc_type`, `record_id`, `url`, `date`,
    /// `content_type`, `http_status`, `http_content_type`, `http_headers`, `body`.
    Warc,
}

/// Where `source.labels` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabelsFrom {
    /// The ImageFolder convention: `cat/001.jpg` → `label: cat` and `label_id`, the
    /// index of `cat` among the sorted folder names of the listing.
    Folder,
}

/// Compression of the input objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    /// From the extension: `.gz`/`.gzip` → gzip, `.zst`/`.zstd` → zstd, else none.
    #[default]
    Auto,
    Gzip,
    Zstd,
    None,
}

/// What `format: warc` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarcOptions {
    /// The record types that become rows; the others are skipped unread. Default: the
    /// records that hold a captured document, `[response, resource, conversion]` (WARC
    /// responses, fetched files, WET text). Any of `warcinfo`, `request`, `response`,
    /// `resource`, `metadata` (WAT), `revisit`, `conversion`, `continuation`.
    #[serde(default = "default_record_types")]
    pub record_types: Vec<String>,
    /// A CDX index of the files (a path, prefix or glob; CDXJ as Common Crawl publishes
    /// it, classic CDX, or `warcio index` JSON lines; `.gz` read): a large `.warc.gz`
    /// it names (by file name) is cut at its records' offsets instead of being probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdx: Option<String>,
}

pub fn default_record_types() -> Vec<String> {
    ["response", "resource", "conversion"]
        .map(String::from)
        .to_vec()
}

/// CSV dialect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Whether the first line holds the column names.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field delimiter, one byte. Default `,` (`\t` for `.tsv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// Quote character.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Escape character inside quoted fields (default: doubled quotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape: Option<char>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: None,
            quote: '"',
            escape: None,
        }
    }
}

const fn default_true() -> bool {
    true
}
const fn default_quote() -> char {
    '"'
}

/// The dataset kiln writes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// A directory path, or a `file://`, `s3://`, `gs://` or `az://` prefix. It must not
    /// lie inside the source.
    pub uri: String,
    /// Output format: `parquet`; `megatron` (Megatron-LM's indexed dataset: the token
    /// column only, a `.bin` and an `.idx` per shard); `mds` (MosaicML Streaming's shards
    /// and `index.json`); `webdataset` (tar shards). See docs/training.md.
    #[serde(default)]
    pub format: SinkFormat,
    /// With `format: megatron`: which column holds the token ids and how they are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub megatron: Option<MegatronSink>,
    /// With `format: webdataset`: the key column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webdataset: Option<WebdatasetSink>,
    /// Permute the rows across the whole dataset, the same way for a seed whatever the
    /// task size or thread count: the shards are written after every task, from buckets
    /// of rows ordered by a seeded hash (docs/training.md "Global shuffle").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle: Option<ShuffleSpec>,
    /// Parquet compression codec.
    #[serde(default)]
    pub compression: SinkCompression,
    /// zstd level (1–22); default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    /// A shard closes after this many rows...
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// ...or this many compressed bytes on disk, whichever comes first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Rows per Parquet row group (at most).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Bytes of buffered, not yet encoded data that close a row group early, so wide
    /// rows (documents, images) keep memory bounded.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: ByteSize,
    /// Columns whose values name hive-style folders (`split=train/part-...`). The
    /// columns are moved into the path, as Hive, Spark and pyarrow expect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
    /// Write `README.md`, a Hugging Face dataset card (splits, features, what made the
    /// dataset), beside the shards: what the Hub shows, and what `load_dataset(<sink>)`
    /// reads the splits and features from. Off by default: a file that is not Parquet at
    /// the root makes `pyarrow.parquet.read_table(<sink>)` and DuckDB's
    /// `read_parquet('<sink>/*')` fail, and `load_dataset(<sink>)` finds the splits of a
    /// `split` partition without it (the shards' names carry the split).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dataset_card: bool,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if takes a reference"
)]
const fn is_false(b: &bool) -> bool {
    !*b
}
#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if takes a reference"
)]
const fn is_true(b: &bool) -> bool {
    *b
}

const fn default_max_rows() -> u64 {
    1_000_000
}
const fn default_max_bytes() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}
const fn default_row_group_rows() -> usize {
    100_000
}
const fn default_row_group_bytes() -> ByteSize {
    ByteSize(32 * 1024 * 1024)
}

/// Output format of the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    #[default]
    Parquet,
    /// Megatron-LM's indexed dataset (`.bin` + `.idx` per shard).
    Megatron,
    /// MosaicML Streaming's MDS shards (`.mds`) and `index.json`.
    Mds,
    /// WebDataset tar shards (`.tar`): a sample's columns as members sharing its key.
    Webdataset,
}

/// `sink.shuffle`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShuffleSpec {
    /// The seed: the same seed gives the same order.
    pub seed: u64,
    /// Input bytes per bucket (default 256MiB): the rows are scattered into
    /// ceil(input bytes / this) buckets, and each bucket is sorted in memory on its own.
    #[serde(default = "default_bucket_bytes")]
    pub bucket_bytes: ByteSize,
    /// A cheaper, local shuffle instead: each task's rows are permuted within windows of
    /// this many consecutive rows as they are written (no scatter, no second write). A
    /// row moves only within its window: not across windows or tasks, and the order
    /// depends on `run.task_bytes` as well as the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
}

impl ShuffleSpec {
    /// True for the global shuffle (scatter, then gather), false for a `window` one.
    pub fn global(&self) -> bool {
        self.window.is_none()
    }
}

fn default_bucket_bytes() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}

/// The options of `format: webdataset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebdatasetSink {
    /// The column whose values are the samples' keys (strings or integers without `.`
    /// or `/`). Default: `<task>-<shard>-<row>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The options of `format: megatron`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MegatronSink {
    /// The token column (a list of integers per row; each row is one document). Default:
    /// the first list-of-integer column of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// How each token id is stored in the `.bin`.
    #[serde(default)]
    pub dtype: MegatronDtype,
}

/// The element type of a Megatron `.bin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MegatronDtype {
    /// `uint16` when the pipeline's `tokenize` has a vocabulary below 65,500 ids (as
    /// Megatron's `preprocess_data.py` chooses), `int32` otherwise.
    #[default]
    Auto,
    Uint16,
    Int32,
}

/// Parquet codecs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkCompression {
    #[default]
    Zstd,
    Snappy,
    Lz4,
    None,
}

/// How to run. Nothing here changes the rows or bytes written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Storage requests in flight at once.
    #[serde(default = "default_io_concurrency")]
    pub io_concurrency: usize,
    /// Size of the CPU pool: `auto` (one per core) or a number.
    #[serde(default)]
    pub threads: Threads,
    /// Bound on data in flight (read buffers, batches, unflushed row groups).
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// What to do with bad records (a malformed line, a row with the wrong field count,
    /// a value that fails a cast, an undecodable image) and bad objects (a corrupt
    /// compressed stream or Parquet footer, an object gone or forbidden since listing).
    #[serde(default)]
    pub on_error: OnError,
    /// Under `skip` or `dead_letter`: the share of rejected records among records read
    /// (and of rejected objects among objects) above which the run, once finished,
    /// exits 3. 0 (the default) makes any rejection exit 3.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_ratio: f64,
    /// Input bytes (on storage) grouped into one task, the unit of commit and resume.
    #[serde(default = "default_task_bytes")]
    pub task_bytes: ByteSize,
    /// Rows per Arrow batch handed from step to step. Default: as many as fit in about
    /// 4 MiB by the average size of the rows read to infer the schema, between 1024 and
    /// 8192 (wide documents get small batches, narrow rows large ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<usize>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            io_concurrency: default_io_concurrency(),
            threads: Threads::Auto,
            memory_limit: default_memory_limit(),
            on_error: OnError::Fail,
            max_error_ratio: 0.0,
            task_bytes: default_task_bytes(),
            batch_rows: None,
        }
    }
}

const fn default_io_concurrency() -> usize {
    16
}
const fn default_memory_limit() -> ByteSize {
    ByteSize(2 * 1024 * 1024 * 1024)
}
const fn default_task_bytes() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}

/// How an object whose columns differ from the run's schema is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaMismatch {
    /// Refuse the object, naming it, the column and where the schema came from (under
    /// `run.on_error: skip | dead_letter` the object is left out and recorded).
    #[default]
    Fail,
    /// Match columns by name, convert each to the schema's type; a value that does not
    /// convert is a bad record. Columns the schema lacks are left out; a column the
    /// object lacks is an error.
    Cast,
    /// As `cast`, and a column the object lacks is read as all nulls.
    NullFill,
}

/// Error policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad record or object, naming it (exit 1).
    #[default]
    Fail,
    /// Leave bad records and objects out, count them in the report and the task's
    /// commit record, and go on.
    Skip,
    /// As `skip`, and write each rejected record or object, with where it was and why,
    /// to `_kiln/errors/<task>.jsonl` in the sink.
    DeadLetter,
}

/// `auto` or a thread count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Threads {
    #[default]
    Auto,
    Count(usize),
}

impl Threads {
    /// The number of threads this resolves to on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Threads::Count(n) => n,
        }
    }
}

impl Serialize for Threads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threads::Auto => s.serialize_str("auto"),
            Threads::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Threads;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`auto` or a thread count of at least 1")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threads, E> {
                if v == 0 {
                    return Err(E::custom("threads must be at least 1 (or `auto`)"));
                }
                Ok(Threads::Count(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threads, E> {
                if v < 1 {
                    return Err(E::custom("threads must be at least 1 (or `auto`)"));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threads, E> {
                match v {
                    "auto" => Ok(Threads::Auto),
                    other => other
                        .parse::<u64>()
                        .map_err(|_| {
                            E::custom(format!("expected `auto` or a number, found `{other}`"))
                        })
                        .and_then(|n| self.visit_u64(n)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Threads {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Threads".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`auto` (one per core) or a thread count",
            "oneOf": [ { "const": "auto" }, { "type": "integer", "minimum": 1 } ]
        })
    }
}

/// The JSON Schema of the pipeline file, for editors (`kiln schema`).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Pipeline);
    serde_json::to_value(schema).unwrap_or_default()
}
