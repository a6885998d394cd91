//! Decoding a Parquet source's row groups from their fetched column chunks: which columns
//! a run reads ([`Columns`]), which row groups a slice reads ([`row_groups`]), the fetched
//! bytes as a file the Arrow reader reads ([`Fetched`]), and a row group's columns decoded
//! in parallel and put side by side ([`decode_group`]).

use std::ops::Range;

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use bytes::Buf;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Result};
use crate::formats::{DecodeContext, Emit};
use crate::spec::OnSchemaMismatch;

/// Which columns of a file a run reads, and where each goes.
pub(super) struct Columns {
    /// The file's columns read.
    pub mask: ProjectionMask,
    /// The same columns one root at a time, in the file's order, each decoded in a job of
    /// its own (one mask, the whole projection, when only one root is read).
    parts: Vec<ProjectionMask>,
    /// Per column of the schema: its position among the roots read, if the file has it
    /// (see `source.on_schema_mismatch`).
    sources: crate::formats::conform::Sources,
    /// Per root read, in the schema's order: its position in a decoded batch (the
    /// projection keeps the file's order).
    order: Vec<usize>,
}

impl Columns {
    pub fn of(meta: &ArrowReaderMetadata, cx: &DecodeContext) -> Result<Self> {
        let file_schema = meta.schema();
        let mut roots = Vec::with_capacity(cx.schema.fields().len());
        let mut sources: crate::formats::conform::Sources = Vec::with_capacity(roots.capacity());
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
                        crate::formats::conform::missing_hint(cx),
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
pub(super) fn row_groups(
    meta: &ArrowReaderMetadata,
    slice: Option<&Range<u64>>,
) -> Vec<(usize, u64)> {
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
pub(super) fn decode_group(
    file: Fetched,
    meta: ArrowReaderMetadata,
    (g, first_row): (usize, u64),
    columns: &Columns,
    cx: &DecodeContext,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let decoded: Vec<(Vec<RecordBatch>, Option<ParquetError>)> =
        crate::pool::par_rows(columns.parts.len(), 1, |i| {
            let mask = &columns.parts[i];
            decode_part(file.clone(), meta.clone(), g, mask, cx.batch_rows)
        })
        .into_iter()
        .collect::<parquet::errors::Result<_>>()
        .map_err(|e| Error::input(&cx.object, None, e.to_string()))?;
    // The first batch index at which some column failed, and that column's error.
    let failed = decoded
        .iter()
        .enumerate()
        .filter_map(|(c, (batches, e))| e.as_ref().map(|_| (batches.len(), c)))
        .min();
    let batches = decoded.iter().map(|(b, _)| b.len()).min().unwrap_or(0);
    // Without an error every column's reader gives the same batches; rows are never
    // dropped on a disagreement.
    let disagree = |what: &str| {
        Error::Internal(format!(
            "row group {g} of {}: its columns decoded to different {what}",
            cx.object
        ))
    };
    if failed.is_none() && decoded.iter().any(|(b, _)| b.len() != batches) {
        return Err(disagree("numbers of batches"));
    }
    let mut row = first_row;
    for i in 0..batches {
        if failed.is_some_and(|(at, _)| at <= i) {
            break;
        }
        let rows = decoded[0].0[i].num_rows();
        if decoded.iter().any(|(b, _)| b[i].num_rows() != rows) {
            return Err(disagree("row counts"));
        }
        // The roots read, in the file's order, as one reader of all of them gives them.
        let read: Vec<ArrayRef> = decoded
            .iter()
            .flat_map(|(b, _)| b[i].columns().iter().cloned())
            .collect();
        let first = row;
        row += rows as u64;
        // Columns the file has, in the schema's order; conformed where they differ.
        let cols = columns
            .sources
            .iter()
            .map(|s| s.map(|k| read[columns.order[k]].clone()))
            .collect();
        if !crate::formats::conform::emit_conformed(
            &cx.schema, cols, rows, first, cx, "parquet", emit,
        )? {
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
/// `Err` only where the reader cannot be made.
fn decode_part(
    file: Fetched,
    meta: ArrowReaderMetadata,
    g: usize,
    mask: &ProjectionMask,
    batch_rows: usize,
) -> parquet::errors::Result<(Vec<RecordBatch>, Option<ParquetError>)> {
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_row_groups(vec![g])
        .with_projection(mask.clone())
        .with_batch_size(batch_rows)
        .build()?;
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
pub(super) struct Fetched {
    /// Where each fetched range starts in the file, and its bytes.
    pub parts: Vec<(u64, Bytes)>,
    pub len: u64,
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
