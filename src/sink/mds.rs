//! `sink.format: mds`: MosaicML Streaming's MDS shards, what `streaming.MDSWriter`
//! writes and `streaming.StreamingDataset` reads (streaming/base/format/mds/). A shard
//! `part-<task>-<shard>.mds` is: the sample count (`uint32`), each sample's start and
//! the end of the last (`uint32`, from the file's start), the shard's configuration as
//! JSON, then the samples. A sample is the byte length of each variable-size column
//! (`uint32`), then every column's bytes, columns sorted by name. Every shard of a
//! folder is listed in that folder's `index.json`, written at finalize from the manifest
//! (each shard record carries its entry), before `_SUCCESS`.
//!
//! Column encodings, by Arrow type: strings `str`, binary `bytes`, integers and floats
//! their own scalar (`int64`, `uint32`, `float32` …), booleans `uint8`, lists of
//! integers or floats `ndarray:<dtype>` (one dimension, so token ids read back as a numpy
//! array). MDS has no nulls: a null value stops the task, naming the column. Other types
//! are refused when the pipeline is planned.
//!
//! A shard's offsets come before its samples, so a shard is held in memory until it
//! closes (at `sink.max_rows` samples or `sink.max_bytes`, at most 4 GiB: the offsets are
//! `uint32`), as MDSWriter does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::upload::StagedShard;
use super::writer::{WriterConfig, shard_stem};
use super::{ColumnStats, ShardRecord};
use crate::error::{Error, Result};
use crate::report::Stats;

/// The largest shard: its offsets are `uint32`.
pub const MAX_SHARD_BYTES: u64 = u32::MAX as u64;

/// How one column is stored in a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Enc {
    Str,
    Bytes,
    /// A fixed-width number: its MDS name and width.
    Scalar(&'static str, usize),
    /// `true` / `false` as `uint8`.
    Bool,
    /// A list of numbers as a one-dimensional array: element name and width.
    NdArray(&'static str, usize),
}

impl Enc {
    fn name(&self) -> String {
        match self {
            Enc::Str => "str".into(),
            Enc::Bytes => "bytes".into(),
            Enc::Scalar(n, _) => (*n).into(),
            Enc::Bool => "uint8".into(),
            Enc::NdArray(n, _) => format!("ndarray:{n}"),
        }
    }

    fn size(&self) -> Option<usize> {
        match self {
            Enc::Scalar(_, w) => Some(*w),
            Enc::Bool => Some(1),
            _ => None,
        }
    }
}

/// The MDS name and width of a numeric Arrow type.
fn number(t: &DataType) -> Option<(&'static str, usize)> {
    Some(match t {
        DataType::Int8 => ("int8", 1),
        DataType::Int16 => ("int16", 2),
        DataType::Int32 => ("int32", 4),
        DataType::Int64 => ("int64", 8),
        DataType::UInt8 => ("uint8", 1),
        DataType::UInt16 => ("uint16", 2),
        DataType::UInt32 => ("uint32", 4),
        DataType::UInt64 => ("uint64", 8),
        DataType::Float32 => ("float32", 4),
        DataType::Float64 => ("float64", 8),
        _ => return None,
    })
}

fn encoding(f: &Field) -> std::result::Result<Enc, String> {
    Ok(match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Enc::Str,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Enc::Bytes,
        DataType::Boolean => Enc::Bool,
        DataType::List(item) | DataType::LargeList(item) => match number(item.data_type()) {
            Some((n, w)) => Enc::NdArray(n, w),
            None => return Err(refused(f)),
        },
        t => match number(t) {
            Some((n, w)) => Enc::Scalar(n, w),
            None => return Err(refused(f)),
        },
    })
}

fn refused(f: &Field) -> String {
    format!(
        "column `{}` is {}, which MDS has no encoding for (strings, binary, integers, floats, \
         booleans and lists of numbers are written); cast it (`- cast: {{ {}: string }}`) or \
         drop it before the sink",
        f.name(),
        f.data_type(),
        f.name()
    )
}

/// The columns of an MDS sink: names sorted as MDSWriter sorts them, each one's index
/// in the files' schema and its encoding, and the shard configuration every shard holds.
#[derive(Debug)]
pub struct Columns {
    names: Vec<String>,
    index: Vec<usize>,
    encs: Vec<Enc>,
    size_limit: u64,
    config: String,
}

impl Columns {
    /// The encodings of `schema`'s columns; a column MDS cannot store is refused.
    ///
    /// # Errors
    /// What to do about the first column that has no encoding.
    pub fn new(schema: &Schema, size_limit: u64) -> std::result::Result<Columns, String> {
        let mut cols: Vec<(String, usize, Enc)> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            cols.push((f.name().clone(), i, encoding(f)?));
        }
        cols.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
        let encs: Vec<Enc> = cols.iter().map(|c| c.2.clone()).collect();
        let config = config_json(&names, &encs, size_limit);
        Ok(Columns {
            index: cols.iter().map(|c| c.1).collect(),
            names,
            encs,
            size_limit,
            config,
        })
    }

    /// The `index.json` entry of a shard (everything but `raw_data`'s name and size).
    fn entry(&self, basename: &str, bytes: u64, samples: u64) -> serde_json::Value {
        serde_json::json!({
            "column_encodings": self.encs.iter().map(Enc::name).collect::<Vec<_>>(),
            "column_names": self.names,
            "column_sizes": self.encs.iter().map(Enc::size).collect::<Vec<_>>(),
            "compression": null,
            "format": "mds",
            "hashes": [],
            "raw_data": { "basename": basename, "bytes": bytes, "hashes": {} },
            "samples": samples,
            "size_limit": self.size_limit,
            "version": 2,
            "zip_data": null,
        })
    }
}

/// The configuration a shard carries, as Python's `json.dumps(obj, sort_keys=True)`
/// writes it (MDSWriter's `config_data`).
fn config_json(names: &[String], encs: &[Enc], size_limit: u64) -> String {
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let mut s = String::from("{");
    let _ = write!(
        s,
        "\"column_encodings\": {}, \"column_names\": {}, \"column_sizes\": {}, \
         \"compression\": null, \"format\": \"mds\", \"hashes\": [], \"size_limit\": {size_limit}, \
         \"version\": 2}}",
        list(encs.iter().map(|e| quoted(&e.name())).collect()),
        list(names.iter().map(|n| quoted(n)).collect()),
        list(
            encs.iter()
                .map(|e| e.size().map_or("null".to_string(), |w| w.to_string()))
                .collect()
        ),
    );
    s
}

/// The MDS shards of one task: one open shard per partition folder.
pub(super) struct Writer {
    cfg: Arc<WriterConfig>,
    cols: Arc<Columns>,
    task: usize,
    stats: Arc<Stats>,
    open: HashMap<String, Open>,
    next: HashMap<String, usize>,
    shards: Vec<ShardRecord>,
    staged: Vec<StagedShard>,
}

/// A shard being filled.
#[derive(Default)]
struct Open {
    /// The samples, back to back.
    body: Vec<u8>,
    /// Where each sample ends in `body`.
    ends: Vec<u64>,
    /// Per column, by the files' schema order: nulls (none) and list elements.
    values: Vec<u64>,
    memory_bytes: u64,
}

impl Writer {
    pub fn new(cfg: Arc<WriterConfig>, cols: Arc<Columns>, task: usize, stats: Arc<Stats>) -> Self {
        Writer {
            cfg,
            cols,
            task,
            stats,
            open: HashMap::new(),
            next: HashMap::new(),
            shards: Vec::new(),
            staged: Vec::new(),
        }
    }

    /// Appends the rows of `batch` (the files' columns) to the open shard of `dir`.
    pub fn write(&mut self, dir: &str, batch: &RecordBatch) -> Result<()> {
        let cols = self.cols.clone();
        let arrays: Vec<&ArrayRef> = cols.index.iter().map(|&i| batch.column(i)).collect();
        for (a, name) in arrays.iter().zip(&cols.names) {
            if a.null_count() > 0 {
                return Err(Error::sink(
                    format!("{}{dir}", self.cfg.display),
                    format!(
                        "column `{name}` holds a null, and MDS has none: fill it (`- derive`) or \
                         filter such rows out before the sink"
                    ),
                ));
            }
        }
        for row in 0..batch.num_rows() {
            let open = self.open.entry(dir.to_string()).or_default();
            if open.values.is_empty() {
                open.values = vec![0; cols.names.len()];
            }
            let start = open.body.len();
            // The variable sizes first, filled in once the values are written.
            let sizes_at = start;
            let variable = cols.encs.iter().filter(|e| e.size().is_none()).count();
            open.body.resize(start + 4 * variable, 0);
            let mut v = 0;
            for (c, (array, enc)) in arrays.iter().zip(&cols.encs).enumerate() {
                let before = open.body.len();
                let elements = put(&mut open.body, array, row, enc)?;
                open.values[c] += elements;
                if enc.size().is_none() {
                    let len = u32::try_from(open.body.len() - before).map_err(|_| {
                        Error::sink(
                            format!("{}{dir}", self.cfg.display),
                            format!("a value of column `{}` over 4 GiB", cols.names[c]),
                        )
                    })?;
                    let at = sizes_at + 4 * v;
                    open.body[at..at + 4].copy_from_slice(&len.to_le_bytes());
                    v += 1;
                }
            }
            open.ends.push(open.body.len() as u64);
            let header = 4 + 4 * (open.ends.len() as u64 + 1) + cols.config.len() as u64;
            if header + open.body.len() as u64 > MAX_SHARD_BYTES {
                return Err(Error::sink(
                    format!("{}{dir}", self.cfg.display),
                    "an MDS shard over 4 GiB (its offsets are uint32): lower sink.max_bytes",
                ));
            }
            if open.ends.len() as u64 >= self.cfg.max_rows
                || header + open.body.len() as u64 >= self.cfg.max_bytes
            {
                self.close(dir)?;
            }
        }
        if let Some(open) = self.open.get_mut(dir) {
            open.memory_bytes += arrays
                .iter()
                .map(|a| a.to_data().get_slice_memory_size().unwrap_or_default() as u64)
                .sum::<u64>();
        }
        Ok(())
    }

    /// Writes the open shard of `dir` as one object (staged until the task commits).
    fn close(&mut self, dir: &str) -> Result<()> {
        let Some(open) = self.open.remove(dir) else {
            return Ok(());
        };
        let n = self.next.entry(dir.to_string()).or_default();
        let relative = format!("{}.mds", shard_stem(dir, self.task, *n));
        *n += 1;
        let count = open.ends.len();
        let header = 4 + 4 * (count + 1) + self.cols.config.len();
        let mut file = Vec::with_capacity(header + open.body.len());
        file.extend_from_slice(&(count as u32).to_le_bytes());
        file.extend_from_slice(&(header as u32).to_le_bytes());
        for end in &open.ends {
            file.extend_from_slice(&((header as u64 + end) as u32).to_le_bytes());
        }
        file.extend_from_slice(self.cols.config.as_bytes());
        file.extend_from_slice(&open.body);
        let bytes = file.len() as u64;
        let crc = crc32c::crc32c(&file);
        let staged = super::upload::stage_bytes(&self.cfg, &relative, file)?;
        self.stats
            .shards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .bytes_out
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let basename = relative.rsplit('/').next().unwrap_or(&relative).to_string();
        let columns = self
            .cols
            .names
            .iter()
            .zip(&self.cols.encs)
            .zip(&open.values)
            .map(|((name, enc), &values)| {
                let stats = ColumnStats {
                    values: matches!(enc, Enc::Str | Enc::Bytes | Enc::NdArray(..))
                        .then_some(values),
                    ..Default::default()
                };
                (name.clone(), stats)
            })
            .collect();
        self.shards.push(ShardRecord {
            path: relative,
            rows: count as u64,
            bytes,
            crc32c: format!("{crc:08x}"),
            memory_bytes: open.memory_bytes,
            columns,
            index: None,
            mds: Some(self.cols.entry(&basename, bytes, count as u64)),
            buckets: Vec::new(),
        });
        self.staged.push(staged);
        Ok(())
    }

    /// Closes every open shard, folders in `order`.
    pub fn finish(mut self, order: &[String]) -> Result<(Vec<ShardRecord>, Vec<StagedShard>)> {
        for dir in order {
            self.close(dir)?;
        }
        Ok((
            std::mem::take(&mut self.shards),
            std::mem::take(&mut self.staged),
        ))
    }
}

/// Appends row `row` of `array` encoded as `enc`; the elements it counts (string and
/// binary bytes, list elements).
fn put(out: &mut Vec<u8>, array: &ArrayRef, row: usize, enc: &Enc) -> Result<u64> {
    let bad = || {
        Error::Internal(format!(
            "an MDS column of {} is not {enc:?}",
            array.data_type()
        ))
    };
    Ok(match (enc, array.data_type()) {
        (Enc::Str, DataType::Utf8) => extend(out, array.as_string::<i32>().value(row).as_bytes()),
        (Enc::Str, DataType::LargeUtf8) => {
            extend(out, array.as_string::<i64>().value(row).as_bytes())
        }
        (Enc::Str, DataType::Utf8View) => extend(out, array.as_string_view().value(row).as_bytes()),
        (Enc::Bytes, DataType::Binary) => extend(out, array.as_binary::<i32>().value(row)),
        (Enc::Bytes, DataType::LargeBinary) => extend(out, array.as_binary::<i64>().value(row)),
        (Enc::Bytes, DataType::BinaryView) => extend(out, array.as_binary_view().value(row)),
        (Enc::Bool, DataType::Boolean) => {
            out.push(u8::from(array.as_boolean().value(row)));
            0
        }
        (Enc::Scalar(_, w), _) => {
            extend(
                out,
                primitive_bytes(array.as_ref(), row, row + 1, *w).ok_or_else(bad)?,
            );
            0
        }
        (Enc::NdArray(_, w), DataType::List(_)) => ndarray(out, array.as_list::<i32>(), row, *w)?,
        (Enc::NdArray(_, w), DataType::LargeList(_)) => {
            ndarray(out, array.as_list::<i64>(), row, *w)?
        }
        _ => return Err(bad()),
    })
}

fn extend(out: &mut Vec<u8>, bytes: &[u8]) -> u64 {
    out.extend_from_slice(bytes);
    bytes.len() as u64
}

/// The little-endian bytes of elements `from..to` of a primitive array of width `w`.
fn primitive_bytes(array: &dyn Array, from: usize, to: usize, w: usize) -> Option<&[u8]> {
    use arrow::datatypes::{
        Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
        UInt32Type, UInt64Type,
    };
    // A primitive array's values buffer starts at its first element (offset applied).
    let bytes: &[u8] = match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().values().inner().as_slice(),
        DataType::Int16 => array
            .as_primitive::<Int16Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::UInt8 => array
            .as_primitive::<UInt8Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::UInt16 => array
            .as_primitive::<UInt16Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::UInt32 => array
            .as_primitive::<UInt32Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::UInt64 => array
            .as_primitive::<UInt64Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .values()
            .inner()
            .as_slice(),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .values()
            .inner()
            .as_slice(),
        _ => return None,
    };
    bytes.get(from * w..to * w)
}

/// A list as MDS's `ndarray` of a static dtype and a dynamic shape: the dimension count
/// and the width of the shape (one byte: `ndim << 2 | log2(width)`), the shape, the
/// values. Returns the elements.
fn ndarray<O: OffsetSizeTrait>(
    out: &mut Vec<u8>,
    lists: &GenericListArray<O>,
    row: usize,
    w: usize,
) -> Result<u64> {
    let offsets = lists.value_offsets();
    let (from, to) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
    let values = lists.values();
    if values.null_count() > 0 && (from..to).any(|i| values.is_null(i)) {
        return Err(Error::Internal(
            "a null inside a list: MDS arrays have none".into(),
        ));
    }
    let n = (to - from) as u64;
    match n {
        0..=0xff => {
            out.push(1 << 2);
            out.push(n as u8);
        }
        0x100..=0xffff => {
            out.push(1 << 2 | 1);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(1 << 2 | 2);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(1 << 2 | 3);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    let bytes = primitive_bytes(values.as_ref(), from, to, w).ok_or_else(|| {
        Error::Internal(format!("an MDS array of {} elements", values.data_type()))
    })?;
    out.extend_from_slice(bytes);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListArray, StringArray};
    use arrow::datatypes::UInt32Type;

    #[test]
    fn the_shard_configuration_is_what_python_json_dumps_writes() {
        let schema = Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new(
                "tokens",
                DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, false))),
                true,
            ),
        ]);
        let c = Columns::new(&schema, 1 << 26).expect("encodable");
        assert_eq!(c.names, ["id", "text", "tokens"]);
        assert_eq!(
            c.config,
            "{\"column_encodings\": [\"int64\", \"str\", \"ndarray:uint32\"], \"column_names\": \
             [\"id\", \"text\", \"tokens\"], \"column_sizes\": [8, null, null], \"compression\": \
             null, \"format\": \"mds\", \"hashes\": [], \"size_limit\": 67108864, \"version\": 2}"
        );
        let bad = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        let e = Columns::new(&bad, 1).expect_err("no encoding for dates");
        assert!(e.contains("`d`") && e.contains("cast"), "{e}");
    }

    #[test]
    fn values_are_encoded_as_mds_encodes_them() {
        let mut out = Vec::new();
        let s: ArrayRef = Arc::new(StringArray::from(vec!["hé"]));
        assert_eq!(put(&mut out, &s, 0, &Enc::Str).expect("str"), 3);
        let i: ArrayRef = Arc::new(Int64Array::from(vec![5, -2]).slice(1, 1));
        put(&mut out, &i, 0, &Enc::Scalar("int64", 8)).expect("int");
        let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<UInt32Type, _, _>(vec![
            Some(vec![Some(7u32); 300]),
        ]));
        assert_eq!(
            put(&mut out, &l, 0, &Enc::NdArray("uint32", 4)).expect("list"),
            300
        );
        assert_eq!(&out[..3], "hé".as_bytes());
        assert_eq!(&out[3..11], &(-2i64).to_le_bytes());
        // One dimension, shape as uint16 (300 > 255), then the values.
        assert_eq!(out[11], 1 << 2 | 1);
        assert_eq!(&out[12..14], &300u16.to_le_bytes());
        assert_eq!(&out[14..18], &7u32.to_le_bytes());
        assert_eq!(out.len(), 14 + 1200);
    }
}
