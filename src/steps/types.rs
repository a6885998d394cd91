//! Type names users write in `cast:` and `source.schema`.

use arrow::datatypes::{DataType, TimeUnit};

/// Parses a type name: friendly lower-case names (`int64`, `float32`, `string`, `bool`,
/// `timestamp`, `date`) or any Arrow type as Arrow prints it (`Timestamp(ms, "UTC")`).
pub fn parse_type(name: &str) -> Result<DataType, String> {
    let t = match name.trim().to_ascii_lowercase().as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" | "tinyint" => DataType::Int8,
        "int16" | "smallint" => DataType::Int16,
        "int32" | "int" | "integer" => DataType::Int32,
        "int64" | "bigint" | "long" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float16" | "half" => DataType::Float16,
        "float32" | "float" | "real" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "utf8" | "str" | "text" | "varchar" => DataType::Utf8,
        "large_string" | "large_utf8" => DataType::LargeUtf8,
        "binary" | "bytes" => DataType::Binary,
        "date" | "date32" => DataType::Date32,
        "timestamp" | "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_ns" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => {
            return name.trim().parse::<DataType>().map_err(|_| {
                format!(
                    "unknown type `{name}`; use one of bool, int8..int64, uint8..uint64, float32, \
                     float64, string, large_string, binary, date, timestamp, timestamp_ms, \
                     timestamp_ns, timestamptz, or an Arrow type such as `Decimal128(10, 2)`"
                )
            });
        }
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_and_arrow_names() {
        assert_eq!(parse_type("int64"), Ok(DataType::Int64));
        assert_eq!(parse_type("String"), Ok(DataType::Utf8));
        assert_eq!(
            parse_type("Decimal128(10, 2)"),
            Ok(DataType::Decimal128(10, 2))
        );
        assert!(parse_type("integr").is_err());
    }
}
