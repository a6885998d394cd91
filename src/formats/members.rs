//! Cutting a gzip object of many members into slices: a `.warc.gz` (one member per
//! record, as WARC writers do), `bgzip`'s blocks, `pigz`/`gzip` output concatenated with
//! `cat`. A gzip stream of one member can only be read from its start; members can be
//! found from any offset, so such an object runs on every thread and worker.
//!
//! The rule is the one the line slices follow ("a slice owns what starts in it"), on
//! member boundaries:
//! - A slice `[a, b)` of the compressed object starts at the first member that begins at
//!   or after `a` and that holds data a slice may start with (any data for JSONL, CSV and
//!   text; `WARC/1.` for WARC). It finds it by resynchronising ([`resync`]): a candidate
//!   is a gzip header (`1f 8b 08`), and it is believed only once it decodes whole (its
//!   CRC-32 and length checked) or to [`PROOF`] bytes without an error, which deflate's
//!   structure makes all but impossible for bytes that merely look like a header.
//! - Its end is the first such member that begins at or after `b`, which the slice, as
//!   it decodes on past `b`, sees begin and believes by the same test ([`MemberSlice`]).
//!   So the slice after starts exactly where this one ends. A member cut short or corrupt
//!   is believed by neither: the slice before reads on into it and reports the fault.
//! - WARC records start at those members: the slice stops there. Lines may straddle
//!   members (bgzip cuts blocks anywhere): the slice publishes the decompressed offset of
//!   its end, and [`super::reader::LineRange`] cuts lines there as it does for the
//!   frames of a seekable zstd object (a line starting at the end belongs to this slice,
//!   the next skips it).
//!
//! At plan time [`probe`] decides whether a gzip object has more than one member (its
//! first member ends within the first [`PROBE`] bytes); only then is it cut.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// Bytes read from an object's start to see whether its first member ends there.
pub const PROBE: u64 = 1 << 20;
/// Decompressed bytes a candidate member (and the members after it) must decode to
/// without an error before a slice believes it is a member.
const PROOF: usize = 64 << 10;
/// Compressed bytes past a candidate checked at most: past that, valid so far is valid.
const PROOF_INPUT: usize = 4 << 20;
/// Decompressed bytes a slice decodes per read.
const CHUNK: usize = 256 << 10;

/// What the first member of a slice must start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starts {
    /// Any data (lines may straddle members: the line cut finds the first whole one).
    Anything,
    /// A WARC record's version line.
    Warc,
}

impl Starts {
    /// Bytes of a member needed to decide.
    fn peek(self) -> usize {
        match self {
            Starts::Anything => 1,
            Starts::Warc => 7,
        }
    }

    fn accepts(self, head: &[u8]) -> bool {
        match self {
            Starts::Anything => !head.is_empty(),
            Starts::Warc => head.starts_with(b"WARC/1."),
        }
    }
}

/// A gzip decoder of every member of its input that says which member the bytes of its
/// last read came from (an offset into its input); a read never returns bytes of two
/// members, and members without data are never named.
trait Members: Read {
    fn member_start(&self) -> u64;
}

#[cfg(feature = "isal")]
impl<R: BufRead> Members for kiln_inflate::GzDecoder<R> {
    fn member_start(&self) -> u64 {
        kiln_inflate::GzDecoder::member_start(self)
    }
}

#[cfg(feature = "isal")]
fn gunzip<'a>(input: impl BufRead + 'a) -> Box<dyn Members + 'a> {
    Box::new(kiln_inflate::GzDecoder::new(input))
}

#[cfg(not(feature = "isal"))]
fn gunzip<'a>(input: impl BufRead + 'a) -> Box<dyn Members + 'a> {
    Box::new(flate::FlateMembers::new(input))
}

#[cfg(not(feature = "isal"))]
mod flate;

pub mod blocks;

/// How a gzip object can be cut ([`probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipCut {
    /// At its members.
    Members,
    /// Inside its one member, at its full-flush points ([`blocks`]).
    Blocks,
}

/// How the gzip object `path` of `size` bytes can be cut, from its first [`PROBE`]
/// bytes (one range request): at its members when a second one starts there; inside
/// its first member when that is flushed into independent blocks and one is
/// believed there (`pigz --independent`); else not at all.
///
/// # Errors
/// A failed range request.
pub async fn probe(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> object_store::Result<Option<GzipCut>> {
    let head = store.get_range(path, 0..size.min(PROBE)).await?;
    Ok(if second_member(&head) {
        Some(GzipCut::Members)
    } else if blocks::independent(&head) {
        Some(GzipCut::Blocks)
    } else {
        None
    })
}

/// Whether `head` (an object's first bytes) decodes into a second member with data.
fn second_member(head: &[u8]) -> bool {
    let mut d = gunzip(head);
    let mut out = vec![0; CHUNK];
    loop {
        match d.read(&mut out) {
            Ok(0) | Err(_) => return false,
            Ok(_) if d.member_start() > 0 => return true,
            Ok(_) => {}
        }
    }
}

/// The decompressed bytes a slice `range` of a multi-member gzip object owns (see the
/// module's comment): `raw` yields the object's bytes from `range.start` on, past
/// `range.end` as far as the decoder asks. For [`Starts::Warc`] the bytes stop at the
/// slice's end; otherwise they go on, and [`MemberSlice::end`] says (once known) where
/// the slice ends, in offsets from its first byte.
///
/// # Errors
/// Reading `raw` fails.
pub fn slice<'a>(
    mut raw: Box<dyn BufRead + 'a>,
    range: std::ops::Range<u64>,
    starts: Starts,
) -> io::Result<MemberSlice<'a>> {
    let span = range.end - range.start;
    let (window, at) = if range.start == 0 {
        (Vec::new(), Some(0))
    } else {
        match resync(&mut *raw, span, starts)? {
            Some((window, at)) => (window, Some(at)),
            None => (Vec::new(), None),
        }
    };
    let input: Box<dyn BufRead + 'a> = Box::new(io::Cursor::new(window).chain(raw));
    Ok(MemberSlice {
        dec: gunzip(input),
        starts,
        past: at.map_or(0, |at| span - at),
        stop_at_end: starts == Starts::Warc,
        buf: vec![0; CHUNK],
        pos: 0,
        filled: 0,
        base: 0,
        member: None,
        member_at: 0,
        phase: Phase::Inside,
        end: None,
        published: Arc::new(AtomicU64::new(u64::MAX)),
        eof: at.is_none(),
        fault: None,
    })
}

/// How far a candidate got.
enum Check {
    Yes,
    No,
    /// It is valid as far as the bytes at hand go: read more.
    More,
}

/// The first member at or after the start of `raw` and before `span` that holds data
/// `starts` accepts: the bytes from it on that were read to find it, and its offset.
/// `None` when no member starts in the span.
fn resync(raw: &mut dyn BufRead, span: u64, starts: Starts) -> io::Result<Option<(Vec<u8>, u64)>> {
    let mut window: Vec<u8> = Vec::new();
    // Bytes of `raw` before `window[0]`, and where in `window` to look next.
    let (mut dropped, mut at) = (0u64, 0usize);
    let mut complete = false;
    // Reads at least as much again as the window holds (64 KiB at first), so that a
    // candidate is checked over a few windows, not once per read of `raw`.
    let more = |raw: &mut dyn BufRead, window: &mut Vec<u8>| -> io::Result<bool> {
        let want = window.len().max(64 << 10);
        let mut got = 0;
        while got < want {
            let data = raw.fill_buf()?;
            let n = data.len();
            if n == 0 {
                return Ok(got > 0);
            }
            window.extend_from_slice(data);
            raw.consume(n);
            got += n;
        }
        Ok(true)
    };
    loop {
        let Some(p) = memchr::memmem::find(&window[at..], &[0x1f, 0x8b, 0x08]).map(|i| at + i)
        else {
            if complete || dropped + window.len() as u64 >= span + 2 {
                return Ok(None);
            }
            // Keep two bytes: a header may straddle the read.
            let keep = window.len().saturating_sub(2);
            window.drain(..keep);
            dropped += keep as u64;
            at = 0;
            complete = !more(raw, &mut window)?;
            continue;
        };
        if dropped + p as u64 >= span {
            return Ok(None);
        }
        match check(&window[p..], complete, starts) {
            Check::Yes => {
                window.drain(..p);
                return Ok(Some((window, dropped + p as u64)));
            }
            Check::No => at = p + 1,
            // Valid over this many compressed bytes without PROOF bytes of output: no
            // deflate stream looks like that by chance.
            Check::More if window.len() - p >= PROOF_INPUT => {
                window.drain(..p);
                return Ok(Some((window, dropped + p as u64)));
            }
            Check::More => complete = !more(raw, &mut window)?,
        }
    }
}

/// Whether `data` starts with a member that may start a slice: its data begins with
/// what `starts` accepts, and it is believed to be a member (not bytes that look like a
/// header) once it has decoded whole (its CRC-32 and length checked), or to [`PROOF`]
/// bytes without an error. A fault inside it rejects it; a fault after it does not (it is
/// the fault of the slice that owns the later member). `complete`: `data` runs to the
/// object's end. [`MemberSlice`] decides its end by the same test on the same bytes.
fn check(data: &[u8], complete: bool, starts: Starts) -> Check {
    let mut d = gunzip(data);
    let mut out = vec![0; 16 << 10];
    let (mut head, mut total) = (Vec::new(), 0);
    let peek = starts.peek();
    let believed = |head: &[u8], total: usize| head.len() >= peek && total > 0;
    loop {
        match d.read(&mut out) {
            Ok(0) if !complete => return Check::More,
            Ok(0) => return yes(believed(&head, total)),
            // A read from the next member: the candidate decoded whole.
            Ok(_) if d.member_start() != 0 => return yes(believed(&head, total)),
            Ok(n) => {
                if head.len() < peek {
                    head.extend_from_slice(&out[..n.min(peek - head.len())]);
                    if head.len() >= peek && !starts.accepts(&head) {
                        return Check::No;
                    }
                }
                total += n;
                if total >= PROOF && head.len() >= peek {
                    return Check::Yes;
                }
            }
            Err(_) if d.member_start() != 0 => return yes(believed(&head, total)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !complete => {
                return Check::More;
            }
            Err(_) => return Check::No,
        }
    }
}

fn yes(b: bool) -> Check {
    if b { Check::Yes } else { Check::No }
}

/// Where the member being decoded stands in deciding whether the slice ends at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// It starts before the slice's range ends, or the end is found: nothing to decide.
    Inside,
    /// Its first bytes are being read ([`Starts::peek`]).
    Head,
    /// Its head is accepted; it is believed once it ends or reaches [`PROOF`] bytes.
    Proof,
    /// It is not the end.
    Rejected,
}

/// The decompressed bytes of a slice (see [`slice`]).
pub struct MemberSlice<'a> {
    dec: Box<dyn Members + 'a>,
    starts: Starts,
    /// Members that begin at or past this offset of the decoder's input lie past the
    /// slice's range.
    past: u64,
    stop_at_end: bool,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    /// Decompressed bytes before `buf[0]`.
    base: u64,
    /// The member the last bytes came from, where its bytes start, and its phase.
    member: Option<u64>,
    member_at: u64,
    phase: Phase,
    /// The slice's end, once found, in decompressed offsets.
    end: Option<u64>,
    published: Arc<AtomicU64>,
    eof: bool,
    /// A read error, returned once the bytes decoded before it are taken.
    fault: Option<io::Error>,
}

impl MemberSlice<'_> {
    /// Where the slice ends, in decompressed offsets from its first byte: `u64::MAX`
    /// until the slice has decoded up to it, and always before a byte at or past it is
    /// returned.
    pub fn end(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }

    fn end_here(&mut self) {
        self.end = Some(self.member_at);
        self.published.store(self.member_at, Ordering::Relaxed);
        self.phase = Phase::Inside;
    }

    /// How many more bytes to decode before the current member is decided (`None`:
    /// decided, or nothing to decide).
    fn undecided(&mut self) -> Option<usize> {
        let len = (self.base + self.filled as u64 - self.member_at) as usize;
        let peek = self.starts.peek();
        if self.phase == Phase::Head && len >= peek {
            let from = (self.member_at - self.base) as usize;
            self.phase = if self.starts.accepts(&self.buf[from..from + peek]) {
                Phase::Proof
            } else {
                Phase::Rejected
            };
        }
        match self.phase {
            Phase::Head => Some(peek - len),
            Phase::Proof if len >= PROOF => {
                self.end_here();
                None
            }
            Phase::Proof => Some((PROOF - len).min(CHUNK)),
            Phase::Inside | Phase::Rejected => None,
        }
    }

    /// The member being decided has ended (whole, or at the object's end).
    fn member_ended(&mut self) {
        match self.phase {
            Phase::Proof => self.end_here(),
            Phase::Head => self.phase = Phase::Rejected,
            _ => {}
        }
    }

    /// Decodes the next bytes. A member that begins past the slice's range is decided
    /// (is the slice's end, or not) before any of its bytes are returned, by the test
    /// [`check`] applies.
    fn refill(&mut self) -> io::Result<()> {
        self.base += self.filled as u64;
        (self.pos, self.filled) = (0, 0);
        loop {
            let want = match self.undecided() {
                Some(k) => k,
                None if self.filled > 0 => return Ok(()),
                None => CHUNK,
            };
            if self.buf.len() < self.filled + want {
                self.buf.resize(self.filled + want, 0);
            }
            let read = self
                .dec
                .read(&mut self.buf[self.filled..self.filled + want]);
            let s = self.dec.member_start();
            if self.member.is_some_and(|m| m != s) {
                self.member_ended();
            }
            match read {
                Ok(0) => {
                    self.member_ended();
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    if self.member != Some(s) {
                        self.member = Some(s);
                        self.member_at = self.base + self.filled as u64;
                        self.phase = if self.end.is_none() && s >= self.past {
                            Phase::Head
                        } else {
                            Phase::Inside
                        };
                    }
                    self.filled += n;
                }
                Err(e) => {
                    // A fault inside the member being decided: it is not the end.
                    if self.phase != Phase::Inside {
                        self.phase = Phase::Rejected;
                    }
                    self.fault = Some(e);
                    self.eof = true;
                    return Ok(());
                }
            }
        }
    }
}

/// `Read` for a `BufRead` that does its work in `fill_buf`: copies from its buffer.
fn read_buffered(r: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let data = r.fill_buf()?;
    let n = data.len().min(out.len());
    out[..n].copy_from_slice(&data[..n]);
    r.consume(n);
    Ok(n)
}

impl Read for MemberSlice<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl BufRead for MemberSlice<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            let end = self.end.filter(|_| self.stop_at_end);
            let limit = end.map_or(self.filled, |e| {
                (e.saturating_sub(self.base) as usize).min(self.filled)
            });
            if self.pos < limit {
                return Ok(&self.buf[self.pos..limit]);
            }
            if end.is_some_and(|e| self.base + self.pos as u64 >= e) {
                return Ok(&[]);
            }
            if self.eof {
                return match self.fault.take() {
                    Some(e) => Err(e),
                    None => Ok(&[]),
                };
            }
            self.refill()?;
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

#[cfg(test)]
mod tests;
