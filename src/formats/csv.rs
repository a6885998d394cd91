//! CSV / TSV, decoded by arrow-csv.

use std::io::{BufRead, Cursor};

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::Schema;

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
use crate::error::{Error, Result};
use crate::spec::CsvOptions;

#[derive(Debug)]
pub struct Csv;

/// The field delimiter: the option's, else `\t` for `.tsv` objects and `,` otherwise.
fn delimiter(o: &CsvOptions, object: &str) -> u8 {
    o.delimiter.map_or_else(
        || {
            if object.to_ascii_lowercase().contains(".tsv") {
                b'\t'
            } else {
                b','
            }
        },
        |c| c as u8,
    )
}

fn format(o: &CsvOptions, object: &str) -> Format {
    let mut f = Format::default()
        .with_header(o.header)
        .with_delimiter(delimiter(o, object))
        .with_quote(o.quote as u8);
    if let Some(e) = o.escape {
        f = f.with_escape(e as u8);
    }
    f
}

/// arrow-csv infers `2026-01-01 10:00:00` as a timestamp in seconds, which Parquet
/// cannot type (the writer stores a bare INT64 that pyarrow, DuckDB and Polars read as
/// integers). Microseconds, what `timestamp` means in `cast` and `source.schema`, parse
/// the same text.
fn seconds_to_micros(schema: &Schema) -> Schema {
    use arrow::datatypes::{DataType, TimeUnit};
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Second, tz) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

impl SourceFormat for Csv {
    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema> {
        let reader = input.stream()?;
        format(&cx.csv, &cx.object)
            .infer_schema(reader, Some(rows))
            .map(|(schema, _)| seconds_to_micros(&schema))
            .map_err(|e| {
                Error::input(
                    &cx.object,
                    None,
                    format!("reading the first {rows} rows to infer the schema: {e}"),
                )
            })
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let mut reader = input.stream()?;
        let fmt = format(&cx.csv, &cx.object);
        let read_err = |e: std::io::Error| Error::read(&cx.object, None, e);
        if cx.csv.header {
            check_header(reader.fill_buf().map_err(read_err)?, &fmt, cx)?;
        }
        if cx.tolerant() {
            return decode_tolerant(reader, fmt, cx, emit);
        }
        let mut builder = ReaderBuilder::new(cx.schema.clone())
            .with_format(fmt)
            .with_batch_size(cx.batch_rows);
        if let Some(p) = &cx.projection {
            builder = builder.with_projection(p.clone());
        }
        let mut decoder = builder.build_decoder();
        let decode_err =
            |e: arrow::error::ArrowError| Error::input(&cx.object, None, e.to_string());
        loop {
            let buf = reader.fill_buf().map_err(read_err)?;
            let len = buf.len();
            // An empty buffer tells the decoder the input ended, flushing a last row
            // without a newline.
            let consumed = decoder.decode(buf).map_err(decode_err)?;
            reader.consume(consumed);
            if (len == 0 || consumed < len || decoder.capacity() == 0)
                && let Some(b) = decoder.flush().map_err(decode_err)?
                && !emit(super::Decoded::Batch(b))?
            {
                return Ok(());
            }
            if len == 0 {
                return Ok(());
            }
        }
    }
}

/// [`Csv::decode`] under `on_error: skip | dead_letter`: records framed by csv-core,
/// decoded a batch at a time, and a record with the wrong field count or a value its
/// column type does not take left out alone (see [`super::salvage`]).
fn decode_tolerant(
    mut reader: Box<dyn BufRead + '_>,
    fmt: Format,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let o = &cx.csv;
    let delimiter = delimiter(o, &cx.object);
    let mut framing =
        super::salvage::CsvRecords::new(delimiter, o.quote as u8, o.escape.map(|c| c as u8));
    let mut at = super::salvage::Position { line: 1, offset: 0 };
    if o.header {
        // The header record: checked against the schema by the caller, then passed over.
        let mut head = Vec::new();
        loop {
            let more = reader
                .fill_buf()
                .map_err(|e| Error::read(&cx.object, Some(1), e))?;
            let eof = more.is_empty();
            head.extend_from_slice(more);
            let n = more.len();
            reader.consume(n);
            if let Some(end) = super::salvage::Framing::next(&mut framing, &head, eof) {
                at.line += memchr::memchr_iter(b'\n', &head[..end]).count() as u64;
                at.offset = end as u64;
                let rest = head.split_off(end);
                reader = Box::new(std::io::BufReader::new(std::io::Read::chain(
                    Cursor::new(rest),
                    reader,
                )));
                break;
            }
            if eof {
                return Ok(());
            }
        }
    }
    let fmt = fmt.with_header(false);
    let make = || {
        let mut builder = ReaderBuilder::new(cx.schema.clone())
            .with_format(fmt.clone())
            .with_batch_size(cx.batch_rows);
        if let Some(p) = &cx.projection {
            builder = builder.with_projection(p.clone());
        }
        Ok(builder.build_decoder())
    };
    // arrow-csv counts lines from the start of what it was given (one record here): its
    // line numbers are dropped, the rejection carries the object's.
    let lines =
        regex::Regex::new(r" (for|at) line \d+").map_err(|e| Error::Internal(e.to_string()))?;
    let describe =
        |_: &[u8], e: &arrow::error::ArrowError| lines.replace_all(&e.to_string(), "").into_owned();
    let records = super::salvage::Records {
        make: &make,
        describe: &describe,
        stage: "csv",
    };
    super::salvage::decode(&mut *reader, &mut framing, records, at, cx, emit)
}

/// A later object whose header differs from the schema's columns is an error naming
/// both objects and the first column that differs.
fn check_header(head: &[u8], fmt: &Format, cx: &DecodeContext) -> Result<()> {
    if head.is_empty() {
        return Ok(());
    }
    let (found, _) = fmt
        .infer_schema(Cursor::new(head), Some(1))
        .map_err(|e| Error::input(&cx.object, Some(1), format!("cannot read the header: {e}")))?;
    let want: Vec<&String> = cx.schema.fields().iter().map(|f| f.name()).collect();
    let got: Vec<&String> = found.fields().iter().map(|f| f.name()).collect();
    if want != got {
        let i = want
            .iter()
            .zip(&got)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len()));
        let column = got.get(i).or(want.get(i)).map_or("?", |s| s.as_str());
        return Err(Error::input(
            &cx.object,
            Some(1),
            format!(
                "header does not match the schema from {} at column {} (`{column}`): this object has [{}], \
                 the schema has [{}]",
                cx.schema_origin,
                i + 1,
                got.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                want.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cx(schema: Schema) -> DecodeContext {
        DecodeContext {
            schema: Arc::new(schema),
            schema_origin: "a.csv".into(),
            strict: true,
            object: "b.csv".into(),
            batch_rows: 1024,
            csv: CsvOptions::default(),
            projection: None,
            on_error: crate::spec::OnError::Fail,
            max_record_bytes: 1 << 30,
        }
    }

    fn schema() -> Schema {
        Csv.infer_schema(
            ObjectInput::Stream(Box::new(&b"id,name\n1,x\n"[..])),
            10,
            &cx(Schema::empty()),
        )
        .expect("infer")
    }

    /// Seconds have no Parquet timestamp type; the sink would write bare integers.
    #[test]
    fn datetimes_are_inferred_in_microseconds_and_decode() {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
        let data = b"t\n2026-01-02 03:04:05\n";
        let schema = Csv
            .infer_schema(
                ObjectInput::Stream(Box::new(&data[..])),
                10,
                &cx(Schema::empty()),
            )
            .expect("infer");
        assert_eq!(
            schema.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        let (batches, _) =
            super::super::decode_bytes(&Csv, &data[..], &cx(schema)).expect("decodes");
        let value = batches[0]
            .column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0);
        assert_eq!(value, 1_767_323_045_000_000);
    }

    #[test]
    fn quoted_fields_with_newlines_and_no_final_newline() {
        let data = b"id,name\n1,\"a, \"\"b\"\"\nc\"\n2,d";
        let (batches, _) =
            super::super::decode_bytes(&Csv, &data[..], &cx(schema())).expect("decodes");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }

    #[test]
    fn tolerant_decoding_leaves_out_bad_records_across_quoted_newlines() {
        let mut c = cx(schema());
        c.on_error = crate::spec::OnError::DeadLetter;
        c.batch_rows = 2;
        let data = b"id,name\n1,\"a\nb\"\n2\nx,c\n4,d,e\n5,\"f\"\"g\"";
        let (batches, rejected) = super::super::decode_bytes(&Csv, &data[..], &c).expect("decodes");
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b.column(0))
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, [1, 5]);
        let at: Vec<(Option<u64>, Option<u64>)> =
            rejected.iter().map(|r| (r.line, r.offset)).collect();
        assert_eq!(
            at,
            [
                (Some(4), Some(16)),
                (Some(5), Some(18)),
                (Some(6), Some(22))
            ]
        );
        assert!(
            rejected[0].error.contains("incorrect number of fields"),
            "{:?}",
            rejected[0]
        );
        assert_eq!(rejected[1].record.as_deref(), Some("x,c"));
    }

    #[test]
    fn wrong_field_count_is_an_error() {
        let data = b"id,name\n1,x\n2,y,z\n";
        let err = super::super::decode_bytes(&Csv, &data[..], &cx(schema())).expect_err("bad");
        assert!(err.to_string().starts_with("b.csv: "), "{err}");
    }

    #[test]
    fn header_mismatch_names_both_objects() {
        let data = b"id,title\n1,x\n";
        let err = super::super::decode_bytes(&Csv, &data[..], &cx(schema())).expect_err("bad");
        let msg = err.to_string();
        assert!(
            msg.contains("b.csv line 1") && msg.contains("a.csv") && msg.contains("`title`"),
            "{msg}"
        );
    }
}
