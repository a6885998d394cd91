//! Plain text: one row per line, with the object's path and the 1-based line number.

use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
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
        let mut reader = input.stream()?;
        let mut line_no: u64 = 0;
        let mut offset: u64 = 0;
        let mut buf = Vec::new();
        let mut lines = UInt64Builder::new();
        let mut texts = StringBuilder::new();
        loop {
            buf.clear();
            let n = std::io::Read::take(&mut reader, cx.max_record_bytes + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::read(&cx.object, Some(line_no + 1), e))?;
            if n as u64 > cx.max_record_bytes {
                return Err(super::jsonl::too_long(cx, line_no + 1));
            }
            if n > 0 {
                line_no += 1;
                let mut end = buf.len();
                if buf.ends_with(b"\n") {
                    end -= 1;
                    if buf[..end].ends_with(b"\r") {
                        end -= 1;
                    }
                }
                match std::str::from_utf8(&buf[..end]) {
                    Ok(s) => {
                        lines.append_value(line_no);
                        texts.append_value(s);
                    }
                    Err(e) => {
                        let message = format!("not valid UTF-8 ({e}); convert the file to UTF-8");
                        if !cx.tolerant() {
                            return Err(Error::input(&cx.object, Some(line_no), message));
                        }
                        let r = crate::rejects::Rejected::record(
                            &cx.object,
                            "text",
                            Some(line_no),
                            Some(offset),
                            message,
                            &buf,
                        );
                        if !emit(super::Decoded::Rejected(r))? {
                            return Ok(());
                        }
                    }
                }
                offset += n as u64;
            }
            if lines.len() == cx.batch_rows || (n == 0 && !lines.is_empty()) {
                let rows = lines.len();
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
                if !emit(super::Decoded::Batch(batch))? {
                    return Ok(());
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CsvOptions;

    #[test]
    fn one_row_per_line_with_crlf() {
        let cx = DecodeContext {
            schema: Arc::new(schema()),
            schema_origin: "declared".into(),
            strict: true,
            object: "notes.txt".into(),
            batch_rows: 2,
            csv: CsvOptions::default(),
            projection: None,
            on_error: crate::spec::OnError::Fail,
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes: 1 << 30,
            slice: None,
        };
        let (batches, _) =
            super::super::decode_bytes(&Text, &b"a\r\nb\n\nc"[..], &cx).expect("decodes");
        let rows: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(rows, [2, 2]);
    }
}
