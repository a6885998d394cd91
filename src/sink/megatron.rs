//! `sink.format: megatron`: Megatron-LM's indexed dataset, the `.bin` + `.idx` pair its
//! `IndexedDataset` reads (megatron/core/datasets/indexed_dataset.py) and
//! `tools/preprocess_data.py` writes. Per shard, the `.bin` holds every document's token
//! ids back to back (little-endian `uint16` or `int32`); the `.idx` holds a header
//! (`MMIDIDX\0\0`, version 1, the dtype's code, the sequence and document counts), each
//! sequence's length (`int32`), each sequence's byte offset in the `.bin` (`int64`) and
//! the document indices (`int64`, the first sequence of each document, then the count).
//! One row is one document of one sequence, so document boundaries are the rows'.
//!
//! The `.bin` streams into a multipart upload as rows arrive; the `.idx` is made when
//! the shard closes. Both are staged like a Parquet shard's upload and published when
//! the task commits, so a reader never sees one without the other.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use super::upload::{StagedShard, Streaming};
use super::writer::{WriterConfig, shard_stem};
use super::{ColumnStats, FileRecord, ShardRecord};
use crate::error::{Error, Result};
use crate::report::Stats;
use crate::spec::MegatronDtype;
use arrow::array::{Array, AsArray, GenericListArray, OffsetSizeTrait};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt32Type};
use arrow::record_batch::RecordBatch;

/// The header every `.idx` starts with.
pub const INDEX_HEADER: &[u8; 9] = b"MMIDIDX\x00\x00";

/// How the token ids are stored in the `.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U16,
    I32,
}

impl Dtype {
    /// `auto`: `uint16` when the vocabulary is below 65,500 ids, as Megatron's
    /// `DType.optimal_dtype` chooses; `int32` otherwise or when it is not known.
    pub fn choose(asked: MegatronDtype, vocabulary: Option<u64>) -> Dtype {
        match asked {
            MegatronDtype::Uint16 => Dtype::U16,
            MegatronDtype::Int32 => Dtype::I32,
            MegatronDtype::Auto if vocabulary.is_some_and(|v| v < 65_500) => Dtype::U16,
            MegatronDtype::Auto => Dtype::I32,
        }
    }

    /// Megatron's `DType` code.
    pub fn code(self) -> u8 {
        match self {
            Dtype::U16 => 8,
            Dtype::I32 => 4,
        }
    }

    pub fn size(self) -> u64 {
        match self {
            Dtype::U16 => 2,
            Dtype::I32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::U16 => "uint16",
            Dtype::I32 => "int32",
        }
    }

    fn max(self) -> u64 {
        match self {
            Dtype::U16 => u64::from(u16::MAX),
            Dtype::I32 => i32::MAX as u64,
        }
    }
}

/// The `.idx` of a shard of `lengths.len()` documents, one sequence each, of
/// `lengths[i]` tokens stored as `dtype`.
pub fn index_bytes(dtype: Dtype, lengths: &[i32]) -> Vec<u8> {
    let n = lengths.len();
    let mut out = Vec::with_capacity(34 + n * 20 + 8);
    out.extend_from_slice(INDEX_HEADER);
    out.extend_from_slice(&1u64.to_le_bytes());
    out.push(dtype.code());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(&(n as u64 + 1).to_le_bytes());
    for l in lengths {
        out.extend_from_slice(&l.to_le_bytes());
    }
    let mut pointer = 0i64;
    for l in lengths {
        out.extend_from_slice(&pointer.to_le_bytes());
        pointer += i64::from(*l) * dtype.size() as i64;
    }
    for d in 0..=n {
        out.extend_from_slice(&(d as i64).to_le_bytes());
    }
    out
}

/// The Megatron shards of one task: one open pair per partition folder.
pub(super) struct Writer {
    cfg: Arc<WriterConfig>,
    dtype: Dtype,
    task: usize,
    stats: Arc<Stats>,
    open: HashMap<String, Open>,
    /// The next shard number per partition folder.
    next: HashMap<String, usize>,
    shards: Vec<ShardRecord>,
    staged: Vec<StagedShard>,
    /// The current batch's ids as stored.
    buf: Vec<u8>,
}

/// A shard being written.
struct Open {
    stem: String,
    bin: Streaming,
    /// Tokens per document.
    lengths: Vec<i32>,
    bytes: u64,
    tokens: u64,
}

impl Writer {
    pub fn new(cfg: Arc<WriterConfig>, dtype: Dtype, task: usize, stats: Arc<Stats>) -> Self {
        Writer {
            cfg,
            dtype,
            task,
            stats,
            open: HashMap::new(),
            next: HashMap::new(),
            shards: Vec::new(),
            staged: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Writes the rows of `batch` (the token column alone) into the open shard of `dir`.
    pub fn write(&mut self, dir: &str, batch: &RecordBatch) -> Result<()> {
        let column = batch.column(0);
        let column = match column.data_type() {
            DataType::FixedSizeList(item, _) => {
                cast(column, &DataType::List(item.clone())).map_err(|e| self.error(dir, e))?
            }
            _ => column.clone(),
        };
        match column.data_type() {
            DataType::List(_) => self.write_lists(dir, column.as_list::<i32>()),
            DataType::LargeList(_) => self.write_lists(dir, column.as_list::<i64>()),
            other => Err(Error::Internal(format!(
                "a Megatron sink was handed a {other} column"
            ))),
        }
    }

    fn write_lists<O: OffsetSizeTrait>(
        &mut self,
        dir: &str,
        lists: &GenericListArray<O>,
    ) -> Result<()> {
        let values = lists.values();
        // Token ids as tokenize makes them (`uint32`) are read in place; other integer
        // types are widened once per batch.
        let wide;
        let ids: Ids<'_> = match values.data_type() {
            DataType::UInt32 => Ids::U32(values.as_primitive::<UInt32Type>().values()),
            _ => {
                wide = cast(values, &DataType::Int64).map_err(|e| self.error(dir, e))?;
                Ids::I64(wide.as_primitive::<Int64Type>().values())
            }
        };
        let offsets = lists.value_offsets();
        let mut row = 0;
        while row < lists.len() {
            let (name, have, mut bytes) = {
                let open = self.open_for(dir)?;
                (open.bin.uri.clone(), open.lengths.len() as u64, open.bytes)
            };
            let room = self.cfg.max_rows.saturating_sub(have).max(1);
            self.buf.clear();
            let mut taken = 0u64;
            let mut tokens = 0u64;
            let mut lengths = Vec::new();
            while row < lists.len() && taken < room && bytes < self.cfg.max_bytes {
                if lists.is_null(row) {
                    return Err(Error::sink(
                        &name,
                        format!(
                            "document {} of this shard has no token ids (a null list); a \
                             Megatron dataset has no nulls: filter such rows out before the \
                             sink (`- filter: \"<column> IS NOT NULL\"`)",
                            have + taken
                        ),
                    ));
                }
                let (from, to) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
                let len = i32::try_from(to - from).map_err(|_| {
                    Error::sink(
                        &name,
                        format!(
                            "a document of {} tokens: Megatron counts a document's tokens in int32",
                            to - from
                        ),
                    )
                })?;
                ids.store(from..to, self.dtype, &mut self.buf).map_err(|id| {
                    Error::sink(
                        &name,
                        format!(
                            "token id {id} (document {}) does not fit the shard's dtype {}; set \
                             `sink.megatron.dtype: int32`",
                            have + taken,
                            self.dtype.name()
                        ),
                    )
                })?;
                lengths.push(len);
                bytes += (to - from) as u64 * self.dtype.size();
                tokens += (to - from) as u64;
                taken += 1;
                row += 1;
            }
            let open = self
                .open
                .get_mut(dir)
                .ok_or_else(|| Error::Internal("a Megatron shard closed while written".into()))?;
            open.bin
                .write_all(&self.buf)
                .map_err(|e| super::upload::upload_error(&open.bin.uri, e))?;
            open.lengths.extend(lengths);
            open.bytes = bytes;
            open.tokens += tokens;
            if open.lengths.len() as u64 >= self.cfg.max_rows || open.bytes >= self.cfg.max_bytes {
                self.close(dir)?;
            }
        }
        Ok(())
    }

    /// The open shard of `dir`, opened when there is none.
    fn open_for(&mut self, dir: &str) -> Result<&mut Open> {
        if !self.open.contains_key(dir) {
            let n = self.next.entry(dir.to_string()).or_default();
            let stem = shard_stem(dir, self.task, *n);
            *n += 1;
            let bin = Streaming::start(&self.cfg, &format!("{stem}.bin"), &self.stats);
            self.open.insert(
                dir.to_string(),
                Open {
                    stem,
                    bin,
                    lengths: Vec::new(),
                    bytes: 0,
                    tokens: 0,
                },
            );
        }
        self.open
            .get_mut(dir)
            .ok_or_else(|| Error::Internal("a Megatron shard vanished".into()))
    }

    /// Closes the open shard of `dir`: the `.bin` ends, the `.idx` is written.
    fn close(&mut self, dir: &str) -> Result<()> {
        let Some(open) = self.open.remove(dir) else {
            return Ok(());
        };
        let (bin, bytes, crc32c) = open.bin.end(&self.cfg.handle)?;
        let idx_path = format!("{}.idx", open.stem);
        let mut idx = Streaming::start(&self.cfg, &idx_path, &self.stats);
        idx.write_all(&index_bytes(self.dtype, &open.lengths))
            .map_err(|e| super::upload::upload_error(&idx.uri, e))?;
        let (idx, idx_bytes, idx_crc) = idx.end(&self.cfg.handle)?;
        let rows = open.lengths.len() as u64;
        let stats = &self.stats;
        stats
            .shards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .bytes_out
            .fetch_add(bytes + idx_bytes, std::sync::atomic::Ordering::Relaxed);
        let column = self.cfg.file_schema.field(0).name().clone();
        self.shards.push(ShardRecord {
            path: format!("{}.bin", open.stem),
            rows,
            bytes,
            crc32c,
            // As Arrow would hold the column: an offset per row and the ids.
            memory_bytes: (rows + 1) * 4 + open.tokens * 4,
            columns: [(
                column,
                ColumnStats {
                    values: Some(open.tokens),
                    ..Default::default()
                },
            )]
            .into(),
            index: Some(FileRecord {
                path: idx_path,
                bytes: idx_bytes,
                crc32c: idx_crc,
            }),
            mds: None,
            buckets: Vec::new(),
        });
        self.staged.push(bin);
        self.staged.push(idx);
        Ok(())
    }

    /// Closes every open shard, folders in `order`; the shards written and their
    /// staged uploads.
    pub fn finish(mut self, order: &[String]) -> Result<(Vec<ShardRecord>, Vec<StagedShard>)> {
        for dir in order {
            self.close(dir)?;
        }
        Ok((
            std::mem::take(&mut self.shards),
            std::mem::take(&mut self.staged),
        ))
    }

    fn error(&self, dir: &str, e: impl std::fmt::Display) -> Error {
        Error::sink(format!("{}{dir}", self.cfg.display), e.to_string())
    }
}

/// A batch's token ids as they came.
enum Ids<'a> {
    U32(&'a [u32]),
    I64(&'a [i64]),
}

impl Ids<'_> {
    /// Appends ids `range` to `out` as `dtype`; the first id that does not fit, if any.
    fn store(
        &self,
        range: std::ops::Range<usize>,
        dtype: Dtype,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), i64> {
        let max = dtype.max();
        let mut put = |id: u64| match dtype {
            Dtype::U16 => out.extend_from_slice(&(id as u16).to_le_bytes()),
            Dtype::I32 => out.extend_from_slice(&(id as i32).to_le_bytes()),
        };
        match self {
            Ids::U32(v) => {
                for &id in &v[range] {
                    if u64::from(id) > max {
                        return Err(i64::from(id));
                    }
                    put(u64::from(id));
                }
            }
            Ids::I64(v) => {
                for &id in &v[range] {
                    if id < 0 || id as u64 > max {
                        return Err(id);
                    }
                    put(id as u64);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_megatrons_layout() {
        let idx = index_bytes(Dtype::U16, &[3, 0, 2]);
        assert_eq!(&idx[..9], INDEX_HEADER);
        assert_eq!(u64::from_le_bytes(idx[9..17].try_into().expect("width")), 1);
        assert_eq!(idx[17], 8);
        assert_eq!(
            u64::from_le_bytes(idx[18..26].try_into().expect("width")),
            3
        );
        assert_eq!(
            u64::from_le_bytes(idx[26..34].try_into().expect("width")),
            4
        );
        let lengths: Vec<i32> = idx[34..46]
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("width")))
            .collect();
        assert_eq!(lengths, [3, 0, 2]);
        let pointers: Vec<i64> = idx[46..70]
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("width")))
            .collect();
        assert_eq!(pointers, [0, 6, 6]);
        let docs: Vec<i64> = idx[70..]
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("width")))
            .collect();
        assert_eq!(docs, [0, 1, 2, 3]);
        assert_eq!(index_bytes(Dtype::I32, &[1, 1])[17], 4);
        assert_eq!(
            i64::from_le_bytes(
                index_bytes(Dtype::I32, &[5, 1])[50..58]
                    .try_into()
                    .expect("width")
            ),
            20
        );
    }

    #[test]
    fn auto_is_uint16_below_65500_ids_as_megatron_chooses() {
        assert_eq!(Dtype::choose(MegatronDtype::Auto, Some(50_257)), Dtype::U16);
        assert_eq!(Dtype::choose(MegatronDtype::Auto, Some(65_500)), Dtype::I32);
        assert_eq!(Dtype::choose(MegatronDtype::Auto, None), Dtype::I32);
        assert_eq!(Dtype::choose(MegatronDtype::Int32, Some(10)), Dtype::I32);
        assert_eq!(Dtype::choose(MegatronDtype::Uint16, None), Dtype::U16);
    }

    #[test]
    fn ids_that_do_not_fit_are_named() {
        let mut out = Vec::new();
        assert_eq!(
            Ids::U32(&[1, 70_000]).store(0..2, Dtype::U16, &mut out),
            Err(70_000)
        );
        assert_eq!(Ids::I64(&[-1]).store(0..1, Dtype::I32, &mut out), Err(-1));
        out.clear();
        assert_eq!(
            Ids::U32(&[1, 258]).store(0..2, Dtype::U16, &mut out),
            Ok(())
        );
        assert_eq!(out, [1, 0, 2, 1]);
    }
}
