//! Parquet sources, read by range through object_store: the footer first, then only the
//! column chunks of the columns the pipeline uses, a row group at a time. The range
//! requests run on the tokio runtime; each row group is then decoded from memory, as a
//! piece any thread may run (`SourceFormat::frame`).

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
};

mod decode;

use self::decode::{Columns, Fetched, decode_group, row_groups};
use super::{DecodeContext, Emit, EmitPiece, ObjectInput, RandomAccess, SourceFormat};
use crate::error::{Error, Result};

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
