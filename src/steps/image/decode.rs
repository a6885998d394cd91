//! `image.decode`: encoded images (JPEG, PNG, WebP; the format is read from the bytes)
//! → 8-bit pixels in RGB, RGBA or grayscale. An image whose declared size would need
//! more than `max_bytes` of pixels is refused before it is decoded.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, StructArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Pixels, build_pixels, default_image_column, is_encoded_image, pixel_type};
use crate::size::ByteSize;
use crate::steps::StepError;
use crate::steps::text::{put_column, with_field};
use crate::steps::{Step, StepContext, StepOptions, column_index};

/// Pixel layout of decoded images.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Rgb,
    Rgba,
    /// Grayscale.
    L,
}

/// Options of `image.decode`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeOptions {
    /// The encoded images: a binary column (`bytes` of the files format), or a
    /// `{bytes, path}` struct (an `image` column of a Hugging Face dataset).
    #[serde(default = "default_bytes")]
    pub column: String,
    /// The decoded-image column to write (replaced if it exists).
    #[serde(default = "default_image_column")]
    pub output: String,
    /// `rgb` (default), `rgba` or `l` (grayscale).
    #[serde(default)]
    pub mode: Mode,
    /// Largest decoded size of one image (width × height × 4 bytes, as the decoder
    /// allocates); a larger declared size is refused without decoding. Default 256 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
}

fn default_bytes() -> String {
    "bytes".into()
}

fn default_max_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

impl StepOptions for DecodeOptions {
    const SUMMARY: &'static str =
        "decode JPEG/PNG/WebP bytes into RGB, RGBA or grayscale pixels for the other image steps";
    const EXAMPLE: &'static str = "- image.decode: { column: bytes, output: image, mode: rgb }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = column_index(input, &self.column)?;
        let dt = input.field(source).data_type();
        if dt != &DataType::Binary && dt != &DataType::LargeBinary && !is_encoded_image(dt) {
            return Err(format!(
                "column `{}` is {dt}; image.decode reads a binary column or a {{bytes, path}} struct",
                self.column
            ));
        }
        let (schema, index) = with_field(
            input,
            &self.output,
            Field::new(&self.output, pixel_type(), true),
        );
        Ok(Arc::new(Decode {
            opts: self.clone(),
            source,
            index,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Decode {
    opts: DecodeOptions,
    source: usize,
    index: usize,
    schema: SchemaRef,
}

/// Decodes one image.
pub fn decode(bytes: &[u8], mode: Mode, max_bytes: u64) -> Result<Pixels, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_bytes);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => format!(
            "{l}: its declared size needs more than {} (image.decode max_bytes)",
            ByteSize(max_bytes)
        ),
        other => other.to_string(),
    })?;
    let (width, height) = (img.width(), img.height());
    let (channels, data) = match mode {
        Mode::Rgb => (3, img.into_rgb8().into_raw()),
        Mode::Rgba => (4, img.into_rgba8().into_raw()),
        Mode::L => (1, img.into_luma8().into_raw()),
    };
    Ok(Pixels {
        width,
        height,
        channels,
        data,
    })
}

/// The encoded bytes of each row of a binary or `{bytes, path}` column.
fn encoded_rows(column: &ArrayRef) -> Result<Vec<Option<&[u8]>>, String> {
    let binary: &dyn Array = match column.data_type() {
        DataType::Struct(_) => column
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or("not a struct")?
            .column(0)
            .as_ref(),
        _ => column.as_ref(),
    };
    let struct_nulls = column.logical_nulls();
    let valid = |i: usize| struct_nulls.as_ref().is_none_or(|n| n.is_valid(i));
    Ok(match binary.data_type() {
        DataType::LargeBinary => {
            let b = binary.as_binary::<i64>();
            (0..b.len())
                .map(|i| (valid(i) && b.is_valid(i)).then(|| b.value(i)))
                .collect()
        }
        _ => {
            let b = binary
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or("not a binary column")?;
            (0..b.len())
                .map(|i| (valid(i) && b.is_valid(i)).then(|| b.value(i)))
                .collect()
        }
    })
}

impl Step for Decode {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        need.insert(self.opts.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let rows = encoded_rows(batch.column(self.source))?;
        let (mode, max) = (self.opts.mode, self.opts.max_bytes.get());
        let decoded: Vec<Result<Option<Pixels>, String>> =
            crate::pool::par_rows(rows.len(), 1, |i| {
                rows[i].map(|b| decode(b, mode, max)).transpose()
            });
        let mut out = Vec::with_capacity(decoded.len());
        for (i, d) in decoded.into_iter().enumerate() {
            out.push(d.map_err(|e| {
                StepError::data(format!("cannot decode the image: {e}"))
                    .in_column(&self.opts.column)
                    .at_row(i)
            })?);
        }
        cx.count("decoded", out.iter().flatten().count() as u64);
        put_column(&batch, &self.schema, self.index, build_pixels(out)).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::image::{read_pixels, test_util::gradient};

    fn png(p: &Pixels) -> Vec<u8> {
        let mut out = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut out),
            &p.data,
            p.width,
            p.height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("png");
        out
    }

    #[test]
    fn decodes_png_bytes_exactly_and_refuses_garbage_and_huge_images() {
        let img = gradient(7, 5);
        let bytes = png(&img);
        assert_eq!(decode(&bytes, Mode::Rgb, 1 << 20).expect("decode"), img);
        let l = decode(&bytes, Mode::L, 1 << 20).expect("decode");
        assert_eq!((l.channels, l.data.len()), (1, 35));
        assert!(decode(b"not an image", Mode::Rgb, 1 << 20).is_err());
        // A PNG header declaring 60000 x 60000 pixels.
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&60000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let e = decode(&huge, Mode::Rgb, 64 << 20).expect_err("too big");
        assert!(e.contains("max_bytes") || e.contains("imit"), "{e}");
    }

    #[test]
    fn step_decodes_a_binary_column_and_names_the_bad_row() {
        let bytes = png(&gradient(4, 3));
        let col: ArrayRef = Arc::new(BinaryArray::from(vec![Some(bytes.as_slice()), None]));
        let batch = RecordBatch::try_from_iter(vec![("bytes", col)]).expect("batch");
        let opts: DecodeOptions = serde_json::from_str("{}").expect("defaults");
        let step = opts.bind(&batch.schema()).expect("bind");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("apply");
        let px = read_pixels(out.column(1)).expect("pixels");
        assert_eq!(
            px[0].map(|p| (p.width, p.height, p.channels)),
            Some((4, 3, 3))
        );
        assert!(px[1].is_none());
        assert_eq!(cx.counts["decoded"], 1);

        let col: ArrayRef = Arc::new(BinaryArray::from(vec![bytes.as_slice(), b"junk"]));
        let batch = RecordBatch::try_from_iter(vec![("bytes", col)]).expect("batch");
        let e = step
            .apply(batch, &mut StepContext::default())
            .expect_err("junk");
        assert_eq!(e.row, Some(1), "{e}");
        assert!(e.to_string().contains("cannot decode the image"), "{e}");
    }
}
