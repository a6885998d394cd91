//! Cutting one gzip member whose deflate stream is flushed into independent blocks:
//! `pigz --independent` (`-i`), and any writer that calls zlib's `Z_FULL_FLUSH` every so
//! often. Each flush ends with an empty stored block, the bytes `00 00 ff ff` on a byte
//! boundary, and the deflate data after it refers to nothing before it: it can be
//! inflated from there with an empty window.
//!
//! The rule is the members' ([`super`]), on these flush points:
//! - A slice `[a, b)` starts at the first flush point at or after `a` that is believed:
//!   a candidate is the byte after `00 00 ff ff`, believed once a raw inflate from it
//!   with an empty window gives [`PROOF`] bytes (past deflate's 32 KiB window, nothing
//!   can refer to before it any more) or ends the stream followed by exactly the gzip
//!   trailer, without an error. A reference to before the candidate ("distance too far
//!   back") is an error, so a flush point of a stream that is not independent is not
//!   believed, nor are bytes that merely look like one.
//! - Its end is the first believed flush point at or after `b`, found by the same test
//!   on the same bytes, so the slice after starts where this one ends. The slice reads
//!   on past it to finish its last line, as a slice of members does, and publishes the
//!   decompressed offset of its end ([`BlockSlice::end`]).
//!
//! The gzip trailer's CRC-32 covers the whole member, so a slice cannot check it: the
//! deflate stream's own structure is what is checked. An object of several such members
//! is cut at its members instead, or, when its first member fills the probe, refused
//! when a slice reaches the second.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Check, PROOF, PROOF_INPUT, yes};

/// The empty stored block a full flush ends with.
const MARKER: [u8; 4] = [0, 0, 0xff, 0xff];
/// The gzip trailer: CRC-32 and length.
const TRAILER: usize = 8;
/// Compressed bytes read from the object at a time.
const READ: usize = 64 << 10;
/// Decompressed bytes a slice decodes per read.
const CHUNK: usize = 256 << 10;

/// The length of the gzip header `data` starts with: `Ok(None)` when `data` ends
/// inside it.
///
/// # Errors
/// Not a gzip header (RFC 1952: magic, deflate, no reserved flags).
pub(super) fn header_len(data: &[u8]) -> io::Result<Option<usize>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a gzip header");
    if data.len() < 10 {
        return Ok(None);
    }
    if data[..3] != [0x1f, 0x8b, 0x08] || data[3] & 0xe0 != 0 {
        return Err(bad());
    }
    let flags = data[3];
    let mut at = 10;
    if flags & 0x04 != 0 {
        let Some(xlen) = data.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for bit in [0x08, 0x10] {
        // File name, comment: zero-terminated.
        if flags & bit != 0 {
            let Some(nul) = data.get(at..).and_then(|d| memchr::memchr(0, d)) else {
                return Ok(None);
            };
            at += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    Ok((at <= data.len()).then_some(at))
}

/// Whether a flush point at `data[0]` is believed (see the module's comment).
/// `complete`: `data` runs to the object's end.
fn check(data: &[u8], complete: bool) -> Check {
    let mut d = Raw::new();
    let mut out = vec![0; 32 << 10];
    let limit = data.len().min(PROOF_INPUT);
    let mut fed = 0;
    loop {
        match d.inflate(&data[fed..limit], &mut out) {
            Ok((_, _, true)) => {
                let rest = data.len() - d.total_in() as usize;
                return match () {
                    () if rest > TRAILER || d.total_out() == 0 => Check::No,
                    () if complete => yes(rest == TRAILER),
                    () => Check::More,
                };
            }
            Ok(_) if d.total_out() >= PROOF as u64 => return Check::Yes,
            Ok((0, 0, _)) => {
                return match () {
                    // Valid over this many compressed bytes: no chance look-alike is.
                    () if limit == PROOF_INPUT => Check::Yes,
                    () if complete => Check::No,
                    () => Check::More,
                };
            }
            Ok((used, _, _)) => fed += used,
            Err(_) => return Check::No,
        }
    }
}

/// A raw deflate decoder from a flush point, with an empty window: ISA-L (as for every
/// gzip input; crates/inflate) or, built without it, flate2.
struct Raw {
    #[cfg(feature = "isal")]
    d: kiln_inflate::RawInflater,
    #[cfg(not(feature = "isal"))]
    d: flate2::Decompress,
}

impl Raw {
    fn new() -> Self {
        Raw {
            #[cfg(feature = "isal")]
            d: kiln_inflate::RawInflater::new(),
            #[cfg(not(feature = "isal"))]
            d: flate2::Decompress::new(false),
        }
    }

    /// Bytes taken, bytes made, and whether the stream's last block ended.
    #[cfg(feature = "isal")]
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        self.d.inflate(input, out)
    }

    #[cfg(not(feature = "isal"))]
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let (fed, made) = (self.d.total_in(), self.d.total_out());
        let status = self
            .d
            .decompress(input, out, flate2::FlushDecompress::None)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((
            (self.d.total_in() - fed) as usize,
            (self.d.total_out() - made) as usize,
            status == flate2::Status::StreamEnd,
        ))
    }

    fn total_out(&self) -> u64 {
        self.d.total_out()
    }

    /// Compressed bytes of the stream so far (exact once it has ended).
    fn total_in(&self) -> u64 {
        self.d.total_in()
    }
}

/// The first believed flush point in `data` (whose first byte is at offset `base` of
/// the object's bytes read) at an offset of at least `min`, searching markers from
/// `data[from]` on; [`Found::More`] when the marker at `data[m]` needs more bytes.
fn find(data: &[u8], from: usize, base: u64, min: u64, complete: bool) -> Found {
    for m in memchr::memmem::find_iter(&data[from..], &MARKER).map(|m| from + m) {
        let c = m + MARKER.len();
        if base + (c as u64) < min {
            continue;
        }
        match check(&data[c..], complete) {
            Check::Yes => return Found::At(c),
            Check::No => {}
            Check::More => return Found::More(m),
        }
    }
    Found::None
}

enum Found {
    At(usize),
    /// Decided only with more bytes, from this marker on.
    More(usize),
    /// No flush point in the data at hand (the last three bytes may begin a marker).
    None,
}

/// Whether `head` (an object's first bytes) is one gzip member flushed into
/// independent blocks: a believed flush point follows its header.
pub(super) fn independent(head: &[u8]) -> bool {
    let Ok(Some(start)) = header_len(head) else {
        return false;
    };
    matches!(find(head, start, 0, 0, false), Found::At(_))
}

/// The decompressed bytes a slice `range` of such an object owns, from its first flush
/// point on (`raw`: the object's bytes from `range.start`); [`BlockSlice::end`] says,
/// once known, where the slice ends.
///
/// # Errors
/// Reading `raw` fails; the first slice's header is not gzip's.
pub fn slice<'a>(
    raw: Box<dyn BufRead + 'a>,
    range: std::ops::Range<u64>,
) -> io::Result<BlockSlice<'a>> {
    let mut s = BlockSlice {
        raw,
        window: Vec::new(),
        base: 0,
        exhausted: false,
        span: range.end - range.start,
        end: None,
        inflate: Raw::new(),
        origin: 0,
        buf: vec![0; CHUNK],
        pos: 0,
        filled: 0,
        published: Arc::new(AtomicU64::new(u64::MAX)),
        end_published: false,
        done: false,
    };
    if range.start == 0 {
        loop {
            if let Some(n) = header_len(&s.window)? {
                s.window.drain(..n);
                s.base = n as u64;
                break;
            }
            if !s.read_more()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "gzip header cut short",
                ));
            }
        }
        s.origin = s.base;
        return Ok(s);
    }
    // The first believed flush point from the range's start on; the slice owns nothing
    // when there is none before its end.
    loop {
        let skip = match find(&s.window, 0, s.base, 0, s.exhausted) {
            Found::At(c) => {
                s.done = s.base + c as u64 >= s.span;
                s.advance(c);
                break;
            }
            Found::More(m) => m,
            Found::None if s.exhausted => {
                s.done = true;
                break;
            }
            // Keep three bytes: a marker may straddle the read.
            Found::None => s.window.len().saturating_sub(MARKER.len() - 1),
        };
        s.advance(skip);
        if s.base + MARKER.len() as u64 >= s.span {
            s.done = true;
            break;
        }
        s.read_more()?;
    }
    s.origin = s.base;
    Ok(s)
}

/// The decompressed bytes of a slice (see [`slice`]).
pub struct BlockSlice<'a> {
    raw: Box<dyn BufRead + 'a>,
    /// Compressed bytes read and not yet inflated; `window[0]` is at offset `base` from
    /// the slice's range start.
    window: Vec<u8>,
    base: u64,
    exhausted: bool,
    span: u64,
    /// The slice's end (compressed offset), once searched: `Some(None)` when no flush
    /// point follows the range (it runs to the object's end).
    end: Option<Option<u64>>,
    inflate: Raw,
    /// The offset (from the range's start) the inflater started at.
    origin: u64,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    published: Arc<AtomicU64>,
    end_published: bool,
    done: bool,
}

impl BlockSlice<'_> {
    /// Where the slice ends, in decompressed offsets from its first byte: `u64::MAX`
    /// until the slice has decoded up to it.
    pub fn end(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }

    /// Reads about [`READ`] more compressed bytes; false at the object's end.
    fn read_more(&mut self) -> io::Result<bool> {
        let mut got = 0;
        while got < READ {
            let data = self.raw.fill_buf()?;
            if data.is_empty() {
                self.exhausted = true;
                return Ok(got > 0);
            }
            let n = data.len();
            self.window.extend_from_slice(data);
            self.raw.consume(n);
            got += n;
        }
        Ok(true)
    }

    /// Drops the first `n` bytes of the window (before the slice's first byte).
    fn advance(&mut self, n: usize) {
        self.window.drain(..n);
        self.base += n as u64;
    }

    /// How many of the window's bytes may be inflated now: up to the range's end; past
    /// it, up to the slice's end once found, and while it is sought, up to where the next
    /// candidate flush point begins (holding back only the bytes that decide it).
    fn limit(&mut self) -> io::Result<usize> {
        let n = self.window.len();
        Ok(match self.end {
            Some(Some(e)) if self.base < e || !self.end_published => (e - self.base) as usize,
            Some(_) => n,
            None if self.base < self.span => ((self.span - self.base) as usize).min(n),
            None => match find(&self.window, 0, self.base, self.span, self.exhausted) {
                Found::At(c) => {
                    self.end = Some(Some(self.base + c as u64));
                    c
                }
                Found::More(0) => {
                    self.read_more()?;
                    0
                }
                Found::More(m) => m,
                Found::None if self.exhausted => {
                    self.end = Some(None);
                    n
                }
                Found::None => n.saturating_sub(MARKER.len() - 1),
            },
        })
    }

    /// Inflates the next bytes into `buf`.
    fn refill(&mut self) -> io::Result<()> {
        (self.pos, self.filled) = (0, 0);
        while self.filled == 0 && !self.done {
            if self.window.len() < READ && !self.exhausted {
                self.read_more()?;
            }
            let take = self.limit()?;
            let (used, made, ended) = self.inflate.inflate(&self.window[..take], &mut self.buf)?;
            self.filled = made;
            self.advance(used);
            // At the end, once everything before it is out (the output not full).
            let at_end = matches!(self.end, Some(Some(e)) if e == self.base)
                && !self.end_published
                && self.filled < self.buf.len();
            if at_end {
                self.end_published = true;
                self.published
                    .store(self.inflate.total_out(), Ordering::Relaxed);
            }
            if ended {
                self.finish()?;
                self.done = true;
            } else if used == 0 && self.filled == 0 && !at_end {
                // Nothing went in and nothing came out: more bytes, or none are left.
                if self.exhausted && take == self.window.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gzip stream is cut short",
                    ));
                }
                if take > 0 {
                    self.read_more()?;
                }
            }
        }
        Ok(())
    }

    /// After the deflate stream's end: the trailer, and nothing after it.
    fn finish(&mut self) -> io::Result<()> {
        // Where the stream ended (the inflater may have taken bytes past it).
        let end = self.origin + self.inflate.total_in();
        let rest = |s: &Self| (s.base + s.window.len() as u64).saturating_sub(end) as usize;
        while rest(self) <= TRAILER && !self.exhausted {
            self.read_more()?;
        }
        match rest(self) {
            TRAILER => Ok(()),
            n if n < TRAILER => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gzip trailer is cut short",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "another gzip member follows a member of independent blocks; kiln cuts an \
                 object either at its members or inside one; set source.split: false to \
                 read it whole",
            )),
        }
    }
}

impl Read for BlockSlice<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        super::read_buffered(self, out)
    }
}

impl BufRead for BlockSlice<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled && !self.done {
            self.refill()?;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

#[cfg(test)]
mod tests;
