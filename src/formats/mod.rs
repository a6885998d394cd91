//! Input formats: bytes of one object → a stream of Arrow record batches.
//!
//! Stream formats (JSONL, CSV, text) read a decompressed byte stream front to back;
//! Parquet reads by range (footer, then the projected column chunks). One trait, one
//! file per format, one match in [`format_for`].

pub mod cdx;
mod compression;
mod conform;
pub mod csv;
pub mod files;
mod json_syntax;
mod jsonl;
mod lines;
mod parquet;
pub use parquet::read_metadata as read_parquet_metadata;
pub mod members;
pub mod reader;
mod salvage;
pub mod seekable;
mod text;
mod warc;

use std::io::BufRead;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use object_store::path::Path;

pub use compression::{Compression, decompress, decompress_buffered};

pub use crate::error::RecordTooLong;
use crate::error::Result;
use crate::rejects::Rejected;
use crate::spec::{CsvOptions, FormatName, OnError, OnSchemaMismatch};

/// A byte stream past a UTF-8 byte order mark at its start, if there is one. Checked at
/// the first read, so a read error reaches the decoder as it is.
struct SkipBom<R> {
    inner: R,
    checked: bool,
}

impl<R: BufRead> std::io::Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_buffered(self, buf)
    }
}

/// `Read::read` of a reader that is a `BufRead`: what `fill_buf` holds, consumed.
fn read_buffered(r: &mut impl BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let n = {
        let data = r.fill_buf()?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        n
    };
    r.consume(n);
    Ok(n)
}

impl<R: BufRead> BufRead for SkipBom<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if !self.checked {
            let bom = self.inner.fill_buf()?.starts_with(b"\xEF\xBB\xBF");
            self.checked = true;
            if bom {
                self.inner.consume(3);
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
    }
}

/// A byte stream that fails with [`RecordTooLong`] once more than `max` bytes have been
/// consumed since the last newline, so that a decoder which buffers a record whole
/// (arrow-csv's, csv's schema inference) holds at most `max` bytes of one however the
/// input is made: a gzip bomb of zeros is a bad record, not gigabytes of memory.
pub(crate) struct LineBound<R> {
    inner: R,
    max: u64,
    since_newline: u64,
    lines: u64,
}

impl<R: BufRead> LineBound<R> {
    pub(crate) fn new(inner: R, max: u64) -> Self {
        LineBound {
            inner,
            max,
            since_newline: 0,
            lines: 0,
        }
    }
}

impl<R: BufRead> std::io::Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_buffered(self, buf)
    }
}

impl<R: BufRead> BufRead for LineBound<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.since_newline > self.max {
            return Err(std::io::Error::other(RecordTooLong {
                line: self.lines + 1,
                max: self.max,
            }));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        // The bytes consumed are still the front of the inner buffer.
        if let Ok(data) = self.inner.fill_buf() {
            let data = &data[..amount.min(data.len())];
            match memchr::memrchr(b'\n', data) {
                Some(i) => {
                    self.lines += memchr::memchr_iter(b'\n', data).count() as u64;
                    self.since_newline = (data.len() - i - 1) as u64;
                }
                None => self.since_newline += data.len() as u64,
            }
        }
        self.inner.consume(amount);
    }
}

/// Random access to one object, for formats that read by range.
#[derive(Debug, Clone)]
pub struct RandomAccess {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub size: u64,
    /// The runtime that performs the I/O, so decoding can run on a rayon thread.
    pub handle: tokio::runtime::Handle,
    /// Where bytes fetched and time on the wire are counted, if anywhere.
    pub stats: Option<Arc<crate::report::Stats>>,
}

/// How a format gets at an object's bytes.
pub enum ObjectInput<'a> {
    /// The (decompressed) bytes, front to back.
    Stream(Box<dyn BufRead + 'a>),
    /// Ranges of the stored object.
    Random(RandomAccess),
}

impl<'a> ObjectInput<'a> {
    /// The byte stream, for stream formats, past a UTF-8 byte order mark if the object
    /// starts with one (editors on Windows write them; no JSON or CSV parser takes one).
    pub fn stream(self) -> Result<Box<dyn BufRead + 'a>> {
        match self {
            ObjectInput::Stream(r) => Ok(Box::new(SkipBom {
                inner: r,
                checked: false,
            })),
            ObjectInput::Random(_) => Err(crate::Error::Internal(
                "a stream format was given random access".into(),
            )),
        }
    }

    /// [`ObjectInput::stream`], failing with [`RecordTooLong`] at a line longer than `max`.
    pub fn stream_bounded(self, max: u64) -> Result<Box<dyn BufRead + 'a>> {
        Ok(Box::new(LineBound::new(self.stream()?, max)))
    }

    /// The bytes as they are, for the `files` format.
    pub fn bytes(self) -> Result<Box<dyn BufRead + 'a>> {
        match self {
            ObjectInput::Stream(r) => Ok(r),
            ObjectInput::Random(_) => Err(crate::Error::Internal(
                "the files format was given random access".into(),
            )),
        }
    }

    /// Random access, for formats that read by range.
    pub fn random(self) -> Result<RandomAccess> {
        match self {
            ObjectInput::Random(ra) => Ok(ra),
            ObjectInput::Stream(_) => Err(crate::Error::Internal(
                "a random-access format was given a stream".into(),
            )),
        }
    }
}

/// What a decoder needs besides the bytes.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// The schema every batch must have.
    pub schema: SchemaRef,
    /// Where that schema came from (an object, or `source.schema`), for conflict errors.
    pub schema_origin: String,
    /// True when the schema was inferred: a column it lacks is then an error rather
    /// than silently ignored.
    pub strict: bool,
    /// The object being decoded, as the user sees it.
    pub object: String,
    pub batch_rows: usize,
    pub csv: CsvOptions,
    /// Columns of `schema` to decode (CSV only; batches then have just these), for a
    /// full pass that needs a few columns. None: all.
    pub projection: Option<Vec<usize>>,
    /// `fail`: a bad record is an error naming it. `skip` / `dead_letter`: it is handed
    /// on as [`Decoded::Rejected`] and decoding goes on.
    pub on_error: OnError,
    /// How an object whose columns differ from `schema` is read.
    pub on_mismatch: OnSchemaMismatch,
    /// The longest record (line) a decoder holds: a longer one — a zip bomb inflating to
    /// one endless line — is refused (under skip / dead_letter, the object from there
    /// on), not decoded into memory beyond `run.memory_limit`.
    pub max_record_bytes: u64,
    /// For a task that is a slice of one large object, its byte range: Parquet reads the
    /// row groups whose middle byte lies in it (stream formats get only the slice's bytes).
    pub slice: Option<std::ops::Range<u64>>,
}

/// [`DecodeContext::max_record_bytes`] for a run: a quarter of each thread's share of
/// `run.memory_limit` (a record is held as bytes, then as Arrow arrays), at least 1 MiB.
pub fn max_record_bytes(memory_limit: u64, threads: usize) -> u64 {
    (memory_limit / 4 / threads.max(1) as u64).max(1 << 20)
}

impl DecodeContext {
    /// How a slice of an object is named: the object, then its byte range.
    pub fn slice_name(object: &str, range: &std::ops::Range<u64>) -> String {
        format!("{object} (bytes {}..{})", range.start, range.end)
    }

    /// The object as the user sees it, without a slice's byte range: the value of a
    /// `path` column.
    pub fn path(&self) -> &str {
        self.slice
            .as_ref()
            .and_then(|r| self.object.strip_suffix(Self::slice_name("", r).as_str()))
            .unwrap_or(&self.object)
    }

    /// True when a bad record is left out rather than ending the run.
    pub fn tolerant(&self) -> bool {
        self.on_error != OnError::Fail
    }
}

/// What a decoder hands on.
#[derive(Debug)]
pub enum Decoded {
    Batch(RecordBatch),
    /// A record left out (only when [`DecodeContext::tolerant`]).
    Rejected(Rejected),
}

/// Called with each decoded batch or rejected record; returns `false` to stop reading
/// the object.
pub type Emit<'a> = dyn FnMut(Decoded) -> Result<bool> + 'a;

/// A part of an object that decodes on its own, on any thread: whole records a format
/// framed (JSON Lines, text), or a row group fetched (Parquet). Run, it gives what
/// [`SourceFormat::decode`] gives for that part: batches and records left out, in order,
/// and the error that ended it, if one did (what came before the error stands).
pub struct Piece {
    /// About the memory the piece takes until its batches leave the steps: the bytes it
    /// holds, and the arrays they decode into. What the pass's budget weighs it by.
    pub bytes: u64,
    run: Box<dyn FnOnce() -> (Vec<Decoded>, Result<()>) + Send>,
}

impl Piece {
    pub fn new(
        bytes: u64,
        run: impl FnOnce() -> (Vec<Decoded>, Result<()>) + Send + 'static,
    ) -> Self {
        Piece {
            bytes,
            run: Box::new(run),
        }
    }

    /// Decodes the piece.
    pub fn run(self) -> (Vec<Decoded>, Result<()>) {
        (self.run)()
    }
}

/// Runs `decode` as a piece: what it emits, collected, and how it ended.
pub fn collect(decode: impl FnOnce(&mut Emit<'_>) -> Result<()>) -> (Vec<Decoded>, Result<()>) {
    let mut out = Vec::new();
    let ended = decode(&mut |d| {
        out.push(d);
        Ok(true)
    });
    (out, ended)
}

/// Called with each piece a format frames; returns `false` to stop reading the object.
pub type EmitPiece<'a> = dyn FnMut(Piece) -> Result<bool> + 'a;

/// [`SourceFormat::decode`] as [`SourceFormat::frame`] and each piece run in turn, for a
/// format that frames.
pub fn decode_framed(
    format: &dyn SourceFormat,
    input: ObjectInput<'_>,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let cx = Arc::new(cx.clone());
    format.frame(input, &cx, &mut |piece| {
        let (decoded, ended) = piece.run();
        for d in decoded {
            if !emit(d)? {
                return Ok(false);
            }
        }
        ended.map(|()| true)
    })
}

/// One input format.
pub trait SourceFormat: Send + Sync + std::fmt::Debug {
    /// Reads by range rather than as a stream (and so is never decompressed as a whole).
    fn random_access(&self) -> bool {
        false
    }

    /// Infers the schema from the first `rows` rows of one object.
    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema>;

    /// [`infer_schema`](Self::infer_schema), plus the mean decoded size of a row when the
    /// format records it (Parquet's row-group sizes), to size batches.
    fn infer_schema_and_row_bytes(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<(Schema, Option<u64>)> {
        Ok((self.infer_schema(input, rows, cx)?, None))
    }

    /// Decodes one object, passing batches of at most `cx.batch_rows` rows to `emit`.
    fn decode(&self, input: ObjectInput<'_>, cx: &DecodeContext, emit: &mut Emit<'_>)
    -> Result<()>;

    /// True for a format that can cut an object into parts that decode on their own
    /// ([`SourceFormat::frame`]): JSON Lines and text (one record per line) and Parquet
    /// (row groups). Not CSV: finding where its records end is csv-core's full scan,
    /// most of what decoding it costs (docs/architecture.md). The reading stays on one
    /// thread; the decoding then runs on any.
    fn frames(&self) -> bool {
        false
    }

    /// Cuts one object into [`Piece`]s, in order, doing only what must be sequential
    /// (inflating and finding line ends; fetching a row group's bytes). The pieces, run
    /// in order, give exactly what [`SourceFormat::decode`] gives: the same rows, the
    /// same rejections and the same errors. A read that fails ends it with that error,
    /// after the pieces before it.
    fn frame(
        &self,
        _input: ObjectInput<'_>,
        _cx: &Arc<DecodeContext>,
        _emit: &mut EmitPiece<'_>,
    ) -> Result<()> {
        Err(crate::Error::Internal("this format does not frame".into()))
    }
}

/// The implementation of a format.
pub fn format_for(name: FormatName) -> Arc<dyn SourceFormat> {
    match name {
        FormatName::Jsonl => Arc::new(jsonl::Jsonl),
        FormatName::Csv => Arc::new(csv::Csv),
        FormatName::Parquet => Arc::new(parquet::Parquet),
        FormatName::Text => Arc::new(text::Text),
        FormatName::Files => Arc::new(files::Files::default()),
        FormatName::Warc => Arc::new(warc::Warc::default()),
    }
}

/// The format of a source: [`format_for`], with the `files` format's labels when
/// `source.labels` asks (the classes of the listing, from [`files::Classes::of_source`]).
pub fn format_for_source(
    name: FormatName,
    source: &crate::spec::Source,
    classes: Option<Arc<files::Classes>>,
) -> Result<Arc<dyn SourceFormat>> {
    match (name, source.labels) {
        (FormatName::Files, Some(crate::spec::LabelsFrom::Folder)) => {
            Ok(Arc::new(files::Files { classes }))
        }
        (FormatName::Warc, None) => match &source.warc {
            Some(options) => Ok(Arc::new(warc::Warc::keeping(&options.record_types)?)),
            None => Ok(format_for(name)),
        },
        (_, Some(_)) => Err(crate::Error::Plan(
            "source.labels needs the files format (source.format: files, or image objects)".into(),
        )),
        _ => Ok(format_for(name)),
    }
}

/// The format an object name implies, looking past a compression suffix.
pub fn format_from_name(name: &str) -> Option<FormatName> {
    let stem = Compression::strip_suffix(name);
    let ext = stem.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    match ext.as_str() {
        "jsonl" | "ndjson" | "json" => Some(FormatName::Jsonl),
        "csv" | "tsv" => Some(FormatName::Csv),
        "parquet" | "pq" => Some(FormatName::Parquet),
        "txt" | "text" => Some(FormatName::Text),
        "jpg" | "jpeg" | "png" | "webp" => Some(FormatName::Files),
        "warc" | "wet" | "wat" => Some(FormatName::Warc),
        _ => None,
    }
}

/// Decodes `data` whole: the batches and the rejected records.
#[cfg(test)]
pub(crate) fn decode_bytes(
    format: &dyn SourceFormat,
    data: &[u8],
    cx: &DecodeContext,
) -> Result<(Vec<RecordBatch>, Vec<Rejected>)> {
    let (mut batches, mut rejected) = (Vec::new(), Vec::new());
    format.decode(ObjectInput::Stream(Box::new(data)), cx, &mut |d| {
        match d {
            Decoded::Batch(b) => batches.push(b),
            Decoded::Rejected(r) => rejected.push(r),
        }
        Ok(true)
    })?;
    Ok((batches, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(format_from_name("a/b.jsonl.gz"), Some(FormatName::Jsonl));
        assert_eq!(format_from_name("x.CSV"), Some(FormatName::Csv));
        assert_eq!(format_from_name("x.parquet"), Some(FormatName::Parquet));
        assert_eq!(format_from_name("notes.txt.zst"), Some(FormatName::Text));
        assert_eq!(
            format_from_name("CC-MAIN-x-00000.warc.gz"),
            Some(FormatName::Warc)
        );
        assert_eq!(format_from_name("x.warc.wet.gz"), Some(FormatName::Warc));
        assert_eq!(format_from_name("README"), None);
    }
}
