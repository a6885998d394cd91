//! The syntax of JSON Lines records, checked before arrow-json decodes them (it is
//! lenient; see [`check_line`]), and the order of an object's keys.

use arrow::datatypes::Schema;

use super::DecodeContext;
use crate::error::{Error, Result};

/// Checks that a line is one JSON value as RFC 8259 defines it (blank lines are allowed
/// and passed over). arrow-json's tape decoder checks less: it reads `{"id":0,}`,
/// `[1,,2]`, `[-01]`, `[1.]`, `[1 true]` and two objects on one line without an error,
/// silently "repairing" them, and it does not look inside values the schema leaves out.
/// serde_json is strict (the JSONTestSuite `n_` cases are all refused, see
/// tests/conformance.rs), but what it merely passes over (`IgnoredAny`) it neither checks
/// for UTF-8 nor for depth; hence the check of the whole line first, and [`Valid`],
/// which walks every value so that nesting deeper than serde_json's limit (128) is an
/// error too. Cost on the benchmark corpus (release build, one core): ~1.2 GB/s, against
/// ~0.1 GB/s for kiln's whole JSONL → Parquet path.
pub(super) fn check_line(raw: &[u8]) -> std::result::Result<(), serde_json::Error> {
    let line = trim_json_ws(raw);
    if line.is_empty() {
        return Ok(());
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "invalid UTF-8 at byte {} of the line",
            e.valid_up_to() + 1
        ))
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    // Deeper than serde_json's limit of 128 needs more than 128 opening brackets; only
    // such a line is walked value by value (half the speed of passing over it).
    if memchr::memchr2_iter(b'[', b'{', line)
        .nth(MAX_DEPTH)
        .is_some()
    {
        serde_json::from_str::<Valid>(text)?;
    }
    Ok(())
}

/// serde_json's nesting limit, which [`Valid`] enforces.
const MAX_DEPTH: usize = 128;

/// Any JSON value, visited to its leaves and kept nowhere.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> serde::de::Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Valid, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// `schema` (arrow-json infers its columns in name order) with its columns in the order
/// their keys first appear in `head`'s lines, as a user reading the file sees them.
pub(super) fn in_order_of_appearance(schema: Schema, head: &[u8]) -> Schema {
    let mut order: indexmap::IndexSet<String> = indexmap::IndexSet::new();
    for line in head.split(|b| *b == b'\n') {
        if let Ok(Keys(keys)) = serde_json::from_slice::<Keys>(line) {
            order.extend(keys);
        }
    }
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.sort_by_key(|f| order.get_index_of(f.name()).unwrap_or(usize::MAX));
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The top-level keys of a JSON object, in order.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) const NOT_AN_OBJECT: &str = "a JSON Lines record must be an object (`{...}`)";

/// JSON's whitespace (space, tab, CR, LF) removed from both ends; not the form feed or
/// vertical tab that `trim_ascii` would also take.
pub(super) fn trim_json_ws(raw: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = raw.iter().position(|b| !ws(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &raw[start..end]
}

/// serde_json's message as kiln words it (the line is named by the caller).
pub(super) fn malformed(e: &serde_json::Error) -> String {
    format!(
        "malformed JSON: {}",
        e.to_string().replace(" at line 1 column ", " at column ")
    )
}

/// The syntax check of every line the decoder sees, checked as it completes (lines may
/// cross the buffers it is fed, so the unfinished one is carried to the next).
#[derive(Default)]
pub(super) struct LineCheck {
    carry: Vec<u8>,
    /// Lines completed so far.
    lines: u64,
}

impl LineCheck {
    /// A check of lines that follow `lines` lines of the object.
    pub(super) fn after(lines: u64) -> Self {
        LineCheck {
            carry: Vec::new(),
            lines,
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8], cx: &DecodeContext) -> Result<()> {
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(i);
            rest = &after[1..];
            self.lines += 1;
            let r = if self.carry.is_empty() {
                check_line(line)
            } else {
                self.carry.extend_from_slice(line);
                let r = check_line(&self.carry);
                self.carry.clear();
                r
            };
            r.map_err(|e| Error::input(&cx.object, Some(self.lines), malformed(&e)))?;
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }

    pub(super) fn finish(&mut self, cx: &DecodeContext) -> Result<()> {
        let r = check_line(&self.carry);
        self.carry.clear();
        r.map_err(|e| Error::input(&cx.object, Some(self.lines + 1), malformed(&e)))
    }
}
