//! `source.on_schema_mismatch`: reading an object whose columns differ from the run's
//! schema. Columns are matched by name; under `cast` and `null_fill` a column of another
//! type is converted to the schema's type row by row — a value that does not convert is
//! a bad record, left to `run.on_error` like any other — and under `null_fill` a column
//! the object lacks is read as nulls.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, new_null_array};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Decoded, Emit};
use crate::error::{Error, Result};
use crate::rejects::{RejectKind, Rejected};
use crate::spec::OnSchemaMismatch;

/// What the error for a column the object lacks tells the user to do.
pub fn missing_hint(cx: &DecodeContext) -> &'static str {
    match cx.on_mismatch {
        OnSchemaMismatch::Fail | OnSchemaMismatch::Cast => {
            "; set `source.on_schema_mismatch: null_fill` to read it as nulls"
        }
        OnSchemaMismatch::NullFill => "",
    }
}

/// Where each column of the run's schema comes from in one object: the object's
/// column at that index, or nowhere (all nulls, under `null_fill`).
pub type Sources = Vec<Option<usize>>;

/// Builds the run's batch (of `schema`: the run's, or the part of it a full pass reads)
/// from an object's `columns` (in the schema's order, `None`
/// for a column the object lacks) of `rows` rows: missing columns as nulls, columns of
/// another type converted. Rows with a value that does not convert are left out and
/// handed to `emit` as rejections under `skip` / `dead_letter`, and are an error naming
/// the row, the column and the value under `fail`. `first_row`: the object's row number
/// of the first row, for messages. Returns whether to go on (what `emit` said).
pub fn emit_conformed(
    schema: &SchemaRef,
    columns: Vec<Option<ArrayRef>>,
    rows: usize,
    first_row: u64,
    cx: &DecodeContext,
    stage: &str,
    emit: &mut Emit<'_>,
) -> Result<bool> {
    let mut out = Vec::with_capacity(columns.len());
    // Rows to keep, and per failed row the first column that failed.
    let mut failed: Vec<Option<usize>> = Vec::new();
    for (c, (field, column)) in schema.fields().iter().zip(&columns).enumerate() {
        let Some(column) = column else {
            out.push(new_null_array(field.data_type(), rows));
            continue;
        };
        if column.data_type() == field.data_type() {
            out.push(column.clone());
            continue;
        }
        let converted = cast_with_options(
            column,
            field.data_type(),
            &CastOptions {
                safe: true,
                ..Default::default()
            },
        )
        .map_err(|e| {
            Error::input(
                &cx.object,
                None,
                format!(
                    "column `{}` is {} here and {} in the schema from {}, and kiln cannot convert one to the other: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type(),
                    cx.schema_origin
                ),
            )
        })?;
        // `safe` casting turns a value that does not convert into a null: find them.
        if converted.null_count() > column.null_count() {
            if failed.is_empty() {
                failed = vec![None; rows];
            }
            for (row, slot) in failed.iter_mut().enumerate() {
                if slot.is_none() && converted.is_null(row) && column.is_valid(row) {
                    *slot = Some(c);
                }
            }
        }
        out.push(converted);
    }
    let batch =
        RecordBatch::try_new(schema.clone(), out).map_err(|e| Error::Internal(e.to_string()))?;
    if failed.iter().all(Option::is_none) {
        return emit(Decoded::Batch(batch));
    }
    let describe = |row: usize, c: usize| {
        let field = schema.field(c);
        let column = columns[c].as_ref().map(|a| a.slice(row, 1));
        let value = column
            .and_then(|a| arrow::util::display::array_value_to_string(&a, 0).ok())
            .unwrap_or_default();
        format!(
            "row {}: column `{}`: `{value}` does not convert to {} (the type in the schema from {})",
            first_row + row as u64 + 1,
            field.name(),
            field.data_type(),
            cx.schema_origin
        )
    };
    if !cx.tolerant() {
        let (row, c) = failed
            .iter()
            .enumerate()
            .find_map(|(row, c)| c.map(|c| (row, c)))
            .unwrap_or_default();
        return Err(Error::input(&cx.object, None, describe(row, c)));
    }
    // The rows as the object had them, for the dead-letter record.
    let original = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .zip(&columns)
                .filter_map(|(f, c)| {
                    c.as_ref().map(|c| {
                        arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true)
                    })
                })
                .collect::<Vec<_>>(),
        )),
        columns.iter().flatten().cloned().collect(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    for (row, c) in failed.iter().enumerate() {
        if let Some(c) = c {
            let rejected = Rejected {
                object: cx.object.clone(),
                kind: RejectKind::Record,
                line: None,
                offset: None,
                rows_before: None,
                rows: None,
                stage: stage.to_string(),
                error: describe(row, *c),
                record: Some(crate::rejects::row_json(&original, row)),
            };
            if !emit(Decoded::Rejected(rejected))? {
                return Ok(false);
            }
        }
    }
    let keep: BooleanArray = failed.iter().map(|c| Some(c.is_none())).collect();
    let kept = filter_record_batch(&batch, &keep).map_err(|e| Error::Internal(e.to_string()))?;
    if kept.num_rows() == 0 {
        return Ok(true);
    }
    emit(Decoded::Batch(kept))
}
