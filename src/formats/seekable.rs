//! zstd objects in the seekable format (facebook/zstd `contrib/seekable_format`): the data
//! in independent frames, and a seek table of every frame's compressed and decompressed
//! size in a skippable frame at the end (written by `zeekstd`, `t2sz`, `pzstd`-style tools
//! and the zstd library's seekable API). Such an object can be cut into tasks at frame
//! boundaries: a slice decompresses from its first frame, with no bytes before it.
//! The seek table is parsed by the `zeekstd` crate; kiln reads only the footer's frame
//! count to know how many bytes to fetch.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// The seek table footer: frame count (4 bytes), descriptor (1), magic (4).
const FOOTER: u64 = 9;
/// The skippable frame's header: magic (4 bytes) and size (4).
const SKIPPABLE_HEADER: u64 = 8;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Bytes fetched from the end at first: a seek table of up to ~5,000 frames.
const TAIL: u64 = 64 << 10;

/// The frames of a seekable zstd object.
#[derive(Debug)]
pub struct Frames {
    table: zeekstd::SeekTable,
}

impl Frames {
    /// Compressed offsets where frames start, and the end of the last frame.
    pub fn boundaries(&self) -> Vec<u64> {
        let n = self.table.num_frames();
        let mut out: Vec<u64> = (0..n)
            .filter_map(|f| self.table.frame_start_comp(f).ok())
            .collect();
        out.push(self.table.size_comp());
        out
    }

    /// Decompressed offsets of the frames that start in the compressed range `range`
    /// (which starts at a frame boundary): where the first starts, and where the frame
    /// after the last starts (`None` when the range runs to the last frame).
    pub fn decompressed(&self, range: &std::ops::Range<u64>) -> (u64, Option<u64>) {
        let start = if range.start == 0 {
            0
        } else {
            let f = self.table.frame_index_comp(range.start);
            self.table.frame_start_decomp(f).unwrap_or(0)
        };
        let end = (range.end < self.table.size_comp()).then(|| {
            let f = self.table.frame_index_comp(range.end);
            self.table.frame_start_decomp(f).unwrap_or(u64::MAX)
        });
        (start, end)
    }

    /// The object's decompressed size.
    pub fn size_decomp(&self) -> u64 {
        self.table.size_decomp()
    }
}

/// The seek table of the zstd object `path` of `size` bytes, or `None` when it has none
/// (a plain zstd stream, which must be read from its start) or one that does not
/// describe the object (frames that do not end where the table starts).
///
/// # Errors
/// A failed range request.
pub async fn frames(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> object_store::Result<Option<Frames>> {
    if size < SKIPPABLE_HEADER + FOOTER {
        return Ok(None);
    }
    let tail_len = size.min(TAIL);
    let tail = store.get_range(path, size - tail_len..size).await?;
    if (tail.len() as u64) < FOOTER {
        return Ok(None);
    }
    let foot = &tail[tail.len() - FOOTER as usize..];
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if word(&foot[5..9]) != SEEKABLE_MAGIC {
        return Ok(None);
    }
    let entry = if foot[4] & 0x80 != 0 { 12 } else { 8 };
    let table_len = SKIPPABLE_HEADER + u64::from(word(&foot[0..4])) * entry + FOOTER;
    if table_len > size {
        return Ok(None);
    }
    let bytes: Bytes = if table_len <= tail.len() as u64 {
        tail.slice(tail.len() - table_len as usize..)
    } else {
        store.get_range(path, size - table_len..size).await?
    };
    let Ok(table) = zeekstd::SeekTable::from_seekable(&mut zeekstd::BytesWrapper::new(&bytes))
    else {
        return Ok(None);
    };
    if table.num_frames() == 0 || table.size_comp() != size - table_len {
        return Ok(None);
    }
    Ok(Some(Frames { table }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;

    /// A seekable zstd file of `frames` frames of the given texts, with zeekstd's own
    /// seek-table writer.
    pub fn seekable(frames: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut table = zeekstd::SeekTable::new();
        for f in frames {
            let c = zstd::bulk::compress(f.as_bytes(), 3).expect("compress");
            table
                .log_frame(c.len() as u32, f.len() as u32)
                .expect("log");
            out.extend(c);
        }
        let mut ser = table.into_serializer();
        std::io::Read::read_to_end(&mut ser, &mut out).expect("table");
        out
    }

    fn put(data: Vec<u8>) -> (Arc<dyn ObjectStore>, Path, u64) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("x.jsonl.zst");
        let size = data.len() as u64;
        futures::executor::block_on(store.put(&path, PutPayload::from(data))).expect("put");
        (store, path, size)
    }

    #[test]
    fn the_frames_of_a_seekable_object_and_none_for_a_plain_stream() {
        let (store, path, size) = put(seekable(&["a\nbb\n", "ccc\n", "dddd\ne"]));
        let f = futures::executor::block_on(frames(store.as_ref(), &path, size))
            .expect("read")
            .expect("a seek table");
        let b = f.boundaries();
        assert_eq!(b.len(), 4);
        assert_eq!(b[0], 0);
        assert_eq!(f.size_decomp(), 15);
        assert_eq!(f.decompressed(&(0..b[1])), (0, Some(5)));
        assert_eq!(f.decompressed(&(b[1]..b[3])), (5, None));
        // The whole object decompresses as one stream (the table frame is skipped).
        let plain = zstd::stream::decode_all(&seekable(&["a\nbb\n", "ccc\n"])[..]).expect("decode");
        assert_eq!(plain, b"a\nbb\nccc\n");

        let (store, path, size) = put(zstd::bulk::compress(b"one frame\n", 3).expect("compress"));
        assert!(
            futures::executor::block_on(frames(store.as_ref(), &path, size))
                .expect("read")
                .is_none()
        );
    }
}
