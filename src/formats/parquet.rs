//! Parquet sources, read by range through object_store: the footer first, then only the
//! column chunks of the columns the pipeline uses, a row group at a time. The range
//! requests run on the tokio runtime; each row group is then decoded from memory, as a
//! piece any thread may run (`SourceFormat::frame`).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use bytes::Buf;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
};

use parquet::file::reader::{ChunkReader, Length};

use super::{DecodeContext, Emit, EmitPiece, ObjectInput, RandomAccess, SourceFormat};
use crate::error::{Error, Result};
use crate::spec::OnSchemaMismatch;

#[derive(Debug)]
pub struct Parquet;

/// [`AsyncFileReader`] over any object store; ranges are fetched on the I/O runtime
/// (`get_ranges` coalesces nearby ranges into fewer requests).
pub struct StoreReader(pub RandomAccess);

fn external<E: std::error::Error + Send + Sync + 'static>(e: E) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl StoreReader {
    fn count(&self, bytes: u64, started: std::time::Instant) {
        if let Some(stats) = &self.0.stats {
            crate::report::Stats::add(&stats.bytes_read, bytes);
            stats.read.add_working(started.elapsed());
        }
    }
}

/// A range past the end of the object (a footer that points beyond it) may come back
/// short from some stores; the Parquet reader asserts on that, so it is an error here.
fn check_length(range: &Range<u64>, got: &Bytes) -> parquet::errors::Result<()> {
    let want = range.end.saturating_sub(range.start);
    if got.len() as u64 != want {
        return Err(ParquetError::General(format!(
            "bytes {}..{} were asked for and {} came back: the file is shorter than its \
             footer says (truncated or corrupt)",
            range.start,
            range.end,
            got.len()
        )));
    }
    Ok(())
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let (store, path) = (self.0.store.clone(), self.0.path.clone());
        let want = range.clone();
        let started = std::time::Instant::now();
        let task = self
            .0
            .handle
            .spawn(async move { store.get_range(&path, range).await });
        async move {
            let bytes = task.await.map_err(external)?.map_err(external)?;
            self.count(bytes.len() as u64, started);
            check_length(&want, &bytes)?;
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let (store, path) = (self.0.store.clone(), self.0.path.clone());
        let wanted = ranges.clone();
        let started = std::time::Instant::now();
        let task = self
            .0
            .handle
            .spawn(async move { store.get_ranges(&path, &ranges).await });
        async move {
            let parts = task.await.map_err(external)?.map_err(external)?;
            self.count(parts.iter().map(|b| b.len() as u64).sum(), started);
            if parts.len() != wanted.len() {
                return Err(ParquetError::General(format!(
                    "the store answered {} ranges for {} asked",
                    parts.len(),
                    wanted.len()
                )));
            }
            for (range, part) in wanted.iter().zip(&parts) {
                check_length(range, part)?;
            }
            Ok(parts)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.0.size;
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// The footer of a Parquet object, read through object_store, as the Arrow reader uses it.
async fn open(ra: RandomAccess, object: &str) -> Result<ArrowReaderMetadata> {
    let builder = ArrowReaderMetadata::load_async(&mut StoreReader(ra), ArrowReaderOptions::new())
        .await
        .map_err(|e| error(object, "not a readable Parquet file", e))?;
    // The rows are the row groups' rows. Some writers (parquet-rs 0.3) left the footer's
    // total at 0, and the crate sizes its batches by that total (`with_batch_size` takes
    // the smaller), so such a file read as empty: the footer is mended in memory first.
    let md = builder.metadata().clone();
    let rows: i64 = md.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let fm = md.file_metadata();
    // INT96 timestamps (Impala, Hive, old Spark) as microseconds: as nanoseconds, the
    // crate's default, a date past 2262 wraps around silently (pyarrow does the same).
    let int96: Vec<String> = fm
        .schema_descr()
        .columns()
        .iter()
        .filter(|c| c.physical_type() == parquet::basic::Type::INT96 && c.path().parts().len() == 1)
        .map(|c| c.path().parts()[0].clone())
        .collect();
    if fm.num_rows() == rows && int96.is_empty() {
        return Ok(builder);
    }
    let metadata = if fm.num_rows() == rows {
        md.clone()
    } else {
        tracing::debug!(
            "{object}: the footer says {} rows, its row groups hold {rows}; reading the row groups",
            fm.num_rows()
        );
        let mended = FileMetaData::new(
            fm.version(),
            rows,
            fm.created_by().map(str::to_string),
            fm.key_value_metadata().cloned(),
            fm.schema_descr_ptr(),
            fm.column_orders().cloned(),
        );
        Arc::new(
            ParquetMetaDataBuilder::new(mended)
                .set_row_groups(md.row_groups().to_vec())
                .set_column_index(md.column_index().cloned())
                .set_offset_index(md.offset_index().cloned())
                .build(),
        )
    };
    let mut options = ArrowReaderOptions::new();
    if !int96.is_empty() {
        let schema = builder.schema();
        let fields: Vec<arrow::datatypes::FieldRef> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                arrow::datatypes::DataType::Timestamp(_, tz) if int96.contains(f.name()) => {
                    Arc::new(f.as_ref().clone().with_data_type(
                        arrow::datatypes::DataType::Timestamp(
                            arrow::datatypes::TimeUnit::Microsecond,
                            tz.clone(),
                        ),
                    ))
                }
                _ => f.clone(),
            })
            .collect();
        options = options.with_schema(Arc::new(Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        )));
    }
    ArrowReaderMetadata::try_new(metadata, options)
        .map_err(|e| error(object, "not a readable Parquet file", e))
}

/// The footer of a Parquet object with its page index (for `kiln inspect`).
pub fn read_metadata(ra: RandomAccess, object: &str) -> Result<ParquetMetaData> {
    let size = ra.size;
    let mut reader = StoreReader(ra);
    guarded(object, || {
        futures::executor::block_on(
            ParquetMetaDataReader::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
                .load_and_finish(&mut reader, size),
        )
        .map_err(|e| error(object, "not a readable Parquet file", e))
    })
}

thread_local! {
    /// True while this thread runs [`guarded`] code.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which reads an object with the parquet crate. The crate panics on some
/// corrupt input (an index past a buffer in a page, an unknown type in the embedded Arrow
/// schema; found by `make fuzz`): that is a corrupt object, named, and under skip /
/// dead_letter left out like any other, not the end of the run.
///
/// The panic is the error's message; the panic hook stays quiet for it (no "thread
/// panicked" and backtrace on stderr for what is reported as bad input).
fn guarded<T>(object: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(std::cell::Cell::get) {
                default(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    caught.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(Error::input(
            object,
            None,
            format!(
                "corrupt Parquet data: the reader failed on it ({why}); re-write or remove the object"
            ),
        ))
    })
}

/// A storage failure stays a store error (its exit code says whether to retry); anything
/// else is bad input.
fn error(object: &str, context: &str, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store) => Error::store("read", object, *store),
            Err(other) => Error::input(object, None, format!("{context}: {other}")),
        },
        other => Error::input(object, None, format!("{context}: {other}")),
    }
}

impl SourceFormat for Parquet {
    fn random_access(&self) -> bool {
        true
    }

    fn infer_schema(
        &self,
        input: ObjectInput<'_>,
        rows: usize,
        cx: &DecodeContext,
    ) -> Result<Schema> {
        self.infer_schema_and_row_bytes(input, rows, cx)
            .map(|(schema, _)| schema)
    }

    fn infer_schema_and_row_bytes(
        &self,
        input: ObjectInput<'_>,
        _: usize,
        cx: &DecodeContext,
    ) -> Result<(Schema, Option<u64>)> {
        let ra = input.random()?;
        let builder = guarded(&cx.object, || {
            futures::executor::block_on(open(ra, &cx.object))
        })?;
        let schema = builder.schema().as_ref().clone();
        let (bytes, rows) =
            builder
                .metadata()
                .row_groups()
                .iter()
                .fold((0u64, 0u64), |(b, r), rg| {
                    (
                        b + rg.total_byte_size().max(0) as u64,
                        r + rg.num_rows().max(0) as u64,
                    )
                });
        // Arrow schema metadata from the writer (pandas, the Arrow IPC schema) is not ours.
        // Every column nullable: a later object may have nulls where the first has none
        // (or, under `on_schema_mismatch: null_fill`, lack the column).
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Ok((
            Schema::new(fields),
            (rows > 0).then(|| bytes.div_ceil(rows)),
        ))
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        super::decode_framed(self, input, cx, emit)
    }

    fn frames(&self) -> bool {
        true
    }

    /// A piece per row group: its column chunks of the columns read are fetched here
    /// (one coalesced request), decoded by the piece from memory.
    fn frame(
        &self,
        input: ObjectInput<'_>,
        cx: &Arc<DecodeContext>,
        emit: &mut EmitPiece<'_>,
    ) -> Result<()> {
        let ra = input.random()?;
        let meta = guarded(&cx.object, || {
            futures::executor::block_on(open(ra.clone(), &cx.object))
        })?;
        let columns = Arc::new(Columns::of(&meta, cx)?);
        let mut reader = StoreReader(ra.clone());
        for (g, first_row) in row_groups(&meta, cx.slice.as_ref()) {
            let chunks: Vec<_> = meta
                .metadata()
                .row_group(g)
                .columns()
                .iter()
                .enumerate()
                .filter(|(leaf, _)| columns.mask.leaf_included(*leaf))
                .map(|(_, c)| c)
                .collect();
            let ranges: Vec<Range<u64>> = chunks
                .iter()
                .map(|c| {
                    let (start, len) = c.byte_range();
                    start..start + len
                })
                .collect();
            // The column chunks as fetched, then decoded (their pages' uncompressed size).
            let weight = chunks
                .iter()
                .map(|c| c.compressed_size().max(0) as u64 + c.uncompressed_size().max(0) as u64)
                .sum();
            let parts = guarded(&cx.object, || {
                futures::executor::block_on(reader.get_byte_ranges(ranges.clone()))
                    .map_err(|e| error(&cx.object, &format!("reading row group {g}"), e))
            })?;
            let file = Fetched {
                parts: ranges.iter().map(|r| r.start).zip(parts).collect(),
                len: ra.size,
            };
            let (meta, columns, cx) = (meta.clone(), columns.clone(), cx.clone());
            let piece = move || {
                super::collect(|emit| {
                    guarded(&cx.object, || {
                        decode_group(file, meta, (g, first_row), &columns, &cx, emit)
                    })
                })
            };
            if !emit(super::Piece::new(weight, piece))? {
                break;
            }
        }
        Ok(())
    }
}

/// Which columns of a file a run reads, and where each goes.
struct Columns {
    /// The file's columns read.
    mask: ProjectionMask,
    /// The same columns one root at a time, in the file's order, each decoded in a job of
    /// its own (one mask, the whole projection, when only one root is read).
    parts: Vec<ProjectionMask>,
    /// Per column of the schema: its position among the roots read, if the file has it
    /// (see `source.on_schema_mismatch`).
    sources: super::conform::Sources,
    /// Per root read, in the schema's order: its position in a decoded batch (the
    /// projection keeps the file's order).
    order: Vec<usize>,
}

impl Columns {
    fn of(meta: &ArrowReaderMetadata, cx: &DecodeContext) -> Result<Self> {
        let file_schema = meta.schema();
        let mut roots = Vec::with_capacity(cx.schema.fields().len());
        let mut sources: super::conform::Sources = Vec::with_capacity(roots.capacity());
        for want in cx.schema.fields() {
            let Ok(i) = file_schema.index_of(want.name()) else {
                if cx.on_mismatch == OnSchemaMismatch::NullFill {
                    sources.push(None);
                    continue;
                }
                return Err(Error::input(
                    &cx.object,
                    None,
                    format!(
                        "has no column `{}`, which the schema from {} has{}",
                        want.name(),
                        cx.schema_origin,
                        super::conform::missing_hint(cx),
                    ),
                ));
            };
            let got = file_schema.field(i).data_type();
            if got != want.data_type() && cx.on_mismatch == OnSchemaMismatch::Fail {
                return Err(Error::input(
                    &cx.object,
                    None,
                    format!(
                        "column `{}` is {got} here but {} in {}; set `source.on_schema_mismatch: cast` \
                             to convert it, or declare `source.schema`",
                        want.name(),
                        want.data_type(),
                        cx.schema_origin
                    ),
                ));
            }
            sources.push(Some(roots.len()));
            roots.push(i);
        }
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots.iter().copied());
        let mut sorted = roots.clone();
        sorted.sort_unstable();
        let parts = if sorted.len() > 1 {
            sorted
                .iter()
                .map(|&r| ProjectionMask::roots(meta.parquet_schema(), [r]))
                .collect()
        } else {
            vec![mask.clone()]
        };
        let order = roots
            .iter()
            .map(|r| sorted.binary_search(r).unwrap_or(0))
            .collect();
        Ok(Columns {
            mask,
            parts,
            sources,
            order,
        })
    }
}

/// The row groups to read, each with the rows of the file before it. A slice of a large
/// object reads the row groups whose middle byte lies in its range (as Spark and Trino
/// split Parquet): each row group in exactly one slice.
fn row_groups(meta: &ArrowReaderMetadata, slice: Option<&Range<u64>>) -> Vec<(usize, u64)> {
    let mut rows = 0u64;
    let mut groups = Vec::new();
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        let start = rg
            .columns()
            .iter()
            .map(|c| c.byte_range().0)
            .min()
            .unwrap_or(0);
        let middle = start + rg.compressed_size().max(0) as u64 / 2;
        if slice.is_none_or(|range| range.contains(&middle)) {
            groups.push((g, rows));
        }
        rows += rg.num_rows().max(0) as u64;
    }
    groups
}

/// Decodes row group `g` (the file's rows from `first_row` on) from its fetched bytes:
/// each root column read in a rayon job of its own (a wide row group is many columns'
/// work, and a piece is one row group), the columns then put side by side batch by
/// batch. Every column's reader cuts the row group at the same rows (`batch_rows`), so
/// the batches are those of one reader of all the columns; an error is the one that
/// reader meets first (the earliest batch, then the first column in the file's order),
/// after the batches before it.
fn decode_group(
    file: Fetched,
    meta: ArrowReaderMetadata,
    (g, first_row): (usize, u64),
    columns: &Columns,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    use rayon::prelude::*;
    let decoded: Vec<(Vec<RecordBatch>, Option<ParquetError>)> = columns
        .parts
        .par_iter()
        .map(|mask| decode_part(file.clone(), meta.clone(), g, mask, cx.batch_rows))
        .collect::<Result<_>>()
        .map_err(|e| match e {
            Error::Internal(m) => Error::input(&cx.object, None, m),
            other => other,
        })?;
    // The first batch index at which some column failed, and that column's error.
    let failed = decoded
        .iter()
        .enumerate()
        .filter_map(|(c, (batches, e))| e.as_ref().map(|_| (batches.len(), c)))
        .min();
    let batches = decoded.iter().map(|(b, _)| b.len()).min().unwrap_or(0);
    let mut row = first_row;
    for i in 0..batches {
        if failed.is_some_and(|(at, _)| at <= i) {
            break;
        }
        // The roots read, in the file's order, as one reader of all of them gives them.
        let read: Vec<ArrayRef> = decoded
            .iter()
            .flat_map(|(b, _)| b[i].columns().iter().cloned())
            .collect();
        let rows = decoded[0].0[i].num_rows();
        let first = row;
        row += rows as u64;
        // Columns the file has, in the schema's order; conformed where they differ.
        let cols = columns
            .sources
            .iter()
            .map(|s| s.map(|k| read[columns.order[k]].clone()))
            .collect();
        if !super::conform::emit_conformed(&cx.schema, cols, rows, first, cx, "parquet", emit)? {
            return Ok(());
        }
    }
    if let Some((_, c)) = failed {
        let why = match decoded.into_iter().nth(c).and_then(|(_, e)| e) {
            Some(ParquetError::General(m)) => m,
            Some(other) => other.to_string(),
            None => "a column failed to decode".into(),
        };
        return Err(Error::input(
            &cx.object,
            None,
            format!("after row {row}: {why}"),
        ));
    }
    Ok(())
}

/// One part's columns of row group `g`: its batches until the end or the first error.
/// `Err` only where the reader cannot be made (as `Error::Internal`, the message only).
fn decode_part(
    file: Fetched,
    meta: ArrowReaderMetadata,
    g: usize,
    mask: &ProjectionMask,
    batch_rows: usize,
) -> Result<(Vec<RecordBatch>, Option<ParquetError>)> {
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_row_groups(vec![g])
        .with_projection(mask.clone())
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(b) => batches.push(b),
            Err(arrow::error::ArrowError::ParquetError(m)) => {
                return Ok((batches, Some(ParquetError::General(m))));
            }
            Err(other) => return Ok((batches, Some(ParquetError::General(other.to_string())))),
        }
    }
    Ok((batches, None))
}

/// The column chunks of one row group, fetched, as a file the synchronous Arrow reader
/// reads: each read must fall inside a fetched range. Cloned per column decoded: the
/// bytes are shared.
#[derive(Clone)]
struct Fetched {
    /// Where each fetched range starts in the file, and its bytes.
    parts: Vec<(u64, Bytes)>,
    len: u64,
}

impl Fetched {
    fn slice(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<Bytes> {
        let part = self
            .parts
            .iter()
            .find(|(at, b)| *at <= start && start < at + b.len() as u64);
        let Some((at, bytes)) = part else {
            return Err(ParquetError::General(format!(
                "byte {start} lies outside the row group's column chunks"
            )));
        };
        let from = (start - at) as usize;
        let to = len.map_or(bytes.len(), |n| from + n);
        if to > bytes.len() {
            return Err(ParquetError::General(format!(
                "bytes {start}..{} run past the row group's column chunk",
                start + (to - from) as u64
            )));
        }
        Ok(bytes.slice(from..to))
    }
}

impl Length for Fetched {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Fetched {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}
