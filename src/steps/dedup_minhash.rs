//! `dedup.minhash`: near-duplicate removal with MinHash and locality-sensitive hashing.
//!
//! Each document's text is simplified (lowercase, punctuation removed, digits folded to
//! `0`, whitespace collapsed) and cut into word n-grams (shingles, default 5 words). Its
//! signature is the minimum over its shingles of `bands × rows` hash permutations
//! (XXH3-64 of the shingle, then `(a·x + b) mod (2^61 − 1)` with fixed `a, b` drawn from
//! `seed`; the kernel, vectorized where the CPU allows, is `crates/minhash`). Two documents whose word 5-gram sets have Jaccard similarity `s` agree on
//! one band of `rows` values with probability `s^rows`, so they become candidates with
//! probability `1 − (1 − s^rows)^bands` (datatrove's defaults, 14 × 8: 0.99 at s = 0.85,
//! 0.03 at s = 0.5).
//!
//! A full-pass step: the first pass writes (band hash, band, task, row) records to
//! sorted spill runs (see `spill.rs`); settling merges them and joins every group of
//! equal (band hash, band) in a union-find over the documents involved; each cluster
//! keeps its first document in input order and drops the rest. Memory: the run buffers,
//! and the union-find over documents that share at least one band with another and the
//! drop lists, up to `memory`: past it the clusters are found on disk
//! (`components.rs`) and the drop lists go to a file (`drops.rs`).
//!
//! Against earlier datasets (`against`, `keys.rs`): a group whose key an earlier
//! dataset's index holds joins one node standing for every earlier document, which
//! comes before all of this input's, so the whole cluster goes.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use kiln_minhash::MERSENNE;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::components::Components;
use super::drops::{DropLists, Drops};
use super::keys::{IndexSpec, KeyIndex};
use super::spill::{Rec, Runs, SpillObserver, all_runs, le, read_fixed};
use super::text::words::is_punctuation;
use super::text::{string_column, utf8, value};
use super::{FullPass, Kind, Observer, Part, Sectioned, Step, StepContext, StepOptions};
use crate::steps::StepError;

/// Options of `dedup.minhash`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MinhashOptions {
    /// The text column (default `text`).
    #[serde(default = "default_column")]
    pub column: String,
    /// Words per shingle (default 5).
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// LSH bands (default 14).
    #[serde(default = "default_bands")]
    pub bands: usize,
    /// Hashes per band (default 8).
    #[serde(default = "default_rows")]
    pub rows: usize,
    /// Seed of the hash permutations.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Bytes of records a task buffers before it writes a sorted run (default 64 MiB).
    #[serde(default = "default_run_bytes")]
    pub run_bytes: crate::size::ByteSize,
    /// Memory the clusters (a union-find of the documents that share a band with
    /// another, 38 to 76 bytes each) and the drop lists may take while
    /// settling, before they go to the spill directory (default a quarter of
    /// `run.memory_limit`). The same documents go either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::size::ByteSize>,
    /// Earlier kiln datasets (their sinks' URIs) this input is deduplicated against: a
    /// document colliding in a band with a document one of them held at this step goes,
    /// with its whole cluster. Read from the key index each stored (`_kiln/index/`).
    #[serde(default)]
    pub against: Vec<String>,
    /// Store the key index of this run (the band hashes of the earlier datasets and of
    /// this input) in `_kiln/index/`, so that a later run can dedup against this
    /// dataset (default true; 16 bytes a band of each document).
    #[serde(default = "default_index")]
    pub index: bool,
}

fn default_index() -> bool {
    true
}

fn default_column() -> String {
    "text".into()
}
fn default_ngram() -> usize {
    5
}
fn default_bands() -> usize {
    14
}
fn default_rows() -> usize {
    8
}
fn default_seed() -> u64 {
    1
}
fn default_run_bytes() -> crate::size::ByteSize {
    crate::size::ByteSize(64 << 20)
}

impl StepOptions for MinhashOptions {
    const SUMMARY: &'static str = "near-duplicate removal: MinHash over word n-grams, LSH bands, one survivor per cluster (full pass)";
    const EXAMPLE: &'static str = "- dedup.minhash: { column: text, ngram: 5, bands: 14, rows: 8 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err("ngram, bands and rows must be at least 1".into());
        }
        if self.bands > 256 {
            return Err(format!("at most 256 bands, found {}", self.bands));
        }
        // Permutation parameters from SplitMix64 on the seed: fixed for a seed.
        let mut state = self.seed;
        let mut next = move || {
            let v = super::sample::splitmix64(state);
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            v
        };
        let perms = (0..self.bands * self.rows)
            .map(|_| (next() % (MERSENNE - 1) + 1, next() % MERSENNE))
            .collect();
        Ok(Arc::new(Minhash {
            opts: self.clone(),
            source,
            schema: input.clone(),
            perms,
            runs: Runs::default(),
            drops: DropLists::default(),
        }))
    }
}

#[derive(Debug)]
struct Minhash {
    opts: MinhashOptions,
    source: usize,
    schema: SchemaRef,
    /// (a, b) of each permutation.
    perms: Vec<(u64, u64)>,
    runs: Runs,
    drops: DropLists,
}

/// The text simplified into `out`: lowercase words with punctuation removed and digits
/// folded to `0`, one space between words; `words` gets each word's byte range in `out`,
/// so that the words `i..j` joined by spaces are `out[words[i].0..words[j - 1].1]`.
pub fn simplify(text: &str, out: &mut String, words: &mut Vec<(usize, usize)>) {
    out.clear();
    words.clear();
    let mut start = None;
    for c in text.chars() {
        // ASCII (most text) without the Unicode tables: space, punctuation and control
        // characters (which include the other ASCII whitespace) end a word.
        let separates = if c.is_ascii() {
            c == ' ' || c.is_ascii_punctuation() || c.is_ascii_control()
        } else {
            c.is_whitespace() || is_punctuation(c)
        };
        if separates {
            if let Some(s) = start.take() {
                words.push((s, out.len()));
            }
            continue;
        }
        if start.is_none() {
            if !out.is_empty() {
                out.push(' ');
            }
            start = Some(out.len());
        }
        if c.is_ascii() {
            out.push(if c.is_ascii_digit() {
                '0'
            } else {
                c.to_ascii_lowercase()
            });
        } else if c.is_numeric() {
            out.push('0');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    if let Some(s) = start {
        words.push((s, out.len()));
    }
}

impl Minhash {
    /// The band hashes of a document; `None` when it has no words.
    fn bands(&self, text: &str, scratch: &mut Scratch) -> Option<Vec<u64>> {
        let Scratch {
            text: simple,
            words,
            hashes,
        } = scratch;
        simplify(text, simple, words);
        if words.is_empty() {
            return None;
        }
        let n = self.opts.ngram.min(words.len());
        hashes.clear();
        hashes.extend((0..=words.len() - n).map(|i| {
            let gram = &simple.as_bytes()[words[i].0..words[i + n - 1].1];
            kiln_minhash::reduce(xxhash_rust::xxh3::xxh3_64(gram))
        }));
        let mut sig = vec![u64::MAX; self.perms.len()];
        kiln_minhash::fold(hashes, &self.perms, &mut sig);
        Some(
            sig.chunks(self.opts.rows)
                .enumerate()
                .map(|(band, values)| {
                    let mut bytes = Vec::with_capacity(8 * values.len() + 8);
                    bytes.extend_from_slice(&(band as u64).to_le_bytes());
                    for v in values {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    xxhash_rust::xxh3::xxh3_64(&bytes)
                })
                .collect(),
        )
    }
}

/// What [`Minhash::bands`] reuses from one document to the next on a thread.
#[derive(Default)]
struct Scratch {
    text: String,
    words: Vec<(usize, usize)>,
    /// The shingles' hashes, reduced modulo 2^61 − 1.
    hashes: Vec<u64>,
}

/// A document's place in the union-find: its position (task, row) plus one, so that
/// [`EARLIER`] comes before every document.
fn position(task: u32, row: u64) -> u128 {
    ((u128::from(task) << 64) | u128::from(row)) + 1
}

/// The (task, row) of a [`position`].
fn task_row(position: u128) -> (u32, u64) {
    let p = position - 1;
    ((p >> 64) as u32, p as u64)
}

/// Every document of the earlier datasets (`against`), as one node of the union-find:
/// a cluster joined to it has its survivor there, so all its documents here go.
const EARLIER: u128 = 0;

impl Step for Minhash {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.insert(self.opts.column.clone());
        need
    }

    fn kind(&self) -> Kind<'_> {
        Kind::FullPass(self)
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        self.drops
            .apply(batch, cx, "dedup.minhash", "near_duplicates")
    }
}

impl FullPass for Minhash {
    fn observer(&self, task: usize) -> Result<Box<dyn Observer + '_>, StepError> {
        Ok(Box::new(MinhashObserver {
            step: self,
            spill: SpillObserver::new(&self.runs, task, self.opts.run_bytes.get())?,
        }))
    }

    fn write_part(&self, part: Part, out: &mut dyn std::io::Write) -> Result<(), StepError> {
        self.runs.write_part(part, out, "dedup.minhash")
    }

    fn read_part(&self, input: &mut dyn std::io::Read) -> Result<Part, StepError> {
        self.runs.read_part(input, "dedup.minhash")
    }

    fn settle(&self, parts: Vec<Part>, keys: &mut KeyIndex, budget: u64) -> Result<(), StepError> {
        let budget = self.memory(budget);
        let clusters = self.clusters(parts, keys, budget)?;
        self.drop_members(clusters, budget)
    }

    fn sectioned(&self) -> Option<&dyn Sectioned> {
        Some(self)
    }

    fn index(&self) -> Option<IndexSpec> {
        let o = &self.opts;
        (o.index || !o.against.is_empty()).then(|| {
            IndexSpec::new(
                "dedup.minhash",
                serde_json::json!({
                    "column": o.column, "ngram": o.ngram, "bands": o.bands,
                    "rows": o.rows, "seed": o.seed,
                }),
                o.against.clone(),
                o.index,
            )
        })
    }
}

impl Minhash {
    /// The step's memory: its `memory` option, else the runtime's `budget`.
    fn memory(&self, budget: u64) -> u64 {
        self.opts.memory.map_or(budget, |m| m.get())
    }

    /// The clusters of the band collisions in `parts`: in each group of records with one
    /// (band hash, band), every position joins the first, or [`EARLIER`] when an
    /// earlier dataset in `keys` holds the key.
    fn clusters(
        &self,
        parts: Vec<Part>,
        keys: &mut KeyIndex,
        budget: u64,
    ) -> Result<Components<'_>, StepError> {
        let mut clusters = Components::new(&self.runs, budget / 4 * 3);
        let mut group: Option<(u128, u128)> = None; // (key, first position)
        let mut failed = None;
        self.runs.merge(all_runs(parts, "dedup.minhash")?, |r| {
            let pos = position(r.task, r.row);
            let joined = match group {
                Some((key, first)) if key == r.key => clusters.union(first, pos),
                _ => {
                    let earlier = keys.seen(r.key).unwrap_or_else(|e| {
                        failed.get_or_insert(e);
                        false
                    });
                    if earlier {
                        group = Some((r.key, EARLIER));
                        clusters.union(EARLIER, pos)
                    } else {
                        group = Some((r.key, pos));
                        Ok(())
                    }
                }
            };
            if let Err(e) = joined {
                failed.get_or_insert(e);
            }
        })?;
        failed.map_or(Ok(clusters), Err)
    }

    /// Drops every member of `clusters` but its cluster's root (its first position),
    /// and every member of a cluster whose root is [`EARLIER`].
    fn drop_members(&self, clusters: Components<'_>, budget: u64) -> Result<(), StepError> {
        let mut drops = Drops::new(&self.runs, budget / 4);
        let rounds = clusters.finish(|member, _root| {
            let (task, row) = task_row(member);
            drops.push(task, row)
        })?;
        if rounds > 0 {
            tracing::debug!(rounds, "dedup.minhash: clusters found on disk");
        }
        self.drops.set(drops, "dedup.minhash")
    }
}

/// Across workers: a section's decisions are the edges of its clusters, (member, root)
/// as two little-endian u128 positions, 32 bytes each, for every member that is not its
/// section's root. A document colliding in bands of several sections is in a cluster
/// of each; joining every section's edges gives the clusters of the whole input (the
/// root of a cluster is its smallest position, in a section and overall), so the same
/// documents survive as on one worker. The edges are far fewer than the signatures:
/// only documents that collide at all have one.
impl Sectioned for Minhash {
    fn write_sections(
        &self,
        part: Part,
        sections: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<Vec<u64>, StepError> {
        self.runs
            .write_sections(part, sections, out, "dedup.minhash")
    }

    fn merge_section(
        &self,
        parts: Vec<Part>,
        keys: &mut KeyIndex,
        budget: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<(), StepError> {
        use std::io::Write;
        let budget = self.memory(budget);
        let clusters = self.clusters(parts, keys, budget)?;
        // In member order, so that a section's bytes depend only on the input.
        let mut w = std::io::BufWriter::with_capacity(64 << 10, out);
        clusters.finish(|m, root| {
            w.write_all(&m.to_le_bytes())
                .and_then(|()| w.write_all(&root.to_le_bytes()))
                .map_err(|e| StepError::io("cannot write the clusters of a section", e))
        })?;
        w.flush()
            .map_err(|e| StepError::io("cannot write the clusters of a section", e))
    }

    fn settle_sections(
        &self,
        decided: Vec<Box<dyn std::io::Read + Send>>,
        budget: u64,
    ) -> Result<(), StepError> {
        let budget = self.memory(budget);
        let mut clusters = Components::new(&self.runs, budget / 4 * 3);
        let mut failed = None;
        for r in decided {
            read_fixed::<32>(r, "a section's clusters", |b| {
                if failed.is_none() {
                    let (m, root) = (
                        u128::from_le_bytes(le(b, 0)),
                        u128::from_le_bytes(le(b, 16)),
                    );
                    failed = clusters.union(m, root).err();
                }
            })?;
        }
        failed.map_or(Ok(()), Err)?;
        self.drop_members(clusters, budget)
    }
}

/// One task of the full pass: each row's band hashes and position.
struct MinhashObserver<'a> {
    step: &'a Minhash,
    spill: SpillObserver<'a>,
}

impl Observer for MinhashObserver<'_> {
    fn observe(&mut self, batch: &RecordBatch, rows_before: u64) -> Result<(), StepError> {
        let texts = utf8(batch.column(self.step.source))?;
        let bands: Vec<Option<Vec<u64>>> =
            crate::pool::par_map(texts.len(), 8, Scratch::default, |scratch, i| {
                value(&texts, i).and_then(|t| self.step.bands(t, scratch))
            });
        let task = self.spill.task;
        self.spill
            .make_room(bands.iter().flatten().map(Vec::len).sum())?;
        for (i, b) in bands.into_iter().enumerate() {
            for (band, h) in b.into_iter().flatten().enumerate() {
                self.spill.records.push(Rec {
                    // The band hash first: the key's top byte is its bucket in the
                    // key index and its section (`keys.rs`), spread evenly.
                    key: (u128::from(h) << 64) | band as u128,
                    task,
                    row: rows_before + i as u64,
                });
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Part, StepError> {
        Ok(Box::new(self.spill.finish()?))
    }
}

#[cfg(test)]
#[path = "dedup_minhash_tests.rs"]
mod tests;
