//! A shard's bytes on their way to the store: the `Write` the Parquet encoder writes into
//! (fixed chunks over a bounded channel), the upload task that sends them as the parts of
//! a multipart upload, and the staged uploads a task completes when it commits.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::report::Stats;
use crate::storage::Location;

/// Bytes handed to the uploader at a time.
pub(super) const UPLOAD_CHUNK: usize = 4 << 20;

pub(super) enum UploadMsg {
    Data(Bytes),
    Finish,
}

/// `std::io::Write` that forwards bytes to the upload task in large chunks.
pub(super) struct UploadSink {
    pub(super) tx: mpsc::Sender<UploadMsg>,
    pub(super) buf: Vec<u8>,
    pub(super) stats: Arc<Stats>,
}

impl UploadSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(UPLOAD_CHUNK),
        ));
        let start = Instant::now();
        let r = self.tx.blocking_send(UploadMsg::Data(data));
        self.stats.encode.add_blocked(start.elapsed());
        r.map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for UploadSink {
    /// Fills chunks of exactly `UPLOAD_CHUNK` bytes. The writer hands over a whole column
    /// chunk at a time (tens of MB for a text column): appending it to one buffer grew
    /// that buffer by reallocating — copying and faulting in fresh pages — 3% of job A's
    /// CPU.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = UPLOAD_CHUNK.saturating_sub(self.buf.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() >= UPLOAD_CHUNK {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The error of a failed upload, naming the shard by its full URI; a store error stays
/// one, so its exit code can say whether running again may help.
pub(crate) fn upload_error(uri: &str, e: std::io::Error) -> Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store) => Error::store("upload", uri, *store),
            Err(other) => Error::sink(uri, format!("upload failed: {other}")),
        },
        None => Error::sink(uri, "upload failed"),
    }
}

/// Size of the parts of a shard's multipart upload (S3 takes at least 5 MiB but for the
/// last part); a part is the chunks that make it up, not a copy of them.
const PART_BYTES: usize = 8 << 20;

/// Parts uploading at once per shard: two keep a store busy; more only hold memory.
const PARTS_IN_FLIGHT: usize = 2;

/// A shard whose bytes are all in the store but that is not yet an object: the parts of
/// a multipart upload that is completed only when its task commits
/// ([`Staged::publish`]), so that no reader ever sees the output of a task that has not
/// committed (the idea of the S3A "magic" committer). Until then S3 keeps the parts
/// out of every listing, and object_store's local store writes a `NAME#N` staging file
/// that it renames at completion. Dropped unpublished (the task failed, the run
/// stopped), the upload is aborted.
pub(super) struct StagedShard {
    pub(super) upload: Option<Box<dyn MultipartUpload>>,
    pub(super) uri: String,
    pub(super) handle: tokio::runtime::Handle,
}

impl Drop for StagedShard {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            self.handle.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// The staged shards of one task, published together when the task commits.
#[derive(Default)]
pub struct Staged(pub(super) Vec<StagedShard>);

impl Staged {
    /// Completes every shard's upload, making the shards objects. Called right before
    /// the task's commit record is written.
    ///
    /// # Errors
    /// The store's; the shards not yet completed are aborted.
    pub async fn publish(mut self) -> Result<()> {
        for shard in &mut self.0 {
            if let Some(upload) = shard.upload.as_mut() {
                upload
                    .complete()
                    .await
                    .map_err(|e| Error::store("complete the upload of", &shard.uri, e))?;
                shard.upload = None;
            }
        }
        Ok(())
    }
}

/// A shard's upload with every part stored, not completed, and (bytes, crc32c).
pub(super) type Uploaded = (Box<dyn MultipartUpload>, u64, u32);

/// Streams one shard into the store as the parts of a multipart upload; returns the
/// upload, not completed, with (bytes, crc32c) once every part is stored.
pub(super) async fn upload(
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: String,
    mut rx: mpsc::Receiver<UploadMsg>,
    stats: Arc<Stats>,
) -> Result<Uploaded> {
    let mut out = store
        .put_multipart(&path)
        .await
        .map_err(|e| Error::store("upload", &uri, e))?;
    let mut inflight = futures::stream::FuturesUnordered::new();
    let mut part: Vec<Bytes> = Vec::new();
    let mut part_len = 0usize;
    let (mut bytes, mut crc) = (0u64, 0u32);
    let result: std::result::Result<(), object_store::Error> = async {
        loop {
            let wait = Instant::now();
            let msg = rx.recv().await;
            stats.upload.add_waiting(wait.elapsed());
            let work = Instant::now();
            let last = match msg {
                Some(UploadMsg::Data(data)) => {
                    crc = crc32c::crc32c_append(crc, &data);
                    bytes += data.len() as u64;
                    part_len += data.len();
                    part.push(data);
                    false
                }
                Some(UploadMsg::Finish) => true,
                None => {
                    // The task failed or stopped before closing this shard.
                    return Err(object_store::Error::Generic {
                        store: "kiln",
                        source: "the shard was abandoned".into(),
                    });
                }
            };
            if part_len >= PART_BYTES || (last && (part_len > 0 || bytes == 0)) {
                while inflight.len() >= PARTS_IN_FLIGHT {
                    if let Some(r) = futures::StreamExt::next(&mut inflight).await {
                        r?;
                    }
                }
                let payload: PutPayload = std::mem::take(&mut part).into_iter().collect();
                part_len = 0;
                inflight.push(out.put_part(payload));
            }
            if last {
                while let Some(r) = futures::StreamExt::next(&mut inflight).await {
                    r?;
                }
                stats.upload.add_working(work.elapsed());
                return Ok(());
            }
            stats.upload.add_working(work.elapsed());
        }
    }
    .await;
    drop(inflight);
    match result {
        Ok(()) => Ok((out, bytes, crc)),
        Err(e) => {
            let _ = out.abort().await;
            Err(Error::store("upload", &uri, e))
        }
    }
}

/// One file streaming from a task's thread into a multipart upload, counting its bytes:
/// a Megatron `.bin` or `.idx`, a WebDataset tar. [`Streaming::end`] leaves it staged.
pub(super) struct Streaming {
    sink: UploadSink,
    join: tokio::task::JoinHandle<Result<Uploaded>>,
    pub(super) uri: String,
    pub(super) written: u64,
}

impl Streaming {
    /// Starts the upload of `relative` below the sink.
    pub(super) fn start(
        cfg: &super::writer::WriterConfig,
        relative: &str,
        stats: &Arc<Stats>,
    ) -> Streaming {
        let uri = format!("{}{relative}", cfg.display);
        let (tx, rx) = mpsc::channel(2);
        let join = cfg.handle.spawn(upload(
            cfg.store.clone(),
            crate::storage::join(&cfg.root, relative),
            uri.clone(),
            rx,
            stats.clone(),
        ));
        Streaming {
            sink: UploadSink {
                tx,
                buf: Vec::with_capacity(UPLOAD_CHUNK),
                stats: stats.clone(),
            },
            join,
            uri,
            written: 0,
        }
    }

    /// Sends what is buffered and waits for every part to be stored: the upload,
    /// staged (completed when the task commits), its bytes and CRC-32C (8 hex digits).
    pub(super) fn end(
        mut self,
        handle: &tokio::runtime::Handle,
    ) -> Result<(StagedShard, u64, String)> {
        self.sink.flush().map_err(|e| upload_error(&self.uri, e))?;
        let sent = self.sink.tx.blocking_send(UploadMsg::Finish);
        drop(self.sink);
        let (upload, bytes, crc) = handle
            .block_on(self.join)
            .map_err(|e| Error::Internal(format!("the upload of {} panicked: {e}", self.uri)))??;
        let staged = StagedShard {
            upload: Some(upload),
            uri: self.uri.clone(),
            handle: handle.clone(),
        };
        if sent.is_err() {
            return Err(Error::sink(&self.uri, "the upload stopped"));
        }
        Ok((staged, bytes, format!("{crc:08x}")))
    }
}

impl Write for Streaming {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.sink.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }
}

/// Bytes already in memory (an MDS shard, a shuffle part) stored at `relative` as the
/// parts of a multipart upload, not completed: staged like a streamed shard.
pub(super) fn stage_bytes(
    cfg: &super::writer::WriterConfig,
    relative: &str,
    body: Vec<u8>,
) -> Result<StagedShard> {
    stage_chunks(cfg, relative, vec![Bytes::from(body)])
}

/// `chunks` cut into parts of `part` bytes each (the last smaller), in order.
fn into_parts(chunks: Vec<Bytes>, part: usize) -> Vec<Vec<Bytes>> {
    let mut parts: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut size = 0;
    for mut chunk in chunks {
        while !chunk.is_empty() {
            if size >= part {
                parts.push(Vec::new());
                size = 0;
            }
            let take = chunk.len().min(part - size);
            size += take;
            if let Some(last) = parts.last_mut() {
                last.push(chunk.split_to(take));
            }
        }
    }
    parts
}

/// Bytes a staged upload sends in one part at most: S3 takes 5 MiB to 5 GiB a part
/// (the last may be smaller) and 10,000 parts.
const STAGE_PART: usize = 64 << 20;

/// [`stage_bytes`] for bytes held as `chunks` (a shuffle part's streams, never joined
/// into one buffer): consecutive chunks go up together, about [`STAGE_PART`] a part.
pub(super) fn stage_chunks(
    cfg: &super::writer::WriterConfig,
    relative: &str,
    chunks: Vec<Bytes>,
) -> Result<StagedShard> {
    let uri = format!("{}{relative}", cfg.display);
    let store = cfg.store.clone();
    let path = crate::storage::join(&cfg.root, relative);
    let parts = into_parts(chunks, STAGE_PART);
    let upload = cfg.handle.block_on(async {
        let mut up = store
            .put_multipart(&path)
            .await
            .map_err(|e| Error::store("upload", &uri, e))?;
        for part in parts {
            if let Err(e) = up.put_part(part.into_iter().collect()).await {
                let _ = up.abort().await;
                return Err(Error::store("upload", &uri, e));
            }
        }
        Ok(up)
    })?;
    Ok(StagedShard {
        upload: Some(upload),
        uri,
        handle: cfg.handle.clone(),
    })
}

/// Removes what killed attempts at `tasks` left in a local sink. object_store's
/// `LocalFileSystem` writes each file as `NAME#N` and renames it when whole, so a
/// SIGKILL mid-write leaves the staging file: listings through object_store (kiln's own,
/// and the manifest) skip it, but `ls`, pyarrow's directory discovery and Spark see it.
/// `tasks` are the ones this run is about to redo; with `older_than`, a file modified
/// since is left alone (a run that joined this one may be writing it).
/// Returns the files removed.
///
/// Object stores need nothing: an interrupted multipart upload is not an object, so no
/// listing or reader sees it (kiln aborts its own when a write fails; one cut by SIGKILL
/// is reaped by the bucket's `AbortIncompleteMultipartUpload` lifecycle rule).
pub fn clean_local_debris(
    sink: &Location,
    tasks: &BTreeSet<usize>,
    older_than: Option<std::time::SystemTime>,
) -> usize {
    let Some(root) = sink.identity.strip_prefix("file://") else {
        return 0;
    };
    // `part-TTTTT-SSSSS.parquet#N`, `_kiln/tasks/TTTTT.json#N`, `_kiln/errors/TTTTT.jsonl#N`.
    let task_of = |name: &str| -> Option<usize> {
        let (base, n) = name.rsplit_once('#')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = base.strip_prefix("part-").unwrap_or(base);
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    };
    let mut removed = 0;
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Some(t) = entry.file_name().to_str().and_then(task_of)
                && tasks.contains(&t)
                // A file written since `older_than` is a live run's (a helper's).
                && older_than.is_none_or(|cut| {
                    entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m < cut)
                })
                && std::fs::remove_file(&path).is_ok()
            {
                tracing::debug!("removed {} (left by a killed attempt)", path.display());
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_chunks_go_up_in_parts_of_a_size_in_order() {
        let chunks: Vec<Bytes> = [3usize, 10, 1, 0, 6]
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect();
        let parts = into_parts(chunks.clone(), 4);
        let sizes: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().map(Bytes::len).sum())
            .collect();
        assert_eq!(sizes, [4, 4, 4, 4, 4]);
        let joined: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        let want: Vec<u8> = chunks.into_iter().flatten().collect();
        assert_eq!(joined, want);
        assert_eq!(
            into_parts(Vec::new(), 4).len(),
            1,
            "an empty object is one part"
        );
    }
}
