//! `text.stats`: cheap per-document text measures as columns, for `filter` and `derive`
//! to use without running regular expressions over every byte: `n_chars` (Unicode
//! code points), `n_words` (whitespace-separated), `n_lines`, `n_letters` and
//! `letter_ratio` (letters, Unicode category L, over characters).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::normalize::default_column;
use super::words::is_alpha;
use super::{put_columns, string_column, utf8, value, with_field};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// A measure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    NChars,
    NWords,
    NLines,
    NLetters,
    LetterRatio,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::NChars => "n_chars",
            Metric::NWords => "n_words",
            Metric::NLines => "n_lines",
            Metric::NLetters => "n_letters",
            Metric::LetterRatio => "letter_ratio",
        }
    }
}

/// Options of `text.stats`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsOptions {
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// Measures to add (default all): n_chars, n_words, n_lines, n_letters, letter_ratio.
    #[serde(default = "all")]
    pub metrics: Vec<Metric>,
    /// Prefix of the column names (default none: `n_words`, ...).
    #[serde(default)]
    pub prefix: String,
}

fn all() -> Vec<Metric> {
    vec![
        Metric::NChars,
        Metric::NWords,
        Metric::NLines,
        Metric::NLetters,
        Metric::LetterRatio,
    ]
}

impl StepOptions for StatsOptions {
    const SUMMARY: &'static str =
        "per-document n_chars, n_words, n_lines, n_letters, letter_ratio columns (for filter)";
    const EXAMPLE: &'static str = "- text.stats: { metrics: [n_words, letter_ratio] }\n- filter: \"n_words >= 50 AND letter_ratio >= 0.6\"";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        if self.metrics.is_empty() {
            return Err("`metrics` is empty".into());
        }
        let mut schema = input.clone();
        let mut outputs = Vec::new();
        for m in &self.metrics {
            let name = format!("{}{}", self.prefix, m.name());
            let ty = if *m == Metric::LetterRatio {
                DataType::Float64
            } else {
                DataType::Int64
            };
            let (s, i) = with_field(&schema, &name, Field::new(&name, ty, true));
            schema = s;
            outputs.push((*m, name, i));
        }
        Ok(Arc::new(Stats {
            column: self.column.clone(),
            source,
            outputs,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Stats {
    column: String,
    source: usize,
    outputs: Vec<(Metric, String, usize)>,
    schema: SchemaRef,
}

#[derive(Default, Clone, Copy)]
struct Measures {
    chars: i64,
    words: i64,
    lines: i64,
    letters: i64,
}

fn measure(t: &str) -> Measures {
    let mut m = Measures::default();
    let mut in_word = false;
    if t.is_ascii() {
        for b in t.bytes() {
            let space = b.is_ascii_whitespace() || (0x1c..=0x1f).contains(&b) || b == 0x0b;
            m.words += i64::from(!space && !in_word);
            in_word = !space;
            m.letters += i64::from(b.is_ascii_alphabetic());
            m.lines += i64::from(b == b'\n');
        }
        m.chars = t.len() as i64;
    } else {
        for c in t.chars() {
            m.chars += 1;
            let space = c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
            m.words += i64::from(!space && !in_word);
            in_word = !space;
            m.letters += i64::from(is_alpha(c));
            m.lines += i64::from(c == '\n');
        }
    }
    if !t.is_empty() && !t.ends_with('\n') {
        m.lines += 1;
    }
    m
}

impl Step for Stats {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        for (_, n, _) in &self.outputs {
            need.remove(n);
        }
        need.insert(self.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let texts = utf8(batch.column(self.source))?;
        let measures: Vec<Option<Measures>> =
            crate::pool::par_rows(texts.len(), 64, |i| value(&texts, i).map(measure));
        let ints = |f: fn(&Measures) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(
                measures
                    .iter()
                    .map(|m| m.as_ref().map(f))
                    .collect::<Vec<_>>(),
            ))
        };
        let columns = self
            .outputs
            .iter()
            .map(|(m, _, i)| {
                let a = match m {
                    Metric::NChars => ints(|m| m.chars),
                    Metric::NWords => ints(|m| m.words),
                    Metric::NLines => ints(|m| m.lines),
                    Metric::NLetters => ints(|m| m.letters),
                    Metric::LetterRatio => Arc::new(Float64Array::from(
                        measures
                            .iter()
                            .map(|m| {
                                m.map(|m| {
                                    if m.chars == 0 {
                                        0.0
                                    } else {
                                        m.letters as f64 / m.chars as f64
                                    }
                                })
                            })
                            .collect::<Vec<_>>(),
                    )) as ArrayRef,
                };
                (*i, a)
            })
            .collect();
        put_columns(&batch, &self.schema, columns).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_match_python_definitions() {
        // len(t), len(t.split()), letters by str.isalpha
        let m = measure("Hello  world,\nnaïve café 42\n");
        assert_eq!((m.chars, m.words, m.lines, m.letters), (28, 5, 2, 19));
        let m = measure("one");
        assert_eq!((m.chars, m.words, m.lines, m.letters), (3, 1, 1, 3));
        let m = measure("");
        assert_eq!((m.chars, m.words, m.lines), (0, 0, 0));
    }
}
