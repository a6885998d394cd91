//! Column statistics of the shards, for the manifest, the dataset card and `kiln
//! inspect`: null counts and value totals (string bytes, list elements: the tokens of a
//! token column) counted as batches are written, min/max read from the Parquet
//! statistics the writer computes anyway, and the in-memory Arrow size the `datasets`
//! library records as a split's `num_bytes`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Statistics of one column of one shard, or of the whole dataset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnStats {
    pub nulls: u64,
    /// Smallest and largest value, for numbers, booleans, dates and timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// Strings and binary: bytes of all values; lists: elements of all lists (for a
    /// token column, the tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<u64>,
}

impl ColumnStats {
    /// Folds another shard's statistics of the same column into these.
    pub fn merge(&mut self, other: &ColumnStats) {
        self.nulls += other.nulls;
        self.min = pick(self.min.take(), other.min.clone(), Ordering::Less);
        self.max = pick(self.max.take(), other.max.clone(), Ordering::Greater);
        self.values = match (self.values, other.values) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// `a` or `b`, whichever compares as `want` against the other.
fn pick(a: Option<Value>, b: Option<Value>, want: Ordering) -> Option<Value> {
    match (a, b) {
        (Some(a), Some(b)) => match compare(&b, &a) {
            Some(o) if o == want => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

/// Orders two JSON values as [`to_json`] wrote them: numbers by value (exactly for
/// integers), strings (ISO dates and timestamps) as text, booleans false < true.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (as_i128(x), as_i128(y)) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn as_i128(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Whether min/max are kept for a column of this type. Strings are not: Parquet
/// truncates their statistics, and the smallest URL of a crawl says little.
fn has_range(dt: &DataType) -> bool {
    dt.is_integer()
        || dt.is_floating()
        || matches!(
            dt,
            DataType::Boolean | DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
}

/// A statistics value as a JSON number or boolean; `None` for other types.
fn to_json(v: &ScalarValue) -> Option<Value> {
    if v.is_null() {
        return None;
    }
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(x)) => Value::from(*x),
        ScalarValue::Int16(Some(x)) => Value::from(*x),
        ScalarValue::Int32(Some(x)) => Value::from(*x),
        ScalarValue::Int64(Some(x)) => Value::from(*x),
        ScalarValue::UInt8(Some(x)) => Value::from(*x),
        ScalarValue::UInt16(Some(x)) => Value::from(*x),
        ScalarValue::UInt32(Some(x)) => Value::from(*x),
        ScalarValue::UInt64(Some(x)) => Value::from(*x),
        ScalarValue::Float32(Some(x)) => serde_json::Number::from_f64(f64::from(*x))?.into(),
        ScalarValue::Float64(Some(x)) => serde_json::Number::from_f64(*x)?.into(),
        _ => return None,
    })
}

/// What a shard writer counts as batches go in.
#[derive(Debug, Clone)]
pub struct ShardColumns {
    columns: Vec<(String, DataType, ColumnStats)>,
    /// Arrow bytes of the rows written (`datasets`' `num_bytes`).
    pub memory_bytes: u64,
}

impl ShardColumns {
    pub fn new(schema: &Schema) -> Self {
        ShardColumns {
            columns: schema
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        f.data_type().clone(),
                        ColumnStats::default(),
                    )
                })
                .collect(),
            memory_bytes: 0,
        }
    }

    /// Counts a batch that was written (cost: a few reads per column, not per row,
    /// except for view types).
    pub fn observe(&mut self, batch: &RecordBatch) {
        for ((_, _, stats), column) in self.columns.iter_mut().zip(batch.columns()) {
            stats.nulls += column.null_count() as u64;
            if let Some(n) = value_total(column.as_ref()) {
                *stats.values.get_or_insert(0) += n;
            }
            self.memory_bytes +=
                column.to_data().get_slice_memory_size().unwrap_or_default() as u64;
        }
    }

    /// Folds in the counts of more rows of the same schema (a row group's).
    pub fn merge(&mut self, other: &ShardColumns) {
        for ((_, _, mine), (_, _, theirs)) in self.columns.iter_mut().zip(&other.columns) {
            mine.merge(theirs);
        }
        self.memory_bytes += other.memory_bytes;
    }

    /// The statistics of the closed shard, with min/max from its Parquet footer.
    pub fn finish(
        self,
        schema: &Schema,
        metadata: &ParquetMetaData,
    ) -> BTreeMap<String, ColumnStats> {
        let parquet_schema = metadata.file_metadata().schema_descr();
        self.columns
            .into_iter()
            .map(|(name, dt, mut stats)| {
                if has_range(&dt)
                    && let Ok(conv) = StatisticsConverter::try_new(&name, schema, parquet_schema)
                {
                    let groups = metadata.row_groups().iter();
                    stats.min = conv
                        .row_group_mins(groups.clone())
                        .ok()
                        .and_then(|a| extreme(a.as_ref(), Ordering::Less));
                    stats.max = conv
                        .row_group_maxes(groups)
                        .ok()
                        .and_then(|a| extreme(a.as_ref(), Ordering::Greater));
                }
                (name, stats)
            })
            .collect()
    }
}

/// The smallest (`Less`) or largest (`Greater`) non-null value of a small array (one
/// value per row group).
fn extreme(array: &dyn Array, want: Ordering) -> Option<Value> {
    let mut best: Option<(usize, ScalarValue)> = None;
    for i in 0..array.len() {
        let Ok(v) = ScalarValue::try_from_array(array, i) else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        best = match best {
            Some((j, b)) if v.partial_cmp(&b) != Some(want) => Some((j, b)),
            _ => Some((i, v)),
        };
    }
    let (i, v) = best?;
    to_json(&v).or_else(|| {
        // Dates and timestamps as ISO 8601 text, as Arrow displays them.
        arrow::util::display::array_value_to_string(array, i)
            .ok()
            .map(Value::String)
    })
}

/// Bytes of all strings/binaries, or elements of all lists, of one array; `None` for
/// other types.
fn value_total(array: &dyn Array) -> Option<u64> {
    fn span<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> u64 {
        match (offsets.first(), offsets.last()) {
            (Some(a), Some(b)) => (b.as_usize() - a.as_usize()) as u64,
            _ => 0,
        }
    }
    Some(match array.data_type() {
        DataType::Utf8 => span(array.as_string::<i32>().value_offsets()),
        DataType::LargeUtf8 => span(array.as_string::<i64>().value_offsets()),
        DataType::Binary => span(array.as_binary::<i32>().value_offsets()),
        DataType::LargeBinary => span(array.as_binary::<i64>().value_offsets()),
        DataType::List(_) => span(array.as_list::<i32>().value_offsets()),
        DataType::LargeList(_) => span(array.as_list::<i64>().value_offsets()),
        DataType::FixedSizeList(_, n) => (array.len() - array.null_count()) as u64 * *n as u64,
        DataType::Utf8View => array.as_string_view().lengths().map(u64::from).sum(),
        DataType::BinaryView => array.as_binary_view().lengths().map(u64::from).sum(),
        _ => return None,
    })
}

/// Whether a column holds token ids: a list of integers.
pub fn is_token_column(dt: &DataType) -> bool {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().is_integer()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, ListArray, StringArray};
    use arrow::datatypes::{Field, UInt32Type};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    #[test]
    fn counts_nulls_bytes_tokens_and_ranges_across_row_groups() {
        let list = ListArray::from_iter_primitive::<UInt32Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            None,
            Some(vec![Some(4)]),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ids", list.data_type().clone(), true),
        ]));
        let batch = |n: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(n)),
                    Arc::new(StringArray::from(vec![Some("ab"), None, Some("cde")])),
                    Arc::new(list.clone()),
                ],
            )
            .expect("batch")
        };
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).expect("writer");
        let mut cols = ShardColumns::new(&schema);
        for b in [
            batch(vec![Some(5), None, Some(-2)]),
            batch(vec![Some(9), Some(0), None]),
        ] {
            w.write(&b).expect("write");
            cols.observe(&b);
        }
        let meta = w.close().expect("close");
        assert_eq!(meta.num_row_groups(), 2);
        let stats = cols.finish(&schema, &meta);
        assert_eq!(stats["n"].nulls, 2);
        assert_eq!(stats["n"].min, Some(Value::from(-2)));
        assert_eq!(stats["n"].max, Some(Value::from(9)));
        assert_eq!(stats["s"].values, Some(10));
        assert_eq!(stats["s"].min, None);
        assert_eq!(stats["ids"].values, Some(8));
        assert_eq!(stats["ids"].nulls, 2);
        assert!(is_token_column(&schema.fields()[2].data_type().clone()));
    }

    #[test]
    fn merge_orders_integers_exactly_and_keeps_what_one_side_lacks() {
        let mut a = ColumnStats {
            nulls: 1,
            min: Some(Value::from(i64::MAX - 1)),
            max: Some(Value::from(u64::MAX)),
            values: None,
        };
        a.merge(&ColumnStats {
            nulls: 2,
            min: Some(Value::from(i64::MAX - 2)),
            max: None,
            values: Some(3),
        });
        assert_eq!(a.nulls, 3);
        assert_eq!(a.min, Some(Value::from(i64::MAX - 2)));
        assert_eq!(a.max, Some(Value::from(u64::MAX)));
        assert_eq!(a.values, Some(3));
    }
}
