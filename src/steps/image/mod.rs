//! Image steps: `image.decode` (JPEG, PNG, WebP → pixels), `image.resize`,
//! `image.center_crop`, `image.encode` (pixels → the `{bytes, path}` struct Hugging Face
//! `datasets` reads as its `Image` feature) and `image.to_tensor` (CHW float32).
//!
//! Between decode and encode an image is a struct column of 8-bit pixels, row-major and
//! interleaved (HWC): `{width: uint32, height: uint32, channels: uint8, data: binary}`.
//! Rows of a batch are processed in parallel on the rayon pool.

pub mod crop;
pub mod decode;
pub mod encode;
pub mod resize;
pub mod tensor;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, StructArray, UInt8Array, UInt8Builder,
    UInt32Array, UInt32Builder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steps::column_index;
use crate::steps::text::put_column;

/// Decoded pixels of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    /// 1 (L), 3 (RGB) or 4 (RGBA).
    pub channels: u8,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
}

/// The fields of a decoded-image column.
pub fn pixel_fields() -> Fields {
    Fields::from(vec![
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("channels", DataType::UInt8, false),
        Field::new("data", DataType::Binary, false),
    ])
}

pub fn pixel_type() -> DataType {
    DataType::Struct(pixel_fields())
}

/// The `{bytes, path}` struct of an encoded image (the `datasets` `Image` layout).
pub fn encoded_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

pub use crate::hf::is_encoded_image;

/// The index of a decoded-image column, or an error saying what to do.
pub(crate) fn pixel_column(schema: &SchemaRef, name: &str) -> Result<usize, String> {
    let i = column_index(schema, name)
        .map_err(|e| format!("{e}; put `image.decode` before this step"))?;
    if schema.field(i).data_type() != &pixel_type() {
        return Err(format!(
            "column `{name}` is {}, not decoded pixels; put `image.decode` before this step",
            schema.field(i).data_type()
        ));
    }
    Ok(i)
}

/// The rows of a decoded-image column (`None` for null rows).
pub(crate) fn read_pixels(array: &ArrayRef) -> Result<Vec<Option<PixelsRef<'_>>>, String> {
    let s = array
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or("not a decoded-image column")?;
    let width = downcast::<UInt32Array>(s.column(0))?;
    let height = downcast::<UInt32Array>(s.column(1))?;
    let channels = downcast::<UInt8Array>(s.column(2))?;
    let data = downcast::<BinaryArray>(s.column(3))?;
    Ok((0..s.len())
        .map(|i| {
            s.is_valid(i).then(|| PixelsRef {
                width: width.value(i),
                height: height.value(i),
                channels: channels.value(i),
                data: data.value(i),
            })
        })
        .collect())
}

fn downcast<T: 'static>(a: &ArrayRef) -> Result<&T, String> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| "malformed decoded-image column".to_string())
}

/// A row of a decoded-image column, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PixelsRef<'a> {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: &'a [u8],
}

impl PixelsRef<'_> {
    /// Checks that the data holds exactly the pixels the dimensions say.
    pub fn check(&self) -> Result<(), String> {
        let want = self.width as usize * self.height as usize * self.channels as usize;
        if self.data.len() != want || !matches!(self.channels, 1 | 3 | 4) {
            return Err(format!(
                "a decoded image of {}x{}x{} holds {} bytes",
                self.width,
                self.height,
                self.channels,
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// A decoded-image column from rows.
pub(crate) fn build_pixels(rows: Vec<Option<Pixels>>) -> ArrayRef {
    let n = rows.len();
    let mut width = UInt32Builder::with_capacity(n);
    let mut height = UInt32Builder::with_capacity(n);
    let mut channels = UInt8Builder::with_capacity(n);
    let bytes: usize = rows.iter().flatten().map(|p| p.data.len()).sum();
    let mut data = BinaryBuilder::with_capacity(n, bytes);
    let mut valid = Vec::with_capacity(n);
    for row in rows {
        match row {
            Some(p) => {
                width.append_value(p.width);
                height.append_value(p.height);
                channels.append_value(p.channels);
                data.append_value(&p.data);
                valid.push(true);
            }
            None => {
                // Children of a null struct row still need a (default) value.
                width.append_value(0);
                height.append_value(0);
                channels.append_value(0);
                data.append_value([]);
                valid.push(false);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(channels.finish()),
        Arc::new(data.finish()),
    ];
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    Arc::new(StructArray::new(pixel_fields(), columns, nulls))
}

/// `batch` with the decoded-image column `index` mapped row by row (in parallel) by
/// `f`; null rows stay null. `step` names the step in errors.
pub(crate) fn map_pixels(
    batch: &RecordBatch,
    schema: &SchemaRef,
    index: usize,
    step: &str,
    f: impl Fn(PixelsRef<'_>) -> Result<Pixels, String> + Sync,
) -> Result<RecordBatch, String> {
    let rows = read_pixels(batch.column(index))?;
    let out: Result<Vec<Option<Pixels>>, String> =
        crate::pool::par_rows(rows.len(), 1, |i| rows[i].map(&f).transpose())
            .into_iter()
            .collect();
    let out = out.map_err(|e| format!("{step} of `{}`: {e}", schema.field(index).name()))?;
    put_column(batch, schema, index, build_pixels(out))
}

/// The columns a step needs: those needed after it, and `column`.
pub(crate) fn needs(downstream: &BTreeSet<String>, column: &str) -> BTreeSet<String> {
    let mut need = downstream.clone();
    need.insert(column.to_string());
    need
}

/// A width and height: `224` (square) or `[width, height]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Size {
    Square(u32),
    WidthHeight([u32; 2]),
}

impl Size {
    pub fn width_height(self) -> (u32, u32) {
        match self {
            Size::Square(s) => (s, s),
            Size::WidthHeight([w, h]) => (w, h),
        }
    }

    /// Refuses zero sides.
    pub fn check(self, what: &str) -> Result<(u32, u32), String> {
        let (w, h) = self.width_height();
        if w == 0 || h == 0 {
            return Err(format!("{what}: width and height must be at least 1"));
        }
        Ok((w, h))
    }
}

pub(crate) fn default_image_column() -> String {
    "image".into()
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A `w`×`h` RGB image whose pixel (x, y) is (x, y, x+y) mod 256.
    pub fn gradient(w: u32, h: u32) -> Pixels {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[x as u8, y as u8, (x + y) as u8]);
            }
        }
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }
}
