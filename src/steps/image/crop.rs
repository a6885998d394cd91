//! `image.center_crop`: the centre `width`×`height` of each image; an image smaller than
//! that on a side is padded with black on that side first (as torchvision's
//! `CenterCrop`), so every output has exactly the size asked.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Pixels, PixelsRef, Size, default_image_column, map_pixels, needs, pixel_column, read_pixels,
};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `image.center_crop`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CenterCropOptions {
    /// The decoded-image column (cropped in place).
    #[serde(default = "default_image_column")]
    pub column: String,
    /// `224` or `[width, height]`.
    pub size: Size,
}

impl StepOptions for CenterCropOptions {
    const SUMMARY: &'static str =
        "the centre width×height of decoded images (padded with black when smaller)";
    const EXAMPLE: &'static str = "- image.center_crop: { size: 224 }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let index = pixel_column(input, &self.column)?;
        let (width, height) = self.size.check("size")?;
        Ok(Arc::new(CenterCrop {
            column: self.column.clone(),
            index,
            width,
            height,
            schema: input.clone(),
        }))
    }
}

#[derive(Debug)]
struct CenterCrop {
    column: String,
    index: usize,
    width: u32,
    height: u32,
    schema: SchemaRef,
}

/// The centre `w`×`h` of an image, padded with zeros where the image is smaller.
pub fn center_crop(p: PixelsRef<'_>, w: u32, h: u32) -> Result<Pixels, String> {
    p.check()?;
    let c = p.channels as usize;
    let mut data = vec![0u8; w as usize * h as usize * c];
    // Offsets of the crop in the source (positive) or of the source in the output
    // (padding), rounded as torchvision rounds them.
    let off = |src: u32, dst: u32| -> (usize, usize) {
        if src >= dst {
            (((src - dst) as f64 / 2.0).round() as usize, 0)
        } else {
            (0, ((dst - src) / 2) as usize)
        }
    };
    let (sx, dx) = off(p.width, w);
    let (sy, dy) = off(p.height, h);
    let cols = (p.width as usize - sx).min(w as usize - dx);
    let rows = (p.height as usize - sy).min(h as usize - dy);
    for r in 0..rows {
        let src = ((sy + r) * p.width as usize + sx) * c;
        let dst = ((dy + r) * w as usize + dx) * c;
        data[dst..dst + cols * c].copy_from_slice(&p.data[src..src + cols * c]);
    }
    Ok(Pixels {
        width: w,
        height: h,
        channels: p.channels,
        data,
    })
}

impl Step for CenterCrop {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        needs(downstream, &self.column)
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let padded = read_pixels(batch.column(self.index))?
            .iter()
            .flatten()
            .filter(|p| p.width < self.width || p.height < self.height)
            .count();
        cx.count("padded", padded as u64);
        map_pixels(&batch, &self.schema, self.index, "image.center_crop", |p| {
            center_crop(p, self.width, self.height)
        })
        .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::image::test_util::gradient;

    #[test]
    fn crops_the_centre_and_pads_small_images() {
        let g = gradient(6, 4);
        let p = PixelsRef {
            width: 6,
            height: 4,
            channels: 3,
            data: &g.data,
        };
        let out = center_crop(p, 2, 2).expect("crop");
        // Source columns 2..4, rows 1..3.
        assert_eq!(&out.data[..3], &[2, 1, 3]);
        assert_eq!(&out.data[9..12], &[3, 2, 5]);
        // Wider than the image: one black column each side, the source in between.
        let out = center_crop(p, 8, 4).expect("pad");
        assert_eq!(out.data.len(), 8 * 4 * 3);
        let px = |x: usize, y: usize| &out.data[(y * 8 + x) * 3..(y * 8 + x) * 3 + 3];
        assert_eq!(px(0, 1), &[0, 0, 0], "left padding");
        assert_eq!(px(2, 1), &[1, 1, 2], "source (1, 1)");
        assert_eq!(px(6, 3), &[5, 3, 8], "source (5, 3)");
        assert_eq!(px(7, 3), &[0, 0, 0], "right padding");
    }
}
