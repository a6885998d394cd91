//! Decoding under `on_error: skip | dead_letter`: records are framed before they are
//! decoded, so that one that fails can be left out alone and named by line and offset.
//!
//! A batch of whole records goes to a fresh arrow decoder. When it fails (a malformed
//! line, a wrong field count, a value the column type does not take), the batch is split
//! in halves and each half decoded again, down to the single records that fail: the
//! good rows keep their order, and a batch with one bad record costs about
//! 2·log2(batch_rows) extra decodes. Under `fail` the formats keep their streaming path,
//! which never frames.

use std::io::BufRead;
use std::ops::Range;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Decoded, Emit};
use crate::error::{Error, Result};
use crate::rejects::Rejected;

/// The two arrow decoders (JSON, CSV) as one: bytes in, a batch out.
pub(super) trait BatchDecoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, ArrowError>;
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError>;
}

impl BatchDecoder for arrow::json::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, ArrowError> {
        arrow::json::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        arrow::json::reader::Decoder::flush(self)
    }
}

impl BatchDecoder for arrow::csv::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, ArrowError> {
        arrow::csv::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        arrow::csv::reader::Decoder::flush(self)
    }
}

/// Finds where records end.
pub(super) trait Framing {
    /// The length of the first whole record of `buf` (terminator included), or None when
    /// `buf` holds no whole record yet. `buf` only grows between calls that return None
    /// (so a framing may remember how far it looked); at end of input (`eof`) the rest is
    /// the last record. Returns None for an empty `buf`.
    fn next(&mut self, buf: &[u8], eof: bool) -> Option<usize>;
}

/// Newline-terminated records (JSON Lines).
#[derive(Default)]
pub(super) struct Lines {
    scanned: usize,
}

impl Framing for Lines {
    fn next(&mut self, buf: &[u8], eof: bool) -> Option<usize> {
        if let Some(i) = memchr::memchr(b'\n', &buf[self.scanned.min(buf.len())..]) {
            let end = self.scanned + i + 1;
            self.scanned = 0;
            return Some(end);
        }
        if eof && !buf.is_empty() {
            self.scanned = 0;
            return Some(buf.len());
        }
        self.scanned = buf.len();
        None
    }
}

/// CSV records, which may span lines inside quotes: csv-core's state machine, the one
/// arrow-csv runs, with the same delimiter, quote and escape.
pub(super) struct CsvRecords {
    reader: csv_core::Reader,
    scanned: usize,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl CsvRecords {
    pub(super) fn new(delimiter: u8, quote: u8, escape: Option<u8>) -> Self {
        CsvRecords {
            reader: csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .quote(quote)
                .escape(escape)
                .double_quote(escape.is_none())
                .build(),
            scanned: 0,
            out: vec![0; 4096],
            ends: vec![0; 64],
        }
    }
}

/// Doubles csv-core's field buffer or field-ends buffer when `result` says it is full.
pub(super) fn grow(result: csv_core::ReadRecordResult, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
    match result {
        csv_core::ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
        csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
        _ => {}
    }
}

impl Framing for CsvRecords {
    fn next(&mut self, buf: &[u8], eof: bool) -> Option<usize> {
        use csv_core::ReadRecordResult as R;
        if buf.is_empty() {
            return None;
        }
        loop {
            let input = &buf[self.scanned..];
            // An empty input tells csv-core the data ended.
            if input.is_empty() && !eof {
                return None;
            }
            let (result, nin, _, _) = self
                .reader
                .read_record(input, &mut self.out, &mut self.ends);
            self.scanned += nin;
            match result {
                R::InputEmpty if !eof => return None,
                R::InputEmpty => continue,
                R::OutputFull | R::OutputEndsFull => grow(result, &mut self.out, &mut self.ends),
                R::Record => {
                    let end = self.scanned;
                    self.scanned = 0;
                    return Some(end);
                }
                R::End => {
                    self.reader.reset();
                    let end = std::mem::take(&mut self.scanned);
                    return (end > 0).then_some(end);
                }
            }
        }
    }
}

/// Where the records of an object stand.
pub(super) struct Position {
    /// 1-based line of the next record.
    pub line: u64,
    /// Byte offset of the next record in the decompressed object.
    pub offset: u64,
}

/// How one format decodes records: a fresh arrow decoder of at least `cx.batch_rows`
/// rows, the message a user reads for a record's error, the stage name rejections
/// carry (the format's name), and a check of each record's syntax that runs before the
/// decoder sees it (arrow-json's tape decoder accepts what is not JSON, see
/// [`super::json_syntax::check_line`]).
pub(super) struct Records<'a, D> {
    pub make: &'a dyn Fn() -> std::result::Result<D, ArrowError>,
    pub describe: &'a dyn Fn(&[u8], &ArrowError) -> String,
    pub stage: &'a str,
    pub check: Option<&'a SyntaxCheck>,
}

/// A record's syntax check: `Err` with the message a user reads.
pub(super) type SyntaxCheck = dyn Fn(&[u8]) -> std::result::Result<(), String>;

/// Decodes `reader` record batch by record batch, handing on what decodes and a
/// [`Rejected`] for each record that does not.
pub(super) fn decode<D: BatchDecoder>(
    reader: &mut dyn BufRead,
    framing: &mut dyn Framing,
    records_of: Records<'_, D>,
    mut at: Position,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let Records {
        make,
        describe,
        stage,
        check,
    } = records_of;
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    // A read that failed (a cut or corrupt compressed stream): the whole records before
    // it are still decoded and handed on, then the error is returned.
    let mut failed: Option<Error> = None;
    loop {
        // Up to `batch_rows` whole records.
        let mut records: Vec<Range<usize>> = Vec::new();
        let mut pos = 0;
        while records.len() < cx.batch_rows && failed.is_none() {
            match framing.next(&buf[pos..], eof) {
                Some(n) => {
                    records.push(pos..pos + n);
                    pos += n;
                }
                None if eof => break,
                None if (buf.len() - pos) as u64 > cx.max_record_bytes => {
                    let line = at.line + newlines(&buf[..pos]);
                    failed = Some(super::jsonl::too_long(cx, line));
                }
                None => match reader.fill_buf() {
                    Ok([]) => eof = true,
                    Ok(more) => {
                        let n = more.len();
                        buf.extend_from_slice(more);
                        reader.consume(n);
                    }
                    Err(e) => {
                        let line = at.line + newlines(&buf[..pos]);
                        failed = Some(Error::read(&cx.object, Some(line), e));
                    }
                },
            }
        }
        if records.is_empty() {
            return failed.map_or(Ok(()), Err);
        }
        let mut keep = true;
        let mut good: Vec<RecordBatch> = Vec::new();
        let mut bad: Vec<(usize, String)> = Vec::new();
        // Records that fail the syntax check never reach the decoder; the runs of
        // records between them are decoded as before.
        let mut run_start = 0;
        let mut runs: Vec<(usize, &[Range<usize>])> = Vec::new();
        if let Some(check) = check {
            for (i, r) in records.iter().enumerate() {
                if let Err(why) = check(&buf[r.clone()]) {
                    runs.push((run_start, &records[run_start..i]));
                    bad.push((i, why));
                    run_start = i + 1;
                }
            }
        }
        runs.push((run_start, &records[run_start..]));
        for (first, run) in runs {
            if !run.is_empty() {
                split(&buf, first, run, make, &mut good, &mut bad, describe)?;
            }
        }
        bad.sort_by_key(|(i, _)| *i);
        // Rejections first, in record order, then the batch: a rejection names a place,
        // the batch carries no places, so the order between them is free.
        for (i, why) in bad {
            // A record may begin with the `\n` of a `\r\n` that ended the one before.
            let r = &records[i];
            let skip = buf[r.clone()]
                .iter()
                .take_while(|&&c| c == b'\n' || c == b'\r')
                .count();
            let start = r.start + skip.min(r.len().saturating_sub(1));
            let raw = &buf[start..r.end];
            let line = at.line + newlines(&buf[..start]);
            let rejected = Rejected::record(
                &cx.object,
                stage,
                Some(line),
                Some(at.offset + start as u64),
                why,
                raw,
            );
            keep &= emit(Decoded::Rejected(rejected))?;
        }
        if !good.is_empty() && keep {
            let batch = if good.len() == 1 {
                good.pop()
                    .unwrap_or_else(|| RecordBatch::new_empty(cx.schema.clone()))
            } else {
                arrow::compute::concat_batches(&good[0].schema(), &good)
                    .map_err(|e| Error::Internal(format!("joining salvaged rows: {e}")))?
            };
            keep &= emit(Decoded::Batch(batch))?;
        }
        if !keep {
            return Ok(());
        }
        at.line += newlines(&buf[..pos]);
        at.offset += pos as u64;
        buf.drain(..pos);
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Decodes `records` (the batch's records from index `first` on) as one batch; if that
/// fails, each half, down to single records, which are described into `bad`.
fn split<D: BatchDecoder>(
    buf: &[u8],
    first: usize,
    records: &[Range<usize>],
    make: &dyn Fn() -> std::result::Result<D, ArrowError>,
    good: &mut Vec<RecordBatch>,
    bad: &mut Vec<(usize, String)>,
    describe: &dyn Fn(&[u8], &ArrowError) -> String,
) -> Result<()> {
    // (first record index, records) still to decode, as a stack so order is kept.
    let mut todo: Vec<(usize, &[Range<usize>])> = vec![(first, records)];
    while let Some((first, part)) = todo.pop() {
        let bytes = &buf[part[0].start..part[part.len() - 1].end];
        let mut decoder = make().map_err(|e| Error::Internal(e.to_string()))?;
        match decode_all(&mut decoder, bytes) {
            Ok(Some(batch)) if batch.num_rows() > 0 => good.push(batch),
            Ok(_) => {}
            Err(e) if part.len() == 1 => {
                bad.push((first, describe(buf[part[0].clone()].trim_ascii(), &e)));
            }
            Err(_) => {
                let mid = part.len() / 2;
                todo.push((first + mid, &part[mid..]));
                todo.push((first, &part[..mid]));
            }
        }
    }
    Ok(())
}

fn decode_all<D: BatchDecoder>(
    d: &mut D,
    bytes: &[u8],
) -> std::result::Result<Option<RecordBatch>, ArrowError> {
    let mut pos = 0;
    while pos < bytes.len() {
        let n = d.decode(&bytes[pos..])?;
        if n == 0 {
            return Err(ArrowError::InvalidArgumentError(
                "more records than the batch holds".into(),
            ));
        }
        pos += n;
    }
    // The end of input completes a last record without a terminator.
    d.decode(&[])?;
    d.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &mut dyn Framing, data: &[u8]) -> Vec<String> {
        // Fed a byte at a time, as a slow stream would.
        let mut out = Vec::new();
        let mut start = 0;
        let mut end = 0;
        loop {
            let eof = end == data.len();
            match f.next(&data[start..end], eof) {
                Some(n) => {
                    out.push(String::from_utf8_lossy(&data[start..start + n]).into_owned());
                    start += n;
                }
                None if eof => return out,
                None => end += 1,
            }
        }
    }

    #[test]
    fn lines_frame_with_and_without_a_last_newline() {
        assert_eq!(
            frames(&mut Lines::default(), b"a\n\nbc\nd"),
            ["a\n", "\n", "bc\n", "d"]
        );
        assert_eq!(frames(&mut Lines::default(), b"a\n"), ["a\n"]);
    }

    #[test]
    fn csv_records_span_quoted_newlines() {
        let data = b"1,\"x\ny\"\n2,\"a \"\"q\"\" b\"\r\n3,z";
        assert_eq!(
            frames(&mut CsvRecords::new(b',', b'"', None), data),
            // The `\n` of a `\r\n` starts the next record, which csv-core skips.
            ["1,\"x\ny\"\n", "2,\"a \"\"q\"\" b\"\r", "\n3,z"]
        );
    }
}
