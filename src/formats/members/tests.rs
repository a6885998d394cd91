//! Every cut point of multi-member samples, faults, and look-alike headers.

use std::io::{BufReader, Read, Write};

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

/// `text` in gzip members of about `member` bytes of text each, cut anywhere.
fn members(text: &[u8], member: usize) -> Vec<u8> {
    text.chunks(member).flat_map(gzip).collect()
}

/// Lines of varied lengths, some longer than a member.
fn lines(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let len = (i * 37) % 150;
        writeln!(out, "{{\"i\":{i},\"s\":\"{}\"}}", "x".repeat(len)).expect("write");
    }
    out
}

/// What a slice of `gz` yields: the lines it owns (an empty range is no slice: tasks
/// are never empty).
fn read_slice(gz: &[u8], range: std::ops::Range<u64>, starts: Starts) -> Vec<u8> {
    if range.is_empty() {
        return Vec::new();
    }
    let raw = Box::new(BufReader::with_capacity(7, &gz[range.start as usize..]));
    let first = range.start == 0;
    let s = slice(raw, range, starts).expect("slice");
    let mut out = Vec::new();
    if starts == Starts::Warc {
        BufReader::with_capacity(5, s)
            .read_to_end(&mut out)
            .expect("read");
    } else {
        let end = s.end();
        super::super::reader::LineRange::after_members(s, first, end)
            .read_to_end(&mut out)
            .expect("read");
    }
    out
}

#[test]
fn every_cut_of_a_multi_member_jsonl_gz_gives_every_line_once() {
    let text = lines(120);
    for member in [40, 700] {
        let gz = members(&text, member);
        let n = gz.len() as u64;
        for cut in 0..=n {
            let mut all = read_slice(&gz, 0..cut, Starts::Anything);
            all.extend(read_slice(&gz, cut..n, Starts::Anything));
            assert!(all == text, "members of {member}, cut at {cut}");
        }
        // Three slices, cuts a prime apart.
        for c1 in (1..n).step_by(97) {
            for c2 in (c1..n).step_by(89) {
                let mut all = Vec::new();
                for r in [0..c1, c1..c2, c2..n] {
                    all.extend(read_slice(&gz, r, Starts::Anything));
                }
                assert!(all == text, "members of {member}, cuts at {c1}, {c2}");
            }
        }
    }
}

/// WARC-like records, one member each, and a record split over two members whose
/// second starts with something other than `WARC/1.`.
#[test]
fn every_cut_of_a_warc_gz_gives_every_record_once() {
    let mut gz = Vec::new();
    let mut text = Vec::new();
    for i in 0..40 {
        let body = "b".repeat((i * 53) % 400);
        let record = format!(
            "WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            body.len()
        );
        text.extend_from_slice(record.as_bytes());
        if i % 7 == 3 {
            let (a, b) = record.as_bytes().split_at(record.len() / 2);
            gz.extend(gzip(a));
            gz.extend(gzip(b));
        } else {
            gz.extend(gzip(record.as_bytes()));
        }
    }
    let n = gz.len() as u64;
    for cut in 0..=n {
        let mut all = read_slice(&gz, 0..cut, Starts::Warc);
        all.extend(read_slice(&gz, cut..n, Starts::Warc));
        assert!(all == text, "cut at {cut}");
    }
}

/// An object cut short in its last member: the slice that owns that member meets
/// the fault (never one that just stops short of it), and the slices together give
/// the bytes reading it whole gives before the fault.
#[test]
fn an_object_cut_short_is_a_fault_of_the_slice_that_owns_its_last_member() {
    let text = lines(400);
    let gz = members(&text, 300);
    let cut = &gz[..gz.len() - 10];
    let n = cut.len() as u64;
    let read = |range: std::ops::Range<u64>| {
        let raw = Box::new(BufReader::new(&cut[range.start as usize..]));
        let first = range.start == 0;
        let s = slice(raw, range, Starts::Anything).expect("slice");
        let end = s.end();
        let mut out = Vec::new();
        let r = super::super::reader::LineRange::after_members(s, first, end).read_to_end(&mut out);
        (out, r.is_err())
    };
    let (whole, failed) = read(0..n);
    assert!(failed);
    for at in (1..n).step_by(7) {
        let (mut a, a_failed) = read(0..at);
        let (b, b_failed) = read(at..n);
        assert!(
            a_failed != b_failed,
            "cut at {at}: one slice meets the fault"
        );
        a.extend(b);
        assert!(a == whole, "cut at {at}");
    }
}

#[test]
fn a_header_lookalike_inside_a_member_is_not_a_start() {
    // Stored (incompressible-ish) data that holds gzip's magic bytes.
    let mut text = Vec::new();
    for i in 0..2000u32 {
        text.extend_from_slice(&[0x1f, 0x8b, 0x08, 0, (i % 251) as u8]);
        text.extend_from_slice(&i.to_le_bytes());
        text.push(b'\n');
    }
    let mut stored = Vec::new();
    for chunk in text.chunks(5000) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(chunk).expect("write");
        stored.extend(e.finish().expect("finish"));
    }
    let n = stored.len() as u64;
    for cut in (0..=n).step_by(13) {
        let mut all = read_slice(&stored, 0..cut, Starts::Anything);
        all.extend(read_slice(&stored, cut..n, Starts::Anything));
        assert!(all == text, "cut at {cut}");
    }
}

#[test]
fn one_member_is_not_cut_and_many_are() {
    let text = lines(2000);
    assert!(!second_member(&gzip(&text)));
    assert!(second_member(&members(&text, 10_000)));
    // A second member that holds nothing does not count.
    assert!(!second_member(&[gzip(&text), gzip(b"")].concat()));
}
