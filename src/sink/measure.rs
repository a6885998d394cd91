//! The Arrow size of each row, for cutting row groups at `sink.row_group_bytes`.
//!
//! The measure is additive over rows (a run of rows measures the sum of its rows), so
//! where the rows are cut depends only on the rows, never on how they were batched:
//! the same input gives the same row groups for any `run.batch_rows`, task size or
//! thread count. A row measures what it occupies in Arrow's buffers: the value width of
//! fixed-width columns (a boolean counts one byte), offset plus value bytes of strings
//! and binaries, offset plus elements of lists, the sum of a struct's fields. Columns
//! of other types (unions, run-end encoded …) count their batch's average per row.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

/// The measure of each row of `batch`.
pub fn row_bytes(batch: &RecordBatch) -> Vec<u64> {
    let mut out = vec![0u64; batch.num_rows()];
    for column in batch.columns() {
        add(column.as_ref(), &mut out);
    }
    out
}

/// Adds the measure of each row of `a` to `out` (`out.len() == a.len()`).
fn add(a: &dyn Array, out: &mut [u64]) {
    let t = a.data_type();
    if let Some(width) = t.primitive_width() {
        out.iter_mut().for_each(|o| *o += width as u64);
        return;
    }
    match t {
        DataType::Null => {}
        DataType::Boolean => out.iter_mut().for_each(|o| *o += 1),
        DataType::Utf8 | DataType::Binary => {
            let offsets = match t {
                DataType::Utf8 => a.as_string::<i32>().offsets(),
                _ => a.as_binary::<i32>().offsets(),
            };
            for (o, w) in out.iter_mut().zip(offsets.windows(2)) {
                *o += 4 + (w[1] - w[0]) as u64;
            }
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            let offsets = match t {
                DataType::LargeUtf8 => a.as_string::<i64>().offsets(),
                _ => a.as_binary::<i64>().offsets(),
            };
            for (o, w) in out.iter_mut().zip(offsets.windows(2)) {
                *o += 8 + (w[1] - w[0]) as u64;
            }
        }
        DataType::Utf8View | DataType::BinaryView => {
            let views = match t {
                DataType::Utf8View => a.as_string_view().views(),
                _ => a.as_binary_view().views(),
            };
            for (o, v) in out.iter_mut().zip(views.iter()) {
                // A view is 16 bytes; values longer than 12 bytes live in a data buffer.
                let len = *v as u32 as u64;
                *o += 16 + if len > 12 { len } else { 0 };
            }
        }
        DataType::FixedSizeBinary(width) => {
            out.iter_mut().for_each(|o| *o += *width as u64);
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            elements(l.values().as_ref(), l.offsets(), 4, out);
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            elements(l.values().as_ref(), l.offsets(), 8, out);
        }
        DataType::FixedSizeList(_, n) => {
            let l = a.as_fixed_size_list();
            let n = *n as usize;
            let values = l.values().slice(l.offset() * n, l.len() * n);
            let mut inner = vec![0u64; values.len()];
            add(values.as_ref(), &mut inner);
            for (o, chunk) in out.iter_mut().zip(inner.chunks(n.max(1))) {
                *o += chunk.iter().sum::<u64>();
            }
        }
        DataType::Map(_, _) => {
            let m = a.as_map();
            elements(m.entries(), m.offsets(), 4, out);
        }
        DataType::Struct(_) => {
            for column in a.as_struct().columns() {
                add(column.as_ref(), out);
            }
        }
        DataType::Dictionary(key, _) => {
            let width = key.primitive_width().unwrap_or(4) as u64;
            out.iter_mut().for_each(|o| *o += width);
        }
        _ => {
            let n = a.len().max(1) as u64;
            let each = a.to_data().get_slice_memory_size().unwrap_or_default() as u64 / n;
            out.iter_mut().for_each(|o| *o += each);
        }
    }
}

/// Adds, to each row of a list-like column, its offset's width and the measure of its
/// elements in `values` (between its offsets).
fn elements<O: arrow::array::OffsetSizeTrait>(
    values: &dyn Array,
    offsets: &[O],
    offset_width: u64,
    out: &mut [u64],
) {
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
        return;
    };
    let (first, last) = (first.as_usize(), last.as_usize());
    let used = values.slice(first, last - first);
    let mut inner = vec![0u64; used.len()];
    add(used.as_ref(), &mut inner);
    // Prefix sums over the elements, so each row's share is one subtraction.
    let mut prefix = Vec::with_capacity(inner.len() + 1);
    prefix.push(0u64);
    for v in &inner {
        prefix.push(prefix.last().copied().unwrap_or_default() + v);
    }
    for (o, w) in out.iter_mut().zip(offsets.windows(2)) {
        let (s, e) = (w[0].as_usize() - first, w[1].as_usize() - first);
        *o += offset_width + prefix[e] - prefix[s];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, ListArray, StringArray};
    use arrow::datatypes::Int32Type;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("hello"),
            Some(""),
        ]));
        let tokens: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![]),
            None,
            Some(vec![Some(3), Some(4), Some(5)]),
        ]));
        RecordBatch::try_from_iter([("id", ids), ("text", text), ("tokens", tokens)])
            .expect("batch")
    }

    #[test]
    fn each_row_measures_its_own_values() {
        // id 8; text 4 + length; tokens 4 + 4 per element.
        assert_eq!(
            row_bytes(&batch()),
            [8 + 5 + 12, 8 + 4 + 4, 8 + 9 + 4, 8 + 4 + 16]
        );
    }

    #[test]
    fn a_slice_measures_what_its_rows_measure_in_the_whole_batch() {
        let b = batch();
        let whole = row_bytes(&b);
        for start in 0..b.num_rows() {
            for len in 0..=b.num_rows() - start {
                assert_eq!(
                    row_bytes(&b.slice(start, len)),
                    whole[start..start + len],
                    "rows {start}..{}",
                    start + len
                );
            }
        }
    }
}
