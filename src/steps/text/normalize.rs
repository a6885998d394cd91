//! `text.normalize`: Unicode normalization and whitespace/control-character cleanup.
//!
//! Only changes that keep a document's meaning: NFC (canonical equivalence) by default,
//! NFKC on request; line endings to `\n`; C0/C1 control characters other than tab and
//! newline and the byte-order mark removed; runs of spaces inside a line collapsed to
//! one, trailing spaces dropped, indentation kept; more than one blank line collapsed to
//! one; leading and trailing blank space of the document trimmed. Lowercasing is off
//! unless asked for.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

use super::{put_column, string_column, utf8, value, with_field};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Unicode normalization form.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// Canonical composition: the same text, one encoding of it. (`NFC` is read too,
    /// as Unicode writes it.)
    #[default]
    #[serde(alias = "NFC")]
    Nfc,
    /// Compatibility composition: also folds ligatures, full-width forms, superscripts.
    #[serde(alias = "NFKC")]
    Nfkc,
    /// No Unicode normalization (only the cleanups that are on).
    None,
}

/// Options of `text.normalize`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalizeOptions {
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// Where to write the result; the input column itself when absent.
    #[serde(default)]
    pub output: Option<String>,
    /// Unicode normalization form: `nfc` (default), `nfkc` or `none`.
    #[serde(default)]
    pub form: Form,
    /// Line endings to `\n`, spaces collapsed, trailing spaces and extra blank lines
    /// removed (default true).
    #[serde(default = "yes")]
    pub whitespace: bool,
    /// Remove control characters other than tab and newline, and the BOM (default true).
    #[serde(default = "yes")]
    pub controls: bool,
    /// Lowercase the text (default false).
    #[serde(default)]
    pub lowercase: bool,
}

pub(crate) fn default_column() -> String {
    "text".into()
}

fn yes() -> bool {
    true
}

impl StepOptions for NormalizeOptions {
    const SUMMARY: &'static str =
        "Unicode NFC/NFKC, line endings, control characters, spaces; optional lowercase";
    const EXAMPLE: &'static str =
        "- text.normalize: { column: text, form: nfkc, lowercase: false }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        let out = self.output.clone().unwrap_or_else(|| self.column.clone());
        let (schema, index) = with_field(input, &out, Field::new(&out, DataType::Utf8, true));
        Ok(Arc::new(Normalize {
            opts: self.clone(),
            source,
            index,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Normalize {
    opts: NormalizeOptions,
    source: usize,
    index: usize,
    schema: SchemaRef,
}

impl Normalize {
    /// Writes the normalized `text` to `out`. Each stage borrows when it has nothing
    /// to change (the common case), so clean text costs a scan and one copy.
    fn normalize(&self, text: &str, out: &mut String) {
        let o = &self.opts;
        let mut s: Cow<str> = match o.form {
            Form::Nfc if is_nfc_quick(text.chars()) != IsNormalized::Yes => {
                Cow::Owned(text.nfc().collect())
            }
            Form::Nfkc if is_nfkc_quick(text.chars()) != IsNormalized::Yes => {
                Cow::Owned(text.nfkc().collect())
            }
            _ => Cow::Borrowed(text),
        };
        if o.controls && s.chars().any(is_removed_control) {
            s.to_mut().retain(|c| !is_removed_control(c));
        }
        if o.lowercase && s.chars().any(char::is_uppercase) {
            s = Cow::Owned(s.to_lowercase());
        }
        if o.whitespace {
            clean_whitespace(&s, out);
        } else {
            out.push_str(&s);
        }
    }
}

/// C0 and C1 controls other than tab, newline and carriage return (line endings are the
/// whitespace cleanup's business), and the byte-order mark / zero-width no-break space.
fn is_removed_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{feff}'
}

/// Horizontal blank characters that collapse to one space: space, tab inside a line,
/// no-break and the other Unicode space separators.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || (c.is_whitespace() && !matches!(c, '\n' | '\r'))
}

/// Line endings to `\n`; per line: indentation kept (other blanks in it become spaces),
/// inner runs of blanks become one space, trailing blanks dropped; at most one blank
/// line in a row; no blank lines or blanks at the start or end of the document.
fn clean_whitespace(text: &str, out: &mut String) {
    let start = out.len();
    let text: Cow<str> = if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    };
    let mut blank_lines = 0usize;
    for line in text.split('\n') {
        let trimmed = line.trim_end_matches(is_blank);
        if trimmed.is_empty() {
            blank_lines += 1;
            continue;
        }
        if out.len() > start {
            out.push('\n');
            if blank_lines > 0 {
                out.push('\n');
            }
        }
        blank_lines = 0;
        let body = trimmed.trim_start_matches(is_blank);
        let indent = &trimmed[..trimmed.len() - body.len()];
        if out.len() > start {
            for c in indent.chars() {
                out.push(if c == '\t' { '\t' } else { ' ' });
            }
        }
        let mut prev_blank = false;
        for c in body.chars() {
            if is_blank(c) {
                if !prev_blank {
                    out.push(' ');
                }
                prev_blank = true;
            } else {
                out.push(c);
                prev_blank = false;
            }
        }
    }
}

impl Step for Normalize {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        if let Some(o) = &self.opts.output {
            need.remove(o);
        }
        need.insert(self.opts.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let texts = utf8(batch.column(self.source))?;
        let mut builder = StringBuilder::with_capacity(texts.len(), texts.values().len());
        let mut changed = 0u64;
        let mut buf = String::new();
        for i in 0..texts.len() {
            match value(&texts, i) {
                None => builder.append_null(),
                Some(t) => {
                    buf.clear();
                    self.normalize(t, &mut buf);
                    changed += u64::from(buf != t);
                    builder.append_value(&buf);
                }
            }
        }
        cx.count("changed", changed);
        let values: ArrayRef = Arc::new(builder.finish());
        put_column(&batch, &self.schema, self.index, values).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray};

    fn run(opts: &str, inputs: &[&str]) -> (Vec<String>, u64) {
        let o: NormalizeOptions = serde_json::from_str(opts).expect("options");
        let texts: ArrayRef = Arc::new(StringArray::from(inputs.to_vec()));
        let batch = RecordBatch::try_from_iter(vec![("text", texts)]).expect("batch");
        let step = o.bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("applies");
        let col = out.column(0).as_string::<i32>();
        (
            (0..col.len()).map(|i| col.value(i).to_string()).collect(),
            cx.counts.get("changed").copied().unwrap_or(0),
        )
    }

    #[test]
    fn nfc_composes_and_nfkc_folds_compatibility_forms() {
        let decomposed = "cafe\u{301}";
        let (out, changed) = run("{}", &[decomposed, "café"]);
        assert_eq!(out, ["café", "café"]);
        assert_eq!(changed, 1);
        let (out, _) = run(r#"{"form": "nfkc"}"#, &["ﬁle ①", "ＡＢＣ"]);
        assert_eq!(out, ["file 1", "ABC"]);
        let (out, _) = run(r#"{"form": "nfc"}"#, &["ﬁle"]);
        assert_eq!(out, ["ﬁle"]);
    }

    #[test]
    fn whitespace_and_controls_are_cleaned_without_touching_indentation() {
        let (out, changed) = run(
            "{}",
            &[
                "\u{feff}  Title\r\n\r\n\r\n\r\nBody  with\u{a0}\u{a0}spaces \t\nnext\u{0}line\u{7}\n\n",
                "def f():\n    return 1",
                "already clean.\n\nTwo paragraphs.",
            ],
        );
        assert_eq!(out[0], "Title\n\nBody with spaces\nnextline");
        assert_eq!(out[1], "def f():\n    return 1");
        assert_eq!(out[2], "already clean.\n\nTwo paragraphs.");
        assert_eq!(changed, 1);
    }

    #[test]
    fn lowercase_and_switches() {
        let (out, _) = run(r#"{"lowercase": true}"#, &["Ünïcode TEXT"]);
        assert_eq!(out, ["ünïcode text"]);
        let (out, changed) = run(
            r#"{"whitespace": false, "controls": false, "form": "none"}"#,
            &["a  b\u{7}\r\n"],
        );
        assert_eq!(out, ["a  b\u{7}\r\n"]);
        assert_eq!(changed, 0);
    }
}
