//! Byte readers that bridge the async store and the synchronous decoders.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

pub use crate::error::BadCut;

/// One object's bytes on their way to a decoder: a channel of chunks, and the
/// decoder's [`Demand`] for more.
pub struct Chunks {
    pub rx: mpsc::Receiver<Result<Bytes, String>>,
    pub demand: Arc<Demand>,
}

/// Whether the decoder is waiting on an empty channel. A reader that has sent what the
/// task owns (a slice's bytes and a short tail) fetches more only on demand, so a
/// slice whose last record ends early does not read ahead into the next slice's bytes.
#[derive(Debug, Default)]
pub struct Demand {
    waiting: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Demand {
    /// Waits until the decoder has taken every chunk sent on `tx` and waits for the
    /// next. Returns `false` when it is gone instead (it has what it needs).
    pub async fn wanted<T>(&self, tx: &mpsc::Sender<T>) -> bool {
        loop {
            if tx.is_closed() {
                return false;
            }
            if self.waiting.load(Ordering::Acquire) && tx.capacity() == tx.max_capacity() {
                return true;
            }
            // A wakeup left from earlier only makes the loop look again.
            tokio::select! {
                () = self.notify.notified() => {}
                () = tx.closed() => return false,
            }
        }
    }
}

/// Reads one object's bytes from a channel fed by an async reader task. Time spent
/// waiting for the next chunk is added to `waited`, so the report can tell a slow
/// store from a slow step.
pub struct ChannelReader<'a> {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    demand: Arc<Demand>,
    current: Bytes,
    waited: &'a mut Duration,
}

impl<'a> ChannelReader<'a> {
    pub fn new(chunks: Chunks, waited: &'a mut Duration) -> Self {
        ChannelReader {
            rx: chunks.rx,
            demand: chunks.demand,
            current: Bytes::new(),
            waited,
        }
    }
}

/// The chunks as they arrive are the buffer: a decompressor reading through `BufRead`
/// takes its input straight from them, with no copy into a buffer of its own.
impl BufRead for ChannelReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            let start = Instant::now();
            let next = match self.rx.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.demand.waiting.store(true, Ordering::Release);
                    self.demand.notify.notify_one();
                    let next = self.rx.blocking_recv();
                    self.demand.waiting.store(false, Ordering::Release);
                    next
                }
            };
            *self.waited += start.elapsed();
            match next {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.current.split_to(n.min(self.current.len()));
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Reads an object front to back with blocking range requests, fetching only as far as
/// the caller reads. For schema inference, which needs the first rows only. Must not
/// run on a runtime worker thread (it blocks on `handle`).
pub struct BlockingObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    handle: tokio::runtime::Handle,
    offset: u64,
    chunk: u64,
    current: Bytes,
}

impl BlockingObjectReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
        handle: tokio::runtime::Handle,
    ) -> Self {
        BlockingObjectReader {
            store,
            path,
            size,
            handle,
            offset: 0,
            chunk: 1 << 20,
            current: Bytes::new(),
        }
    }
}

impl BlockingObjectReader {
    /// Bytes fetched per request (1 MiB by default).
    #[must_use]
    pub fn with_chunk(mut self, chunk: u64) -> Self {
        self.chunk = chunk.max(1);
        self
    }
}

impl Read for BlockingObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let end = (self.offset + self.chunk).min(self.size);
            let store = self.store.clone();
            let path = self.path.clone();
            let range = self.offset..end;
            self.current = self
                .handle
                .block_on(async move { store.get_range(&path, range).await })
                .map_err(std::io::Error::other)?;
            self.offset = end;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Counts the bytes read through it (to size batches from the rows sampled for
/// schema inference).
pub struct Counting<R> {
    inner: R,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl<R> Counting<R> {
    pub fn new(inner: R) -> Self {
        Counting {
            inner,
            count: Arc::default(),
        }
    }

    /// The shared count, readable after the reader is gone.
    pub fn counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.count.clone()
    }
}

impl<R: std::io::BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count
            .fetch_add(amount as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.consume(amount);
    }
}

/// The lines of an object that start inside a byte range, for a task that is a slice
/// of one large newline-delimited object (or, checked, its CSV records).
///
/// The input starts at `range.start - 1` (or at 0): when the range does not start the
/// object, everything through the first newline belongs to the previous slice and is
/// skipped (if the byte before `range.start` is a newline, that is the newline skipped,
/// and the line at `range.start` is this slice's). Then the bytes are passed on through
/// the cut: the first newline at or past `range.end - 1`, which ends the line that
/// straddles `range.end`. Every line thus belongs to exactly one slice.
///
/// For CSV ([`LineRange::csv`]) a slice other than the first cannot know whether the
/// newline it starts after lies inside a quoted field: the slice before it can. So every
/// slice runs csv-core (the parser arrow-csv uses, with the run's dialect) over the bytes
/// it passes on, and at its cut checks that a record ended there. If it did not, the next
/// slice started mid-record: that is a [`BadCut`] error naming the byte, never rows made
/// of half records. The first slice starts at a record, so each slice checking its own
/// end checks every cut.
pub struct LineRange<R> {
    inner: R,
    /// Absolute offset of the next byte of `inner`.
    pos: u64,
    end: u64,
    skipping: bool,
    done: bool,
    records: Option<RecordCheck>,
    /// Where the slice ends, known only once decoding reaches it (a slice of a gzip
    /// object's members: [`super::members::MemberSlice::end`]); `u64::MAX` until then.
    late_end: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// csv-core run over what a CSV slice passes on.
struct RecordCheck {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Only line terminators since the last record ended: csv-core is between records.
    between: bool,
    /// The object's size: a cut at its very end has no next slice to check for.
    size: u64,
}

impl RecordCheck {
    /// Runs `bytes` through csv-core, keeping [`Self::between`].
    fn track(&mut self, mut bytes: &[u8]) {
        use csv_core::ReadRecordResult as R;
        while !bytes.is_empty() {
            let (result, nin, _, _) = self
                .reader
                .read_record(bytes, &mut self.out, &mut self.ends);
            if result == R::Record {
                self.between = true;
            } else {
                self.between &= bytes[..nin].iter().all(|b| matches!(b, b'\r' | b'\n'));
                super::salvage::grow(result, &mut self.out, &mut self.ends);
            }
            bytes = &bytes[nin..];
        }
    }
}

impl<R: std::io::BufRead> LineRange<R> {
    /// `inner` yields the object's bytes from `read_from(range)` on.
    pub fn new(inner: R, range: std::ops::Range<u64>) -> Self {
        LineRange {
            inner,
            pos: Self::read_from(&range),
            end: range.end,
            skipping: range.start > 0,
            done: false,
            records: None,
            late_end: None,
        }
    }

    /// The lines of a slice of a multi-member gzip object: `inner` yields the slice's
    /// bytes from its first member on (the object's first byte when `first`), and `end`
    /// says where its last member ends once decoding gets there. As for the frames of a
    /// seekable zstd object, the slice owns the lines that start after its first byte
    /// (from it, when `first`) and at or before its end.
    pub fn after_members(
        inner: R,
        first: bool,
        end: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        LineRange {
            late_end: Some(end),
            ..Self::new(inner, u64::from(!first)..u64::MAX)
        }
    }

    /// [`Self::after_members`] over CSV, checked with `reader`.
    pub fn csv_after_members(
        inner: R,
        first: bool,
        end: std::sync::Arc<std::sync::atomic::AtomicU64>,
        reader: csv_core::Reader,
    ) -> Self {
        LineRange {
            late_end: Some(end),
            ..Self::csv(inner, u64::from(!first)..u64::MAX, u64::MAX, reader)
        }
    }

    /// The same cut over CSV, checked with `reader` (the run's dialect); `size` is the
    /// object's.
    pub fn csv(inner: R, range: std::ops::Range<u64>, size: u64, reader: csv_core::Reader) -> Self {
        LineRange {
            records: Some(RecordCheck {
                reader,
                out: vec![0; 1 << 12],
                ends: vec![0; 64],
                between: true,
                size,
            }),
            ..Self::new(inner, range)
        }
    }

    /// Where the bytes for `range` must start.
    pub fn read_from(range: &std::ops::Range<u64>) -> u64 {
        range.start.saturating_sub(1)
    }
}

impl<R: std::io::BufRead> Read for LineRange<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let data = self.inner.fill_buf()?;
            if data.is_empty() {
                self.done = true;
                return Ok(0);
            }
            if let Some(end) = &self.late_end {
                self.end = end
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .saturating_add(1);
            }
            if self.skipping {
                let len = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
                self.skipping = data[len - 1] != b'\n';
                self.inner.consume(len);
                self.pos += len as u64;
                if !self.skipping && self.pos >= self.end {
                    // The first line starts at or past the end: this slice has none
                    // (the slice before reads through this newline).
                    self.done = true;
                    return Ok(0);
                }
                continue;
            }
            let mut n = data.len().min(buf.len());
            // The cut: the first newline at or past `end - 1`.
            let from = self.end.saturating_sub(1).saturating_sub(self.pos);
            let cut = (from < n as u64)
                .then(|| memchr::memchr(b'\n', &data[from as usize..n]))
                .flatten()
                .map(|i| from as usize + i);
            if let Some(i) = cut {
                n = i + 1;
            }
            buf[..n].copy_from_slice(&data[..n]);
            self.inner.consume(n);
            self.pos += n as u64;
            if let Some(check) = &mut self.records {
                check.track(&buf[..n]);
            }
            if cut.is_some() {
                self.done = true;
                if let Some(check) = &self.records
                    && !check.between
                    && self.pos < check.size
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        BadCut(self.pos - 1),
                    ));
                }
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::LineRange;

    /// Slicing at every possible pair of cut points gives every line exactly once.
    #[test]
    fn every_line_lands_in_exactly_one_slice() {
        let text = b"a\nbb\n\nccc\ndddd\ne";
        let n = text.len() as u64;
        for cut1 in 0..=n {
            for cut2 in cut1..=n {
                let mut all = Vec::new();
                for range in [0..cut1, cut1..cut2, cut2..n] {
                    if range.is_empty() {
                        continue;
                    }
                    let from = LineRange::<BufReader<&[u8]>>::read_from(&range) as usize;
                    let inner = BufReader::with_capacity(3, &text[from..]);
                    let mut out = Vec::new();
                    LineRange::new(inner, range)
                        .read_to_end(&mut out)
                        .expect("read");
                    all.extend(out);
                }
                assert_eq!(
                    String::from_utf8_lossy(&all),
                    String::from_utf8_lossy(text),
                    "cuts at {cut1}, {cut2}"
                );
            }
        }
    }

    fn csv_slices(text: &[u8], ranges: &[std::ops::Range<u64>]) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        for range in ranges {
            if range.is_empty() {
                continue;
            }
            let from = LineRange::<BufReader<&[u8]>>::read_from(range) as usize;
            let inner = BufReader::with_capacity(3, &text[from..]);
            let records = csv_core::ReaderBuilder::new().build();
            LineRange::csv(inner, range.clone(), text.len() as u64, records)
                .read_to_end(&mut all)?;
        }
        Ok(all)
    }

    /// CSV slices give every record exactly once, or, when a cut falls on a line break
    /// inside a quoted field, an error: never a record cut in two.
    #[test]
    fn csv_slices_keep_records_whole_or_refuse() {
        let text = b"a,b\r\n\"x\ny\",2\n\n\"\"\"q\",\"\n\n\"\nlast,1";
        let n = text.len() as u64;
        // The newlines inside quotes.
        let inside: Vec<u64> = vec![7, 21, 22];
        assert!(inside.iter().all(|&i| text[i as usize] == b'\n'));
        let (mut whole, mut refused) = (0, 0);
        for cut1 in 0..=n {
            for cut2 in cut1..=n {
                let got = csv_slices(text, &[0..cut1, cut1..cut2, cut2..n]);
                // A slice's cut is the first newline at or past its end - 1.
                let cut_at =
                    |end: u64| (end.saturating_sub(1)..n).find(|&i| text[i as usize] == b'\n');
                let bad = [cut1, cut2]
                    .iter()
                    .filter(|&&c| c > 0 && c < n)
                    .filter_map(|&c| cut_at(c))
                    .any(|i| inside.contains(&i));
                match got {
                    Ok(all) => {
                        assert!(!bad, "cuts at {cut1}, {cut2} should be refused");
                        whole += 1;
                        assert_eq!(
                            String::from_utf8_lossy(&all),
                            String::from_utf8_lossy(text),
                            "cuts at {cut1}, {cut2}"
                        );
                    }
                    Err(e) => {
                        assert!(bad, "cuts at {cut1}, {cut2}: {e}");
                        assert!(e.to_string().contains("quoted field"), "{e}");
                        refused += 1;
                    }
                }
            }
        }
        assert!(
            whole > 100 && refused > 100,
            "{whole} whole, {refused} refused"
        );
    }
}
