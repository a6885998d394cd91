//! `sink.format: webdataset`: tar shards in the WebDataset layout, what the `webdataset`
//! package (and torchdata, Ray's `read_webdataset`) reads: a sample is the consecutive
//! members that share a key (the member name up to its first dot), one member per
//! column, named `<key>.<column>.<type>` so that WebDataset's decoders know each one by
//! its last extension:
//!
//! | column | member | decoded by `webdataset` as |
//! |---|---|---|
//! | string | `<key>.<column>.txt` | `str` |
//! | integer | `<key>.<column>.cls` | `int` |
//! | float, boolean, list of numbers | `<key>.<column>.json` | the JSON value |
//! | binary | `<key>.<column>.bin` | `bytes` |
//! | image (`{bytes, path}`, as `image.encode` makes it) | `<key>.<column>.<jpg, png, webp>` | an image (PIL, numpy, torch) |
//!
//! A null is an absent member. The key is `sink.webdataset.key` (a string or integer
//! column, whose values must not hold `.` or `/`), or `<task>-<shard>-<row>`. Members have
//! a fixed owner, mode and time, so a shard's bytes depend on its rows alone. The tar
//! streams into the shard's multipart upload as rows arrive, staged and published at
//! commit like a Parquet shard.

use std::collections::HashMap;
use std::sync::Arc;

use super::upload::{StagedShard, Streaming};
use super::writer::{WriterConfig, shard_stem};
use super::{ColumnStats, ShardRecord};
use crate::error::{Error, Result};
use crate::report::Stats;
use arrow::array::{Array, ArrayRef, AsArray, StructArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

/// How a column becomes a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Txt,
    Cls,
    Json,
    Bin,
    /// An encoded image struct; the extension comes from its `path`.
    Image,
}

fn member(f: &Field) -> std::result::Result<Member, String> {
    Ok(match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Member::Txt,
        t if t.is_integer() => Member::Cls,
        t if t.is_floating() => Member::Json,
        DataType::Boolean => Member::Json,
        DataType::List(i) | DataType::LargeList(i)
            if i.data_type().is_integer() || i.data_type().is_floating() =>
        {
            Member::Json
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Member::Bin,
        DataType::Struct(fields)
            if fields
                .iter()
                .any(|c| c.name() == "bytes" && c.data_type() == &DataType::Binary)
                && fields.iter().any(|c| c.name() == "path") =>
        {
            Member::Image
        }
        t => {
            return Err(format!(
                "column `{}` is {t}, which a WebDataset sample holds no member type for \
                 (strings, integers, floats, booleans, lists of numbers, binary and encoded \
                 images are written); cast it or drop it before the sink",
                f.name()
            ));
        }
    })
}

/// The columns of a WebDataset sink, in the files' schema order, and the key column.
#[derive(Debug)]
pub struct Columns {
    names: Vec<String>,
    members: Vec<Member>,
    key: Option<usize>,
}

impl Columns {
    /// # Errors
    /// What to do about a column no member type fits, or a key column that cannot be one.
    pub fn new(schema: &Schema, key: Option<&str>) -> std::result::Result<Columns, String> {
        let mut names = Vec::new();
        let mut members = Vec::new();
        for f in schema.fields() {
            names.push(f.name().clone());
            members.push(member(f)?);
        }
        let key = key
            .map(|k| {
                let i = schema.index_of(k).map_err(|_| {
                    format!(
                        "sink.webdataset.key: no column `{k}` in the files (they have {})",
                        names.join(", ")
                    )
                })?;
                match members[i] {
                    Member::Txt | Member::Cls => Ok(i),
                    _ => Err(format!(
                        "sink.webdataset.key: `{k}` is {}; a key is a string or an integer",
                        schema.field(i).data_type()
                    )),
                }
            })
            .transpose()?;
        Ok(Columns {
            names,
            members,
            key,
        })
    }
}

/// The WebDataset shards of one task: one open tar per partition folder.
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

struct Open {
    shard: usize,
    relative: String,
    tar: tar::Builder<Streaming>,
    rows: u64,
    nulls: Vec<u64>,
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

    fn uri(&self, relative: &str) -> String {
        format!("{}{relative}", self.cfg.display)
    }

    /// Appends the rows of `batch` (the files' columns) to the open shard of `dir`.
    pub fn write(&mut self, dir: &str, batch: &RecordBatch) -> Result<()> {
        let cols = self.cols.clone();
        let keys: Option<Vec<Option<String>>> = cols.key.map(|k| text_values(batch.column(k)));
        let mut memory = batch
            .columns()
            .iter()
            .map(|a| a.to_data().get_slice_memory_size().unwrap_or_default() as u64)
            .sum::<u64>();
        for row in 0..batch.num_rows() {
            if !self.open.contains_key(dir) {
                let open = self.start(dir);
                self.open.insert(dir.to_string(), open);
            }
            let uri = self
                .open
                .get(dir)
                .map(|o| self.uri(&o.relative))
                .unwrap_or_default();
            let open = self
                .open
                .get_mut(dir)
                .ok_or_else(|| Error::Internal("a WebDataset shard vanished".into()))?;
            let key = match &keys {
                Some(keys) => {
                    let k = keys[row].clone().ok_or_else(|| {
                        Error::sink(
                            &uri,
                            "a sample's key is null: every key column value must be set",
                        )
                    })?;
                    if k.is_empty() || k.contains('.') || k.contains('/') {
                        return Err(Error::sink(
                            &uri,
                            format!(
                                "sample key {k:?}: a WebDataset key is the member name up to its \
                                 first dot, so it must be non-empty, without `.` or `/`"
                            ),
                        ));
                    }
                    k
                }
                None => format!("{:05}-{:05}-{:07}", self.task, open.shard, open.rows),
            };
            for (c, (array, kind)) in batch.columns().iter().zip(&cols.members).enumerate() {
                if array.is_null(row) {
                    open.nulls[c] += 1;
                    continue;
                }
                let (ext, data) = value(array, row, *kind)
                    .map_err(|e| Error::sink(&uri, format!("column `{}`: {e}", cols.names[c])))?;
                let name = format!("{key}.{}.{ext}", cols.names[c]);
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_uid(0);
                header.set_gid(0);
                header.set_entry_type(tar::EntryType::Regular);
                open.tar
                    .append_data(&mut header, &name, data.as_slice())
                    .map_err(|e| super::upload::upload_error(&uri, e))?;
            }
            open.rows += 1;
            open.memory_bytes += std::mem::take(&mut memory);
            let bytes = open.tar.get_ref().written;
            if open.rows >= self.cfg.max_rows || bytes >= self.cfg.max_bytes {
                self.close(dir)?;
            }
        }
        Ok(())
    }

    fn start(&mut self, dir: &str) -> Open {
        let n = self.next.entry(dir.to_string()).or_default();
        let shard = *n;
        *n += 1;
        let relative = format!("{}.tar", shard_stem(dir, self.task, shard));
        let mut tar = tar::Builder::new(Streaming::start(&self.cfg, &relative, &self.stats));
        tar.mode(tar::HeaderMode::Deterministic);
        Open {
            shard,
            relative,
            tar,
            rows: 0,
            nulls: vec![0; self.cols.names.len()],
            memory_bytes: 0,
        }
    }

    fn close(&mut self, dir: &str) -> Result<()> {
        let Some(open) = self.open.remove(dir) else {
            return Ok(());
        };
        let uri = self.uri(&open.relative);
        let (staged, bytes, crc32c) = open
            .tar
            .into_inner()
            .map_err(|e| super::upload::upload_error(&uri, e))?
            .end(&self.cfg.handle)?;
        self.stats
            .shards
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .bytes_out
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let columns = self
            .cols
            .names
            .iter()
            .zip(&open.nulls)
            .map(|(name, &nulls)| {
                let stats = ColumnStats {
                    nulls,
                    ..Default::default()
                };
                (name.clone(), stats)
            })
            .collect();
        self.shards.push(ShardRecord {
            path: open.relative,
            rows: open.rows,
            bytes,
            crc32c,
            memory_bytes: open.memory_bytes,
            columns,
            index: None,
            mds: None,
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

/// A string or integer column's values as text (the sample keys).
fn text_values(a: &ArrayRef) -> Vec<Option<String>> {
    match arrow::compute::cast(a, &DataType::Utf8) {
        Ok(s) => s
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        Err(_) => vec![None; a.len()],
    }
}

/// Row `row` of `array` as a member: its extension and bytes.
fn value(
    array: &ArrayRef,
    row: usize,
    kind: Member,
) -> std::result::Result<(&'static str, Vec<u8>), String> {
    let one = array.slice(row, 1);
    Ok(match kind {
        Member::Txt => (
            "txt",
            text_values(&one).remove(0).unwrap_or_default().into_bytes(),
        ),
        Member::Cls => (
            "cls",
            text_values(&one).remove(0).unwrap_or_default().into_bytes(),
        ),
        Member::Bin => {
            let b = arrow::compute::cast(&one, &DataType::Binary).map_err(|e| e.to_string())?;
            ("bin", b.as_binary::<i32>().value(0).to_vec())
        }
        Member::Json => ("json", json_value(&one)?.into_bytes()),
        Member::Image => {
            let s: &StructArray = one.as_struct();
            let bytes = s
                .column_by_name("bytes")
                .and_then(|b| b.as_binary_opt::<i32>())
                .filter(|b| b.is_valid(0))
                .ok_or("an image without bytes")?;
            let path = s
                .column_by_name("path")
                .and_then(|p| text_values(p).remove(0))
                .unwrap_or_default();
            let ext = match path
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .as_str()
            {
                "png" => "png",
                "webp" => "webp",
                "jpg" | "jpeg" => "jpg",
                other => {
                    return Err(format!(
                        "an image whose path {path:?} names no image type ({other:?}); \
                         `image.encode` names its output"
                    ));
                }
            };
            (ext, bytes.value(0).to_vec())
        }
    })
}

/// One value as JSON, as arrow-json writes it.
fn json_value(one: &ArrayRef) -> std::result::Result<String, String> {
    let field = Field::new("v", one.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![one.clone()])
        .map_err(|e| e.to_string())?;
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    w.write(&batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&w.into_inner()).map_err(|e| e.to_string())?;
    Ok(rows
        .first()
        .and_then(|r| r.get("v"))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int64Array, ListArray, StringArray};
    use arrow::datatypes::UInt32Type;

    #[test]
    fn each_type_becomes_the_member_webdataset_decodes() {
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a", "héllo"]));
        assert_eq!(
            value(&s, 1, Member::Txt),
            Ok(("txt", "héllo".as_bytes().to_vec()))
        );
        let i: ArrayRef = Arc::new(Int64Array::from(vec![7, -3]));
        assert_eq!(value(&i, 1, Member::Cls), Ok(("cls", b"-3".to_vec())));
        let f: ArrayRef = Arc::new(Float32Array::from(vec![0.5]));
        assert_eq!(value(&f, 0, Member::Json), Ok(("json", b"0.5".to_vec())));
        let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<UInt32Type, _, _>(vec![
            Some(vec![Some(1u32), Some(2)]),
        ]));
        assert_eq!(value(&l, 0, Member::Json), Ok(("json", b"[1,2]".to_vec())));
    }

    #[test]
    fn keys_must_be_strings_or_integers_in_the_files() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("score", DataType::Float64, true),
        ]);
        assert!(Columns::new(&schema, Some("id")).is_ok());
        let e = Columns::new(&schema, Some("score")).expect_err("a float key");
        assert!(e.contains("string or an integer"), "{e}");
        let e = Columns::new(&schema, Some("nope")).expect_err("no column");
        assert!(e.contains("no column `nope`"), "{e}");
        let dates = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        assert!(
            Columns::new(&dates, None)
                .expect_err("a date")
                .contains("`d`")
        );
    }
}
