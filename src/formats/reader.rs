//! Byte readers that bridge the async store and the synchronous decoders.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

/// Reads one object's bytes from a channel fed by an async reader task. Time spent
/// waiting for the next chunk is added to `waited`, so the report can tell a slow
/// store from a slow step.
pub struct ChannelReader<'a> {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    waited: &'a mut Duration,
}

impl<'a> ChannelReader<'a> {
    pub fn new(rx: mpsc::Receiver<Result<Bytes, String>>, waited: &'a mut Duration) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            waited,
        }
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let start = Instant::now();
            let next = self.rx.blocking_recv();
            *self.waited += start.elapsed();
            match next {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
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
