//! The key index of a dedup step, for incremental runs (`against:`, docs/text.md
//! "Incremental dedup"): the distinct keys the step saw (content hashes for
//! `dedup.exact`; (band hash, band) for `dedup.minhash`), sorted, which the runtime
//! stores in the sink under `_kiln/index/` (`sink/index.rs`) and reads back from the
//! sinks a later run names in `against`.
//!
//! The key space is cut into [`BUCKETS`] buckets by a key's top byte, the same for
//! every run and worker count: a settle of the whole input covers buckets `0..256`, a
//! section of a stage shared by workers a range of them (sections are whole buckets),
//! so a later run's section reads only its own buckets of the earlier index.
//!
//! While a step settles it hands each distinct key of its input to [`KeyIndex::seen`],
//! in ascending order; the answer says whether an earlier dataset holds it, and the
//! earlier keys with this input's, merged and without repeats, go to the new index.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::StepError;

/// Buckets of the key space: a key's top byte.
pub const BUCKETS: usize = crate::layout::INDEX_BUCKETS;
/// Bytes of a stored key: a little-endian u128.
pub const KEY: usize = crate::layout::INDEX_KEY;

/// The bucket of `key`.
pub fn bucket(key: u128) -> usize {
    (key >> 120) as usize
}

/// The buckets of section `s` of `n` ([`super::spill::section`] puts a key in section
/// `bucket · n / 256`): `ceil(s · 256 / n)..ceil((s + 1) · 256 / n)`.
pub fn section_buckets(s: usize, n: usize) -> (usize, usize) {
    let n = n.max(1);
    (
        (s * BUCKETS).div_ceil(n).min(BUCKETS),
        ((s + 1) * BUCKETS).div_ceil(n).min(BUCKETS),
    )
}

/// What a dedup step indexes ([`super::FullPass::index`]): its index's folder name, the
/// options its keys depend on, the earlier datasets it dedups against, and whether this
/// run stores its own index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub id: String,
    pub params: serde_json::Value,
    pub against: Vec<String>,
    pub write: bool,
}

impl IndexSpec {
    /// For step `step` whose keys depend on `params`: the id is the step's name and a
    /// hash of the options, so that only an index of equal keys is ever read.
    pub fn new(step: &str, params: serde_json::Value, against: Vec<String>, write: bool) -> Self {
        let id = format!(
            "{step}-{:016x}",
            xxhash_rust::xxh3::xxh3_64(params.to_string().as_bytes())
        );
        IndexSpec {
            id,
            params,
            against,
            write,
        }
    }
}

/// One earlier dataset's keys in this index's buckets: a local file of sorted keys.
struct Source {
    r: BufReader<File>,
    path: PathBuf,
    head: Option<u128>,
}

impl Source {
    fn advance(&mut self) -> Result<(), StepError> {
        let mut b = [0u8; KEY];
        let mut got = 0;
        while got < KEY {
            match self.r.read(&mut b[got..]) {
                Ok(0) if got == 0 => {
                    self.head = None;
                    return Ok(());
                }
                Ok(0) => {
                    return Err(StepError::internal(format!(
                        "{}: an earlier index ends inside a key",
                        self.path.display()
                    )));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StepError::io(
                        format!("cannot read {}", self.path.display()),
                        e,
                    ));
                }
            }
        }
        let key = u128::from_le_bytes(b);
        if self.head.is_some_and(|h| h >= key) {
            return Err(StepError::internal(
                "an earlier dataset's index is not sorted: it is damaged, or was not \
                 written by kiln",
            ));
        }
        self.head = Some(key);
        Ok(())
    }
}

/// The new index being written: sorted distinct keys, and where each bucket ends.
struct Writer {
    w: BufWriter<File>,
    path: PathBuf,
    /// Bytes written after each bucket of `lo..hi` so far.
    ends: Vec<u64>,
    bytes: u64,
}

/// What the step settles against and what it writes (see the module docs), for the
/// buckets `lo..hi`.
pub struct KeyIndex {
    old: Vec<Source>,
    new: Option<Writer>,
    lo: usize,
    hi: usize,
    last: Option<u128>,
}

/// The new index a settle wrote: where each bucket of its range ends in the file, and
/// how many keys it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub ends: Vec<u64>,
    pub keys: u64,
}

impl KeyIndex {
    /// No earlier datasets, no index written: every key is new.
    pub fn none() -> KeyIndex {
        KeyIndex {
            old: Vec::new(),
            new: None,
            lo: 0,
            hi: BUCKETS,
            last: None,
        }
    }

    /// For buckets `lo..hi`: `old`, one local file of sorted keys per earlier dataset
    /// (its keys in those buckets); `new`, the local file the merged index goes to.
    pub fn open(
        old: &[PathBuf],
        new: Option<&Path>,
        lo: usize,
        hi: usize,
    ) -> Result<KeyIndex, StepError> {
        let mut sources = Vec::with_capacity(old.len());
        for path in old {
            let f = File::open(path)
                .map_err(|e| StepError::io(format!("cannot open {}", path.display()), e))?;
            let mut s = Source {
                r: BufReader::with_capacity(64 << 10, f),
                path: path.clone(),
                head: None,
            };
            s.advance()?;
            sources.push(s);
        }
        let new = match new {
            Some(path) => Some(Writer {
                w: BufWriter::with_capacity(
                    64 << 10,
                    File::create(path).map_err(|e| {
                        StepError::io(format!("cannot create {}", path.display()), e)
                    })?,
                ),
                path: path.to_path_buf(),
                ends: Vec::with_capacity(hi.saturating_sub(lo)),
                bytes: 0,
            }),
            None => None,
        };
        Ok(KeyIndex {
            old: sources,
            new,
            lo,
            hi,
            last: None,
        })
    }

    /// True when there is nothing to check against and nothing to write.
    pub fn is_none(&self) -> bool {
        self.old.is_empty() && self.new.is_none()
    }

    /// `key`, the next distinct key of this input in ascending order: whether an
    /// earlier dataset holds it. The earlier keys up to it, and it, go to the new index.
    ///
    /// # Errors
    /// A key out of order or outside this index's buckets (a bug), or a local file.
    pub fn seen(&mut self, key: u128) -> Result<bool, StepError> {
        if self.last.is_some_and(|l| l >= key) {
            return Err(StepError::internal("keys reached the index out of order"));
        }
        self.last = Some(key);
        let mut held = false;
        while let Some(h) = self.old.iter().filter_map(|s| s.head).min() {
            if h > key {
                break;
            }
            for s in self.old.iter_mut().filter(|s| s.head == Some(h)) {
                s.advance()?;
            }
            if h == key {
                held = true;
                break;
            }
            self.write(h)?;
        }
        self.write(key)?;
        Ok(held)
    }

    fn write(&mut self, key: u128) -> Result<(), StepError> {
        let (lo, hi) = (self.lo, self.hi);
        let Some(w) = self.new.as_mut() else {
            return Ok(());
        };
        let b = bucket(key);
        if b < lo + w.ends.len() || b >= hi {
            return Err(StepError::internal(format!(
                "a key of bucket {b} reached the index of buckets {lo}..{hi} out of order"
            )));
        }
        while lo + w.ends.len() < b {
            w.ends.push(w.bytes);
        }
        w.w.write_all(&key.to_le_bytes())
            .map_err(|e| StepError::io(format!("cannot write {}", w.path.display()), e))?;
        w.bytes += KEY as u64;
        Ok(())
    }

    /// Ends the index: the earlier keys after this input's last go to the new index.
    /// None when no index is written.
    pub fn finish(mut self) -> Result<Option<Written>, StepError> {
        while let Some(h) = self.old.iter().filter_map(|s| s.head).min() {
            for s in self.old.iter_mut().filter(|s| s.head == Some(h)) {
                s.advance()?;
            }
            self.write(h)?;
        }
        let (lo, hi) = (self.lo, self.hi);
        let Some(mut w) = self.new.take() else {
            return Ok(None);
        };
        while lo + w.ends.len() < hi {
            w.ends.push(w.bytes);
        }
        w.w.flush()
            .map_err(|e| StepError::io(format!("cannot write {}", w.path.display()), e))?;
        Ok(Some(Written {
            keys: w.bytes / KEY as u64,
            ends: w.ends,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_file(dir: &Path, name: &str, keys: &[u128]) -> PathBuf {
        let path = dir.join(name);
        let mut f = File::create(&path).expect("file");
        for k in keys {
            f.write_all(&k.to_le_bytes()).expect("write");
        }
        path
    }

    fn read_keys(path: &Path) -> Vec<u128> {
        std::fs::read(path)
            .expect("read")
            .chunks(KEY)
            .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
            .collect()
    }

    fn key(bucket: u8, low: u64) -> u128 {
        (u128::from(bucket) << 120) | u128::from(low)
    }

    /// Two earlier datasets sharing keys: a key either holds is held; the new index is
    /// the union without repeats, with each bucket's end.
    #[test]
    fn seen_answers_from_every_earlier_dataset_and_writes_the_union() {
        let dir = tempfile::tempdir().expect("dir");
        let a = keys_file(
            dir.path(),
            "a",
            &[key(0, 1), key(0, 5), key(2, 1), key(9, 9)],
        );
        let b = keys_file(dir.path(), "b", &[key(0, 5), key(3, 3), key(200, 0)]);
        let new = dir.path().join("new");
        let mut ix = KeyIndex::open(&[a, b], Some(&new), 0, BUCKETS).expect("opens");
        let asked = [key(0, 2), key(0, 5), key(3, 3), key(3, 4), key(255, 7)];
        let held: Vec<bool> = asked.iter().map(|&k| ix.seen(k).expect("seen")).collect();
        assert_eq!(held, [false, true, true, false, false]);
        let written = ix.finish().expect("finishes").expect("an index");
        let expected = [
            key(0, 1),
            key(0, 2),
            key(0, 5),
            key(2, 1),
            key(3, 3),
            key(3, 4),
            key(9, 9),
            key(200, 0),
            key(255, 7),
        ];
        assert_eq!(read_keys(&new), expected);
        assert_eq!(written.keys, expected.len() as u64);
        assert_eq!(written.ends.len(), BUCKETS);
        assert_eq!(written.ends[0], 3 * KEY as u64);
        assert_eq!(written.ends[1], 3 * KEY as u64);
        assert_eq!(written.ends[2], 4 * KEY as u64);
        assert_eq!(written.ends[3], 6 * KEY as u64);
        assert_eq!(written.ends[254], 8 * KEY as u64);
        assert_eq!(written.ends[255], 9 * KEY as u64);

        // Keys out of order, or outside the index's buckets, are refused.
        let mut ix = KeyIndex::none();
        ix.seen(5).expect("seen");
        assert!(ix.seen(5).is_err());
        let mut ix = KeyIndex::open(&[], Some(&dir.path().join("part")), 2, 4).expect("opens");
        assert!(ix.seen(key(4, 0)).is_err());
    }

    #[test]
    fn sections_are_whole_buckets_that_tile_the_key_space() {
        for n in [1, 2, 3, 4, 5, 8, 12, 64, 128] {
            let mut next = 0;
            for s in 0..n {
                let (lo, hi) = section_buckets(s, n);
                assert_eq!(lo, next, "{n} sections");
                for b in lo..hi {
                    let k = (b as u128) << 120 | 12345;
                    assert_eq!(super::super::spill::section(k, n), s, "bucket {b} of {n}");
                }
                next = hi;
            }
            assert_eq!(next, BUCKETS);
        }
    }
}
