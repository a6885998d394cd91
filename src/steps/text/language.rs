//! `text.language`: language identification, adding `language` (ISO 639-1 code where
//! one exists, else ISO 639-3) and `language_score` (the detector's confidence, 0–1),
//! optionally keeping only some languages above a score.
//!
//! The detector is `whatlang` (69 languages, trigram and script models compiled in, no
//! files to download), chosen by measurement against `whichlang` and `lingua`: see
//! docs/text.md and benches/langid. Only the first `max_chars` characters are read: a
//! web page's language is settled long before its end, and the cost is linear.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float32Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::normalize::default_column;
use super::{put_columns, string_column, utf8, value, with_field};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `text.language`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LanguageOptions {
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// Keep only rows in these languages (ISO 639-1 `en` or 639-3 `eng`); all when absent.
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Keep only rows whose score is at least this (0–1); with `keep`, applies to kept
    /// languages.
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Characters read from the start of each text (default 2000).
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Output column names (default `language`, `language_score`).
    #[serde(default = "default_output")]
    pub output: String,
    #[serde(default = "default_score")]
    pub score: String,
}

fn default_max_chars() -> usize {
    2000
}
fn default_output() -> String {
    "language".into()
}
fn default_score() -> String {
    "language_score".into()
}

/// The code kiln writes for a whatlang language.
pub fn code(lang: whatlang::Lang) -> String {
    isolang::Language::from_639_3(lang.code())
        .and_then(|l| l.to_639_1())
        .unwrap_or(lang.code())
        .to_string()
}

/// A user's code (639-1 or 639-3) as kiln writes it, or an error listing the forms.
fn normalize_code(c: &str) -> Result<String, String> {
    let c = c.trim().to_ascii_lowercase();
    let lang = match c.len() {
        2 => isolang::Language::from_639_1(&c),
        3 => isolang::Language::from_639_3(&c),
        _ => None,
    }
    .ok_or_else(|| format!("`{c}` is not an ISO 639-1 (`en`) or 639-3 (`eng`) language code"))?;
    let three = lang.to_639_3();
    if whatlang::Lang::from_code(three).is_none() {
        return Err(format!(
            "`{c}` is not one of the 69 languages the detector knows (docs/text.md lists them)"
        ));
    }
    Ok(lang.to_639_1().unwrap_or(three).to_string())
}

impl StepOptions for LanguageOptions {
    const SUMMARY: &'static str =
        "language identification: `language` and `language_score` columns; keep / min_score";
    const EXAMPLE: &'static str = "- text.language: { keep: [en], min_score: 0.65 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        if let Some(s) = self.min_score
            && !(0.0..=1.0).contains(&s)
        {
            return Err(format!("min_score must be between 0 and 1, found {s}"));
        }
        let keep = self
            .keep
            .as_ref()
            .map(|k| {
                k.iter()
                    .map(|c| normalize_code(c))
                    .collect::<Result<BTreeSet<_>, _>>()
            })
            .transpose()?;
        let (schema, li) = with_field(
            input,
            &self.output,
            Field::new(&self.output, DataType::Utf8, true),
        );
        let (schema, si) = with_field(
            &schema,
            &self.score,
            Field::new(&self.score, DataType::Float32, true),
        );
        Ok(Arc::new(Language {
            opts: self.clone(),
            keep,
            source,
            li,
            si,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Language {
    opts: LanguageOptions,
    keep: Option<BTreeSet<String>>,
    source: usize,
    li: usize,
    si: usize,
    schema: SchemaRef,
}

impl Step for Language {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        need.remove(&self.opts.score);
        need.insert(self.opts.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let texts = utf8(batch.column(self.source))?;
        let found: Vec<Option<(String, f32)>> = crate::pool::par_rows(texts.len(), 16, |i| {
            let t = value(&texts, i)?;
            let end = t
                .char_indices()
                .nth(self.opts.max_chars)
                .map_or(t.len(), |(i, _)| i);
            let info = whatlang::detect(&t[..end])?;
            Some((code(info.lang()), info.confidence() as f32))
        });
        let mut keep = Vec::with_capacity(found.len());
        for f in &found {
            let ok = match f {
                None => self.keep.is_none() && self.opts.min_score.is_none(),
                Some((lang, score)) => {
                    self.keep.as_ref().is_none_or(|k| k.contains(lang))
                        && self.opts.min_score.is_none_or(|m| *score >= m)
                }
            };
            match f {
                Some((lang, _)) => cx.count(lang, 1),
                None => cx.count("undetermined", 1),
            }
            keep.push(ok);
        }
        let langs: ArrayRef = Arc::new(StringArray::from(
            found
                .iter()
                .map(|f| f.as_ref().map(|(l, _)| l.as_str()))
                .collect::<Vec<_>>(),
        ));
        let scores: ArrayRef = Arc::new(Float32Array::from(
            found
                .iter()
                .map(|f| f.as_ref().map(|(_, s)| *s))
                .collect::<Vec<_>>(),
        ));
        let out = put_columns(
            &batch,
            &self.schema,
            vec![(self.li, langs), (self.si, scores)],
        )?;
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped == 0 {
            return Ok(out);
        }
        cx.count("dropped", dropped as u64);
        filter_record_batch(&out, &BooleanArray::from(keep)).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn labels_scores_and_keeps() {
        let texts = StringArray::from(vec![
            Some(
                "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden gate.",
            ),
            Some(
                "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer am alten Tor steht.",
            ),
            Some(
                "Быстрая коричневая лиса прыгает через ленивую собаку, пока фермер смотрит от старых ворот.",
            ),
            None,
        ]);
        let batch =
            RecordBatch::try_from_iter(vec![("text", Arc::new(texts) as ArrayRef)]).expect("batch");
        let opts: LanguageOptions = serde_json::from_value(serde_json::json!({})).expect("options");
        let step = opts.bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(batch.clone(), &mut cx).expect("applies");
        let langs = out.column(1).as_string::<i32>();
        assert_eq!(
            (0..3).map(|i| langs.value(i)).collect::<Vec<_>>(),
            ["en", "de", "ru"]
        );
        assert!(langs.is_null(3));
        let scores = out
            .column(2)
            .as_primitive::<arrow::datatypes::Float32Type>();
        eprintln!("scores {:?}", scores.values());
        assert!(scores.value(0) > 0.0 && scores.value(0) <= 1.0);
        assert_eq!(cx.counts["undetermined"], 1);

        let opts: LanguageOptions =
            serde_json::from_value(serde_json::json!({"keep": ["en", "rus"], "min_score": 0.1}))
                .expect("options");
        let out = opts
            .bind(&batch.schema())
            .expect("binds")
            .apply(batch.clone(), &mut StepContext::default())
            .expect("applies");
        assert_eq!(out.num_rows(), 2);

        let bad: LanguageOptions =
            serde_json::from_value(serde_json::json!({"keep": ["english"]})).expect("options");
        assert!(bad.bind(&batch.schema()).is_err());
    }
}
