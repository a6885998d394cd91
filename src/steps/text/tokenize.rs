//! `tokenize`: text → `list<uint32>` token ids with a Hugging Face `tokenizer.json`.
//!
//! One role in one file: the step, its two engines and the checks that they agree are
//! one contract (the same ids as the reference), so they stay side by side.
//!
//! The ids are those of the `tokenizers` crate (the reference). For the tokenizers it
//! supports (byte-level BPE as in GPT-2/Llama 3/Qwen, tiktoken-style), the `fastokens`
//! engine gives the same ids an order of magnitude faster; `engine: auto` uses it only
//! after it agreed with the reference on a probe set built from the tokenizer's own
//! special tokens and awkward text, and falls back to `tokenizers` for everything else
//! (WordPiece, Unigram, normalizers fastokens does not cover). The differential test in
//! `tests/` checks id-for-id equality on the sample corpus and a stress set.
//!
//! Documents of a batch are encoded in parallel on the rayon pool.
//!
//! Over 600 lines for one step: options, tokenizer loading and caching, the two engines
//! and the probe that decides between them, and its unit tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, ListArray, UInt32Array};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::normalize::default_column;
use super::{put_columns, string_column, utf8, value, with_field};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Which implementation encodes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// `fast` when it supports the tokenizer and agrees with `reference` on the probe
    /// set; `reference` otherwise.
    #[default]
    Auto,
    /// `fastokens`; an error if it cannot load the tokenizer or disagrees on the probes.
    Fast,
    /// The Hugging Face `tokenizers` crate.
    Reference,
}

/// A built-in OpenAI encoding.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GPT-3.5 / GPT-4.
    Cl100kBase,
    /// GPT-4o.
    O200kBase,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    fn config(self) -> fastokens::tiktoken::TiktokenConfig {
        match self {
            Encoding::Cl100kBase => fastokens::tiktoken::TiktokenConfig::cl100k_base(),
            Encoding::O200kBase => fastokens::tiktoken::TiktokenConfig::o200k_base(),
        }
    }
}

/// Options of `tokenize`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeOptions {
    /// Path of a Hugging Face `tokenizer.json` (relative to the working directory).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Or a built-in OpenAI encoding: `cl100k_base`, `o200k_base` (tiktoken's ids;
    /// special-token text in documents is encoded as ordinary text).
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// The output column of token ids, `list<uint32>` (default `tokens`).
    #[serde(default = "default_output")]
    pub output: String,
    /// A column with each document's token count (default `num_tokens`; `null` for none).
    #[serde(default = "default_num_tokens")]
    pub num_tokens: Option<String>,
    /// A token put before each document, e.g. `"<s>"` (must be in the vocabulary).
    #[serde(default)]
    pub bos: Option<String>,
    /// A token put after each document, e.g. `"<|endoftext|>"`.
    #[serde(default)]
    pub eos: Option<String>,
    /// Run the tokenizer's post-processor (its own BOS/EOS template). Default false,
    /// like `encode(text, add_special_tokens=False)`.
    #[serde(default)]
    pub add_special_tokens: bool,
    /// `auto` (default), `fast` or `reference`.
    #[serde(default)]
    pub engine: EngineChoice,
}

fn default_output() -> String {
    "tokens".into()
}

fn default_num_tokens() -> Option<String> {
    Some("num_tokens".into())
}

/// A loaded tokenizer.
pub enum Engine {
    /// fastokens; `true` when special-token text is encoded as ordinary text (tiktoken).
    Fast(Box<fastokens::Tokenizer>, bool),
    Reference(Box<tokenizers::Tokenizer>),
    /// tiktoken's encoder, with its special tokens.
    Tiktoken(Box<tiktoken_rs::CoreBPE>, Vec<(String, u32)>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Fast(..) => "fastokens",
            Engine::Reference(_) => "tokenizers",
            Engine::Tiktoken(..) => "tiktoken",
        }
    }

    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, String> {
        match self {
            Engine::Fast(t, true) => t.encode_ordinary(text).map_err(|e| e.to_string()),
            Engine::Fast(t, false) => t
                .encode_with_special_tokens(text, add_special)
                .map_err(|e| e.to_string()),
            Engine::Reference(t) => t
                .encode_fast(text, add_special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| e.to_string()),
            Engine::Tiktoken(t, _) => Ok(t.encode_ordinary(text)),
        }
    }

    /// How many ids the vocabulary has (what an embedding table is sized by).
    pub fn vocabulary(&self) -> u64 {
        match self {
            Engine::Fast(t, _) => t.vocab_size() as u64,
            Engine::Reference(t) => t.get_vocab_size(true) as u64,
            // Its ranks and then its special tokens, which come last.
            Engine::Tiktoken(_, specials) => specials
                .iter()
                .map(|(_, id)| u64::from(*id) + 1)
                .max()
                .unwrap_or(u64::from(u32::MAX)),
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Engine::Fast(t, _) => t.token_to_id(token),
            Engine::Reference(t) => t.token_to_id(token),
            Engine::Tiktoken(_, specials) => {
                specials.iter().find(|(s, _)| s == token).map(|(_, id)| *id)
            }
        }
    }
}

/// Texts on which the fast engine must give the reference's ids before it is used:
/// whitespace runs, digits, contractions, scripts, emoji, combining marks, controls.
const PROBES: &[&str] = &[
    "Hello, world! It's a test: they're here, we'll see, I'd've known.",
    "  leading spaces,   inner runs,\ttabs\t\tand trailing   ",
    "line one\nline two\n\n\nparagraph\r\nwindows\rmac",
    "1234567890 3.14159 1,000,000 2026-11-26 0x7fff 00000000000000000000",
    "naïve café Zürich résumé façade — “quotes” ‘single’ … «guillemets»",
    "日本語のテキストと中文文本 한국어 텍스트 ภาษาไทย العربية עברית हिन्दी",
    "emoji 👩‍👩‍👧‍👦 🇩🇪 ✌🏽 e\u{301} a\u{300}\u{301} \u{200b}zero\u{feff}width",
    "code: fn main() { let x = vec![1, 2, 3]; println!(\"{x:?}\"); } // done",
    "URLS https://example.com/a?b=c&d=e#f and mail@example.org",
    "\u{0}\u{1}\u{7f} control \u{85} and private \u{e000} use",
    "",
    " ",
    "\n",
];

/// Loads `path` with the engine `choice` asks for, checking the fast engine against
/// the reference. Returns the engine and, when `auto` fell back, why.
pub fn load(path: &str, choice: EngineChoice) -> Result<(Engine, Option<String>), String> {
    let reference = tokenizers::Tokenizer::from_file(path).map_err(|e| {
        format!("cannot load tokenizer `{path}`: {e} (a Hugging Face tokenizer.json is expected)")
    })?;
    let specials: Vec<String> = reference
        .get_added_tokens_decoder()
        .values()
        .map(|t| t.content.clone())
        .collect();
    let reference = Engine::Reference(Box::new(reference));
    if choice == EngineChoice::Reference {
        return Ok((reference, None));
    }
    let fast = fastokens::Tokenizer::from_file(Path::new(path))
        .map_err(|e| format!("fastokens does not support this tokenizer ({e})"))
        .map(|f| Engine::Fast(Box::new(f), false));
    settle(path, choice, fast, reference, &specials, &[false, true])
}

/// Loads a built-in OpenAI encoding: tiktoken's encoder is the reference; fastokens is
/// built from the same ranks (read back from tiktoken's encoder) and checked.
pub fn load_encoding(
    encoding: Encoding,
    choice: EngineChoice,
) -> Result<(Engine, Option<String>), String> {
    let name = encoding.name();
    let bpe = match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
        Encoding::O200kBase => tiktoken_rs::o200k_base(),
    }
    .map_err(|e| format!("cannot load the {name} encoding: {e}"))?;
    let config = encoding.config();
    let specials = config.special_tokens.clone();
    let special_ids: std::collections::HashSet<u32> = specials.iter().map(|(_, i)| *i).collect();
    let mut ranks = Vec::new();
    if choice != EngineChoice::Reference {
        let mut misses = 0;
        for id in 0u32.. {
            if special_ids.contains(&id) {
                continue;
            }
            match bpe.decode_bytes(&[id]) {
                Ok(bytes) => {
                    ranks.push((bytes, id));
                    misses = 0;
                }
                Err(_) => {
                    misses += 1;
                    if misses > 1024 {
                        break;
                    }
                }
            }
        }
    }
    let names: Vec<String> = specials.iter().map(|(s, _)| s.clone()).collect();
    let reference = Engine::Tiktoken(Box::new(bpe), specials);
    if choice == EngineChoice::Reference {
        return Ok((reference, None));
    }
    let fast = fastokens::Tokenizer::from_tiktoken_ranks(&ranks, config)
        .map_err(|e| format!("fastokens cannot load {name} ({e})"))
        .map(|f| Engine::Fast(Box::new(f), true));
    settle(name, choice, fast, reference, &names, &[false])
}

/// The fast engine if it loaded and agrees with the reference on the probes.
fn settle(
    what: &str,
    choice: EngineChoice,
    fast: Result<Engine, String>,
    reference: Engine,
    specials: &[String],
    modes: &[bool],
) -> Result<(Engine, Option<String>), String> {
    let why = match fast {
        Err(e) => e,
        Ok(fast) => match agree(&fast, &reference, specials, modes) {
            Ok(()) => return Ok((fast, None)),
            Err(e) => e,
        },
    };
    match choice {
        EngineChoice::Fast => Err(format!("tokenizer `{what}`: engine `fast`: {why}")),
        _ => Ok((reference, Some(why))),
    }
}

/// The probes, plus each special token alone and inside text, encoded both ways.
fn agree(
    fast: &Engine,
    reference: &Engine,
    specials: &[String],
    modes: &[bool],
) -> Result<(), String> {
    let mut probes: Vec<String> = PROBES.iter().map(|s| s.to_string()).collect();
    for t in specials {
        probes.push(t.clone());
        probes.push(format!("before{t} after {t}{t}"));
    }
    for &add_special in modes {
        for p in &probes {
            let want = reference
                .encode(p, add_special)
                .map_err(|e| format!("the reference tokenizer failed on a probe: {e}"))?;
            let got = fast
                .encode(p, add_special)
                .map_err(|e| format!("fastokens failed on a probe: {e}"))?;
            if got != want {
                return Err(format!(
                    "fastokens and {} disagree on {p:?} (add_special_tokens={add_special})",
                    reference.name()
                ));
            }
        }
    }
    Ok(())
}

impl StepOptions for TokenizeOptions {
    const SUMMARY: &'static str =
        "token ids (list<uint32>) from a Hugging Face tokenizer.json, plus num_tokens";
    const EXAMPLE: &'static str = "- tokenize: { tokenizer: sample-data/tokenizer/tokenizer.json, column: text, eos: \"<|endoftext|>\" }\n- tokenize: { encoding: cl100k_base }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        let (engine, fallback) = match (&self.tokenizer, self.encoding) {
            (Some(path), None) => load(path, self.engine)?,
            (None, Some(enc)) => load_encoding(enc, self.engine)?,
            _ => {
                return Err(
                    "give either `tokenizer: path/to/tokenizer.json` or `encoding: \
                            cl100k_base | o200k_base`"
                        .into(),
                );
            }
        };
        let what = self.what();
        match &fallback {
            Some(why) => {
                tracing::info!(tokenizer = %what, engine = engine.name(), "tokenize uses the reference encoder: {why}")
            }
            None => {
                tracing::debug!(tokenizer = %what, engine = engine.name(), "tokenize engine")
            }
        }
        let special = |name: &str, t: &Option<String>| -> Result<Option<u32>, String> {
            t.as_ref()
                .map(|t| {
                    engine.token_to_id(t).ok_or_else(|| {
                        format!("{name} token {t:?} is not in the vocabulary of `{what}`")
                    })
                })
                .transpose()
        };
        let bos = special("bos", &self.bos)?;
        let eos = special("eos", &self.eos)?;
        if Some(&self.output) == self.num_tokens.as_ref() {
            return Err("`output` and `num_tokens` name the same column".into());
        }
        let item = Arc::new(Field::new_list_field(DataType::UInt32, false));
        let (schema, index) = with_field(
            input,
            &self.output,
            Field::new(&self.output, DataType::List(item.clone()), true),
        );
        let (schema, count_index) = match &self.num_tokens {
            Some(n) => {
                let (s, i) = with_field(&schema, n, Field::new(n, DataType::Int32, true));
                (s, Some(i))
            }
            None => (schema, None),
        };
        let fingerprint = match &self.tokenizer {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read tokenizer `{path}`: {e}"))?;
                let digest = sha2::Sha256::digest(&bytes);
                Some(format!(
                    "tokenizer:{}",
                    digest
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ))
            }
            None => None,
        };
        Ok(Arc::new(Tokenize {
            fingerprint,
            opts: self.clone(),
            engine,
            bos,
            eos,
            item,
            source,
            index,
            count_index,
            schema,
        }))
    }
}

impl TokenizeOptions {
    fn what(&self) -> String {
        match (&self.tokenizer, self.encoding) {
            (Some(p), _) => p.clone(),
            (None, Some(e)) => e.name().to_string(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug)]
struct Tokenize {
    /// SHA-256 of the tokenizer file.
    fingerprint: Option<String>,
    opts: TokenizeOptions,
    engine: Engine,
    bos: Option<u32>,
    eos: Option<u32>,
    item: Arc<Field>,
    source: usize,
    index: usize,
    count_index: Option<usize>,
    schema: SchemaRef,
}

impl Step for Tokenize {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    fn vocabulary(&self) -> Option<u64> {
        Some(self.engine.vocabulary())
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        if let Some(n) = &self.opts.num_tokens {
            need.remove(n);
        }
        need.insert(self.opts.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let texts = utf8(batch.column(self.source))?;
        // Collected in row order, then the first failing row's error: the error a run
        // reports does not depend on which thread failed first.
        let results: Vec<Result<Option<Vec<u32>>, String>> =
            crate::pool::par_rows(texts.len(), 8, |i| {
                value(&texts, i)
                    .map(|t| {
                        self.engine
                            .encode(t, self.opts.add_special_tokens)
                            .map_err(|e| e.to_string())
                    })
                    .transpose()
            });
        let mut encoded: Vec<Option<Vec<u32>>> = Vec::with_capacity(results.len());
        for (i, r) in results.into_iter().enumerate() {
            encoded.push(r.map_err(|e| {
                StepError::data(format!("cannot tokenize: {e}"))
                    .in_column(&self.opts.column)
                    .at_row(i)
            })?);
        }
        let extra = usize::from(self.bos.is_some()) + usize::from(self.eos.is_some());
        let total: usize = encoded.iter().flatten().map(|v| v.len() + extra).sum();
        let mut values = Vec::with_capacity(total);
        let mut lengths = Vec::with_capacity(encoded.len());
        let mut counts = Vec::with_capacity(encoded.len());
        for ids in &encoded {
            match ids {
                Some(ids) => {
                    values.extend(self.bos);
                    values.extend_from_slice(ids);
                    values.extend(self.eos);
                    let n = ids.len() + extra;
                    lengths.push(n);
                    counts.push(Some(i32::try_from(n).map_err(|_| {
                        format!("a document has {n} tokens, more than num_tokens (int32) holds")
                    })?));
                }
                None => {
                    lengths.push(0);
                    counts.push(None);
                }
            }
        }
        let nulls = NullBuffer::from_iter(encoded.iter().map(Option::is_some));
        let list = ListArray::try_new(
            self.item.clone(),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(UInt32Array::from(values)),
            (nulls.null_count() > 0).then_some(nulls),
        )
        .map_err(|e| e.to_string())?;
        cx.count("tokens", total as u64);
        cx.count("documents", encoded.iter().flatten().count() as u64);
        let mut columns: Vec<(usize, ArrayRef)> = vec![(self.index, Arc::new(list))];
        if let Some(ci) = self.count_index {
            columns.push((ci, Arc::new(Int32Array::from(counts))));
        }
        put_columns(&batch, &self.schema, columns).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::UInt32Type;
    use std::io::{BufRead, BufReader};

    const SAMPLE: &str = "sample-data/tokenizer/tokenizer.json";

    fn corpus() -> Vec<String> {
        let mut texts = Vec::new();
        for part in [
            "sample-data/web/crawl-00000.jsonl.gz",
            "sample-data/web/crawl-00001.jsonl.gz",
        ] {
            let file = std::fs::File::open(part).expect("sample corpus");
            for line in BufReader::new(flate2::read::MultiGzDecoder::new(file)).lines() {
                let v: serde_json::Value =
                    serde_json::from_str(&line.expect("line")).expect("json");
                texts.push(v["text"].as_str().expect("text").to_string());
            }
        }
        texts
    }

    /// Text built to break tokenizers: special tokens glued to words, long digit and
    /// whitespace runs, every script block, combining marks, surrogates' neighbours,
    /// very long words; deterministic (SplitMix64).
    fn stress() -> Vec<String> {
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let ranges: &[(u32, u32)] = &[
            (0x20, 0x7e),
            (0xa0, 0x24f),
            (0x300, 0x36f),
            (0x370, 0x3ff),
            (0x400, 0x4ff),
            (0x590, 0x6ff),
            (0x900, 0x97f),
            (0xe00, 0xe7f),
            (0x2000, 0x206f),
            (0x3040, 0x30ff),
            (0x4e00, 0x4fff),
            (0xac00, 0xad00),
            (0xd7f0, 0xd7ff),
            (0xe000, 0xe010),
            (0xfe00, 0xfe0f),
            (0xfff0, 0xfffd),
            (0x1f300, 0x1f6ff),
            (0x10ffe0, 0x10ffff),
        ];
        let mut out = vec![
            "<|endoftext|>".to_string(),
            "text<|endoftext|>more<|endoftext|><|endoftext|> spaced <|endoftext|> ".into(),
            "<|endoftext".into(),
            "1".repeat(5000),
            "12345678901234567890 0.000000001 -3e-10 1_000_000".into(),
            " ".repeat(3000),
            "\n".repeat(500) + &"\t".repeat(300) + "x",
            "a".repeat(20_000),
            "supercalifragilistic".repeat(500),
            "'s 're 've 'm 'll 'd 'S 'RE n't ’s".into(),
            "\u{0}\u{1}\u{2}\u{1b}[31mred\u{1b}[0m".into(),
        ];
        for _ in 0..400 {
            let len = (next() % 200) as usize;
            let mut s = String::new();
            for _ in 0..len {
                let (lo, hi) = ranges[(next() % ranges.len() as u64) as usize];
                let c =
                    char::from_u32(lo + (next() % u64::from(hi - lo + 1)) as u32).unwrap_or('?');
                s.push(c);
                match next() % 10 {
                    0 => s.push(' '),
                    1 => s.push_str("  "),
                    2 if next() % 20 == 0 => s.push_str("<|endoftext|>"),
                    _ => {}
                }
            }
            out.push(s);
        }
        out
    }

    #[test]
    fn fast_engine_is_used_and_gives_the_reference_ids() {
        let (fast, why) = load(SAMPLE, EngineChoice::Auto).expect("loads");
        assert!(matches!(fast, Engine::Fast(..)), "fell back: {why:?}");
        let (reference, _) = load(SAMPLE, EngineChoice::Reference).expect("loads");
        let texts: Vec<String> = corpus().into_iter().chain(stress()).collect();
        let mut tokens = 0usize;
        for (i, t) in texts.iter().enumerate() {
            for special in [false, true] {
                let want = reference.encode(t, special).expect("reference");
                let got = fast.encode(t, special).expect("fast");
                assert_eq!(got, want, "document {i} ({} bytes) differs", t.len());
                tokens += want.len();
            }
        }
        assert!(tokens > 1_000_000, "{tokens}");
    }

    #[test]
    fn openai_encodings_give_tiktoken_ids_on_the_fast_path() {
        let texts: Vec<String> = corpus().into_iter().take(600).chain(stress()).collect();
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let (fast, why) = load_encoding(enc, EngineChoice::Auto).expect("loads");
            assert!(
                matches!(fast, Engine::Fast(..)),
                "{}: fell back: {why:?}",
                enc.name()
            );
            let (reference, _) = load_encoding(enc, EngineChoice::Reference).expect("loads");
            for (i, t) in texts.iter().enumerate() {
                assert_eq!(
                    fast.encode(t, false).expect("fast"),
                    reference.encode(t, false).expect("reference"),
                    "{}: document {i} differs",
                    enc.name()
                );
            }
            assert_eq!(
                fast.token_to_id("<|endoftext|>"),
                reference.token_to_id("<|endoftext|>")
            );
        }
        let (cl100k, _) = load_encoding(Encoding::Cl100kBase, EngineChoice::Auto).expect("loads");
        assert_eq!(
            cl100k.encode("hello world", false).expect("ids"),
            [15339, 1917]
        );
        assert_eq!(cl100k.token_to_id("<|endoftext|>"), Some(100257));
    }

    #[test]
    fn step_writes_lists_counts_and_special_tokens() {
        let texts: ArrayRef =
            Arc::new(StringArray::from(vec![Some("Hello world"), None, Some("")]));
        let batch = RecordBatch::try_from_iter(vec![("text", texts)]).expect("batch");
        let opts: TokenizeOptions = serde_json::from_value(serde_json::json!({
            "tokenizer": SAMPLE, "eos": "<|endoftext|>"
        }))
        .expect("options");
        let step = opts.bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("applies");
        let (engine, _) = load(SAMPLE, EngineChoice::Reference).expect("loads");
        let mut want = engine.encode("Hello world", false).expect("encodes");
        want.push(0);
        let lists = out
            .column_by_name("tokens")
            .expect("tokens")
            .as_list::<i32>();
        let first = lists.value(0);
        assert_eq!(first.as_primitive::<UInt32Type>().values().to_vec(), want);
        assert!(lists.is_null(1));
        assert_eq!(lists.value(2).len(), 1, "an empty text is just the EOS");
        let counts = out.column_by_name("num_tokens").expect("num_tokens");
        let counts = counts.as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(counts.value(0) as usize, want.len());
        assert!(counts.is_null(1));
        assert_eq!(cx.counts["tokens"], want.len() as u64 + 1);
        assert_eq!(cx.counts["documents"], 2);

        let bad: TokenizeOptions = serde_json::from_value(serde_json::json!({
            "tokenizer": SAMPLE, "bos": "<s>"
        }))
        .expect("options");
        let err = bad
            .bind(&out.schema())
            .expect_err("no <s> in the vocabulary");
        assert!(err.contains("not in the vocabulary"), "{err}");
        let missing: TokenizeOptions =
            serde_json::from_value(serde_json::json!({ "tokenizer": "nope.json" }))
                .expect("options");
        let err = missing.bind(&out.schema()).expect_err("no file");
        assert!(err.contains("nope.json"), "{err}");
    }
}
