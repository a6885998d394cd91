//! Every cut of one gzip member flushed into independent blocks, streams whose flush
//! points are not independent, and faults.

use std::io::{BufReader, Read, Write};

use flate2::{Compress, Compression, Crc, FlushCompress};

use super::*;
use crate::formats::reader::LineRange;

/// `text` as one gzip member, deflated in blocks of `block` bytes of text each, every
/// block ended with `flush` (zlib's full flush is what `pigz --independent` does).
fn flushed(text: &[u8], block: usize, flush: FlushCompress) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    let mut c = Compress::new(Compression::new(6), false);
    let mut buf = vec![0; block * 2 + 1024];
    let mut chunks = text.chunks(block).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let mode = if last { FlushCompress::Finish } else { flush };
        let before = c.total_out();
        c.compress(chunk, &mut buf, mode).expect("deflate");
        out.extend_from_slice(&buf[..(c.total_out() - before) as usize]);
    }
    let mut crc = Crc::new();
    crc.update(text);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out
}

/// Lines of varied words (so blocks compress, and refer back within a block).
fn lines(n: usize) -> Vec<u8> {
    let words = [
        "kiln", "reads", "every", "line", "once", "across", "blocks", "of", "gzip",
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let w: Vec<&str> = (0..(i * 7) % 40)
            .map(|k| words[(i + k * k) % words.len()])
            .collect();
        writeln!(out, "{{\"i\":{i},\"s\":\"{}\"}}", w.join(" ")).expect("write");
    }
    out
}

/// The lines a slice of `gz` owns; Err for a read fault.
fn read_slice(gz: &[u8], range: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    let raw = Box::new(BufReader::with_capacity(4099, &gz[range.start as usize..]));
    let first = range.start == 0;
    let s = slice(raw, range)?;
    let end = s.end();
    let mut out = Vec::new();
    LineRange::after_members(s, first, end).read_to_end(&mut out)?;
    Ok(out)
}

fn cuts_give_every_line(gz: &[u8], text: &[u8], cuts: impl Iterator<Item = u64>, what: &str) {
    let n = gz.len() as u64;
    for cut in cuts {
        let mut all = read_slice(gz, 0..cut).expect("first slice");
        all.extend(read_slice(gz, cut..n).expect("second slice"));
        assert!(all == text, "{what}: cut at {cut}");
    }
}

#[test]
fn every_cut_of_independent_blocks_gives_every_line_once() {
    // Small: every flush point is believed by decoding to the stream's end.
    let text = lines(300);
    let gz = flushed(&text, 1500, FlushCompress::Full);
    cuts_give_every_line(&gz, &text, 0..=gz.len() as u64, "small");

    // Large: flush points believed after 64 KiB; cuts a prime apart, and every byte
    // around three flush points (a cut inside the marker, just before and after it).
    let text = lines(60_000);
    let gz = flushed(&text, 100 << 10, FlushCompress::Full);
    assert!(independent(&gz[..gz.len().min(1 << 20)]));
    let n = gz.len() as u64;
    cuts_give_every_line(&gz, &text, (1..n).step_by(40_009), "large");
    let flushes: Vec<u64> = memchr::memmem::find_iter(&gz, &MARKER)
        .map(|m| m as u64 + 4)
        .take(3)
        .collect();
    assert!(flushes.len() == 3, "{flushes:?}");
    for f in flushes {
        cuts_give_every_line(&gz, &text, f - 6..f + 3, "around a flush point");
    }
    // Three slices.
    let mut all = Vec::new();
    for r in [0..n / 3, n / 3..n / 2, n / 2..n] {
        all.extend(read_slice(&gz, r).expect("slice"));
    }
    assert!(all == text);
}

#[test]
fn flush_points_that_refer_back_are_not_cut_points() {
    let text = lines(60_000);
    // A sync flush keeps the window: the blocks after it refer to the text before.
    let sync = flushed(&text, 100 << 10, FlushCompress::Sync);
    assert!(memchr::memmem::find(&sync, &MARKER).is_some());
    assert!(!independent(&sync));
    let plain = flushed(&text, text.len(), FlushCompress::None);
    assert!(!independent(&plain));
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&text).expect("write");
    assert!(!independent(&e.finish().expect("gzip")));
    // And a reader told to cut one anyway finds no start in it: the first slice reads
    // it all (the plan never asks for this).
    let n = sync.len() as u64;
    let mut all = read_slice(&sync, 0..n / 2).expect("first");
    all.extend(read_slice(&sync, n / 2..n).expect("second"));
    assert!(all == text);
}

#[test]
fn a_member_cut_short_is_a_fault_of_exactly_one_slice() {
    let text = lines(60_000);
    let gz = flushed(&text, 100 << 10, FlushCompress::Full);
    let cut = &gz[..gz.len() - 5000];
    let n = cut.len() as u64;
    let slices = [0..n / 2, n / 2..n];
    let faults = slices
        .iter()
        .filter(|r| read_slice(cut, (*r).clone()).is_err())
        .count();
    assert_eq!(faults, 1);
    // A second member after a member of blocks is refused, not read as garbage.
    let mut two = gz.clone();
    two.extend_from_slice(&gz);
    let n = two.len() as u64;
    let e = read_slice(&two, n / 4..n).expect_err("two members");
    assert!(e.to_string().contains("another gzip member"), "{e}");
}

#[test]
fn gzip_headers_with_every_optional_field_are_read() {
    // FEXTRA, FNAME, FCOMMENT, FHCRC.
    let mut h = vec![0x1f, 0x8b, 0x08, 0x1e, 0, 0, 0, 0, 0, 3];
    h.extend_from_slice(&[4, 0, b'A', b'B', 2, 0]);
    h.extend_from_slice(b"name.jsonl\0a comment\0");
    h.extend_from_slice(&[0xaa, 0xbb]);
    assert_eq!(header_len(&h).expect("gzip"), Some(h.len()));
    assert_eq!(header_len(&h[..h.len() - 1]).expect("gzip"), None);
    assert!(header_len(b"PK\x03\x04 not gzip").is_err());
}
