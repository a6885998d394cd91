//! `text.decode`: bytes in whatever charset a page was served in (a WARC record's
//! `body`, a `files` row's `bytes`) → UTF-8 text, with the charset it was read as.
//!
//! The charset is found as a browser finds it (the WHATWG encoding sniffing algorithm,
//! in its order): a byte-order mark; the `charset=` of the HTTP `Content-Type` (the
//! `content_type` column, when given); a `<meta charset>` or `<meta http-equiv=
//! "Content-Type" content="…; charset=…">` in the first 1024 bytes; else Firefox's
//! detector, `chardetng`, guesses from the bytes (and from the URL's top-level domain,
//! as Firefox does, when `url` is given). Labels map to encodings as the web's do
//! (`latin-1` and `iso-8859-1` read as windows-1252), and the bytes are decoded with
//! `encoding_rs`, the decoder Firefox uses.
//!
//! Bytes that are not valid in the charset (a page labelled UTF-8 with a stray Latin-1
//! byte) make the row bad under `malformed: reject` (the default): the run fails, or under
//! `on_error: skip | dead_letter` the row is left out and counted. `malformed: replace`
//! decodes them as U+FFFD, as browsers show them, and counts the rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use encoding_rs::Encoding;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{put_columns, string_column, utf8, value, with_field};
use crate::steps::{Step, StepContext, StepError, StepOptions, column_index};

/// Options of `text.decode`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeOptions {
    /// The bytes (a binary column; a string column is already text and passes as UTF-8).
    #[serde(default = "default_column")]
    pub column: String,
    /// The text column to write (default `text`).
    #[serde(default = "default_output")]
    pub output: String,
    /// The column naming the charset each row was read as (default `charset`): the
    /// WHATWG name, such as `UTF-8`, `windows-1252`, `Shift_JIS`.
    #[serde(default = "default_charset")]
    pub charset: String,
    /// A string column holding each row's HTTP `Content-Type` (WARC's
    /// `http_content_type`), whose `charset=` comes before the page's own `<meta>`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// A string column holding each row's URL, whose top-level domain helps the detector
    /// (as in Firefox) when nothing labels the charset.
    #[serde(default)]
    pub url: Option<String>,
    /// Bytes not valid in the charset: `reject` (a bad row; the default) or `replace`
    /// (U+FFFD, counted as `replaced`).
    #[serde(default)]
    pub malformed: Malformed,
}

/// What to do with bytes that are not valid in the charset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    #[default]
    Reject,
    Replace,
}

fn default_column() -> String {
    "body".into()
}
fn default_output() -> String {
    "text".into()
}
fn default_charset() -> String {
    "charset".into()
}

/// Where a row's charset came from (the counters of the run's report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bom,
    Header,
    Meta,
    Detected,
}

impl Source {
    fn counter(self) -> &'static str {
        match self {
            Source::Bom => "charset_from_bom",
            Source::Header => "charset_from_header",
            Source::Meta => "charset_from_meta",
            Source::Detected => "charset_detected",
        }
    }
}

impl StepOptions for DecodeOptions {
    const SUMMARY: &'static str = "bytes in any charset → UTF-8 text (BOM, HTTP header, <meta>, then \
         Firefox's detector), with the charset used";
    // The `files` format's bytes; for WARC: `{ column: body, content_type:
    // http_content_type, url: url }`.
    const EXAMPLE: &'static str = "- text.decode: { column: bytes, url: url, output: page }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = column_index(input, &self.column)?;
        let is_text = match input.field(source).data_type() {
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => false,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            other => {
                return Err(format!(
                    "column `{}` is {other}; text.decode reads bytes (binary) or text",
                    self.column
                ));
            }
        };
        let content_type = self
            .content_type
            .as_deref()
            .map(|c| string_column(input, c))
            .transpose()?;
        let url = self
            .url
            .as_deref()
            .map(|c| string_column(input, c))
            .transpose()?;
        if self.output == self.charset {
            return Err(format!(
                "output and charset are both `{}`; name two columns",
                self.output
            ));
        }
        let (schema, text_at) = with_field(
            input,
            &self.output,
            Field::new(&self.output, DataType::Utf8, true),
        );
        let (schema, charset_at) = with_field(
            &schema,
            &self.charset,
            Field::new(&self.charset, DataType::Utf8, true),
        );
        Ok(Arc::new(Decode {
            opts: self.clone(),
            source,
            is_text,
            content_type,
            url,
            text_at,
            charset_at,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Decode {
    opts: DecodeOptions,
    source: usize,
    is_text: bool,
    content_type: Option<usize>,
    url: Option<usize>,
    text_at: usize,
    charset_at: usize,
    schema: SchemaRef,
}

/// One row decoded: the text, the charset, where it came from, and whether bytes were
/// replaced.
struct Decoded<'a> {
    /// Borrowed from the row's bytes when they are already the charset's UTF-8.
    text: std::borrow::Cow<'a, str>,
    encoding: &'static Encoding,
    source: Source,
    replaced: bool,
}

/// The charset of `bytes` and where it came from, in the sniffing order, and how many
/// bytes of byte-order mark to skip.
fn sniff(
    bytes: &[u8],
    content_type: Option<&str>,
    url: Option<&str>,
) -> (&'static Encoding, Source, usize) {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        return (enc, Source::Bom, bom);
    }
    if let Some(enc) = content_type.and_then(charset_param).and_then(label) {
        return (enc, Source::Header, 0);
    }
    if let Some(enc) = meta_charset(&bytes[..bytes.len().min(1024)]) {
        return (enc, Source::Meta, 0);
    }
    // UTF-8 and ISO-2022-JP may be guessed: browsers deny them for reasons of web
    // compatibility and script security that do not apply to reading text.
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    detector.feed(bytes, true);
    let tld = url.and_then(top_level_domain);
    (
        detector.guess(tld, chardetng::Utf8Detection::Allow),
        Source::Detected,
        0,
    )
}

/// An encoding for a charset label, as the web reads labels; a `<meta>` naming UTF-16
/// means UTF-8 (the bytes are ASCII-compatible if the tag was found), and
/// `x-user-defined` windows-1252 (WHATWG "prescan", step "get an attribute").
fn label(l: &str) -> Option<&'static Encoding> {
    Encoding::for_label(l.trim().trim_matches(['"', '\'']).as_bytes())
}

/// The `charset=` parameter of a `Content-Type` value.
fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']))
    })
}

/// The top-level domain of a URL (`example.co.jp` → `jp`), for the detector.
fn top_level_domain(url: &str) -> Option<&[u8]> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    let tld = host.rsplit('.').next()?;
    (!tld.is_empty() && tld.bytes().all(|b| b.is_ascii_alphabetic())).then_some(tld.as_bytes())
}

/// The charset a `<meta>` tag in `head` (a page's first 1024 bytes) declares: `charset=`,
/// or `http-equiv="content-type"` with a `content` holding `charset=`. A simplified form of
/// WHATWG's prescan: comments are skipped, attributes read quoted or bare.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let mut at = 0;
    while at < head.len() {
        let rest = &head[at..];
        if rest.starts_with(b"<!--") {
            at += memchr::memmem::find(&rest[4..], b"-->").map_or(rest.len(), |i| i + 7);
            continue;
        }
        let is_meta = rest.len() > 5
            && rest[..5].eq_ignore_ascii_case(b"<meta")
            && matches!(rest[5], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/');
        if !is_meta {
            at += 1;
            continue;
        }
        let end = memchr::memchr(b'>', rest).unwrap_or(rest.len());
        let tag = &rest[5..end];
        let attrs = attributes(tag);
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let found = match get("charset") {
            Some(c) => label(c),
            None if get("http-equiv").is_some_and(|h| h.eq_ignore_ascii_case("content-type")) => {
                get("content").and_then(charset_in_content).and_then(label)
            }
            None => None,
        };
        if let Some(enc) = found {
            return Some(match enc.name() {
                "UTF-16LE" | "UTF-16BE" => encoding_rs::UTF_8,
                "x-user-defined" => encoding_rs::WINDOWS_1252,
                _ => enc,
            });
        }
        at += end.max(1);
    }
    None
}

/// `name=value` pairs of a tag's attributes (values quoted or bare, names lowercased).
fn attributes(tag: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(tag);
    let s = text.as_ref();
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            match r.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = r[1..].find(q).map_or(r.len(), |i| i + 1);
                    let v = r[1..close].to_string();
                    rest = r.get(close + 1..).unwrap_or("");
                    v
                }
                _ => {
                    let end = r.find(|c: char| c.is_ascii_whitespace()).unwrap_or(r.len());
                    let v = r[..end].to_string();
                    rest = &r[end..];
                    v
                }
            }
        } else {
            String::new()
        };
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

/// The charset in a `<meta http-equiv>`'s `content` (`text/html; charset=Shift_JIS`).
fn charset_in_content(content: &str) -> Option<&str> {
    let lower = content.to_ascii_lowercase();
    let at = lower.find("charset")? + "charset".len();
    let rest = content[at..].trim_start().strip_prefix('=')?.trim_start();
    let end = rest
        .find(|c: char| c == ';' || c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].trim_matches(['"', '\'']))
}

/// Decodes one row, or says why it cannot.
fn decode<'a>(
    bytes: &'a [u8],
    content_type: Option<&str>,
    url: Option<&str>,
    malformed: Malformed,
) -> Result<Decoded<'a>, String> {
    let (encoding, source, bom) = sniff(bytes, content_type, url);
    let body = &bytes[bom..];
    match malformed {
        Malformed::Reject => encoding
            .decode_without_bom_handling_and_without_replacement(body)
            .map(|text| Decoded {
                text,
                encoding,
                source,
                replaced: false,
            })
            .ok_or_else(|| {
                format!(
                    "bytes not valid in {} (the charset from {}); `malformed: replace` reads \
                     them as U+FFFD",
                    encoding.name(),
                    match source {
                        Source::Bom => "its byte-order mark",
                        Source::Header => "the Content-Type",
                        Source::Meta => "its <meta> tag",
                        Source::Detected => "the detector",
                    }
                )
            }),
        Malformed::Replace => {
            let (text, replaced) = encoding.decode_without_bom_handling(body);
            Ok(Decoded {
                text,
                encoding,
                source,
                replaced,
            })
        }
    }
}

impl Step for Decode {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        need.remove(&self.opts.charset);
        need.insert(self.opts.column.clone());
        need.extend(self.opts.content_type.iter().cloned());
        need.extend(self.opts.url.iter().cloned());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let n = batch.num_rows();
        let strings = |i: Option<usize>| {
            i.map(|i| utf8(batch.column(i)))
                .transpose()
                .map_err(StepError::internal)
        };
        let (types, urls) = (strings(self.content_type)?, strings(self.url)?);
        let (text, charset): (ArrayRef, ArrayRef) = if self.is_text {
            let text = utf8(batch.column(self.source)).map_err(StepError::internal)?;
            let charset: StringArray = (0..n)
                .map(|i| text.is_valid(i).then_some("UTF-8"))
                .collect();
            cx.count("already_text", (n - text.null_count()) as u64);
            (Arc::new(text), Arc::new(charset))
        } else {
            let column = arrow::compute::cast(batch.column(self.source), &DataType::Binary)
                .map_err(|e| StepError::internal(e.to_string()))?;
            let bytes = column.as_binary::<i32>();
            let decoded: Vec<Result<Option<Decoded>, String>> = crate::pool::par_rows(n, 8, |i| {
                if bytes.is_null(i) {
                    return Ok(None);
                }
                let ct = types.as_ref().and_then(|t| value(t, i));
                let url = urls.as_ref().and_then(|u| value(u, i));
                decode(bytes.value(i), ct, url, self.opts.malformed).map(Some)
            });
            let mut rows = Vec::with_capacity(n);
            for (i, d) in decoded.into_iter().enumerate() {
                let d = d.map_err(|e| StepError::data(e).in_column(&self.opts.column).at_row(i))?;
                if let Some(d) = &d {
                    cx.count(d.source.counter(), 1);
                    if d.replaced {
                        cx.count("replaced", 1);
                    }
                }
                rows.push(d);
            }
            let text: StringArray = rows
                .iter()
                .map(|d| d.as_ref().map(|d| d.text.as_ref()))
                .collect();
            let charset: StringArray = rows
                .iter()
                .map(|d| d.as_ref().map(|d| d.encoding.name()))
                .collect();
            (Arc::new(text), Arc::new(charset))
        };
        put_columns(
            &batch,
            &self.schema,
            vec![(self.text_at, text), (self.charset_at, charset)],
        )
        .map_err(StepError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], ct: Option<&str>, url: Option<&str>) -> (String, &'static str, Source) {
        let d = decode(bytes, ct, url, Malformed::Reject).expect("decodes");
        (d.text.into_owned(), d.encoding.name(), d.source)
    }

    #[test]
    fn the_charset_is_found_in_the_browsers_order() {
        let cafe_latin1 = b"<p>caf\xe9</p>";
        // The HTTP header: iso-8859-1 reads as windows-1252, as on the web.
        assert_eq!(
            read(cafe_latin1, Some("text/html; charset=ISO-8859-1"), None),
            ("<p>café</p>".into(), "windows-1252", Source::Header)
        );
        // A byte-order mark comes before the header.
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend_from_slice("<p>café</p>".as_bytes());
        assert_eq!(
            read(&bom, Some("text/html; charset=windows-1252"), None),
            ("<p>café</p>".into(), "UTF-8", Source::Bom)
        );
        // The header comes before <meta>.
        let page = b"<html><head><meta charset=\"utf-8\"></head><p>caf\xe9</p>";
        assert_eq!(
            read(page, Some("text/html; charset=\"windows-1252\""), None).2,
            Source::Header
        );
        // <meta charset>, and <meta http-equiv> with content, bare or quoted, any case.
        for page in [
            &b"<!doctype html><META Charset=windows-1252><p>caf\xe9"[..],
            b"<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\">caf\xe9",
            b"<head><meta content='text/html;charset=iso-8859-1' http-equiv='content-type'/>caf\xe9",
        ] {
            assert_eq!(
                read(page, Some("text/html"), None).1,
                "windows-1252",
                "{}",
                String::from_utf8_lossy(page)
            );
        }
        // A <meta> inside a comment does not count; UTF-16 in a <meta> means UTF-8.
        let commented = "<!-- <meta charset=windows-1252> --><p>naïve</p>";
        assert_eq!(read(commented.as_bytes(), None, None).1, "UTF-8");
        let utf16 = "<meta charset=utf-16><p>naïve</p>";
        assert_eq!(
            read(utf16.as_bytes(), None, None),
            (
                "<meta charset=utf-16><p>naïve</p>".into(),
                "UTF-8",
                Source::Meta
            )
        );
    }

    #[test]
    fn unlabelled_pages_are_detected() {
        let samples: [(&'static Encoding, &str, &str); 4] = [
            (
                encoding_rs::WINDOWS_1251,
                "Москва — столица России, крупнейший по численности населения город страны.",
                "http://example.ru/",
            ),
            (
                encoding_rs::SHIFT_JIS,
                "日本語の文章は、ひらがなとカタカナと漢字で書かれています。東京は日本の首都です。",
                "http://example.jp/",
            ),
            (
                encoding_rs::GBK,
                "中华人民共和国是位于东亚的国家，首都是北京。长江是中国最长的河流。",
                "http://example.cn/",
            ),
            (
                encoding_rs::WINDOWS_1252,
                "Le café de la gare était fermé, et l'hôtel à côté aussi : quelle soirée étrange.",
                "http://example.fr/",
            ),
        ];
        for (enc, text, url) in samples {
            let (bytes, _, bad) = enc.encode(text);
            assert!(!bad);
            let (got, name, source) = read(&bytes, Some("text/html"), Some(url));
            assert_eq!((name, source), (enc.name(), Source::Detected), "{text}");
            assert_eq!(got, text);
        }
        // Plain ASCII and UTF-8 are UTF-8 (or ASCII-compatible: the same text).
        assert_eq!(
            read("naïve façade".as_bytes(), None, None).0,
            "naïve façade"
        );
    }

    #[test]
    fn bytes_not_valid_in_the_charset_are_refused_or_replaced() {
        let bad = b"<meta charset=utf-8><p>caf\xe9 ok</p>";
        let e = decode(bad, None, None, Malformed::Reject)
            .err()
            .expect("refused");
        assert!(e.contains("UTF-8") && e.contains("<meta>"), "{e}");
        let d = decode(bad, None, None, Malformed::Replace).expect("replaced");
        assert!(d.replaced);
        assert_eq!(d.text, "<meta charset=utf-8><p>caf\u{fffd} ok</p>");
    }

    #[test]
    fn helpers_read_what_servers_write() {
        assert_eq!(charset_param("text/html; Charset=\"UTF-8\""), Some("UTF-8"));
        assert_eq!(charset_param("text/html"), None);
        assert_eq!(
            top_level_domain("https://user@www.example.co.jp:8080/a?b"),
            Some(&b"jp"[..])
        );
        assert_eq!(top_level_domain("http://127.0.0.1/"), None);
        assert_eq!(
            charset_in_content("text/html; charset = 'KOI8-R'; x=y"),
            Some("KOI8-R")
        );
    }
}
