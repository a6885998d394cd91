//! The decoders against flate2: read sizes, headers, members, damage, raw streams.

use super::*;
use std::io::{BufReader, Write};

/// Raw deflate, inflated in pieces, from the start and from a full-flush point; a
/// reference to before the start is an error.
#[test]
fn raw_deflate_from_a_full_flush_point_and_not_from_a_sync_one() {
    let data = sample(300_000);
    let raw = |flush: flate2::FlushCompress| {
        let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut out = vec![0; 1 << 20];
        let mut n = 0;
        for (i, chunk) in data.chunks(100_000).enumerate() {
            let mode = if i == 2 {
                flate2::FlushCompress::Finish
            } else {
                flush
            };
            let before = c.total_out();
            c.compress(chunk, &mut out[n..], mode).expect("deflate");
            n += (c.total_out() - before) as usize;
        }
        out.truncate(n);
        out
    };
    let inflate = |input: &[u8]| -> io::Result<Vec<u8>> {
        let mut r = RawInflater::new();
        let (mut out, mut buf, mut at) = (Vec::new(), vec![0; 7_001], 0);
        loop {
            let end = (at + 4_099).min(input.len());
            let (used, made, done) = r.inflate(&input[at..end], &mut buf)?;
            at += used;
            out.extend_from_slice(&buf[..made]);
            if done {
                return Ok(out);
            }
            if used == 0 && made == 0 && at == input.len() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let full = raw(flate2::FlushCompress::Full);
    assert_eq!(inflate(&full).expect("whole"), data);
    // Followed by a gzip trailer: where the stream ends is known exactly.
    for feed in [3, 4_099, 1 << 20] {
        let mut r = RawInflater::new();
        let with_trailer = [&full[..], b"CRC4SIZE"].concat();
        let (mut at, mut buf) = (0, vec![0; 1 << 20]);
        loop {
            let end = (at + feed).min(with_trailer.len());
            let (used, _, done) = r
                .inflate(&with_trailer[at..end], &mut buf)
                .expect("inflate");
            at += used;
            if done {
                break;
            }
        }
        assert_eq!(r.total_in(), full.len() as u64, "fed {feed} at a time");
    }
    let second = memchr_marker(&full).expect("a flush point");
    assert_eq!(
        inflate(&full[second..]).expect("from the flush"),
        &data[100_000..]
    );
    let sync = raw(flate2::FlushCompress::Sync);
    let second = memchr_marker(&sync).expect("a flush point");
    let e = inflate(&sync[second..]).expect_err("refers back");
    assert!(e.to_string().contains("back-reference"), "{e}");
}

/// The byte after the first `00 00 ff ff`.
fn memchr_marker(d: &[u8]) -> Option<usize> {
    d.windows(4)
        .position(|w| w == [0, 0, 0xff, 0xff])
        .map(|p| p + 4)
}

/// Text that compresses like real data: words, repeats and some noise.
fn sample(n: usize) -> Vec<u8> {
    let words = [
        "alpha",
        "beta",
        "gamma",
        "δέλτα",
        "epsilon",
        "\n",
        "{\"k\":1}",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut s = Vec::with_capacity(n);
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        if x.is_multiple_of(5) {
            s.extend_from_slice(&x.to_le_bytes());
        }
        s.push(b' ');
    }
    s.truncate(n);
    s
}

fn gzip(data: &[u8], name: Option<&str>) -> Vec<u8> {
    let mut b = flate2::GzBuilder::new();
    if let Some(n) = name {
        b = b.filename(n).comment("a comment").extra(vec![7; 300]);
    }
    let mut e = b.write(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

fn decode(gz: &[u8], in_buf: usize, out_buf: usize) -> io::Result<Vec<u8>> {
    let mut d = GzDecoder::new(BufReader::with_capacity(in_buf, gz));
    let mut out = Vec::new();
    let mut buf = vec![0; out_buf];
    loop {
        let n = d.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn decodes_what_flate2_encodes_whatever_the_read_sizes() {
    for size in [0, 1, 100, 65_536, 1_000_003] {
        let data = sample(size);
        let gz = gzip(&data, None);
        for (i, o) in [(1, 1), (1, 1 << 20), (7, 13), (4096, 3), (1 << 16, 1 << 16)] {
            if size > 100_000 && (i < 8 || o < 8) {
                continue; // byte-at-a-time over a megabyte adds nothing but time
            }
            assert_eq!(decode(&gz, i, o).expect("decode"), data, "{size} {i} {o}");
        }
    }
}

#[test]
fn headers_with_name_comment_and_extra_fields() {
    let data = sample(10_000);
    let gz = gzip(&data, Some("part-00000.jsonl"));
    assert_eq!(decode(&gz, 1, 10).expect("decode"), data);
    assert_eq!(decode(&gz, 1 << 16, 1 << 16).expect("decode"), data);
}

#[test]
fn every_header_field_split_at_every_byte() {
    // FTEXT, FHCRC, FEXTRA, FNAME and FCOMMENT all set, built by hand (flate2 never
    // writes FHCRC): the header is parsed in pieces as small as one byte.
    let data = sample(5_000);
    let mut head = vec![0x1f, 0x8b, 8, 0x1f, 1, 2, 3, 4, 0, 3];
    head.extend_from_slice(&5u16.to_le_bytes());
    head.extend_from_slice(b"xtra!");
    head.extend_from_slice(b"name.jsonl\0a comment\0");
    let mut crc = flate2::Crc::new();
    crc.update(&head);
    head.extend_from_slice(&(crc.sum() as u16).to_le_bytes());
    let mut body = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    body.write_all(&data).expect("write");
    let mut gz = [head, body.finish().expect("finish")].concat();
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&(data.len() as u32).to_le_bytes());
    for i in [1, 2, 3, 5, 11, 64, 1 << 16] {
        assert_eq!(decode(&gz, i, 100).expect("decode"), data, "reads of {i}");
    }
    let mut bad = gz.clone();
    bad[9] ^= 1; // the OS byte, covered by the header CRC
    assert!(decode(&bad, 1 << 16, 100).is_err());
}

#[test]
fn concatenated_members_are_all_decoded() {
    let (a, b) = (sample(70_000), sample(3));
    let mut gz = gzip(&a, None);
    gz.extend(gzip(&b, Some("b")));
    gz.extend(gzip(&[], None));
    let want = [a, b].concat();
    for (i, o) in [(1, 64), (5, 1 << 20), (1 << 20, 1 << 20)] {
        assert_eq!(decode(&gz, i, o).expect("decode"), want);
    }
}

#[test]
fn every_read_says_which_member_its_bytes_came_from() {
    let parts = [sample(70_000), Vec::new(), sample(5), sample(300)];
    let members: Vec<Vec<u8>> = parts.iter().map(|p| gzip(p, None)).collect();
    let starts: Vec<u64> = members
        .iter()
        .scan(0, |at, m| {
            let s = *at;
            *at += m.len() as u64;
            Some(s)
        })
        .collect();
    let gz = members.concat();
    for (i, o) in [(1, 7), (3, 1 << 16), (1 << 20, 1 << 20)] {
        let mut d = GzDecoder::new(BufReader::with_capacity(i, &gz[..]));
        let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut buf = vec![0; o];
        loop {
            let n = d.read(&mut buf).expect("decode");
            if n == 0 {
                break;
            }
            match seen.last_mut() {
                Some((s, bytes)) if *s == d.member_start() => bytes.extend(&buf[..n]),
                _ => seen.push((d.member_start(), buf[..n].to_vec())),
            }
        }
        // The empty member holds no bytes, so no read names it.
        let want = vec![
            (starts[0], parts[0].clone()),
            (starts[2], parts[2].clone()),
            (starts[3], parts[3].clone()),
        ];
        assert_eq!(seen, want, "reads of {i} into {o}");
    }
}

#[test]
fn a_stream_cut_anywhere_is_an_error_never_a_short_read() {
    let gz = gzip(&sample(50_000), None);
    for cut in [0, 1, 9, 10, 20, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
        let e = decode(&gz[..cut], 1 << 12, 1 << 12).expect_err("truncated");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        assert!(e.to_string().contains("ends inside a member"), "{e}");
    }
    // A second member cut short too.
    let mut two = gz.clone();
    two.extend_from_slice(&gz[..gz.len() / 3]);
    assert!(decode(&two, 1 << 12, 1 << 12).is_err());
}

#[test]
fn corrupt_data_checksums_and_garbage_are_errors() {
    let data = sample(50_000);
    let gz = gzip(&data, None);
    // The CRC-32 of the trailer.
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 1;
    let e = decode(&bad_crc, 1 << 12, 1 << 12).expect_err("crc");
    assert!(e.to_string().contains("CRC-32"), "{e}");
    // The length of the trailer.
    let mut bad_len = gz.clone();
    bad_len[n - 1] ^= 1;
    assert!(decode(&bad_len, 1 << 12, 1 << 12).is_err());
    // Not gzip at all, and gzip followed by garbage.
    let e = decode(b"{\"not\": \"gzip\"}\n", 64, 64).expect_err("garbage");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"garbage after the member");
    assert!(decode(&trailing, 1 << 12, 1 << 12).is_err());
    // Flipped bits inside the deflate data: an error (or, rarely, a valid stream
    // whose CRC then fails) — never different bytes returned as success.
    for at in [30, 1000, n / 2] {
        let mut flipped = gz.clone();
        flipped[at] ^= 0x55;
        match decode(&flipped, 1 << 12, 1 << 12) {
            Ok(out) => assert_eq!(out, data, "flip at {at}"),
            Err(e) => assert_ne!(e.kind(), io::ErrorKind::Other),
        }
    }
}

/// Thousands of damaged streams (bytes flipped, inserted, removed, cut), decoded by
/// this decoder and by flate2: they accept and reject the same inputs, and where
/// both accept, they return the same bytes.
#[test]
fn damaged_streams_are_judged_as_flate2_judges_them() {
    let mut x: u64 = 12345;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let originals: Vec<Vec<u8>> = [0, 10, 3_000, 40_000]
        .iter()
        .map(|&n| gzip(&sample(n), if n == 10 { Some("n") } else { None }))
        .collect();
    let mut agreed = 0;
    for case in 0..3000 {
        let mut gz = originals[case % originals.len()].clone();
        match next(4) {
            0 => {
                for _ in 0..1 + next(3) {
                    let at = next(gz.len());
                    gz[at] ^= 1 << next(8);
                }
            }
            1 => {
                let at = next(gz.len() + 1);
                gz.insert(at, next(256) as u8);
            }
            2 => {
                let at = next(gz.len());
                gz.remove(at);
            }
            _ => gz.truncate(next(gz.len())),
        }
        let ours = decode(&gz, 1 + next(5000), 1 + next(70_000));
        let mut theirs = Vec::new();
        let theirs = flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut theirs)
            .map(|_| theirs);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "case {case}"),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "case {case}: {:?} ours {:?}, flate2 {:?}",
                &gz[..gz.len().min(16)],
                ours.as_ref().map(|v| v.len()),
                theirs.as_ref().map(|v| v.len())
            ),
        }
        agreed += 1;
    }
    assert_eq!(agreed, 3000);
}

#[test]
fn an_error_is_returned_again_on_the_next_read() {
    let mut d = GzDecoder::new(&b"plain text, not gzip"[..]);
    let mut buf = [0; 64];
    let first = d.read(&mut buf).expect_err("first").to_string();
    let second = d.read(&mut buf).expect_err("second").to_string();
    assert_eq!(first, second);
}
