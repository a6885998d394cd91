//! Bad input under `run.on_error: skip | dead_letter`: what was left out, where it was
//! and why.
//!
//! A decoder that meets a record it cannot decode, a step that fails on some rows, and
//! the runtime when a whole object cannot be read, each hand a [`Rejected`] to the task's
//! [`Rejects`]. The task's commit record carries the counts (so a resumed run reports
//! the same totals), and under `dead_letter` the records themselves go to
//! `_kiln/errors/<task>.jsonl`, written before the task commits. Under `fail` nothing
//! is collected: the first bad record ends the run with an error naming it.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::spec::OnError;

/// Longest text of a rejected record kept in the dead-letter file; longer ones are cut
/// (and say so) so that a 200 MB line cannot fill memory twice.
pub const MAX_RECORD_TEXT: usize = 64 * 1024;

/// Longest error message kept per rejection.
const MAX_ERROR_TEXT: usize = 1024;

/// Rejections logged as warnings per task; the rest are counted (and, under
/// `dead_letter`, written) without a log line each.
const LOGGED_PER_TASK: u64 = 5;

/// A record or an object left out of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The object, as the listing names it (with the byte range of a slice).
    pub object: String,
    /// `record`: one row left out; `object`: the rest of an object that could not be read
    /// (rows decoded before the fault are kept, `rows_before` says how many); `batch`: a
    /// batch a step failed on as a whole (an `exec` step's child raised), `rows` rows.
    pub kind: RejectKind,
    /// 1-based line of the record in the (decompressed) object, where the format has lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset of the record in the (decompressed) object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Of an object fault: rows of the object decoded before it. Of a batch: rows of the
    /// task that reached the step before the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_before: Option<u64>,
    /// Of a batch: its rows, all left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Where it was rejected: `read`, the format (`jsonl`, `csv`, ...), or a step
    /// (`step 2 cast`).
    pub stage: String,
    pub error: String,
    /// The record: its raw text from a decoder, or its values as JSON from a step (binary
    /// values as their length). Cut at [`MAX_RECORD_TEXT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectKind {
    Record,
    Object,
    Batch,
}

impl Rejected {
    /// A record a decoder could not decode.
    pub fn record(
        object: &str,
        stage: &str,
        line: Option<u64>,
        offset: Option<u64>,
        error: impl Into<String>,
        raw: &[u8],
    ) -> Self {
        Rejected {
            object: object.to_string(),
            kind: RejectKind::Record,
            line,
            offset,
            rows_before: None,
            rows: None,
            stage: stage.to_string(),
            error: error.into(),
            record: Some(record_text(raw)),
        }
    }
}

/// The text of a raw record: lossy UTF-8 (invalid bytes become U+FFFD), without its
/// line terminator, cut at [`MAX_RECORD_TEXT`].
pub fn record_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let cut = raw.len() > MAX_RECORD_TEXT;
    let mut s = String::from_utf8_lossy(&raw[..raw.len().min(MAX_RECORD_TEXT)]).into_owned();
    if cut {
        s.push_str(&format!("… ({} bytes in all)", raw.len()));
    }
    s
}

/// The values of row `row` of `batch` as a JSON object of display strings, binary values
/// as their length, for the dead-letter record of a row a step rejected.
pub fn row_json(batch: &RecordBatch, row: usize) -> String {
    use arrow::datatypes::DataType;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("null");
    // In column order (serde_json's map sorts its keys).
    let mut fields: Vec<String> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let value = if column.is_null(row) {
            serde_json::Value::Null
        } else {
            match field.data_type() {
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    serde_json::Value::String(binary_len(column.as_ref(), row))
                }
                _ => match ArrayFormatter::try_new(column.as_ref(), &options) {
                    Ok(f) => {
                        let mut text = f.value(row).to_string();
                        if text.len() > MAX_RECORD_TEXT / 4 {
                            let mut end = MAX_RECORD_TEXT / 4;
                            while !text.is_char_boundary(end) {
                                end -= 1;
                            }
                            text.truncate(end);
                            text.push('…');
                        }
                        serde_json::Value::String(text)
                    }
                    Err(_) => serde_json::Value::String(format!("<{}>", field.data_type())),
                },
            }
        };
        fields.push(format!(
            "{}:{value}",
            serde_json::Value::String(field.name().clone())
        ));
    }
    format!("{{{}}}", fields.join(","))
}

fn binary_len(column: &dyn arrow::array::Array, row: usize) -> String {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let len = match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => column.as_binary::<i64>().value(row).len(),
        DataType::BinaryView => column.as_binary_view().value(row).len(),
        _ => 0,
    };
    format!("<{len} bytes>")
}

/// What a task (or the whole dataset) left out: the counts a commit record and the
/// manifest carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectCounts {
    /// Records left out, by decoders and by steps.
    pub rows: u64,
    /// Records a decoder left out (not decoded, so not in the task's `rows_in`).
    #[serde(default)]
    pub undecoded: u64,
    /// Objects, or the rest of objects, that could not be read.
    pub objects: u64,
    /// Rejections by stage (`jsonl`, `step 2 cast`, `object`).
    #[serde(default)]
    pub by_stage: BTreeMap<String, u64>,
}

impl RejectCounts {
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.objects == 0
    }

    pub fn add(&mut self, other: &RejectCounts) {
        self.rows += other.rows;
        self.undecoded += other.undecoded;
        self.objects += other.objects;
        for (k, v) in &other.by_stage {
            *self.by_stage.entry(k.clone()).or_default() += v;
        }
    }

    /// Why the run must exit 3, if it must: the share of records left out among
    /// records read, or of objects among objects, is above `max_ratio`.
    pub fn too_many(&self, records_read: u64, objects: u64, max_ratio: f64) -> Option<String> {
        let over = |bad: u64, all: u64| bad > 0 && bad as f64 > max_ratio * all.max(1) as f64;
        let what = match (over(self.rows, records_read), over(self.objects, objects)) {
            (false, false) => return None,
            (true, _) => format!("{} of {records_read} records", self.rows),
            (false, true) => format!("{} of {objects} objects", self.objects),
        };
        Some(format!(
            "{what} were bad and left out, more than run.max_error_ratio {max_ratio} allows; \
             the dataset was written without them (the manifest's `rejected` counts them by stage)"
        ))
    }
}

/// The rejections of one task.
#[derive(Debug)]
pub struct Rejects {
    policy: OnError,
    task: usize,
    /// Records left out (by decoders and steps).
    pub rows: u64,
    /// Objects (or the rest of objects) that could not be read.
    pub objects: u64,
    /// Rejections by stage.
    pub by_stage: BTreeMap<String, u64>,
    /// Records a decoder left out.
    pub undecoded: u64,
    /// The rejections themselves as JSON lines, kept under `dead_letter` only.
    pub letters: DeadLetters,
}

/// A task's dead-letter lines: in memory up to [`DeadLetters::SPILL_AT`] bytes, then in
/// a temporary file, so a task of nothing but bad records holds a few MiB, not all of
/// them, until its commit uploads the file.
#[derive(Debug, Default)]
pub struct DeadLetters {
    /// Lines not yet spilled.
    pub buf: Vec<u8>,
    /// Lines spilled, in order, before those in `buf`.
    pub spill: Option<std::fs::File>,
    /// Lines in all.
    pub lines: u64,
    spill_at: Option<usize>,
}

impl DeadLetters {
    /// Bytes of lines held in memory before they go to a temporary file.
    pub const SPILL_AT: usize = 8 << 20;

    fn push(&mut self, r: &Rejected) -> std::io::Result<()> {
        use std::io::Write;
        // A struct of strings and integers always serializes.
        serde_json::to_writer(&mut self.buf, r)?;
        self.buf.push(b'\n');
        self.lines += 1;
        if self.buf.len() >= self.spill_at.unwrap_or(Self::SPILL_AT) {
            let file = match &mut self.spill {
                Some(f) => f,
                None => self.spill.insert(tempfile::tempfile()?),
            };
            file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Whether there is anything to write.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

impl Rejects {
    pub fn new(policy: OnError, task: usize) -> Self {
        Rejects {
            policy,
            task,
            rows: 0,
            objects: 0,
            undecoded: 0,
            by_stage: BTreeMap::new(),
            letters: DeadLetters::default(),
        }
    }

    /// True when bad input is left out rather than ending the run.
    pub fn tolerant(&self) -> bool {
        self.policy != OnError::Fail
    }

    /// The counts for the commit record.
    pub fn counts(&self) -> RejectCounts {
        RejectCounts {
            rows: self.rows,
            undecoded: self.undecoded,
            objects: self.objects,
            by_stage: self.by_stage.clone(),
        }
    }

    /// Takes note of a record a decoder could not decode.
    pub fn add_undecoded(&mut self, r: Rejected) {
        self.undecoded += 1;
        self.add(r);
    }

    /// Takes note of a rejection.
    pub fn add(&mut self, mut r: Rejected) {
        // A traceback says what went wrong at its end: keep that.
        if r.kind == RejectKind::Batch && r.error.len() > 4 * MAX_ERROR_TEXT {
            let mut start = r.error.len() - 4 * MAX_ERROR_TEXT;
            while !r.error.is_char_boundary(start) {
                start += 1;
            }
            r.error = format!("…{}", &r.error[start..]);
        }
        // A decoder's message may quote the whole record (10,000 brackets).
        else if r.error.len() > MAX_ERROR_TEXT {
            let mut end = MAX_ERROR_TEXT;
            while !r.error.is_char_boundary(end) {
                end -= 1;
            }
            r.error.truncate(end);
            r.error.push('…');
        }
        let seen = self.rows + self.objects;
        if seen < LOGGED_PER_TASK {
            tracing::warn!(
                task = self.task,
                object = %r.object,
                line = r.line,
                stage = %r.stage,
                "left out ({}): {}",
                match r.kind {
                    RejectKind::Record => "record",
                    RejectKind::Object => "object",
                    RejectKind::Batch => "batch",
                },
                r.error
            );
        } else if seen == LOGGED_PER_TASK {
            tracing::warn!(
                task = self.task,
                "more bad input in this task; the report counts it{}",
                if self.policy == OnError::DeadLetter {
                    " and _kiln/errors/ holds it"
                } else {
                    ""
                }
            );
        }
        let n = match r.kind {
            RejectKind::Record | RejectKind::Object => 1,
            RejectKind::Batch => r.rows.unwrap_or(0),
        };
        match r.kind {
            RejectKind::Record | RejectKind::Batch => self.rows += n,
            RejectKind::Object => self.objects += 1,
        }
        *self.by_stage.entry(r.stage.clone()).or_default() += n;
        if self.policy == OnError::DeadLetter
            && let Err(e) = self.letters.push(&r)
        {
            // The temporary directory is full or gone: the rejection stays counted, and
            // the run says it could not record it.
            tracing::error!(
                task = self.task,
                "cannot keep a rejection for _kiln/errors/ (temporary file: {e}); it is counted \
                 but not recorded"
            );
        }
    }

    /// The dead-letter lines, leaving none behind.
    pub fn take_letters(&mut self) -> DeadLetters {
        std::mem::take(&mut self.letters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn long_records_are_cut_and_say_so() {
        let raw = vec![b'x'; MAX_RECORD_TEXT + 10];
        let text = record_text(&raw);
        assert!(text.ends_with(&format!("({} bytes in all)", MAX_RECORD_TEXT + 10)));
        assert_eq!(record_text(b"{\"a\":1}\r\n"), "{\"a\":1}");
        assert_eq!(record_text(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn rows_render_as_json_with_binary_as_length() {
        let batch = RecordBatch::try_from_iter([
            ("s", Arc::new(StringArray::from(vec![Some("a"), None])) as _),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as _),
            (
                "b",
                Arc::new(BinaryArray::from(vec![b"abc".as_slice(), b""])) as _,
            ),
        ])
        .expect("batch");
        assert_eq!(row_json(&batch, 0), r#"{"s":"a","n":"1","b":"<3 bytes>"}"#);
        assert_eq!(row_json(&batch, 1), r#"{"s":null,"n":"2","b":"<0 bytes>"}"#);
    }

    #[test]
    fn only_dead_letter_keeps_the_records() {
        let r = Rejected::record("a.jsonl", "jsonl", Some(3), Some(40), "bad", b"{");
        let mut skip = Rejects::new(OnError::Skip, 0);
        skip.add(r.clone());
        assert_eq!((skip.rows, skip.letters.lines), (1, 0));
        let mut dl = Rejects::new(OnError::DeadLetter, 0);
        dl.add(r);
        let line = String::from_utf8(dl.letters.buf.clone()).expect("utf8");
        assert_eq!(
            line,
            "{\"object\":\"a.jsonl\",\"kind\":\"record\",\"line\":3,\"offset\":40,\"stage\":\"jsonl\",\"error\":\"bad\",\"record\":\"{\"}\n"
        );
    }

    #[test]
    fn dead_letters_past_the_memory_bound_go_to_a_temporary_file_in_order() {
        use std::io::{Read, Seek};
        let mut dl = Rejects::new(OnError::DeadLetter, 0);
        dl.letters.spill_at = Some(1000);
        for i in 0..100u64 {
            dl.add(Rejected::record(
                "a.jsonl",
                "jsonl",
                Some(i + 1),
                None,
                "bad",
                b"{",
            ));
            assert!(dl.letters.buf.len() < 1000 + 200, "memory stays bounded");
        }
        let mut letters = dl.take_letters();
        assert_eq!(letters.lines, 100);
        let mut all = String::new();
        let file = letters.spill.as_mut().expect("spilled");
        file.rewind().expect("rewind");
        file.read_to_string(&mut all).expect("read");
        all.push_str(std::str::from_utf8(&letters.buf).expect("utf8"));
        let lines: Vec<u64> = all
            .lines()
            .map(|l| {
                serde_json::from_str::<Rejected>(l)
                    .expect("a line")
                    .line
                    .expect("line")
            })
            .collect();
        assert_eq!(lines, (1..=100).collect::<Vec<_>>());
    }
}
