//! CSV / TSV, decoded by arrow-csv.

use std::io::{BufRead, Cursor, Read};
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema};

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
use crate::error::{Error, Result};
use crate::spec::{CsvOptions, OnSchemaMismatch};

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

/// csv-core's record state machine with the dialect arrow-csv decodes with, to find
/// where records end (see `reader::LineRange::csv`).
pub fn records(o: &CsvOptions, object: &str) -> csv_core::Reader {
    csv_core::ReaderBuilder::new()
        .delimiter(delimiter(o, object))
        .quote(o.quote as u8)
        .escape(o.escape.map(|c| c as u8))
        .build()
}

/// The first record of `input` (the header line), terminator included, read until
/// `records` finds its end; refused past `max` bytes.
pub fn first_record(
    input: impl Read,
    mut records: csv_core::Reader,
    max: u64,
) -> std::io::Result<Vec<u8>> {
    use csv_core::ReadRecordResult as R;
    let mut input = std::io::BufReader::new(input);
    let (mut out, mut ends) = (vec![0u8; 1 << 12], vec![0usize; 64]);
    let mut head = Vec::new();
    loop {
        let data = input.fill_buf()?;
        let (result, nin, _, _) = records.read_record(data, &mut out, &mut ends);
        head.extend_from_slice(&data[..nin]);
        input.consume(nin);
        match result {
            R::Record | R::End => break,
            _ => super::salvage::grow(result, &mut out, &mut ends),
        }
        if head.len() as u64 > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the header record is longer than {max} bytes"),
            ));
        }
    }
    // A header ended by `\r\n` ends at the `\r` for csv-core; keep the `\n` with it.
    if head.ends_with(b"\r") && input.fill_buf()?.first() == Some(&b'\n') {
        head.push(b'\n');
    }
    Ok(head)
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
        let reader = input.stream_bounded(cx.max_record_bytes)?;
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
        let mut reader = input.stream_bounded(cx.max_record_bytes)?;
        let fmt = format(&cx.csv, &cx.object);
        let read_err = |e: std::io::Error| Error::read(&cx.object, None, e);
        if cx.csv.header
            && let Some(by_name) = check_header(reader.fill_buf().map_err(read_err)?, &fmt, cx)?
        {
            // The columns are read by name (see `source.on_schema_mismatch`).
            let schema = match &cx.projection {
                Some(p) => Arc::new(
                    cx.schema
                        .project(p)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                ),
                None => cx.schema.clone(),
            };
            let mut conform = |d: super::Decoded| match d {
                super::Decoded::Batch(b) => {
                    let columns = by_name
                        .sources
                        .iter()
                        .map(|s| s.map(|k| b.column(k).clone()))
                        .collect();
                    super::conform::emit_conformed(
                        &schema,
                        columns,
                        b.num_rows(),
                        0,
                        cx,
                        "csv",
                        emit,
                    )
                }
                rejected => emit(rejected),
            };
            return decode_as(reader, fmt, &by_name.cx, &mut conform);
        }
        decode_as(reader, fmt, cx, emit)
    }
}

/// The columns of an object whose header names the schema's columns in another order,
/// or has columns the schema lacks or lacks some it has, under `cast` / `null_fill`.
struct ByName {
    /// The context to decode the object with: its own columns (the run's types for those
    /// the schema has, text for the rest), projected to those the run reads.
    cx: DecodeContext,
    /// Per column the run reads: its position in the decoded batch, if the object has it.
    sources: super::conform::Sources,
}

/// Decodes an object whose columns are those of `cx.schema`.
fn decode_as(
    mut reader: Box<dyn BufRead + '_>,
    fmt: Format,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let read_err = |e: std::io::Error| Error::read(&cx.object, None, e);
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
    let decode_err = |e: arrow::error::ArrowError| Error::input(&cx.object, None, e.to_string());
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
        check: None,
    };
    super::salvage::decode(&mut *reader, &mut framing, records, at, cx, emit)
}

/// Checks an object's header against the schema's columns. The same names in the same
/// order: `None`, decode as is. Otherwise, under `on_schema_mismatch: fail`, an error
/// naming both objects and the first column that differs; under `cast` / `null_fill`,
/// the columns to read by name (a column the object lacks is an error under `cast`).
fn check_header(head: &[u8], fmt: &Format, cx: &DecodeContext) -> Result<Option<ByName>> {
    if head.is_empty() {
        return Ok(None);
    }
    let (found, _) = fmt
        .infer_schema(Cursor::new(head), Some(1))
        .map_err(|e| Error::input(&cx.object, Some(1), format!("cannot read the header: {e}")))?;
    let want: Vec<&String> = cx.schema.fields().iter().map(|f| f.name()).collect();
    let got: Vec<&String> = found.fields().iter().map(|f| f.name()).collect();
    if want == got {
        return Ok(None);
    }
    let list = |names: &[&String]| {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if cx.on_mismatch == OnSchemaMismatch::Fail {
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
                 the schema has [{}]; set `source.on_schema_mismatch: cast` (or `null_fill`) to read \
                 columns by name",
                cx.schema_origin,
                i + 1,
                list(&got),
                list(&want),
            ),
        ));
    }
    // The object's own columns: the run's type where the schema has the name, text
    // elsewhere (never decoded: not in the projection).
    let fields: Vec<Field> = got
        .iter()
        .map(|name| match cx.schema.field_with_name(name) {
            Ok(f) => f.clone(),
            Err(_) => Field::new(name.as_str(), DataType::Utf8, true),
        })
        .collect();
    let reads: Vec<usize> = match &cx.projection {
        Some(p) => p.clone(),
        None => (0..want.len()).collect(),
    };
    let mut projection = Vec::new();
    let mut sources = Vec::with_capacity(reads.len());
    for &c in &reads {
        let name = want[c];
        match got.iter().position(|g| *g == name) {
            Some(at) => {
                sources.push(Some(projection.len()));
                projection.push(at);
            }
            None if cx.on_mismatch == OnSchemaMismatch::NullFill => sources.push(None),
            None => {
                return Err(Error::input(
                    &cx.object,
                    Some(1),
                    format!(
                        "has no column `{name}`, which the schema from {} has (this object has [{}]){}",
                        cx.schema_origin,
                        list(&got),
                        super::conform::missing_hint(cx)
                    ),
                ));
            }
        }
    }
    let mut object = cx.clone();
    object.schema = Arc::new(Schema::new(fields));
    object.projection = Some(projection);
    Ok(Some(ByName {
        cx: object,
        sources,
    }))
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
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes: 1 << 30,
            slice: None,
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

    /// A wrong field count or a bad value is named by arrow-csv's record number, counted
    /// from the object's start (the header included), whatever the batch size.
    #[test]
    fn errors_name_the_same_record_for_any_batch_size() {
        let cases: [&[u8]; 3] = [
            b"id,name\n1,\"a\nb\"\n2,y\n3,z\n4,w,extra\n5,v\n",
            b"id,name\n1,x\n2,y\n3,z\n4,w\nfive,v\n",
            b"id,name\r\n1,x\r\n\r\n2,y\r\n3,z\r\nfour,w\r\n",
        ];
        // arrow-csv words a wrong field count by how full its batch is: the record
        // number is what must not change.
        let number = regex::Regex::new(r" (for|at) line (\d+)").expect("pattern");
        let line = |data: &[u8], c: &DecodeContext| {
            let e = super::super::decode_bytes(&Csv, data, c)
                .expect_err("bad")
                .to_string();
            number.captures(&e).map(|c| c[2].to_string()).expect(&e)
        };
        for (data, want) in cases.into_iter().zip(["5", "5", "4"]) {
            let mut c = cx(schema());
            assert_eq!(line(data, &c), want);
            for rows in [1, 2, 3] {
                c.batch_rows = rows;
                assert_eq!(line(data, &c), want, "batch_rows {rows}");
            }
        }
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
