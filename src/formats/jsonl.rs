//! JSON Lines, decoded by arrow-json's tape decoder straight into Arrow arrays.

use std::io::BufRead;

use arrow::datatypes::Schema;
use arrow::json::ReaderBuilder;
use arrow::json::reader::{Decoder, infer_json_schema};
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Jsonl;

impl SourceFormat for Jsonl {
    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema> {
        let ObjectInput::Stream(reader) = input else {
            return Err(Error::Internal("jsonl needs a byte stream".into()));
        };
        infer_json_schema(reader, Some(rows))
            .map(|(schema, _)| schema)
            .map_err(|e| {
                Error::input(
                    &cx.object,
                    None,
                    format!("cannot infer a schema from the first {rows} lines: {e}"),
                )
            })
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let ObjectInput::Stream(mut reader) = input else {
            return Err(Error::Internal("jsonl needs a byte stream".into()));
        };
        let mut decoder = ReaderBuilder::new(cx.schema.clone())
            .with_batch_size(cx.batch_rows)
            .with_strict_mode(cx.strict)
            .build_decoder()
            .map_err(|e| Error::Internal(e.to_string()))?;
        // Lines consumed so far, and the first line of the batch being built: only for
        // error messages, counted with SIMD over bytes the decoder already took.
        let mut lines: u64 = 0;
        let mut batch_first_line: u64 = 1;
        loop {
            let buf = reader.fill_buf().map_err(|e| {
                Error::input(&cx.object, Some(lines + 1), format!("cannot read: {e}"))
            })?;
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            let consumed = match decoder.decode(buf) {
                Ok(n) => n,
                Err(e) => return Err(locate_syntax_error(buf, lines, &e.to_string(), cx)),
            };
            lines += memchr::memchr_iter(b'\n', &buf[..consumed]).count() as u64;
            reader.consume(consumed);
            if consumed < len && !flush(&mut decoder, cx, &mut batch_first_line, lines, emit)? {
                return Ok(());
            }
        }
        flush(&mut decoder, cx, &mut batch_first_line, lines + 1, emit)?;
        Ok(())
    }
}

fn flush(
    decoder: &mut Decoder,
    cx: &DecodeContext,
    first: &mut u64,
    last: u64,
    emit: &mut Emit<'_>,
) -> Result<bool> {
    let batch: Option<RecordBatch> = decoder.flush().map_err(|e| {
        let what = explain(&e.to_string(), cx);
        Error::input(
            &cx.object,
            None,
            format!("in lines {}..={}: {what}", *first, last.max(*first)),
        )
    })?;
    *first = last + 1;
    match batch {
        Some(b) => emit(b),
        None => Ok(true),
    }
}

/// Adds what to do to arrow-json's message.
fn explain(msg: &str, cx: &DecodeContext) -> String {
    if msg.contains("not present in schema") || msg.contains("not found in schema") {
        format!(
            "{msg}; the schema was inferred from {} — declare the column in `source.schema` \
             (or raise `source.infer_rows`)",
            cx.schema_origin
        )
    } else if msg.contains("whilst decoding field") || msg.contains("expected") {
        format!(
            "{msg} (the schema comes from {}; declare `source.schema` or `cast` to reconcile)",
            cx.schema_origin
        )
    } else {
        msg.to_string()
    }
}

/// arrow-json reports a syntax error without a position; find the first line of the
/// buffer that is not valid JSON (this runs only on the error path).
fn locate_syntax_error(buf: &[u8], lines_before: u64, msg: &str, cx: &DecodeContext) -> Error {
    for (i, line) in buf.split(|b| *b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        // The last piece may be a record cut at the buffer's end; it is not the culprit.
        let complete = i < memchr::memchr_iter(b'\n', buf).count();
        if complete {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(trimmed) {
                return Error::input(
                    &cx.object,
                    Some(lines_before + i as u64 + 1),
                    format!("malformed JSON: {e}"),
                );
            }
        }
    }
    Error::input(
        &cx.object,
        Some(lines_before + 1),
        format!("malformed JSON: {}", explain(msg, cx)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CsvOptions;
    use std::sync::Arc;

    fn cx(schema: Schema) -> DecodeContext {
        DecodeContext {
            schema: Arc::new(schema),
            schema_origin: "a.jsonl".into(),
            strict: true,
            object: "b.jsonl".into(),
            batch_rows: 2,
            csv: CsvOptions::default(),
        }
    }

    fn run(data: &str) -> Result<Vec<RecordBatch>> {
        let schema = Jsonl.infer_schema(
            ObjectInput::Stream(Box::new(r#"{"a":1,"b":"x"}"#.as_bytes())),
            10,
            &cx(Schema::empty()),
        )?;
        let mut out = Vec::new();
        Jsonl.decode(
            ObjectInput::Stream(Box::new(data.as_bytes())),
            &cx(schema),
            &mut |b| {
                out.push(b);
                Ok(true)
            },
        )?;
        Ok(out)
    }

    #[test]
    fn decodes_in_batches() {
        let batches =
            run("{\"a\":1,\"b\":\"x\"}\n{\"a\":2}\n\n{\"a\":3,\"b\":null}\n").expect("decodes");
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn malformed_line_is_named() {
        let err = run("{\"a\":1}\n{\"a\":2}\n{\"a\":\n{\"a\":4}\n").expect_err("malformed");
        assert!(
            err.to_string()
                .starts_with("b.jsonl line 3: malformed JSON"),
            "{err}"
        );
    }

    #[test]
    fn column_missing_from_inferred_schema_is_an_error() {
        let err = run("{\"a\":1,\"c\":true}\n").expect_err("extra column");
        assert!(err.to_string().contains("inferred from a.jsonl"), "{err}");
    }
}
