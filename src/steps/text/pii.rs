//! `text.pii`: redact e-mail addresses, IPv4 and IPv6 addresses and phone numbers.
//!
//! Each kind is a candidate regex (the `regex` crate: linear time, no backtracking) and,
//! for addresses, a check by the standard library's parser, so `999.1.1.1` or `1:2` are
//! left alone. Kinds run in a fixed order (e-mail, IPv6, IPv4, phone) on the output of
//! the previous one; replacement tokens contain no digits, `@` or `:`, so a later kind
//! never matches inside an earlier replacement.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use regex::{Captures, Regex};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::normalize::default_column;
use super::{put_column, string_column, utf8, value, with_field};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// A kind of personal data.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Email,
    Ipv6,
    Ipv4,
    Phone,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Ipv6 => "ipv6",
            Kind::Ipv4 => "ipv4",
            Kind::Phone => "phone",
        }
    }
}

/// Options of `text.pii`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiOptions {
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// Where to write the result; the input column itself when absent.
    #[serde(default)]
    pub output: Option<String>,
    /// Kinds to redact (default: all four).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<Kind>,
    /// Replacement per kind (defaults: `<EMAIL>`, `<IPV6>`, `<IPV4>`, `<PHONE>`).
    #[serde(default)]
    pub replace: Replacements,
}

fn all_kinds() -> Vec<Kind> {
    vec![Kind::Email, Kind::Ipv6, Kind::Ipv4, Kind::Phone]
}

/// Replacement tokens.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Replacements {
    pub email: String,
    pub ipv4: String,
    pub ipv6: String,
    pub phone: String,
}

impl Default for Replacements {
    fn default() -> Self {
        Replacements {
            email: "<EMAIL>".into(),
            ipv4: "<IPV4>".into(),
            ipv6: "<IPV6>".into(),
            phone: "<PHONE>".into(),
        }
    }
}

impl Replacements {
    fn get(&self, k: Kind) -> &str {
        match k {
            Kind::Email => &self.email,
            Kind::Ipv4 => &self.ipv4,
            Kind::Ipv6 => &self.ipv6,
            Kind::Phone => &self.phone,
        }
    }
}

/// The candidate pattern of each kind.
fn pattern(kind: Kind) -> &'static str {
    match kind {
        Kind::Email => {
            r"(?i)\b[a-z0-9](?:[a-z0-9._%+\-]{0,63})@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b"
        }
        Kind::Ipv4 => r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
        // Hex groups with colons, at least two colons; `Ipv6Addr` decides. A trailing
        // dotted quad (`::ffff:1.2.3.4`) is included.
        Kind::Ipv6 => r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{1,4})?",
        // An optional `+` country code, then groups of digits separated by a space, dot
        // or hyphen, the area code optionally in parentheses. The digit count decides.
        Kind::Phone => {
            r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?|\b\d{2,4}[ .\-])\d{2,4}[ .\-]\d{2,4}(?:[ .\-]\d{2,4})?\b"
        }
    }
}

fn valid(kind: Kind, s: &str, text: &str, start: usize, end: usize) -> bool {
    match kind {
        Kind::Email => true,
        Kind::Ipv4 => {
            // Not part of a longer dotted number (a version string such as 1.2.3.4.5).
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            let dotted = |c: Option<char>, d: Option<char>| {
                c == Some('.') && d.is_some_and(|d| d.is_ascii_digit())
            };
            s.parse::<Ipv4Addr>().is_ok()
                && !dotted(before, text[..start.saturating_sub(1)].chars().next_back())
                && !dotted(after, text[(end + 1).min(text.len())..].chars().next())
        }
        Kind::Ipv6 => {
            // A whole token: not glued to letters, digits or more colons.
            let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == ':');
            (s.contains("::") || s.matches(':').count() == 7)
                && s.parse::<Ipv6Addr>().is_ok()
                && !glued(text[..start].chars().next_back())
                && !glued(text[end..].chars().next())
        }
        Kind::Phone => {
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            (9..=15).contains(&digits)
        }
    }
}

/// A byte the text must contain for the kind to be possible: a cheap skip.
fn needle(kind: Kind) -> u8 {
    match kind {
        Kind::Email => b'@',
        Kind::Ipv4 => b'.',
        Kind::Ipv6 => b':',
        Kind::Phone => b'0',
    }
}

impl StepOptions for PiiOptions {
    const SUMMARY: &'static str =
        "redact e-mail addresses, IPv4/IPv6 addresses and phone numbers (counts per kind)";
    const EXAMPLE: &'static str = "- text.pii: { column: text, kinds: [email, ipv4, ipv6, phone], replace: { email: \"<EMAIL>\" } }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        if self.kinds.is_empty() {
            return Err("`kinds` is empty: name at least one of email, ipv4, ipv6, phone".into());
        }
        for k in &self.kinds {
            let r = self.replace.get(*k);
            if r.bytes().any(|b| b == b'@' || b == b':' || b == b'.')
                || r.as_bytes()
                    .windows(2)
                    .any(|w| w.iter().all(u8::is_ascii_digit))
            {
                return Err(format!(
                    "the replacement for {} ({r:?}) must not contain `@`, `:`, `.` or two digits \
                     in a row: later kinds would match inside it",
                    k.name()
                ));
            }
        }
        let out = self.output.clone().unwrap_or_else(|| self.column.clone());
        let (schema, index) = with_field(input, &out, Field::new(&out, DataType::Utf8, true));
        let kinds: BTreeSet<Kind> = self.kinds.iter().copied().collect();
        let kinds = kinds
            .into_iter()
            .map(|k| {
                Regex::new(pattern(k))
                    .map(|r| (k, r))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Pii {
            opts: self.clone(),
            kinds,
            source,
            index,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Pii {
    opts: PiiOptions,
    /// In the order they run, with their candidate regex.
    kinds: Vec<(Kind, Regex)>,
    source: usize,
    index: usize,
    schema: SchemaRef,
}

impl Pii {
    /// The redacted text and the number of redactions per kind (in `self.kinds` order).
    fn redact(&self, text: &str, counts: &mut [u64]) -> Option<String> {
        let mut current: Option<String> = None;
        for (k, (kind, re)) in self.kinds.iter().enumerate() {
            let s = current.as_deref().unwrap_or(text);
            let has = if *kind == Kind::Phone {
                s.bytes().any(|b| b.is_ascii_digit())
            } else {
                memchr::memchr(needle(*kind), s.as_bytes()).is_some()
            };
            if !has {
                continue;
            }
            let token = self.opts.replace.get(*kind);
            let mut n = 0u64;
            let replaced = re.replace_all(s, |c: &Captures| match c.get(0) {
                Some(m) if valid(*kind, m.as_str(), s, m.start(), m.end()) => {
                    n += 1;
                    token.to_string()
                }
                Some(m) => m.as_str().to_string(),
                None => String::new(),
            });
            if n > 0 {
                counts[k] += n;
                current = Some(replaced.into_owned());
            }
        }
        current
    }
}

impl Step for Pii {
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
        let mut counts = vec![0u64; self.kinds.len()];
        let mut docs = 0u64;
        for i in 0..texts.len() {
            match value(&texts, i) {
                None => builder.append_null(),
                Some(t) => match self.redact(t, &mut counts) {
                    Some(r) => {
                        docs += 1;
                        builder.append_value(r)
                    }
                    None => builder.append_value(t),
                },
            }
        }
        for ((k, _), n) in self.kinds.iter().zip(counts) {
            cx.count(k.name(), n);
        }
        cx.count("documents_redacted", docs);
        let values: ArrayRef = Arc::new(builder.finish());
        put_column(&batch, &self.schema, self.index, values).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray};

    fn run(opts: &str, inputs: &[&str]) -> (Vec<String>, StepContext) {
        let o: PiiOptions = serde_json::from_str(opts).expect("options");
        let texts: ArrayRef = Arc::new(StringArray::from(inputs.to_vec()));
        let batch = RecordBatch::try_from_iter(vec![("text", texts)]).expect("batch");
        let step = o.bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("applies");
        let col = out.column(0).as_string::<i32>();
        (
            (0..col.len()).map(|i| col.value(i).to_string()).collect(),
            cx,
        )
    }

    #[test]
    fn redacts_each_kind_and_counts() {
        let (out, cx) = run(
            "{}",
            &[
                "Write to jane.doe+news@mail.example.co.uk or J_Smith@Example.ORG today.",
                "Server 192.168.0.12 and 10.0.0.1, not 999.1.1.1 nor version 1.2.3.4.5.",
                "IPv6 2001:db8::8a2e:370:7334, fe80::1 and ::ffff:192.0.2.128; time 12:30:45 stays.",
                "Call +1 (415) 555-0132 or 020 7946 0958; order 2026 and 3.14159 stay.",
                "nothing here",
            ],
        );
        assert_eq!(out[0], "Write to <EMAIL> or <EMAIL> today.");
        assert_eq!(
            out[1],
            "Server <IPV4> and <IPV4>, not 999.1.1.1 nor version 1.2.3.4.5."
        );
        assert_eq!(
            out[2],
            "IPv6 <IPV6>, <IPV6> and <IPV6>; time 12:30:45 stays."
        );
        assert_eq!(
            out[3],
            "Call <PHONE> or <PHONE>; order 2026 and 3.14159 stay."
        );
        assert_eq!(out[4], "nothing here");
        assert_eq!(cx.counts["email"], 2);
        assert_eq!(cx.counts["ipv4"], 2);
        assert_eq!(cx.counts["ipv6"], 3);
        assert_eq!(cx.counts["phone"], 2);
        assert_eq!(cx.counts["documents_redacted"], 4);
    }

    #[test]
    fn kinds_and_tokens_are_configurable() {
        let (out, cx) = run(
            r#"{"kinds": ["email"], "replace": {"email": "[email]"}}"#,
            &["a@b.io at 10.0.0.1"],
        );
        assert_eq!(out, ["[email] at 10.0.0.1"]);
        assert!(!cx.counts.contains_key("ipv4"));
        let bad: PiiOptions =
            serde_json::from_str(r#"{"replace": {"phone": "PHONE_12"}}"#).expect("options");
        let schema = RecordBatch::try_from_iter(vec![(
            "text",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )])
        .expect("batch")
        .schema();
        assert!(bad.bind(&schema).is_err());
    }
}
