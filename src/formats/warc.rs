//! WARC 1.0 / 1.1 (ISO 28500), and the WET and WAT files Common Crawl derives from it:
//! one row per record.
//!
//! One role in one file (about 500 lines, the rest its tests): the record framing, the
//! header grammar and the bad-input rules are one reader; the HTTP part is `httparse`.
//!
//! A record is a version line (`WARC/1.1`), named fields up to an empty line, then a block
//! of `Content-Length` bytes and two CRLFs. A `.warc.gz` is a series of gzip members (one
//! per record, usually), which the gzip reader reads as one stream, or which a slice of it
//! starts at (`super::members`: a large `.warc.gz` is cut there). For an HTTP response
//! (`Content-Type: application/http; msgtype=response`) the block is parsed with `httparse`
//! into `http_status`, `http_headers` and the payload as stored (`body`: still
//! chunk-encoded or compressed if the server sent it so, as `warcio`'s `raw_stream` reads
//! it); for every other record `body` is the whole block. The header grammar is small and
//! parsed here: the `warc` crate would bring an old `uuid` and other features of `chrono`,
//! which rebuilds arrow and DataFusion.
//!
//! Bad input: a record longer than a record may be (a quarter of each thread's share of
//! `run.memory_limit`) is a bad record (under skip /
//! dead_letter left out and the reading goes on after it); a header block that is not
//! WARC, or a record cut short, ends the object there (under skip / dead_letter the rows
//! before it are kept).

use std::io::{BufRead, Read};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Int32Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
use crate::error::{Error, Result};

/// The reader, with the record types that become rows.
#[derive(Debug)]
pub struct Warc {
    keep: Vec<String>,
}

/// Every record type of WARC 1.1.
const RECORD_TYPES: &[&str] = &[
    "warcinfo",
    "response",
    "resource",
    "request",
    "metadata",
    "revisit",
    "conversion",
    "continuation",
];

impl Default for Warc {
    fn default() -> Self {
        Warc {
            keep: crate::spec::default_record_types(),
        }
    }
}

impl Warc {
    /// A reader keeping `types` (`source.warc.record_types`), which must be WARC's.
    pub fn keeping(types: &[String]) -> Result<Self> {
        let mut keep = Vec::with_capacity(types.len());
        for t in types {
            let t = t.to_ascii_lowercase();
            if !RECORD_TYPES.contains(&t.as_str()) {
                return Err(Error::Plan(format!(
                    "source.warc.record_types: `{t}` is not a WARC record type; the types are {}",
                    RECORD_TYPES.join(", ")
                )));
            }
            keep.push(t);
        }
        if keep.is_empty() {
            return Err(Error::Plan(
                "source.warc.record_types is empty: no record would become a row".into(),
            ));
        }
        Ok(Warc { keep })
    }

    fn keeps(&self, header: &Header) -> bool {
        let t = header.get("WARC-Type").unwrap_or("");
        self.keep.iter().any(|k| k.eq_ignore_ascii_case(t))
    }
}

/// Longest header block of a record (WARC fields, not the HTTP headers in its block).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Bytes of bodies a batch holds before it is emitted, whatever `batch_rows` says.
const BATCH_BODY_BYTES: usize = 32 << 20;

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("warc_type", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("date", DataType::Utf8, true),
        Field::new("content_type", DataType::Utf8, true),
        Field::new("http_status", DataType::Int32, true),
        Field::new("http_content_type", DataType::Utf8, true),
        Field::new("http_headers", DataType::Utf8, true),
        Field::new("body", DataType::Binary, false),
    ])
}

/// One record's WARC fields, in order, with their names as written.
struct Header {
    fields: Vec<(String, String)>,
}

impl Header {
    /// `WARC-Target-URI` without the angle brackets WARC 1.0's grammar shows and GNU Wget
    /// writes (`<http://…>`), as warcio reads it.
    fn target_uri(&self) -> Option<&str> {
        self.get("WARC-Target-URI").map(|u| {
            u.strip_prefix('<')
                .and_then(|u| u.strip_suffix('>'))
                .unwrap_or(u)
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Rows {
    warc_type: StringBuilder,
    record_id: StringBuilder,
    url: StringBuilder,
    date: StringBuilder,
    content_type: StringBuilder,
    http_status: Int32Builder,
    http_content_type: StringBuilder,
    http_headers: StringBuilder,
    body: BinaryBuilder,
    rows: usize,
    body_bytes: usize,
}

impl Rows {
    fn push(&mut self, h: &Header, block: &[u8]) {
        let warc_type = h.get("WARC-Type").unwrap_or("");
        self.warc_type.append_value(warc_type);
        self.record_id.append_option(h.get("WARC-Record-ID"));
        self.url.append_option(h.target_uri());
        self.date.append_option(h.get("WARC-Date"));
        let content_type = h.get("Content-Type");
        self.content_type.append_option(content_type);
        let is_http_response = warc_type.eq_ignore_ascii_case("response")
            && content_type.is_some_and(|c| {
                c.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/http")
            });
        let http = if is_http_response {
            parse_http_response(block)
        } else {
            None
        };
        match http {
            Some(r) => {
                self.http_status.append_value(i32::from(r.status));
                self.http_content_type.append_option(
                    r.headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                        .map(|(_, v)| v.as_str()),
                );
                // Names and values in order, repeated names kept (Set-Cookie).
                let pairs: Vec<[&str; 2]> = r
                    .headers
                    .iter()
                    .map(|(n, v)| [n.as_str(), v.as_str()])
                    .collect();
                self.http_headers
                    .append_value(serde_json::to_string(&pairs).unwrap_or_default());
                self.body.append_value(&block[r.header_len..]);
                self.body_bytes += block.len() - r.header_len;
            }
            None => {
                self.http_status.append_null();
                self.http_content_type.append_null();
                self.http_headers.append_null();
                self.body.append_value(block);
                self.body_bytes += block.len();
            }
        }
        self.rows += 1;
    }

    fn finish(&mut self, cx: &DecodeContext) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.warc_type.finish()),
            Arc::new(self.record_id.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.date.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.http_content_type.finish()),
            Arc::new(self.http_headers.finish()),
            Arc::new(self.body.finish()),
        ];
        self.rows = 0;
        self.body_bytes = 0;
        RecordBatch::try_new(cx.schema.clone(), columns).map_err(|e| Error::Internal(e.to_string()))
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    header_len: usize,
}

/// The status line and headers of an HTTP response block; None if it is not one.
fn parse_http_response(block: &[u8]) -> Option<HttpResponse> {
    let mut size = 64;
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; size];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(block) {
            Ok(httparse::Status::Complete(header_len)) => {
                return Some(HttpResponse {
                    status: r.code?,
                    headers: r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    header_len,
                });
            }
            Err(httparse::Error::TooManyHeaders) if size < 4096 => size *= 4,
            _ => return None,
        }
    }
}

/// Reads one header block: the version line, then fields up to an empty line. None at
/// the end of the input (blank lines between records are skipped). `offset` advances
/// by the bytes read.
fn read_header(r: &mut dyn BufRead, offset: &mut u64, object: &str) -> Result<Option<Header>> {
    let mut line = Vec::new();
    // The version line, after any blank lines.
    loop {
        line.clear();
        let n = r
            .take(MAX_HEADER_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::read(object, None, e))?;
        if n == 0 {
            return Ok(None);
        }
        *offset += n as u64;
        if !line.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            break;
        }
    }
    let start = *offset - line.len() as u64;
    if !line.starts_with(b"WARC/") {
        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        return Err(Error::input(
            object,
            None,
            format!(
                "not a WARC record at byte {start} of the uncompressed data: it starts with \
                 {shown:?}, where `WARC/1.0` or `WARC/1.1` was expected (is this a WARC file?)"
            ),
        ));
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut size = line.len();
    loop {
        line.clear();
        let n = r
            .take((MAX_HEADER_BYTES - size.min(MAX_HEADER_BYTES)) as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::read(object, None, e))?;
        *offset += n as u64;
        size += n;
        if size > MAX_HEADER_BYTES {
            return Err(Error::input(
                object,
                None,
                format!(
                    "the WARC header of the record at byte {start} is longer than {} bytes",
                    MAX_HEADER_BYTES
                ),
            ));
        }
        if n == 0 || !line.ends_with(b"\n") {
            return Err(Error::input(
                object,
                None,
                format!("the WARC record at byte {start} ends inside its header (truncated file?)"),
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Ok(Some(Header { fields }));
        }
        if text.starts_with([' ', '\t']) {
            // A continuation line (WARC 1.0 allows folded values).
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(text.trim());
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                fields.push((name.trim().to_string(), value.trim().to_string()));
            }
            _ => {
                return Err(Error::input(
                    object,
                    None,
                    format!(
                        "the WARC header of the record at byte {start} has a line that is not \
                         `Name: value`: {:?}",
                        &text[..text.len().min(60)]
                    ),
                ));
            }
        }
    }
}

/// Consumes the CRLF CRLF after a block (up to four CR / LF bytes; writers that end
/// blocks otherwise are read as well).
fn skip_record_end(r: &mut dyn BufRead, offset: &mut u64) -> std::io::Result<()> {
    for _ in 0..4 {
        let buf = r.fill_buf()?;
        match buf.first() {
            Some(b'\r' | b'\n') => {
                r.consume(1);
                *offset += 1;
            }
            _ => break,
        }
    }
    Ok(())
}

/// The end of an object whose record at `start` holds `got` of its `length` bytes: the
/// rows before it are emitted first (under skip / dead_letter they are kept).
fn cut_short(
    rows: &mut Rows,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
    start: u64,
    length: u64,
    got: u64,
) -> Result<()> {
    if rows.rows > 0 && !emit(super::Decoded::Batch(rows.finish(cx)?))? {
        return Ok(());
    }
    Err(Error::input(
        &cx.object,
        None,
        format!(
            "the WARC record at byte {start} is cut short: Content-Length {length}, {got} bytes \
             there (truncated file?)"
        ),
    ))
}

impl SourceFormat for Warc {
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
        let mut rows = Rows::default();
        let read = self.records(&mut reader, cx, emit, &mut rows);
        // The rows read before a fault (a gzip stream cut short, say) come first: under
        // skip / dead_letter they are kept.
        if rows.rows > 0 {
            let emitted = emit(super::Decoded::Batch(rows.finish(cx)?));
            if read.is_ok() {
                emitted?;
            }
        }
        read
    }
}

impl Warc {
    /// Reads records into `rows`, emitting them a batch at a time.
    fn records(
        &self,
        r: &mut dyn BufRead,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
        rows: &mut Rows,
    ) -> Result<()> {
        let mut offset: u64 = 0;
        let mut block = Vec::new();
        loop {
            let Some(header) = read_header(r, &mut offset, &cx.object)? else {
                break;
            };
            let start = offset;
            let length = match header
                .get("Content-Length")
                .map(|v| v.trim().parse::<u64>())
            {
                Some(Ok(n)) => n,
                _ => {
                    return Err(Error::input(
                        &cx.object,
                        None,
                        format!(
                            "the WARC record before byte {start} has no valid Content-Length, so \
                             where it ends is unknown"
                        ),
                    ));
                }
            };
            let keep = self.keeps(&header);
            if !keep || length > cx.max_record_bytes {
                // Another type, skipped unread; or a record too large to hold, a bad record.
                let rejected = if keep {
                    let message = format!(
                        "the WARC record at byte {start} ({}, {}) holds {length} bytes, more \
                         than a record may hold: {} (a quarter of each thread's share of \
                         run.memory_limit; raise it to read this record)",
                        header.get("WARC-Type").unwrap_or("?"),
                        header.target_uri().unwrap_or("no URI"),
                        cx.max_record_bytes
                    );
                    if !cx.tolerant() {
                        return Err(Error::input(&cx.object, None, message));
                    }
                    Some(crate::rejects::Rejected::record(
                        &cx.object,
                        "warc",
                        None,
                        Some(start),
                        message,
                        header.get("WARC-Record-ID").unwrap_or("").as_bytes(),
                    ))
                } else {
                    None
                };
                let skipped = std::io::copy(&mut r.take(length), &mut std::io::sink())
                    .map_err(|e| Error::read(&cx.object, None, e))?;
                offset += skipped;
                if skipped < length {
                    return cut_short(rows, cx, emit, start, length, skipped);
                }
                if let Some(rejected) = rejected
                    && !emit(super::Decoded::Rejected(rejected))?
                {
                    return Ok(());
                }
                skip_record_end(r, &mut offset).map_err(|e| Error::read(&cx.object, None, e))?;
                continue;
            }
            block.clear();
            let got = r
                .take(length)
                .read_to_end(&mut block)
                .map_err(|e| Error::read(&cx.object, None, e))? as u64;
            offset += got;
            if got < length {
                return cut_short(rows, cx, emit, start, length, got);
            }
            skip_record_end(r, &mut offset).map_err(|e| Error::read(&cx.object, None, e))?;
            rows.push(&header, &block);
            if (rows.rows >= cx.batch_rows || rows.body_bytes >= BATCH_BODY_BYTES)
                && !emit(super::Decoded::Batch(rows.finish(cx)?))?
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{CsvOptions, OnError};
    use arrow::array::{AsArray, Int32Array};

    fn cx(on_error: OnError, max_record_bytes: u64) -> DecodeContext {
        DecodeContext {
            schema: Arc::new(schema()),
            schema_origin: "warc".into(),
            strict: true,
            object: "crawl.warc".into(),
            batch_rows: 2,
            csv: CsvOptions::default(),
            projection: None,
            on_error,
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes,
            slice: None,
        }
    }

    fn all() -> Warc {
        Warc::keeping(
            &RECORD_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>(),
        )
        .expect("every type")
    }

    #[test]
    fn by_default_records_holding_a_document_become_rows() {
        let (batches, _) = crate::formats::decode_bytes(
            &Warc::default(),
            &sample()[..],
            &cx(OnError::Fail, 1 << 20),
        )
        .expect("decodes");
        let types: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(types, ["response", "resource"]);
        let e = Warc::keeping(&["responses".to_string()]).expect_err("a typo");
        assert!(
            e.to_string()
                .contains("`responses` is not a WARC record type"),
            "{e}"
        );
    }

    fn record(warc_type: &str, uri: Option<&str>, content_type: &str, block: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "WARC/1.1\r\nWARC-Type: {warc_type}\r\nWARC-Record-ID: <urn:uuid:{warc_type}>\r\nWARC-Date: 2026-12-06T10:00:00Z\r\n"
        );
        if let Some(u) = uri {
            r.push_str(&format!("WARC-Target-URI: {u}\r\n"));
        }
        r.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            block.len()
        ));
        let mut out = r.into_bytes();
        out.extend_from_slice(block);
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    fn sample() -> Vec<u8> {
        let mut w = record(
            "warcinfo",
            None,
            "application/warc-fields",
            b"software: test\r\n",
        );
        w.extend(record(
            "request",
            Some("http://example.com/"),
            "application/http; msgtype=request",
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        ));
        w.extend(record(
            "response",
            Some("http://example.com/"),
            "application/http; msgtype=response",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n<html>hi</html>",
        ));
        w.extend(record(
            "resource",
            Some("file:///notes.txt"),
            "text/plain",
            b"plain\r\n\r\ntext",
        ));
        w
    }

    #[test]
    fn every_record_is_a_row_and_http_responses_are_parsed() {
        let (batches, rejected) =
            crate::formats::decode_bytes(&all(), &sample()[..], &cx(OnError::Fail, 1 << 20))
                .expect("decodes");
        assert!(rejected.is_empty());
        let b = arrow::compute::concat_batches(&Arc::new(schema()), &batches).expect("concat");
        assert_eq!(b.num_rows(), 4);
        let types: Vec<&str> = b.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(types, ["warcinfo", "request", "response", "resource"]);
        let status: &Int32Array = b.column(5).as_primitive();
        assert_eq!(
            status.iter().collect::<Vec<_>>(),
            [None, None, Some(200), None]
        );
        let body = b.column(8).as_binary::<i32>();
        assert_eq!(body.value(2), b"<html>hi</html>");
        assert_eq!(
            body.value(3),
            b"plain\r\n\r\ntext",
            "a block's own blank lines stay"
        );
        assert_eq!(
            b.column(7).as_string::<i32>().value(2),
            r#"[["Content-Type","text/html; charset=utf-8"],["Set-Cookie","a=1"],["Set-Cookie","b=2"]]"#
        );
        assert_eq!(
            b.column(6).as_string::<i32>().value(2),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            b.column(2).as_string::<i32>().value(1),
            "http://example.com/"
        );
    }

    #[test]
    fn a_truncated_record_ends_the_object_after_the_rows_before_it() {
        let mut w = sample();
        w.truncate(w.len() - 10);
        let mut got = Vec::new();
        let mut emit = |d: crate::formats::Decoded| {
            got.push(d);
            Ok(true)
        };
        let e = all()
            .decode(
                crate::formats::ObjectInput::Stream(Box::new(&w[..])),
                &cx(OnError::Skip, 1 << 20),
                &mut emit,
            )
            .expect_err("cut short");
        assert!(e.to_string().contains("cut short"), "{e}");
        let rows: usize = got
            .iter()
            .map(|d| match d {
                crate::formats::Decoded::Batch(b) => b.num_rows(),
                crate::formats::Decoded::Rejected(_) => 0,
            })
            .sum();
        assert_eq!(rows, 3, "the three whole records before it");
    }

    /// A read error (here a gzip stream cut short in its last member) ends the object
    /// after the rows before it, as a record cut short does.
    #[test]
    fn a_gzip_stream_cut_short_keeps_the_rows_before_it() {
        use std::io::Write;
        let mut gz = Vec::new();
        for _ in 0..3 {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&sample()).expect("write");
            gz.extend(e.finish().expect("finish"));
        }
        gz.truncate(gz.len() - 20);
        let input = crate::formats::decompress(crate::formats::Compression::Gzip, &gz[..])
            .expect("decoder");
        let mut rows = 0;
        let mut emit = |d: crate::formats::Decoded| {
            if let crate::formats::Decoded::Batch(b) = d {
                rows += b.num_rows();
            }
            Ok(true)
        };
        let e = all()
            .decode(
                crate::formats::ObjectInput::Stream(input),
                &cx(OnError::Skip, 1 << 20),
                &mut emit,
            )
            .expect_err("cut short");
        assert!(e.to_string().contains("gzip"), "{e}");
        assert!(
            rows >= 8,
            "the records of the two whole members are kept: {rows}"
        );
    }

    #[test]
    fn a_record_over_the_limit_is_left_out_and_reading_goes_on() {
        let mut w = record("resource", Some("big"), "text/plain", &[b'x'; 5000]);
        w.extend(sample());
        let (batches, rejected) =
            crate::formats::decode_bytes(&all(), &w[..], &cx(OnError::Skip, 1000))
                .expect("decodes");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].error.contains("5000 bytes"),
            "{}",
            rejected[0].error
        );
        let e = crate::formats::decode_bytes(&all(), &w[..], &cx(OnError::Fail, 1000))
            .expect_err("fails under fail");
        assert!(e.to_string().contains("run.memory_limit"), "{e}");
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_rows_or_an_error_never_a_panic() {
        let w = sample();
        for policy in [OnError::Fail, OnError::Skip] {
            let cx = cx(policy, 1 << 20);
            for end in 0..w.len() {
                let _ = crate::formats::decode_bytes(&all(), &w[..end], &cx);
            }
            for i in 0..w.len() {
                let mut m = w.clone();
                m[i] ^= 0x5a;
                let _ = crate::formats::decode_bytes(&all(), &m[..], &cx);
            }
        }
    }

    #[test]
    fn not_a_warc_file_is_named() {
        let e =
            crate::formats::decode_bytes(&all(), &b"{\"a\": 1}\n"[..], &cx(OnError::Fail, 1 << 20))
                .expect_err("not WARC");
        assert!(e.to_string().contains("not a WARC record at byte 0"), "{e}");
    }
}
