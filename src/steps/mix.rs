//! `mix`: a weighted mixture of sources, by rows or by tokens, with up- and
//! down-sampling, deterministic for a seed.
//!
//! Each row belongs to the source its `column` names (a `sources:` pipeline adds that
//! column; a single dataset with a `domain` column works the same). A source's **rate**
//! is how many times, on average, each of its rows goes out: `epochs` give the rates
//! directly; `weights` give each source's share of the output, and the rates follow from
//! the sources' sizes, which is why `mix` is a fitted step: a pass over the input counts,
//! per source, the rows and tokens reaching the step (`_kiln/stats.json` keeps them and
//! the rates), and the main pass applies them.
//!
//! A rate `k + f` sends every row of the source out `k` times and a fraction `f` of them
//! once more. Which rows make the fraction is a function of the row's key and the seed
//! only (XXH3-64, like `split`), not of tasks, batches or threads: the rows whose hash
//! falls below a threshold. The threshold is not `f` of the hash range (that would hit
//! the share only on average) but the point where the rows below it add up to exactly
//! `f` of the source's rows or tokens: the fit keeps, per source, the units in each of
//! 4,096 hash buckets, so the share lands within a bucket's worth (1/4,096 of the
//! source) of the weight on a large input, and within a document on a small one.
//!
//! The fit (counting, the rates, the thresholds) is `mix_fit.rs`; this file holds the
//! options, binding and the main pass.
//!
//! Copies of a row leave next to each other; `sink.shuffle` spreads them (and the
//! sources) over the whole dataset.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, Step, StepContext, StepOptions, column_index};
use crate::steps::StepError;

/// Hash buckets per source in the fit: the resolution of a threshold.
const BUCKET_BITS: u32 = 12;
const BUCKETS: usize = 1 << BUCKET_BITS;
const BUCKET_WIDTH: u64 = 1 << (64 - BUCKET_BITS);

/// Options of `mix`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixOptions {
    /// The column naming each row's source (default `source`, the column a `sources:`
    /// pipeline adds).
    #[serde(default = "default_column")]
    pub column: String,
    /// Each source's share of the output (any non-negative numbers; they are
    /// normalised). A source's rows are repeated or sampled to reach its share. Give
    /// `weights` or `epochs`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<IndexMap<String, f64>>,
    /// How many times each source goes out: `2.5` sends every row twice and half of the
    /// rows a third time, `0.5` half of the rows, `0` none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<IndexMap<String, f64>>,
    /// What weights count, and what the fit measures: `rows` (default) or `tokens`.
    #[serde(default)]
    pub unit: Unit,
    /// With `unit: tokens`, the list column whose length is a row's token count
    /// (default `tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// With `weights`, the size of the output in `unit`s. Default: the largest mixture
    /// that repeats no source (the source shortest of its share goes out once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The column whose value picks which rows make a fractional rate (default: the
    /// token column with `unit: tokens`, else the first string column). Rows with equal
    /// keys get the same number of copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Seed of the key hash; another seed picks other rows, as deterministically.
    #[serde(default)]
    pub seed: u64,
}

fn default_column() -> String {
    "source".into()
}

/// What a mixture's weights count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Rows,
    Tokens,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Rows => "rows",
            Unit::Tokens => "tokens",
        }
    }
}

impl StepOptions for MixOptions {
    const SUMMARY: &'static str = "mix sources by weight (rows or tokens) or epochs, up- and down-sampling, deterministic for a seed";
    const EXAMPLE: &'static str =
        "- mix: { weights: { web: 0.6, code: 0.3, books: 0.1 }, unit: tokens, seed: 42 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        self.build(input, None)
    }

    fn bind_fitted(
        &self,
        input: &SchemaRef,
        stats: &serde_json::Value,
    ) -> Result<Arc<dyn Step>, String> {
        let fitted: Fitted = serde_json::from_value(stats.clone())
            .map_err(|e| format!("the stored statistics of `mix` do not read back: {e}"))?;
        for name in self.names() {
            if !fitted.sources.contains_key(name) {
                return Err(format!(
                    "the statistics have no source `{name}` (they have: {}); fit them with \
                     the same sources",
                    fitted
                        .sources
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if fitted.unit != self.unit {
            return Err(format!(
                "the statistics count {}, this step {}",
                fitted.unit.name(),
                self.unit.name()
            ));
        }
        self.build(input, Some(fitted))
    }
}

impl MixOptions {
    /// The mixture asked for, as `kiln plan` shows it before a run:
    /// `web 70% · code 30% of the tokens (100000 in all)`, or the epochs.
    pub fn expected(&self) -> String {
        match (&self.weights, &self.epochs) {
            (Some(w), _) => {
                let sum: f64 = w.values().sum();
                let shares: Vec<String> = w
                    .iter()
                    .map(|(k, v)| format!("{k} {}%", round(v * 100.0 / sum.max(f64::MIN_POSITIVE))))
                    .collect();
                format!(
                    "{} of the {}{}",
                    shares.join(" · "),
                    self.unit.name(),
                    match self.total {
                        Some(t) => format!(" ({t} in all)"),
                        None => " (as many as no source repeats)".into(),
                    }
                )
            }
            (None, Some(e)) => {
                let epochs: Vec<String> = e.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
                format!("epochs {}", epochs.join(" · "))
            }
            (None, None) => String::new(),
        }
    }

    /// The sources, in the order the options list them.
    fn names(&self) -> impl Iterator<Item = &String> {
        self.weights
            .iter()
            .chain(self.epochs.iter())
            .flat_map(|m| m.keys())
    }

    fn factors(&self) -> Result<&IndexMap<String, f64>, String> {
        let factors = match (&self.weights, &self.epochs) {
            (Some(w), None) => w,
            (None, Some(e)) => e,
            (Some(_), Some(_)) => return Err("give `weights` or `epochs`, not both".into()),
            (None, None) => {
                return Err(
                    "give `weights` (each source's share of the output) or `epochs` (how \
                     many times each source goes out)"
                        .into(),
                );
            }
        };
        if factors.is_empty() {
            return Err("name at least one source".into());
        }
        for (name, f) in factors {
            if !f.is_finite() || *f < 0.0 {
                return Err(format!("source `{name}`: {f} is not a non-negative number"));
            }
        }
        if self.weights.is_some() && factors.values().all(|f| *f == 0.0) {
            return Err("every weight is 0; nothing would go out".into());
        }
        if self.epochs.is_some() && self.total.is_some() {
            return Err("`total` goes with `weights`; with `epochs` the sizes follow".into());
        }
        Ok(factors)
    }

    fn build(&self, input: &SchemaRef, fitted: Option<Fitted>) -> Result<Arc<dyn Step>, String> {
        let factors = self.factors()?;
        let source = column_index(input, &self.column)?;
        let string =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        match input.field(source).data_type() {
            t if string(t) => {}
            DataType::Dictionary(_, v) if string(v) => {}
            t => {
                return Err(format!(
                    "`{}` is {t}; the source column holds the sources' names (strings)",
                    self.column
                ));
            }
        }
        let tokens = match self.unit {
            Unit::Rows => None,
            Unit::Tokens => {
                let name = self.tokens.as_deref().unwrap_or("tokens");
                let i = column_index(input, name)?;
                if !matches!(
                    input.field(i).data_type(),
                    DataType::List(_) | DataType::LargeList(_)
                ) {
                    return Err(format!(
                        "`{name}` is {}, not a list of token ids; tokenize first, or name \
                         the token column with `tokens`",
                        input.field(i).data_type()
                    ));
                }
                Some(i)
            }
        };
        let key = match (&self.key, tokens) {
            (Some(k), _) => column_index(input, k)?,
            (None, Some(t)) => t,
            (None, None) => input
                .fields()
                .iter()
                .position(|f| {
                    f.name() != &self.column
                        && matches!(
                            f.data_type(),
                            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                        )
                })
                .ok_or_else(|| {
                    "no string column to key rows by; name one with `key`".to_string()
                })?,
        };
        check_key_type(input.field(key).data_type()).map_err(|t| {
            format!(
                "`key` column `{}` is {t}; {KEY_TYPES}",
                input.field(key).name()
            )
        })?;
        let decisions = fitted.as_ref().map(|f| {
            factors
                .keys()
                .map(|n| {
                    let s = &f.sources[n];
                    (s.copies, s.threshold)
                })
                .collect()
        });
        Ok(Arc::new(Mix {
            opts: self.clone(),
            names: factors.keys().cloned().collect(),
            factors: factors.values().copied().collect(),
            schema: input.clone(),
            source,
            tokens,
            key,
            decisions,
        }))
    }
}

const KEY_TYPES: &str = "a key is a string, binary, number or list-of-integers column";

fn check_key_type(t: &DataType) -> Result<(), String> {
    match t {
        DataType::List(f) | DataType::LargeList(f) if f.data_type().is_integer() => Ok(()),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Ok(()),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(()),
        t if t.is_integer() || t.is_floating() || *t == DataType::Boolean => Ok(()),
        t => Err(t.to_string()),
    }
}

/// What the fit found and decided, as `_kiln/stats.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fitted {
    unit: Unit,
    sources: IndexMap<String, SourceFit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SourceFit {
    /// Rows and tokens (`unit: tokens`) reaching the step.
    rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<u64>,
    /// Times each row goes out on average.
    rate: f64,
    /// Copies every row gets.
    copies: u64,
    /// A row with a key hash below this gets one more.
    threshold: u64,
    /// What goes out: rows, and tokens with `unit: tokens`.
    out_rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out_tokens: Option<u64>,
    /// The source's share of the output in `unit`s (the weight, normalised).
    share: f64,
}

#[derive(Debug)]
struct Mix {
    opts: MixOptions,
    names: Vec<String>,
    factors: Vec<f64>,
    schema: SchemaRef,
    source: usize,
    tokens: Option<usize>,
    key: usize,
    /// Per source: copies and threshold. None until fitted.
    decisions: Option<Vec<(u64, u64)>>,
}

/// Per row of a batch: its source's index, its key hash and its units.
struct Rows {
    source: Vec<usize>,
    hash: Vec<u64>,
    units: Vec<u64>,
}

impl Mix {
    fn rows(&self, batch: &RecordBatch) -> Result<Rows, StepError> {
        let names =
            arrow::compute::cast(batch.column(self.source), &DataType::Utf8).map_err(|e| {
                StepError::data(format!("cannot read it as text: {e}")).in_column(&self.opts.column)
            })?;
        let names = names.as_string::<i32>();
        let mut source = Vec::with_capacity(batch.num_rows());
        for r in 0..batch.num_rows() {
            if names.is_null(r) {
                return Err(StepError::data("the source is null; every row needs one")
                    .in_column(&self.opts.column)
                    .at_row(r));
            }
            let name = names.value(r);
            let Some(i) = self.names.iter().position(|n| n == name) else {
                return Err(StepError::data(format!(
                    "source `{name}` is not in the mix ({}); give it a weight (0 leaves it out)",
                    self.names.join(", ")
                ))
                .in_column(&self.opts.column)
                .at_row(r));
            };
            source.push(i);
        }
        let hash = key_hashes(batch.column(self.key), self.opts.seed)
            .map_err(|e| e.in_column(self.schema.field(self.key).name()))?;
        let units = match self.tokens {
            None => vec![1; batch.num_rows()],
            Some(t) => list_lengths(batch.column(t)),
        };
        Ok(Rows {
            source,
            hash,
            units,
        })
    }
}

/// A list column's offsets and values, whatever its offset width.
fn list_parts(a: &ArrayRef) -> (Vec<usize>, ArrayRef) {
    match a.data_type() {
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (
                l.offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
        _ => {
            let l = a.as_list::<i32>();
            (
                l.offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
    }
}

/// Each row's list length (0 for a null).
fn list_lengths(a: &ArrayRef) -> Vec<u64> {
    let (offsets, _) = list_parts(a);
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                0
            } else {
                (offsets[i + 1] - offsets[i]) as u64
            }
        })
        .collect()
}

/// XXH3-64 of each row's key with `seed`: the bytes of a string or binary, the ids of a
/// token list as little-endian int64, anything else as its text.
fn key_hashes(a: &ArrayRef, seed: u64) -> Result<Vec<u64>, StepError> {
    use xxhash_rust::xxh3::xxh3_64_with_seed as h;
    const NULL: u64 = 0x6e75_6c6c;
    let n = a.len();
    let out = match a.data_type() {
        DataType::List(_) | DataType::LargeList(_) => {
            let (offsets, values) = list_parts(a);
            let ids = arrow::compute::cast(&values, &DataType::Int64)?;
            let ids = ids.as_primitive::<Int64Type>().values();
            let mut buf = Vec::new();
            (0..n)
                .map(|i| {
                    if a.is_null(i) {
                        return NULL;
                    }
                    buf.clear();
                    for id in &ids[offsets[i]..offsets[i + 1]] {
                        buf.extend_from_slice(&id.to_le_bytes());
                    }
                    h(&buf, seed)
                })
                .collect()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let b = arrow::compute::cast(a, &DataType::LargeBinary)?;
            let b = b.as_binary::<i64>();
            (0..n)
                .map(|i| {
                    if b.is_null(i) {
                        NULL
                    } else {
                        h(b.value(i), seed)
                    }
                })
                .collect()
        }
        _ => {
            let s = arrow::compute::cast(a, &DataType::LargeUtf8)?;
            let s = s.as_string::<i64>();
            (0..n)
                .map(|i| {
                    if s.is_null(i) {
                        NULL
                    } else {
                        h(s.value(i).as_bytes(), seed)
                    }
                })
                .collect()
        }
    };
    Ok(out)
}

impl Step for Mix {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn batch_local(&self) -> bool {
        true
    }

    fn kind(&self) -> Kind<'_> {
        match self.decisions {
            None => Kind::Fit(self),
            Some(_) => Kind::Map,
        }
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.insert(self.opts.column.clone());
        need.insert(self.schema.field(self.key).name().clone());
        if let Some(t) = self.tokens {
            need.insert(self.schema.field(t).name().clone());
        }
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let decisions = self
            .decisions
            .as_ref()
            .ok_or_else(|| StepError::internal("`mix` ran before its fit"))?;
        let rows = self.rows(&batch)?;
        let mut take = Vec::with_capacity(batch.num_rows());
        let mut out_rows = vec![0u64; self.names.len()];
        let mut out_tokens = vec![0u64; self.names.len()];
        for r in 0..batch.num_rows() {
            let s = rows.source[r];
            let (copies, threshold) = decisions[s];
            let n = copies + u64::from(rows.hash[r] < threshold);
            for _ in 0..n {
                take.push(r as u64);
            }
            out_rows[s] += n;
            out_tokens[s] += n * rows.units[r];
        }
        for (s, name) in self.names.iter().enumerate() {
            cx.count(&format!("{name}.rows"), out_rows[s]);
            if self.tokens.is_some() {
                cx.count(&format!("{name}.tokens"), out_tokens[s]);
            }
        }
        if take.len() == batch.num_rows() && take.iter().enumerate().all(|(i, &r)| i as u64 == r) {
            return Ok(batch);
        }
        let take = UInt64Array::from(take);
        take_record_batch(&batch, &take).map_err(StepError::from)
    }
}

/// The mixture a `mix` step's counters show (`<source>.rows`, `<source>.tokens`), as
/// the run summary and `kiln inspect` print it: `by tokens: web 60.0% · code 30.0%`.
pub fn achieved(counts: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let unit = if counts.keys().any(|k| k.ends_with(".tokens")) {
        "tokens"
    } else {
        "rows"
    };
    let suffix = format!(".{unit}");
    let of: Vec<(&str, u64)> = counts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_suffix(&suffix)?, *v)))
        .collect();
    let total: u64 = of.iter().map(|(_, v)| v).sum();
    if total == 0 {
        return None;
    }
    let shares: Vec<String> = of
        .iter()
        .map(|(k, v)| format!("{k} {:.2}%", *v as f64 * 100.0 / total as f64))
        .collect();
    Some(format!("mixture by {unit}: {}", shares.join(" · ")))
}

/// `x` with at most two decimals, trailing zeros cut.
fn round(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[path = "mix_fit.rs"]
mod fit;

#[cfg(test)]
#[path = "mix_tests.rs"]
mod tests;
