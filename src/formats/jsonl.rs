//! JSON Lines, decoded by arrow-json's tape decoder straight into Arrow arrays.

use std::io::{BufRead, Read};
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::json::ReaderBuilder;
use arrow::json::reader::{Decoder, infer_json_schema};
use arrow::record_batch::RecordBatch;

use super::json_syntax::{
    LineCheck, NOT_AN_OBJECT, check_line, in_order_of_appearance, malformed, trim_json_ws,
};
use super::lines::Chunk;
use super::{DecodeContext, Emit, EmitPiece, ObjectInput, SourceFormat};
use crate::error::{Error, Result};
use crate::spec::OnSchemaMismatch;

#[derive(Debug)]
pub struct Jsonl;

impl SourceFormat for Jsonl {
    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema> {
        let mut reader = input.stream()?;
        // Take the first `rows` records, each checked as decoding checks it, so a bad one
        // is named by its line and, under skip / dead_letter, passed over (it is no
        // evidence of the schema, and decoding leaves it out too).
        let mut head = Vec::new();
        let mut line = Vec::new();
        let mut taken = 0;
        let mut number = 0u64;
        while taken < rows {
            line.clear();
            number += 1;
            // At most one byte past the bound is held: a longer record is not read.
            let n = (&mut reader)
                .take(cx.max_record_bytes + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::read(&cx.object, Some(number), e))?;
            if n == 0 {
                break;
            }
            if line.len() as u64 > cx.max_record_bytes {
                if cx.tolerant() && !head.is_empty() {
                    break; // what came before is the sample
                }
                return Err(too_long(cx, number));
            }
            if trim_json_ws(&line).is_empty() {
                continue;
            }
            let verdict = check_line(&line).map_err(|e| malformed(&e)).and_then(|()| {
                if trim_json_ws(&line).first() == Some(&b'{') {
                    Ok(())
                } else {
                    Err(NOT_AN_OBJECT.to_string())
                }
            });
            match verdict {
                Ok(()) => {
                    head.extend_from_slice(&line);
                    if !line.ends_with(b"\n") {
                        head.push(b'\n');
                    }
                    taken += 1;
                }
                Err(_) if cx.tolerant() => {}
                Err(why) => return Err(Error::input(&cx.object, Some(number), why)),
            }
        }
        infer_json_schema(&head[..], None)
            .map(|(schema, _)| in_order_of_appearance(schema, &head))
            .map_err(|e| {
                Error::input(
                    &cx.object,
                    None,
                    format!("reading the first {rows} records to infer the schema: {e}"),
                )
            })
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

    /// Chunks of whole lines ([`super::lines`]), each decoded by [`decode_chunk`].
    fn frame(
        &self,
        input: ObjectInput<'_>,
        cx: &Arc<DecodeContext>,
        emit: &mut EmitPiece<'_>,
    ) -> Result<()> {
        super::lines::frame_chunks(input, cx, decode_chunk, emit)
    }
}

/// Decodes a chunk of whole lines. Every line's syntax is checked first (arrow-json's
/// tape decoder takes what is not JSON), then the chunk is decoded as one batch;
/// arrow-json reports type errors without a position, so a failed batch is read again
/// line by line to name the line. Under skip / dead_letter each bad line is left out
/// alone (`salvage`).
fn decode_chunk(chunk: &Chunk, cx: &DecodeContext, emit: &mut Emit<'_>) -> Result<()> {
    if cx.tolerant() {
        let make = || json_reader(cx).build_decoder();
        let describe = |raw: &[u8], e: &arrow::error::ArrowError| match check_line(raw) {
            Err(syntax) => malformed(&syntax),
            Ok(()) if trim_json_ws(raw).first() != Some(&b'{') => NOT_AN_OBJECT.to_string(),
            Ok(()) => explain(&e.to_string(), cx),
        };
        let at = super::salvage::Position {
            line: chunk.line,
            offset: chunk.offset,
        };
        return super::salvage::decode(
            &mut &chunk.bytes[..],
            &mut super::salvage::Lines::default(),
            super::salvage::Records {
                make: &make,
                describe: &describe,
                stage: "jsonl",
                check: Some(&|raw| check_line(raw).map_err(|e| malformed(&e))),
            },
            at,
            cx,
            emit,
        );
    }
    let bytes = &chunk.bytes[..];
    let mut syntax = LineCheck::after(chunk.line - 1);
    syntax.feed(bytes, cx)?;
    syntax.finish(cx)?;
    let batch = BatchLines {
        first_line: chunk.line,
        bytes,
    };
    let mut decoder = json_reader(cx)
        .build_decoder()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut pos = 0;
    while pos < bytes.len() {
        let n = decoder
            .decode(&bytes[pos..])
            .map_err(|e| locate_syntax_error(bytes, chunk.line - 1, &e.to_string(), cx))?;
        pos += n;
        // A full batch (a chunk of more records than `batch_rows`) goes on first.
        if pos < bytes.len() && !flush(&mut decoder, cx, &batch, emit)? {
            return Ok(());
        }
    }
    flush(&mut decoder, cx, &batch, emit)?;
    Ok(())
}

/// A line longer than [`DecodeContext::max_record_bytes`].
pub(super) fn too_long(cx: &DecodeContext, line: u64) -> Error {
    Error::input(
        &cx.object,
        Some(line),
        format!(
            "a record longer than {} (a quarter of each thread's share of run.memory_limit) \
             is not read; raise run.memory_limit if it is real data",
            crate::spec::ByteSize(cx.max_record_bytes)
        ),
    )
}

/// The raw bytes of the batch being decoded and the line they start on.
struct BatchLines<'a> {
    first_line: u64,
    bytes: &'a [u8],
}

fn flush(
    decoder: &mut Decoder,
    cx: &DecodeContext,
    batch: &BatchLines<'_>,
    emit: &mut Emit<'_>,
) -> Result<bool> {
    let decoded: Option<RecordBatch> = decoder
        .flush()
        .map_err(|e| locate_in_batch(batch, &e.to_string(), cx))?;
    match decoded {
        Some(b) => emit(super::Decoded::Batch(b)),
        None => Ok(true),
    }
}

/// Re-decodes a failed batch one line at a time to find the line that fails.
fn locate_in_batch(batch: &BatchLines<'_>, msg: &str, cx: &DecodeContext) -> Error {
    for (i, line) in batch.bytes.split(|b| *b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        if trim_json_ws(line).first() != Some(&b'{') {
            return Error::input(&cx.object, Some(batch.first_line + i as u64), NOT_AN_OBJECT);
        }
        let one = json_reader(cx).with_batch_size(1).build_decoder();
        let failure = one.and_then(|mut d| d.decode(line).and_then(|_| d.flush()));
        if let Err(e) = failure {
            return Error::input(
                &cx.object,
                Some(batch.first_line + i as u64),
                explain(&e.to_string(), cx),
            );
        }
    }
    let last = batch.first_line + memchr::memchr_iter(b'\n', batch.bytes).count() as u64;
    Error::input(
        &cx.object,
        None,
        format!(
            "in lines {}..={last}: {}",
            batch.first_line,
            explain(msg, cx)
        ),
    )
}

/// arrow-json set up for `cx`. Under `source.on_schema_mismatch: cast | null_fill`, keys
/// the schema lacks are passed over and numbers and booleans are read into string
/// columns as their JSON text (strings are parsed into number columns under any policy).
fn json_reader(cx: &DecodeContext) -> ReaderBuilder {
    let convert = cx.on_mismatch != OnSchemaMismatch::Fail;
    ReaderBuilder::new(cx.schema.clone())
        .with_batch_size(cx.batch_rows)
        .with_strict_mode(cx.strict && !convert)
        .with_coerce_primitive(convert)
}

/// Adds what to do to arrow-json's message.
fn explain(msg: &str, cx: &DecodeContext) -> String {
    if msg.contains("missing from schema") || msg.contains("not present in schema") {
        format!(
            "{msg}; the schema was inferred from {} — declare the column in `source.schema` \
             (or raise `source.infer_rows`)",
            cx.schema_origin
        )
    } else if msg.contains("failed to parse") {
        // A string that is not a number: no conversion helps.
        format!(
            "{msg} (the schema comes from {}; declare the column a string in `source.schema`, \
             or set `run.on_error: skip` to leave such records out)",
            cx.schema_origin
        )
    } else if msg.contains("whilst decoding field") || msg.contains("expected") {
        format!(
            "{msg} (the schema comes from {}; declare `source.schema`, or set \
             `source.on_schema_mismatch: cast` to convert values to the schema's types)",
            cx.schema_origin
        )
    } else {
        msg.to_string()
    }
}

/// arrow-json reports a syntax error without a position; find the first line of the
/// buffer that is not valid JSON (this runs only on the error path).
fn locate_syntax_error(buf: &[u8], lines_before: u64, msg: &str, cx: &DecodeContext) -> Error {
    let complete_lines = memchr::memchr_iter(b'\n', buf).count();
    for (i, line) in buf.split(|b| *b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        // The last piece may be a record cut at the buffer's end; it is not the culprit.
        if i >= complete_lines {
            continue;
        }
        let at = Some(lines_before + i as u64 + 1);
        if let Err(e) = check_line(trimmed) {
            return Error::input(&cx.object, at, malformed(&e));
        }
        if trimmed.first() != Some(&b'{') {
            return Error::input(&cx.object, at, NOT_AN_OBJECT);
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
            projection: None,
            on_error: crate::spec::OnError::Fail,
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes: 1 << 30,
            slice: None,
        }
    }

    fn run(data: &str) -> Result<Vec<RecordBatch>> {
        let schema = Jsonl.infer_schema(
            ObjectInput::Stream(Box::new(r#"{"a":1,"b":"x"}"#.as_bytes())),
            10,
            &cx(Schema::empty()),
        )?;
        Ok(super::super::decode_bytes(&Jsonl, data.as_bytes(), &cx(schema))?.0)
    }

    #[test]
    fn tolerant_decoding_leaves_out_each_bad_line_alone() {
        let schema = Jsonl
            .infer_schema(
                ObjectInput::Stream(Box::new(r#"{"a":1,"b":"x"}"#.as_bytes())),
                10,
                &cx(Schema::empty()),
            )
            .expect("schema");
        let mut c = cx(schema);
        c.on_error = crate::spec::OnError::Skip;
        c.batch_rows = 3;
        let data = "{\"a\":1}\n{\"a\":2 x}\n\n{\"a\":\"three\"}\n{\"a\":4}\n{\"a\":5}\n{\"a\":6,\"c\":1}\n{\"a\":7}";
        let (batches, rejected) =
            super::super::decode_bytes(&Jsonl, data.as_bytes(), &c).expect("decodes");
        let a: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("int64")
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(a, [1, 4, 5, 7]);
        let lines: Vec<Option<u64>> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [Some(2), Some(4), Some(7)]);
        assert!(
            rejected[0].error.starts_with("malformed JSON"),
            "{:?}",
            rejected[0]
        );
        assert_eq!(rejected[0].offset, Some(8));
        assert_eq!(rejected[1].record.as_deref(), Some("{\"a\":\"three\"}"));
        assert!(
            rejected[2].error.contains("source.schema"),
            "{:?}",
            rejected[2]
        );
    }

    #[test]
    fn json_that_arrow_would_repair_is_refused_in_every_mode() {
        // Inside the schema's column `a` and in `z`, which the schema leaves out.
        let bad = [
            r#"{"a":0,}"#,
            r#"{"a":1,"z":[1,,2]}"#,
            r#"{"a":1,"z":[-01]}"#,
            r#"{"a":1,"z":[1.]}"#,
            r#"{"a":1,"z":[1 true]}"#,
            r#"{"a":1,"z":[3[4]]}"#,
            r#"{"a":1} {"a":2}"#,
            "{\"a\":1,\"z\":\"\u{1}\"}",
        ];
        let schema = Schema::new(vec![arrow::datatypes::Field::new(
            "a",
            arrow::datatypes::DataType::Int64,
            true,
        )]);
        for line in bad {
            for batch_rows in [1, 3] {
                let data = format!("{{\"a\":7}}\n{line}\n{{\"a\":8}}\n");
                let mut c = cx(schema.clone());
                c.batch_rows = batch_rows;
                c.on_mismatch = crate::spec::OnSchemaMismatch::Cast;
                let err = super::super::decode_bytes(&Jsonl, data.as_bytes(), &c).expect_err(line);
                assert!(
                    err.to_string()
                        .starts_with("b.jsonl line 2: malformed JSON"),
                    "{line}: {err}"
                );
                c.on_error = crate::spec::OnError::Skip;
                let (batches, rejected) =
                    super::super::decode_bytes(&Jsonl, data.as_bytes(), &c).expect(line);
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                assert_eq!((rows, rejected.len()), (2, 1), "{line}");
                assert_eq!(rejected[0].line, Some(2), "{line}");
            }
        }
        // Invalid UTF-8 inside a string that the schema leaves out.
        let data = b"{\"a\":1,\"z\":\"\xff\"}\n";
        let mut c = cx(schema);
        c.on_mismatch = crate::spec::OnSchemaMismatch::Cast;
        let err = super::super::decode_bytes(&Jsonl, data, &c).expect_err("utf-8");
        assert!(err.to_string().contains("invalid UTF-8"), "{err}");
    }

    #[test]
    fn inferred_columns_keep_the_order_keys_first_appear_in() {
        let schema = Jsonl
            .infer_schema(
                ObjectInput::Stream(Box::new(
                    &b"{\"z\":1,\"a\":\"x\"}\n{\"m\":true,\"a\":\"y\"}\n"[..],
                )),
                10,
                &cx(Schema::empty()),
            )
            .expect("schema");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["z", "a", "m"]);
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
    fn type_error_names_the_line() {
        let err = run("{\"a\":1}\n{\"a\":2}\n\n{\"a\":\"three\"}\n").expect_err("type");
        assert!(err.to_string().starts_with("b.jsonl line 4: "), "{err}");
    }

    #[test]
    fn malformed_line_is_named() {
        let err =
            run("{\"a\":1}\n{\"a\":2}\n{\"a\":3, \"b\" 4}\n{\"a\":4}\n").expect_err("malformed");
        assert!(
            err.to_string()
                .starts_with("b.jsonl line 3: malformed JSON"),
            "{err}"
        );
    }

    #[test]
    fn column_missing_from_inferred_schema_is_an_error() {
        let err = run("{\"a\":1}\n{\"a\":1,\"c\":true}\n").expect_err("extra column");
        assert!(err.to_string().starts_with("b.jsonl line 2: "), "{err}");
        assert!(err.to_string().contains("inferred from a.jsonl"), "{err}");
    }
}
