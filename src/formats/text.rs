//! Plain text: one row per line, with the object's path and the 1-based line number.

use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::lines::Chunk;
use super::{DecodeContext, Emit, EmitPiece, ObjectInput, SourceFormat};
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Text;

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("text", DataType::Utf8, false),
    ])
}

impl SourceFormat for Text {
    fn infer_schema(&self, _: ObjectInput<'_>, _: usize, _: &DecodeContext) -> Result<Schema> {
        Ok(schema())
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        super::decode_framed(self, input, cx, emit)
    }

    fn frames(&self) -> bool {
        true
    }

    /// Chunks of whole lines ([`super::lines`]), each decoded by [`decode_chunk`]: the
    /// task's thread only inflates and finds line ends; checking UTF-8 and building the
    /// arrays run on any thread.
    fn frame(
        &self,
        input: ObjectInput<'_>,
        cx: &Arc<DecodeContext>,
        emit: &mut EmitPiece<'_>,
    ) -> Result<()> {
        super::lines::frame_chunks(input, cx, decode_chunk, emit)
    }
}

/// One row per line of `chunk` (at most `cx.batch_rows` lines, the last perhaps without
/// its newline), as one batch; a line that is not UTF-8 is an error naming it, or under
/// skip / dead_letter a rejected record.
fn decode_chunk(chunk: &Chunk, cx: &DecodeContext, emit: &mut Emit<'_>) -> Result<()> {
    let bytes = &chunk.bytes[..];
    let rows = memchr::memchr_iter(b'\n', bytes).count() + 1;
    let mut lines = UInt64Builder::with_capacity(rows);
    let mut texts = StringBuilder::with_capacity(rows, bytes.len());
    let (mut line, mut offset) = (chunk.line, chunk.offset);
    let mut start = 0;
    while start < bytes.len() {
        let next = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
        let raw = &bytes[start..next];
        let mut end = raw.len();
        if raw.ends_with(b"\n") {
            end -= 1;
            if raw[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        match std::str::from_utf8(&raw[..end]) {
            Ok(s) => {
                lines.append_value(line);
                texts.append_value(s);
            }
            Err(e) => {
                let message = format!("not valid UTF-8 ({e}); convert the file to UTF-8");
                if !cx.tolerant() {
                    return Err(Error::input(&cx.object, Some(line), message));
                }
                let r = crate::rejects::Rejected::record(
                    &cx.object,
                    "text",
                    Some(line),
                    Some(offset),
                    message,
                    raw,
                );
                if !emit(super::Decoded::Rejected(r))? {
                    return Ok(());
                }
            }
        }
        line += 1;
        offset += raw.len() as u64;
        start = next;
    }
    emit_rows(&mut lines, &mut texts, cx, emit)?;
    Ok(())
}

/// The rows built so far as one batch, with the object's path, if there are any.
fn emit_rows(
    lines: &mut UInt64Builder,
    texts: &mut StringBuilder,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<bool> {
    let rows = lines.len();
    if rows == 0 {
        return Ok(true);
    }
    let path = cx.path();
    let mut paths = StringBuilder::with_capacity(rows, rows * path.len());
    for _ in 0..rows {
        paths.append_value(path);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(paths.finish()),
        Arc::new(lines.finish()),
        Arc::new(texts.finish()),
    ];
    let batch = RecordBatch::try_new(cx.schema.clone(), columns)
        .map_err(|e| Error::Internal(e.to_string()))?;
    emit(super::Decoded::Batch(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CsvOptions;

    fn cx(batch_rows: usize) -> DecodeContext {
        DecodeContext {
            schema: Arc::new(schema()),
            schema_origin: "declared".into(),
            strict: true,
            object: "notes.txt".into(),
            batch_rows,
            csv: CsvOptions::default(),
            projection: None,
            on_error: crate::spec::OnError::Fail,
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes: 1 << 30,
            slice: None,
        }
    }

    #[test]
    fn one_row_per_line_with_crlf() {
        let (batches, _) =
            super::super::decode_bytes(&Text, &b"a\r\nb\n\nc"[..], &cx(2)).expect("decodes");
        let rows: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(rows, [2, 2]);
    }

    /// Chunks decode apart; rows and rejections keep the object's line numbers and
    /// offsets whatever the chunk size.
    #[test]
    fn lines_and_bad_lines_keep_their_place_across_chunks() {
        use arrow::array::AsArray;
        let data = b"a\nb\xff\n\nc\r\n\xfe\nd";
        for rows in [1, 2, 3, 100] {
            let mut c = cx(rows);
            let err = super::super::decode_bytes(&Text, data, &c).expect_err("bad");
            assert!(err.to_string().starts_with("notes.txt line 2: "), "{err}");
            c.on_error = crate::spec::OnError::Skip;
            let (batches, rejected) = super::super::decode_bytes(&Text, data, &c).expect("skips");
            let lines: Vec<u64> = batches
                .iter()
                .flat_map(|b| {
                    let lines = b.column(1).as_primitive::<arrow::datatypes::UInt64Type>();
                    lines.values().to_vec()
                })
                .collect();
            assert_eq!(lines, [1, 3, 4, 6], "batch_rows {rows}");
            let at: Vec<_> = rejected.iter().map(|r| (r.line, r.offset)).collect();
            assert_eq!(
                at,
                [(Some(2), Some(2)), (Some(5), Some(9))],
                "batch_rows {rows}"
            );
        }
    }
}
