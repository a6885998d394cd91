//! `image.encode`: decoded pixels → JPEG, PNG or WebP bytes in a `{bytes: binary,
//! path: string}` struct, the layout Hugging Face `datasets` reads as its `Image`
//! feature (kiln's dataset card and the shards' `huggingface` schema metadata say so, so
//! `load_dataset` gives decoded images). `path` is the row's source path with the
//! extension of the new format.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryBuilder, StringArray, StringBuilder, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use image::{ExtendedColorType, ImageEncoder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PixelsRef, default_image_column, encoded_fields, pixel_column, read_pixels};
use crate::steps::StepError;
use crate::steps::text::{put_column, utf8, with_field};
use crate::steps::{Step, StepContext, StepOptions};

/// Output codec.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Jpeg,
    Png,
    /// Lossless WebP (the `image` crate's encoder; `quality` does not apply).
    Webp,
}

impl Codec {
    fn extension(self) -> &'static str {
        match self {
            Codec::Jpeg => "jpg",
            Codec::Png => "png",
            Codec::Webp => "webp",
        }
    }
}

/// JPEG chroma subsampling.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
pub enum Subsampling {
    /// Colour at half resolution both ways: libjpeg's and Pillow's default.
    #[default]
    #[serde(rename = "4:2:0")]
    S420,
    /// Full-resolution colour (larger files).
    #[serde(rename = "4:4:4")]
    S444,
}

/// Options of `image.encode`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncodeOptions {
    /// The decoded-image column.
    #[serde(default = "default_image_column")]
    pub column: String,
    /// The `{bytes, path}` column to write; the input column itself when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `jpeg` (default), `png` or `webp` (lossless).
    #[serde(default)]
    pub format: Codec,
    /// JPEG quality, 1–100 (default 90).
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// JPEG chroma subsampling: `"4:2:0"` (default) or `"4:4:4"`.
    #[serde(default)]
    pub subsampling: Subsampling,
    /// A string column whose value (with the new extension) fills `path`; `path` (the
    /// files format's) by default, null when the column does not exist.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_quality() -> u8 {
    90
}

fn default_path() -> String {
    "path".into()
}

impl StepOptions for EncodeOptions {
    const SUMMARY: &'static str = "encode decoded images as JPEG (quality), PNG or WebP into a {bytes, path} struct: the Hugging Face Image feature";
    const EXAMPLE: &'static str = "- image.encode: { format: jpeg, quality: 90 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = pixel_column(input, &self.column)?;
        if !(1..=100).contains(&self.quality) {
            return Err(format!("quality must be 1–100, not {}", self.quality));
        }
        let path = match input.index_of(&self.path) {
            Ok(i) if input.field(i).data_type() == &DataType::Utf8 => Some(i),
            Ok(_) => return Err(format!("path column `{}` is not a string", self.path)),
            Err(_) => None,
        };
        let out = self.output.clone().unwrap_or_else(|| self.column.clone());
        let (schema, index) = with_field(
            input,
            &out,
            Field::new(&out, DataType::Struct(encoded_fields()), true),
        );
        Ok(Arc::new(Encode {
            opts: self.clone(),
            source,
            path,
            index,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Encode {
    opts: EncodeOptions,
    source: usize,
    path: Option<usize>,
    index: usize,
    schema: SchemaRef,
}

/// Encodes one image.
pub fn encode(
    p: PixelsRef<'_>,
    codec: Codec,
    quality: u8,
    subsampling: Subsampling,
) -> Result<Vec<u8>, String> {
    p.check()?;
    let mut out = Vec::with_capacity(p.data.len() / 8);
    if codec == Codec::Jpeg {
        let (Ok(w), Ok(h)) = (u16::try_from(p.width), u16::try_from(p.height)) else {
            return Err(format!(
                "{}x{} is larger than JPEG allows (65535 a side); resize first",
                p.width, p.height
            ));
        };
        let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
        enc.set_sampling_factor(match subsampling {
            Subsampling::S420 => jpeg_encoder::SamplingFactor::F_2_2,
            Subsampling::S444 => jpeg_encoder::SamplingFactor::F_1_1,
        });
        enc.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
        let color = match p.channels {
            1 => jpeg_encoder::ColorType::Luma,
            3 => jpeg_encoder::ColorType::Rgb,
            // JPEG has no alpha: the encoder ignores it.
            _ => jpeg_encoder::ColorType::Rgba,
        };
        enc.encode(p.data, w, h, color).map_err(|e| e.to_string())?;
        return Ok(out);
    }
    let color = match p.channels {
        1 => ExtendedColorType::L8,
        3 => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    };
    let r = match codec {
        Codec::Webp => image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .write_image(p.data, p.width, p.height, color),
        _ => image::codecs::png::PngEncoder::new(&mut out)
            .write_image(p.data, p.width, p.height, color),
    };
    r.map_err(|e| e.to_string())?;
    Ok(out)
}

/// `path` with its extension replaced by `ext`.
fn with_extension(path: &str, ext: &str) -> String {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[name_start..].rfind('.') {
        Some(dot) => format!("{}.{ext}", &path[..name_start + dot]),
        None => format!("{path}.{ext}"),
    }
}

impl Step for Encode {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        if let Some(o) = &self.opts.output {
            need.remove(o);
        }
        need.insert(self.opts.column.clone());
        need.insert(self.opts.path.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let rows = read_pixels(batch.column(self.source))?;
        let o = &self.opts;
        let (codec, quality, sub) = (o.format, o.quality, o.subsampling);
        let encoded: Result<Vec<Option<Vec<u8>>>, String> =
            crate::pool::par_rows(rows.len(), 1, |i| {
                rows[i].map(|p| encode(p, codec, quality, sub)).transpose()
            })
            .into_iter()
            .collect();
        let encoded =
            encoded.map_err(|e| format!("image.encode of `{}`: {e}", self.opts.column))?;
        let paths: Option<StringArray> = self.path.map(|i| utf8(batch.column(i))).transpose()?;
        let n = encoded.len();
        let mut bytes =
            BinaryBuilder::with_capacity(n, encoded.iter().flatten().map(Vec::len).sum());
        let mut path = StringBuilder::new();
        let mut valid = Vec::with_capacity(n);
        for (i, e) in encoded.iter().enumerate() {
            match e {
                Some(b) => {
                    bytes.append_value(b);
                    match &paths {
                        Some(p) if p.is_valid(i) => {
                            path.append_value(with_extension(p.value(i), codec.extension()))
                        }
                        _ => path.append_null(),
                    }
                    valid.push(true);
                }
                None => {
                    bytes.append_null();
                    path.append_null();
                    valid.push(false);
                }
            }
        }
        cx.count("encoded", valid.iter().filter(|v| **v).count() as u64);
        cx.count(
            "bytes",
            encoded.iter().flatten().map(|b| b.len() as u64).sum(),
        );
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        let columns: Vec<ArrayRef> = vec![Arc::new(bytes.finish()), Arc::new(path.finish())];
        let array = StructArray::new(encoded_fields(), columns, nulls);
        put_column(&batch, &self.schema, self.index, Arc::new(array)).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::image::decode::{Mode, decode};
    use crate::steps::image::test_util::gradient;

    #[test]
    fn encodes_round_trip_losslessly_in_png_and_webp_and_closely_in_jpeg() {
        let g = gradient(16, 9);
        let p = PixelsRef {
            width: 16,
            height: 9,
            channels: 3,
            data: &g.data,
        };
        for codec in [Codec::Png, Codec::Webp] {
            let b = encode(p, codec, 90, Subsampling::S420).expect("encode");
            assert_eq!(
                decode(&b, Mode::Rgb, 1 << 20).expect("decode"),
                g,
                "{codec:?}"
            );
        }
        let b = encode(p, Codec::Jpeg, 95, Subsampling::S444).expect("jpeg");
        let back = decode(&b, Mode::Rgb, 1 << 20).expect("decode");
        assert_eq!((back.width, back.height), (16, 9));
        let err: f64 = back
            .data
            .iter()
            .zip(&g.data)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / g.data.len() as f64;
        assert!(err < 8.0, "mean abs error {err}");
    }

    #[test]
    fn paths_take_the_new_extension() {
        assert_eq!(with_extension("data/cat/1.png", "jpg"), "data/cat/1.jpg");
        assert_eq!(
            with_extension("data.v2/cat/noext", "jpg"),
            "data.v2/cat/noext.jpg"
        );
        assert_eq!(
            with_extension("s3://b/x.tar.webp", "png"),
            "s3://b/x.tar.png"
        );
    }
}
