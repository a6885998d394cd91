//! Cutting a stream of newline-terminated records into chunks of whole lines, without
//! decoding them: the one sequential part of reading JSON Lines and text, so that the
//! decoding itself runs on any thread ([`super::SourceFormat::frame`]).

use std::io::BufRead;
use std::sync::Arc;

use super::DecodeContext;
use crate::error::{Error, Result};

/// Whole lines cut from an object's (decompressed) stream, not decoded yet.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub bytes: Vec<u8>,
    /// The 1-based line of its first record in the object (or slice).
    pub line: u64,
    /// The byte offset of its first record in the object (or slice).
    pub offset: u64,
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
        })?;
    }
    Ok(())
}

/// [`super::SourceFormat::frame`] of a format of one record per line: `input`'s lines
/// cut by [`frame_lines`], each chunk a piece that `decode` decodes on any thread.
pub(super) fn frame_chunks(
    input: super::ObjectInput<'_>,
    cx: &Arc<DecodeContext>,
    decode: fn(&Chunk, &DecodeContext, &mut super::Emit<'_>) -> Result<()>,
    emit: &mut super::EmitPiece<'_>,
) -> Result<()> {
    let mut reader = input.stream()?;
    let too_long = |line| super::jsonl::too_long(cx, line);
    frame_lines(&mut reader, cx, &too_long, &mut |chunk| {
        let cx = cx.clone();
        emit(super::Piece::new(chunk.weight(), move || {
            super::collect(|emit| decode(&chunk, &cx, emit))
        }))
    })
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
    fn a_line_too_long_is_named_after_the_chunks_before_it() {
        let err = chunks(b"a\nb\n0123456789012\n", 1, 4).expect_err("too long");
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
