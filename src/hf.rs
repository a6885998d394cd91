//! The Hugging Face `datasets` side of kiln's types: Arrow types as `datasets` features
//! (the YAML form of a dataset card, the `huggingface` schema metadata its Parquet
//! reader takes features from) and the encoded-image struct that is its `Image` feature.
//! A leaf: the plan, the formats, the storage and the sink's card all use it.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::{Value, json};

/// Whether a type is the encoded-image struct `{bytes: binary, path: string}`, the
/// storage of `datasets`' `Image` feature.
pub fn is_encoded_image(dt: &DataType) -> bool {
    matches!(dt, DataType::Struct(f) if f.len() == 2
        && f[0].name() == "bytes" && f[0].data_type() == &DataType::Binary
        && f[1].name() == "path" && f[1].data_type() == &DataType::Utf8)
}

/// A column of class ids and the names of the classes (`source.labels: folder`): a
/// `datasets` `ClassLabel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLabels {
    pub column: String,
    pub names: Vec<String>,
}

/// The stored columns as `datasets` features (its YAML list form), or `None` when a
/// column has a type `datasets` has no feature for (it then reads the types from the
/// Parquet files).
pub fn features(schema: &Schema, labels: Option<&ClassLabels>) -> Option<Value> {
    schema
        .fields()
        .iter()
        .map(|f| match labels {
            Some(l) if &l.column == f.name() && f.data_type().is_integer() => {
                let names: serde_json::Map<String, Value> = l
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (i.to_string(), Value::String(n.clone())))
                    .collect();
                Some(json!({
                    "name": f.name(),
                    "dtype": { "class_label": { "names": names } }
                }))
            }
            _ => named(f),
        })
        .collect::<Option<Vec<Value>>>()
        .map(Value::Array)
}

fn named(f: &Field) -> Option<Value> {
    let mut v = feature(f.data_type())?;
    let obj = v.as_object_mut()?;
    obj.insert("name".into(), Value::String(f.name().clone()));
    Some(v)
}

/// One type as `datasets` writes it in YAML: `{dtype: int32}`, `{list: uint32}`,
/// `{struct: [...]}`.
fn feature(dt: &DataType) -> Option<Value> {
    let inner = |f: &Field| -> Option<Value> {
        let v = feature(f.data_type())?;
        // `{dtype: x}` shortens to `x` inside a list, as `datasets` writes it.
        Some(match v.get("dtype") {
            Some(d) if v.as_object().is_some_and(|o| o.len() == 1) => d.clone(),
            _ => v,
        })
    };
    Some(match dt {
        DataType::List(f) => json!({ "list": inner(f)? }),
        DataType::LargeList(f) => json!({ "large_list": inner(f)? }),
        DataType::FixedSizeList(f, n) => json!({ "list": inner(f)?, "length": n }),
        dt if is_encoded_image(dt) => json!({ "dtype": "image" }),
        DataType::Struct(fields) => json!({
            "struct": fields.iter().map(|f| named(f)).collect::<Option<Vec<_>>>()?
        }),
        DataType::Dictionary(_, v) => feature(v)?,
        other => json!({ "dtype": value_dtype(other)? }),
    })
}

/// The `huggingface` schema metadata `datasets` reads features from
/// (`{"info": {"features": {...}}}`, in column order), for schemas with an image column:
/// without it `load_dataset("parquet", ...)` sees an image's `{bytes, path}` struct as a
/// plain dict instead of its `Image` feature. `None` when there is no image column or a
/// column has no `datasets` type.
pub fn huggingface_metadata(schema: &Schema, labels: Option<&ClassLabels>) -> Option<String> {
    let has_image = schema
        .fields()
        .iter()
        .any(|f| is_encoded_image(f.data_type()));
    let class = labels.filter(|l| {
        schema
            .field_with_name(&l.column)
            .is_ok_and(|f| f.data_type().is_integer())
    });
    if !has_image && class.is_none() {
        return None;
    }
    let features = dict_json(
        schema.fields().iter().map(|f| f.as_ref()),
        |f| match class {
            Some(l) if &l.column == f.name() => Some(format!(
                r#"{{"names": {}, "_type": "ClassLabel"}}"#,
                serde_json::to_string(&l.names).ok()?
            )),
            _ => feature_json(f.data_type()),
        },
    )?;
    Some(format!("{{\"info\": {{\"features\": {features}}}}}"))
}

/// `{"name": feature, ...}` in field order (serde_json's maps would sort the keys),
/// each field's feature from `feature`.
fn dict_json<'a>(
    fields: impl Iterator<Item = &'a Field>,
    feature: impl Fn(&Field) -> Option<String>,
) -> Option<String> {
    let mut parts = Vec::new();
    for f in fields {
        parts.push(format!(
            "{}: {}",
            Value::String(f.name().clone()),
            feature(f)?
        ));
    }
    Some(format!("{{{}}}", parts.join(", ")))
}

/// One type in `datasets`' `Features.to_dict()` form.
fn feature_json(dt: &DataType) -> Option<String> {
    Some(match dt {
        dt if is_encoded_image(dt) => r#"{"_type": "Image"}"#.to_string(),
        DataType::List(f) => format!(
            r#"{{"feature": {}, "_type": "List"}}"#,
            feature_json(f.data_type())?
        ),
        DataType::LargeList(f) => {
            format!(
                r#"{{"feature": {}, "_type": "LargeList"}}"#,
                feature_json(f.data_type())?
            )
        }
        DataType::FixedSizeList(f, n) => format!(
            r#"{{"feature": {}, "length": {n}, "_type": "List"}}"#,
            feature_json(f.data_type())?
        ),
        DataType::Struct(fields) => dict_json(fields.iter().map(|f| f.as_ref()), |f| {
            feature_json(f.data_type())
        })?,
        DataType::Dictionary(_, v) => feature_json(v)?,
        other => format!(
            r#"{{"dtype": {}, "_type": "Value"}}"#,
            Value::String(value_dtype(other)?)
        ),
    })
}

/// The `datasets` `Value` dtype (pyarrow's type names, with its float aliases).
fn value_dtype(dt: &DataType) -> Option<String> {
    let unit = |u: &TimeUnit| match u {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    Some(match dt {
        DataType::Null => "null".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Utf8View => "string_view".into(),
        DataType::Binary => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        DataType::Date32 => "date32".into(),
        DataType::Date64 => "date64".into(),
        DataType::Time32(u) => format!("time32[{}]", unit(u)),
        DataType::Time64(u) => format!("time64[{}]", unit(u)),
        DataType::Duration(u) => format!("duration[{}]", unit(u)),
        DataType::Timestamp(u, None) => format!("timestamp[{}]", unit(u)),
        DataType::Timestamp(u, Some(tz)) => format!("timestamp[{}, tz={tz}]", unit(u)),
        DataType::Decimal128(p, s) => format!("decimal128({p}, {s})"),
        DataType::Decimal256(p, s) => format!("decimal256({p}, {s})"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn features_use_the_datasets_yaml_form() {
        let schema = Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new_list("ids", Field::new("item", DataType::UInt32, false), false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                true,
            ),
            Field::new_struct(
                "image",
                vec![
                    Field::new("bytes", DataType::Binary, true),
                    Field::new("path", DataType::Utf8, true),
                ],
                true,
            ),
        ]);
        let f = features(&schema, None).expect("features");
        assert_eq!(
            f,
            json!([
                {"name": "text", "dtype": "string"},
                {"name": "ids", "list": "uint32"},
                {"name": "ts", "dtype": "timestamp[us, tz=UTC]"},
                {"name": "image", "dtype": "image"}
            ])
        );
        let map = Schema::new(vec![Field::new_map(
            "m",
            "entries",
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Utf8, true),
            false,
            true,
        )]);
        assert_eq!(features(&map, None), None);
        // The image struct is the Image feature, in the card and in the metadata.
        let f = features(&schema, None).expect("features");
        assert_eq!(f[3], json!({"name": "image", "dtype": "image"}));
        let md = huggingface_metadata(&schema, None).expect("an image column");
        assert_eq!(
            md,
            r#"{"info": {"features": {"text": {"dtype": "string", "_type": "Value"}, "ids": {"feature": {"dtype": "uint32", "_type": "Value"}, "_type": "List"}, "ts": {"dtype": "timestamp[us, tz=UTC]", "_type": "Value"}, "image": {"_type": "Image"}}}}"#
        );
        let plain = Schema::new(vec![Field::new("text", DataType::Utf8, true)]);
        assert_eq!(huggingface_metadata(&plain, None), None);
        // Class ids with their names: ClassLabel, in both forms.
        let ids = Schema::new(vec![Field::new("label_id", DataType::Int64, false)]);
        let labels = ClassLabels {
            column: "label_id".into(),
            names: vec!["cat".into(), "dog".into()],
        };
        assert_eq!(
            features(&ids, Some(&labels)).expect("features"),
            json!([{"name": "label_id", "dtype": {"class_label": {"names": {"0": "cat", "1": "dog"}}}}])
        );
        assert_eq!(
            huggingface_metadata(&ids, Some(&labels)).expect("labels"),
            r#"{"info": {"features": {"label_id": {"names": ["cat","dog"], "_type": "ClassLabel"}}}}"#
        );
    }
}
