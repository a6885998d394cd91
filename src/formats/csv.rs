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

fn format(o: &CsvOptions, object: &str) -> Format {
    let default_delim = if object.to_ascii_lowercase().contains(".tsv") {
        b'\t'
    } else {
        b','
    };
    let mut f = Format::default()
        .with_header(o.header)
        .with_delimiter(o.delimiter.map_or(default_delim, |c| c as u8))
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
                && !emit(b)?
            {
                return Ok(());
            }
            if len == 0 {
                return Ok(());
            }
        }
    }
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
        let mut value = 0;
        Csv.decode(
            ObjectInput::Stream(Box::new(&data[..])),
            &cx(schema),
            &mut |b| {
                value = b
                    .column(0)
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(0);
                Ok(true)
            },
        )
        .expect("decodes");
        assert_eq!(value, 1_767_323_045_000_000);
    }

    #[test]
    fn quoted_fields_with_newlines_and_no_final_newline() {
        let mut rows = 0;
        let data = b"id,name\n1,\"a, \"\"b\"\"\nc\"\n2,d";
        Csv.decode(
            ObjectInput::Stream(Box::new(&data[..])),
            &cx(schema()),
            &mut |b| {
                rows += b.num_rows();
                Ok(true)
            },
        )
        .expect("decodes");
        assert_eq!(rows, 2);
    }

    #[test]
    fn wrong_field_count_is_an_error() {
        let data = b"id,name\n1,x\n2,y,z\n";
        let err = Csv
            .decode(
                ObjectInput::Stream(Box::new(&data[..])),
                &cx(schema()),
                &mut |_| Ok(true),
            )
            .expect_err("bad");
        assert!(err.to_string().starts_with("b.csv: "), "{err}");
    }

    #[test]
    fn header_mismatch_names_both_objects() {
        let data = b"id,title\n1,x\n";
        let err = Csv
            .decode(
                ObjectInput::Stream(Box::new(&data[..])),
                &cx(schema()),
                &mut |_| Ok(true),
            )
            .expect_err("bad");
        let msg = err.to_string();
        assert!(
            msg.contains("b.csv line 1") && msg.contains("a.csv") && msg.contains("`title`"),
            "{msg}"
        );
    }
}
