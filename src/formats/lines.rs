//! Cutting a stream of records into chunks of whole records, without decoding them: the
//! one sequential part of reading JSON Lines, text and CSV, so that the decoding itself
//! runs on any thread ([`super::SourceFormat::frame`]). Lines are cut by [`frame_lines`];
//! records that may span lines (CSV's quoted fields) by [`frame_records`], with the
//! format's [`Framing`].

use std::io::BufRead;

use super::DecodeContext;
use super::salvage::Framing;
use crate::error::{Error, Result};

/// Whole lines cut from an object's (decompressed) stream, not decoded yet.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub bytes: Vec<u8>,
    /// The 1-based line of its first record in the object (or slice).
    pub line: u64,
    /// The byte offset of its first record in the object (or slice).
    pub offset: u64,
    /// How many records of the object (or slice) come before it, a header included.
    pub records_before: u64,
}

impl Chunk {
    /// What the piece decoding it weighs ([`super::Piece::bytes`]): its bytes, then about
    /// as many again as Arrow arrays (text is copied into them as it is).
    pub fn weight(&self) -> u64 {
        2 * self.bytes.len() as u64
    }
}

/// A chunk is cut at `cx.batch_rows` lines, or at the first line end past this many
/// bytes, whichever comes first: a chunk is held as bytes and then as a batch.
pub(super) const CHUNK_BYTES: usize = 8 << 20;

/// Hands `reader`'s lines to `emit` in chunks of at most `cx.batch_rows` whole lines
/// (the last may lack its newline). A line longer than `cx.max_record_bytes` ends it
/// with `too_long(line)`, a failed read with the read error, each after the chunks
/// before it.
pub(super) fn frame_lines(
    reader: &mut dyn BufRead,
    cx: &DecodeContext,
    too_long: &dyn Fn(u64) -> Error,
    emit: &mut dyn FnMut(Chunk) -> Result<bool>,
) -> Result<()> {
    let max_lines = cx.batch_rows.max(1) as u64;
    let mut buf: Vec<u8> = Vec::new();
    // Where `buf` starts, and the whole lines it holds.
    let (mut line, mut offset, mut lines) = (1u64, 0u64, 0u64);
    // Bytes of `buf` after its last newline.
    let mut since_newline = 0usize;
    loop {
        let data = reader
            .fill_buf()
            .map_err(|e| Error::read(&cx.object, Some(line + lines), e))?;
        if data.is_empty() {
            break;
        }
        // Take up to the newline that completes the chunk.
        let mut take = data.len();
        let mut full = false;
        let mut last_newline = None;
        for i in memchr::memchr_iter(b'\n', data) {
            lines += 1;
            last_newline = Some(i);
            if lines == max_lines {
                take = i + 1;
                full = true;
                break;
            }
        }
        since_newline = match last_newline {
            Some(i) => take - i - 1,
            None => since_newline + take,
        };
        buf.extend_from_slice(&data[..take]);
        reader.consume(take);
        if since_newline as u64 > cx.max_record_bytes {
            return Err(too_long(line + lines));
        }
        if full || (buf.len() >= CHUNK_BYTES && lines > 0) {
            // The whole lines go; an unfinished one stays for the next chunk.
            let rest = buf.split_off(buf.len() - since_newline);
            let bytes = std::mem::replace(&mut buf, rest);
            let n = bytes.len() as u64;
            if !emit(Chunk {
                bytes,
                line,
                offset,
                records_before: line - 1,
            })? {
                return Ok(());
            }
            (line, offset, lines) = (line + lines, offset + n, 0);
        }
    }
    if !buf.is_empty() {
        emit(Chunk {
            bytes: buf,
            line,
            offset,
            records_before: line - 1,
        })?;
    }
    Ok(())
}

/// Hands `reader`'s records, as `framing` ends them, to `emit` in chunks of at most
/// `cx.batch_rows` whole records, or at the first record end past [`CHUNK_BYTES`]. With
/// `header`, the first record is passed over (counted, not handed on). A record longer
/// than `cx.max_record_bytes` ends it with `too_long(line)`; a failed read with the read
/// error, after a chunk of the whole records read before it.
pub(super) fn frame_records(
    reader: &mut dyn BufRead,
    framing: &mut dyn Framing,
    header: bool,
    cx: &DecodeContext,
    too_long: &dyn Fn(u64) -> Error,
    emit: &mut dyn FnMut(Chunk) -> Result<bool>,
) -> Result<()> {
    let max_records = cx.batch_rows.max(1) as u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    // Where `buf` starts (`bytes` unused), and the whole records at its front: `records`
    // of them, `pos` bytes.
    let mut next = Chunk {
        bytes: Vec::new(),
        line: 1,
        offset: 0,
        records_before: 0,
    };
    let (mut pos, mut records) = (0usize, 0u64);
    let mut skip_header = header;
    loop {
        match framing.next(&buf[pos..], eof) {
            Some(n) => {
                pos += n;
                records += 1;
                if std::mem::take(&mut skip_header) {
                    cut(&mut buf, pos, records, &mut next);
                    (pos, records) = (0, 0);
                } else if records == max_records || pos >= CHUNK_BYTES {
                    let chunk = cut(&mut buf, pos, records, &mut next);
                    (pos, records) = (0, 0);
                    if !emit(chunk)? {
                        return Ok(());
                    }
                }
            }
            None if eof => break,
            None if (buf.len() - pos) as u64 > cx.max_record_bytes => {
                return Err(too_long(next.line + newlines(&buf[..pos])));
            }
            None => match reader.fill_buf() {
                Ok([]) => eof = true,
                Ok(more) => {
                    let n = more.len();
                    buf.extend_from_slice(more);
                    reader.consume(n);
                }
                Err(e) => {
                    let line = next.line + newlines(&buf[..pos]);
                    if pos > 0 && !skip_header && !emit(cut(&mut buf, pos, records, &mut next))? {
                        return Ok(());
                    }
                    return Err(Error::read(&cx.object, Some(line), e));
                }
            },
        }
    }
    if pos > 0 && !skip_header {
        emit(cut(&mut buf, pos, records, &mut next))?;
    }
    Ok(())
}

/// The first `pos` bytes of `buf` (`records` whole records) as a chunk starting where
/// `next` says, moving `next` past them.
fn cut(buf: &mut Vec<u8>, pos: usize, records: u64, next: &mut Chunk) -> Chunk {
    let rest = buf.split_off(pos);
    let bytes = std::mem::replace(buf, rest);
    let chunk = Chunk {
        line: next.line,
        offset: next.offset,
        records_before: next.records_before,
        bytes,
    };
    next.line += newlines(&chunk.bytes);
    next.offset += chunk.bytes.len() as u64;
    next.records_before += records;
    chunk
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(batch_rows: usize, max_record_bytes: u64) -> DecodeContext {
        DecodeContext {
            schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
            schema_origin: String::new(),
            strict: true,
            object: "x.jsonl".into(),
            batch_rows,
            csv: crate::spec::CsvOptions::default(),
            projection: None,
            on_error: crate::spec::OnError::Fail,
            on_mismatch: crate::spec::OnSchemaMismatch::Fail,
            max_record_bytes,
            slice: None,
        }
    }

    /// The chunks of `data` read through a reader that hands out `step` bytes at a time.
    fn chunks(data: &[u8], batch_rows: usize, step: usize) -> Result<Vec<Chunk>> {
        let mut out = Vec::new();
        let mut reader = std::io::BufReader::with_capacity(step, data);
        frame_lines(
            &mut reader,
            &cx(batch_rows, 10),
            &|line| Error::input("x.jsonl", Some(line), "too long"),
            &mut |c| {
                out.push(c);
                Ok(true)
            },
        )?;
        Ok(out)
    }

    #[test]
    fn chunks_hold_whole_lines_and_know_where_they_start() {
        let data = b"a\nbb\n\nccc\nd";
        for step in [1, 2, 3, 64] {
            let got = chunks(data, 2, step).expect("frames");
            let texts: Vec<&[u8]> = got.iter().map(|c| &c.bytes[..]).collect();
            assert_eq!(texts, [&b"a\nbb\n"[..], b"\nccc\n", b"d"], "step {step}");
            let starts: Vec<(u64, u64)> = got.iter().map(|c| (c.line, c.offset)).collect();
            assert_eq!(starts, [(1, 0), (3, 5), (5, 10)], "step {step}");
        }
    }

    #[test]
    fn records_spanning_lines_are_chunked_whole_past_a_header() {
        let data = b"h\n1,\"a\nb\"\n2,c\n3,\"d\n\ne\"\n4";
        for step in [1, 3, 64] {
            let mut reader = std::io::BufReader::with_capacity(step, &data[..]);
            let mut framing = super::super::salvage::CsvRecords::new(b',', b'"', None);
            let mut got = Vec::new();
            frame_records(
                &mut reader,
                &mut framing,
                true,
                &cx(2, 100),
                &|line| Error::input("x.csv", Some(line), "too long"),
                &mut |c| {
                    got.push(c);
                    Ok(true)
                },
            )
            .expect("frames");
            let texts: Vec<&[u8]> = got.iter().map(|c| &c.bytes[..]).collect();
            assert_eq!(
                texts,
                [&b"1,\"a\nb\"\n2,c\n"[..], b"3,\"d\n\ne\"\n4"],
                "step {step}"
            );
            let starts: Vec<_> = got
                .iter()
                .map(|c| (c.line, c.offset, c.records_before))
                .collect();
            assert_eq!(starts, [(2, 2, 1), (5, 14, 3)], "step {step}");
        }
    }

    #[test]
    fn a_failed_read_hands_on_the_whole_records_before_it() {
        let mut reader = std::io::BufReader::new(FailAfter(&b"1,a\n2,\"b"[..]));
        let mut framing = super::super::salvage::CsvRecords::new(b',', b'"', None);
        let mut got = Vec::new();
        let err = frame_records(
            &mut reader,
            &mut framing,
            false,
            &cx(10, 100),
            &|line| Error::input("x.csv", Some(line), "too long"),
            &mut |c| {
                got.push(c.bytes);
                Ok(true)
            },
        )
        .expect_err("fails");
        assert_eq!(got, [b"1,a\n".to_vec()]);
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    /// Hands out its bytes, then fails.
    struct FailAfter<'a>(&'a [u8]);

    impl std::io::Read for FailAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("cut"));
            }
            std::io::Read::read(&mut self.0, buf)
        }
    }

    #[test]
    fn a_line_too_long_is_named_after_the_chunks_before_it() {
        let err = chunks(b"a\nb\n0123456789012\n", 1, 4).expect_err("too long");
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
