//! Helpers shared by the text steps: reading a string column whatever its Arrow string
//! type, and putting a column into a batch.

pub mod decode;
pub mod extract;
pub mod language;
pub mod normalize;
pub mod pii;
pub mod quality;
pub mod rules;
pub mod stats;
pub mod tokenize;
pub mod url_filter;
pub mod words;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::column_index;

/// Checks that `name` is a string column of `schema` and returns its index.
pub(crate) fn string_column(schema: &SchemaRef, name: &str) -> Result<usize, String> {
    let i = column_index(schema, name)?;
    match schema.field(i).data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(i),
        other => Err(format!(
            "column `{name}` is {other}, not a string; cast it first (`- cast: {{ {name}: string }}`)"
        )),
    }
}

/// The values of a string column as `Utf8`, whichever string type it has.
pub(crate) fn utf8(array: &ArrayRef) -> Result<StringArray, String> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().clone()),
        _ => arrow::compute::cast(array, &DataType::Utf8)
            .map(|a| a.as_string::<i32>().clone())
            .map_err(|e| e.to_string()),
    }
}

/// The schema after setting column `name` to `field`: replaced in place when it exists,
/// appended otherwise. Returns the schema and the column's index.
pub(crate) fn with_field(schema: &SchemaRef, name: &str, field: Field) -> (SchemaRef, usize) {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let index = match schema.index_of(name) {
        Ok(i) => {
            fields[i] = field;
            i
        }
        Err(_) => {
            fields.push(field);
            fields.len() - 1
        }
    };
    (
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        index,
    )
}

/// `batch` with column `index` of `schema` set to `values` (replaced or appended).
pub(crate) fn put_column(
    batch: &RecordBatch,
    schema: &SchemaRef,
    index: usize,
    values: ArrayRef,
) -> Result<RecordBatch, String> {
    put_columns(batch, schema, vec![(index, values)])
}

/// `batch` with several columns of `schema` set: each index replaces a column or, past
/// the end, is appended (in index order).
pub(crate) fn put_columns(
    batch: &RecordBatch,
    schema: &SchemaRef,
    mut values: Vec<(usize, ArrayRef)>,
) -> Result<RecordBatch, String> {
    values.sort_by_key(|(i, _)| *i);
    let mut columns = batch.columns().to_vec();
    for (index, v) in values {
        if index < columns.len() {
            columns[index] = v;
        } else {
            columns.push(v);
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Row `i` of a string array, `None` when null.
#[inline]
pub(crate) fn value(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}
