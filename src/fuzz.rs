//! Entry points for the fuzz targets (`fuzz/`, run by `make fuzz`) and for the
//! regression tests made from what they find. Each takes arbitrary input and must
//! return — an error is a fine answer — without panicking, hanging or allocating
//! without bound.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::formats::{
    Compression, DecodeContext, Decoded, ObjectInput, RandomAccess, decompress, format_for,
};
use crate::spec::{CsvOptions, FormatName, OnError, OnSchemaMismatch};

/// Reads `text` as a pipeline file (parsing, `${VAR}` expansion, validation).
pub fn pipeline_file(text: &str) {
    let _ = crate::spec::load_str(text, "fuzz.yaml", &[]);
}

/// The columns [`expression`] compiles against.
fn expression_input() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(-7)])),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![Some("héllo"), Some(""), None])),
        ),
        (
            "x",
            Arc::new(Float64Array::from(vec![Some(0.5), Some(f64::NAN), None])),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(0),
                None,
                Some(1 << 50),
            ])),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap_or_else(|_| RecordBatch::new_empty(schema()))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("x", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// Compiles `sql` as a `filter` / `derive` expression and, when it compiles, evaluates
/// it on a small batch.
pub fn expression(sql: &str) {
    let batch = expression_input();
    if let Ok(e) = crate::steps::expr::CompiledExpr::compile(sql, &batch.schema()) {
        let _ = e.evaluate(&batch);
    }
}

/// Decodes `data` as one object of `format` (decompressed first by `compression`): the
/// schema inferred from its first rows, then every record, under `on_error`. Returns
/// the rows decoded and the records left out.
///
/// # Errors
/// Whatever the decoder says about bad input.
pub fn decode(
    format: FormatName,
    compression: Compression,
    data: &[u8],
    on_error: OnError,
) -> crate::Result<(u64, u64)> {
    let f = format_for(format);
    let mut cx = DecodeContext {
        schema: Arc::new(Schema::empty()),
        schema_origin: "fuzz input".into(),
        strict: true,
        object: "fuzz input".into(),
        batch_rows: 64,
        csv: CsvOptions::default(),
        projection: None,
        on_error,
        on_mismatch: OnSchemaMismatch::Fail,
        // What a 64 MiB memory_limit on one thread allows.
        max_record_bytes: crate::formats::max_record_bytes(64 << 20, 1),
        slice: None,
    };
    // Parquet reads by range from a store; the others stream.
    // (A worker thread: the Parquet reader blocks on futures spawned onto it.)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Internal(e.to_string()))?;
    let random = if f.random_access() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let path = object_store::path::Path::from("fuzz.parquet");
        runtime
            .block_on(store.put(&path, data.to_vec().into()))
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        Some(RandomAccess {
            store: store as Arc<dyn ObjectStore>,
            path,
            size: data.len() as u64,
            handle: runtime.handle().clone(),
            stats: None,
        })
    } else {
        None
    };
    let open = || -> crate::Result<ObjectInput<'_>> {
        Ok(match &random {
            Some(ra) => ObjectInput::Random(ra.clone()),
            None => ObjectInput::Stream(
                decompress(compression, Cursor::new(data))
                    .map_err(|e| crate::Error::Internal(e.to_string()))?,
            ),
        })
    };
    // The runtime must drive the store's futures while the decoder blocks on them.
    let _guard = runtime.enter();
    let schema = f.infer_schema(open()?, 100, &cx)?;
    cx.schema = Arc::new(schema);
    let (mut rows, mut rejected) = (0u64, 0u64);
    f.decode(open()?, &cx, &mut |d| {
        match d {
            Decoded::Batch(b) => rows += b.num_rows() as u64,
            Decoded::Rejected(_) => rejected += 1,
        }
        Ok(true)
    })?;
    Ok((rows, rejected))
}
