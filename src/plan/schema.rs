//! The input schema: declared in `source.schema`, or inferred from the first records of
//! the first object that has any; and the schema of the files the sink writes.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};

use super::MAX_BATCH_ROWS;
use super::listing::Listing;
use crate::error::{Error, Result};
use crate::formats::{
    self, Compression, DecodeContext, ObjectInput, RandomAccess, SourceFormat,
    reader::BlockingObjectReader,
};
use crate::spec::{FormatName, Pipeline};
use crate::steps::types::parse_type;
use crate::storage::{Object, SourceUri};

/// The input schema and where it came from.
pub(super) struct Settled {
    pub schema: Schema,
    /// `source.schema`, or the object it was inferred from.
    pub origin: String,
    /// Inferred (records must match it), not declared.
    pub strict: bool,
    /// The bytes the sampled records took, to size batches.
    pub sampled_bytes: Option<u64>,
}

/// Settles the input schema of `listing`.
///
/// # Errors
/// [`Error::Plan`] for a declared schema on a fixed-schema format or nothing to infer
/// from; [`Error::Input`] when the first object cannot be read.
pub(super) async fn settle(pipeline: &Pipeline, listing: &Listing) -> Result<Settled> {
    let Listing {
        source,
        objects,
        format_name,
        format,
        compressions,
        ..
    } = listing;
    let format_name = *format_name;
    let mut sampled_bytes = None;
    let (full_schema, schema_origin, strict) = match (declared_schema(pipeline)?, format_name) {
        (Some(_), FormatName::Text) => {
            return Err(Error::Plan(
                "source.schema: the text format has a fixed schema (path, line, text)".into(),
            ));
        }
        (Some(_), FormatName::Warc) => {
            return Err(Error::Plan(
                "source.schema: the warc format has a fixed schema (warc_type, record_id, url, \
                 date, content_type, http_status, http_content_type, http_headers, body)"
                    .into(),
            ));
        }
        (Some(_), FormatName::Files) => {
            return Err(Error::Plan(
                "source.schema: the files format has a fixed schema (path, bytes; label, \
                     label_id with source.labels)"
                    .into(),
            ));
        }
        (Some(s), _) => (s, "source.schema".to_string(), false),
        (None, _) => {
            // The first object with any bytes: an empty one has no rows to infer from.
            // Under skip / dead_letter an object that cannot be read or holds no good
            // record is no evidence of the schema either (decoding leaves it out
            // too): the next one is tried.
            let candidates: Vec<usize> = objects
                .iter()
                .enumerate()
                .filter(|(_, o)| o.size > 0)
                .map(|(i, _)| i)
                .collect();
            let tolerant = pipeline.run.on_error != crate::spec::OnError::Fail;
            let mut found = None;
            let mut passed_over: Vec<String> = Vec::new();
            for &at in candidates.iter().chain(candidates.is_empty().then_some(&0)) {
                let first = &objects[at];
                match infer_from(pipeline, format, source, first, compressions[at]).await {
                    Ok((schema, _)) if schema.fields().is_empty() && tolerant => {
                        passed_over
                            .push(format!("{}: no fields in its first records", first.display));
                    }
                    Ok((schema, sampled)) => {
                        found = Some((schema, sampled, first.display.clone()));
                        break;
                    }
                    Err(e @ Error::Input { .. }) if tolerant => {
                        tracing::warn!(
                            "schema not inferred from {}: {e}; trying the next object",
                            first.display
                        );
                        passed_over.push(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some((schema, sampled, origin)) = found else {
                return Err(Error::Plan(format!(
                    "the schema could not be inferred from any object ({}); declare \
                         source.schema",
                    passed_over.join("; ")
                )));
            };
            if schema.fields().is_empty() {
                return Err(Error::Plan(format!(
                    "the first records of `{origin}` have no fields (`{{}}`, or the object \
                         is empty), so no column could be inferred; declare source.schema"
                )));
            }
            sampled_bytes = sampled;
            (schema, origin, true)
        }
    };
    Ok(Settled {
        schema: full_schema,
        origin: schema_origin,
        strict,
        sampled_bytes,
    })
}

/// `schema` with the `huggingface` metadata `datasets` reads its features from, when
/// it has image columns (the Image feature) or class ids (ClassLabel).
pub(super) fn with_hf_metadata(
    schema: &Schema,
    classes: Option<&formats::files::Classes>,
) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.remove("huggingface");
    let labels = classes.map(formats::files::Classes::class_labels);
    if let Some(md) = crate::hf::huggingface_metadata(schema, labels.as_ref()) {
        metadata.insert("huggingface".to_string(), md);
    }
    Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
}

fn declared_schema(p: &Pipeline) -> Result<Option<Schema>> {
    let Some(cols) = &p.source().schema else {
        return Ok(None);
    };
    let mut fields = Vec::with_capacity(cols.len());
    for (name, ty) in cols {
        let t = parse_type(ty).map_err(|e| Error::Plan(format!("source.schema.{name}: {e}")))?;
        fields.push(Field::new(name, t, true));
    }
    Ok(Some(Schema::new(fields)))
}

/// The schema inferred from the first `source.infer_rows` records of `first`, and the
/// bytes those records took (to size tasks).
async fn infer_from(
    pipeline: &Pipeline,
    format: &Arc<dyn SourceFormat>,
    source: &SourceUri,
    first: &Object,
    compression: Compression,
) -> Result<(Schema, Option<u64>)> {
    let cx = DecodeContext {
        schema: Arc::new(Schema::empty()),
        schema_origin: first.display.clone(),
        strict: true,
        object: first.display.clone(),
        batch_rows: MAX_BATCH_ROWS,
        csv: pipeline.source().csv.clone(),
        projection: None,
        // Under skip / dead_letter, malformed records among those sampled
        // are passed over (decoding leaves them out too).
        on_error: pipeline.run.on_error,
        on_mismatch: crate::spec::OnSchemaMismatch::Fail,
        max_record_bytes: formats::max_record_bytes(
            pipeline.run.memory_limit.get(),
            pipeline.run.threads.resolve(),
        ),
        slice: None,
    };
    let (f, obj, c, rows) = (
        format.clone(),
        first.clone(),
        compression,
        pipeline.source().infer_rows,
    );
    let store = source.base.store.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(Schema, Option<u64>)> {
        if f.random_access() {
            let ra = RandomAccess {
                store,
                path: obj.path.clone(),
                size: obj.size,
                handle,
                stats: None,
            };
            // The sample's size, as the streaming formats measure it.
            let (schema, row_bytes) =
                f.infer_schema_and_row_bytes(ObjectInput::Random(ra), rows, &cx)?;
            Ok((schema, row_bytes.map(|b| b * rows as u64)))
        } else {
            let raw = BlockingObjectReader::new(store, obj.path.clone(), obj.size, handle);
            let input =
                formats::decompress(c, raw).map_err(|e| Error::input(&obj.display, None, e))?;
            let counted = formats::reader::Counting::new(input);
            let bytes = counted.counter();
            let schema = f.infer_schema(ObjectInput::Stream(Box::new(counted)), rows, &cx)?;
            Ok((
                schema,
                Some(bytes.load(std::sync::atomic::Ordering::Relaxed)),
            ))
        }
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// The schema of the files: the output without its partition columns.
pub(super) fn file_schema(
    pipeline: &Pipeline,
    output_schema: &SchemaRef,
    classes: Option<&formats::files::Classes>,
) -> Result<SchemaRef> {
    let mut file_fields = Vec::new();
    for name in &pipeline.sink.partition_by {
        output_schema.index_of(name).map_err(|_| {
            Error::Plan(format!(
                "sink.partition_by: {}",
                crate::steps::unknown_column(output_schema, name)
            ))
        })?;
    }
    for f in output_schema.fields() {
        if !pipeline.sink.partition_by.contains(f.name()) {
            file_fields.push(f.clone());
        }
    }
    if file_fields.is_empty() {
        return Err(Error::Plan(
            "sink.partition_by: every column is a partition column; the files would be empty"
                .into(),
        ));
    }
    let format = pipeline.sink.format;
    if format != crate::spec::SinkFormat::Parquet && pipeline.sink.dataset_card {
        return Err(Error::Plan(format!(
            "sink.dataset_card describes Parquet shards to Hugging Face `datasets`; a sink of \
             format {} has none: leave dataset_card out",
            serde_json::to_value(format).unwrap_or_default()
        )));
    }
    if format == crate::spec::SinkFormat::Megatron {
        file_fields = vec![megatron_column(pipeline, &file_fields)?];
    }
    if format == crate::spec::SinkFormat::Mds {
        let max = crate::sink::mds::MAX_SHARD_BYTES;
        if pipeline.sink.max_bytes.get() > max {
            return Err(Error::Plan(format!(
                "sink.max_bytes: an MDS shard holds at most 4 GiB (its offsets are uint32), \
                 not {}",
                pipeline.sink.max_bytes
            )));
        }
        crate::sink::mds::Columns::new(&Schema::new(file_fields.clone()), max)
            .map_err(|e| Error::Plan(format!("sink.format: mds: {e}")))?;
    }
    if format == crate::spec::SinkFormat::Webdataset {
        let key = pipeline
            .sink
            .webdataset
            .as_ref()
            .and_then(|w| w.key.as_deref());
        crate::sink::webdataset::Columns::new(&Schema::new(file_fields.clone()), key)
            .map_err(|e| Error::Plan(format!("sink.format: webdataset: {e}")))?;
    }
    for f in &file_fields {
        if let Some(path) = empty_struct(f.name(), f.data_type()) {
            return Err(Error::Plan(format!(
                "column `{path}` is a struct with no fields (`{{}}` in the records the schema \
                 was inferred from), which Parquet cannot store; drop it (`- drop: [{}]`) or \
                 declare its fields in source.schema",
                f.name()
            )));
        }
    }
    Ok(with_hf_metadata(&Schema::new(file_fields), classes))
}

/// The one column a Megatron sink stores: `sink.megatron.column`, or the first
/// list-of-integer column (the token ids) of the files.
fn megatron_column(
    pipeline: &Pipeline,
    fields: &[arrow::datatypes::FieldRef],
) -> Result<arrow::datatypes::FieldRef> {
    let named = pipeline
        .sink
        .megatron
        .as_ref()
        .and_then(|m| m.column.as_deref());
    let names = || {
        fields
            .iter()
            .map(|f| format!("`{}` ({})", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = match named {
        Some(name) => fields.iter().find(|f| f.name() == name).ok_or_else(|| {
            Error::Plan(format!(
                "sink.megatron.column: no column `{name}` in the output (it has {})",
                names()
            ))
        })?,
        None => fields
            .iter()
            .find(|f| crate::sink::columns::is_token_column(f.data_type()))
            .ok_or_else(|| {
                Error::Plan(format!(
                    "sink.format: megatron stores token ids, a list-of-integer column, and \
                     the output has none ({}); add a `tokenize` step or name the column in \
                     sink.megatron.column",
                    names()
                ))
            })?,
    };
    if !crate::sink::columns::is_token_column(field.data_type()) {
        return Err(Error::Plan(format!(
            "sink.megatron.column: `{}` is {}, not a list of integers (token ids)",
            field.name(),
            field.data_type()
        )));
    }
    Ok(field.clone())
}

/// The path of the first struct without fields inside a column of type `t`, if any.
fn empty_struct(path: &str, t: &arrow::datatypes::DataType) -> Option<String> {
    use arrow::datatypes::DataType;
    match t {
        DataType::Struct(fields) if fields.is_empty() => Some(path.to_string()),
        DataType::Struct(fields) => fields
            .iter()
            .find_map(|f| empty_struct(&format!("{path}.{}", f.name()), f.data_type())),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            empty_struct(&format!("{path}[]"), f.data_type())
        }
        DataType::Map(f, _) => empty_struct(path, f.data_type()),
        _ => None,
    }
}
