//! `image.resize`: to an exact size, or so the shorter side has a given length with the
//! aspect ratio kept (torchvision's `Resize(256)`). SIMD convolution resampling by
//! `fast_image_resize`, antialiased when shrinking.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use kiln_resize::{FilterType, ResizeAlg};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Pixels, PixelsRef, Size, default_image_column, map_pixels, needs, pixel_column};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Resampling filter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Nearest,
    /// torchvision's and Pillow's default.
    #[default]
    Bilinear,
    /// Catmull-Rom.
    Bicubic,
    Lanczos3,
}

/// Options of `image.resize`. Give exactly one of `shorter_side` and `size`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeOptions {
    /// The decoded-image column (resized in place).
    #[serde(default = "default_image_column")]
    pub column: String,
    /// Scale so the shorter side has this length, keeping the aspect ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorter_side: Option<u32>,
    /// Exact output size: `224` or `[width, height]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// `nearest`, `bilinear` (default), `bicubic` or `lanczos3`.
    #[serde(default)]
    pub filter: Filter,
}

impl StepOptions for ResizeOptions {
    const SUMMARY: &'static str = "resize decoded images: shorter side to N (aspect kept) or an exact size; SIMD, antialiased";
    const EXAMPLE: &'static str = "- image.resize: { shorter_side: 256, filter: bilinear }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let index = pixel_column(input, &self.column)?;
        let target = match (self.shorter_side, self.size) {
            (Some(0), _) => return Err("shorter_side must be at least 1".into()),
            (Some(s), None) => Target::Shorter(s),
            (None, Some(size)) => {
                let (w, h) = size.check("size")?;
                Target::Exact(w, h)
            }
            _ => return Err("give exactly one of shorter_side and size".into()),
        };
        Ok(Arc::new(Resize {
            column: self.column.clone(),
            index,
            target,
            alg: match self.filter {
                Filter::Nearest => ResizeAlg::Nearest,
                Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
                Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
                Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
            },
            schema: input.clone(),
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Shorter(u32),
    Exact(u32, u32),
}

impl Target {
    fn size(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Target::Exact(w, h) => (w, h),
            Target::Shorter(s) => {
                // As torchvision: the shorter side is exactly `s`, the other rounded
                // down from the same scale.
                let scale = |long: u32, short: u32| {
                    ((u64::from(long) * u64::from(s)) / u64::from(short.max(1))).max(1) as u32
                };
                if w <= h {
                    (s, scale(h, w))
                } else {
                    (scale(w, h), s)
                }
            }
        }
    }
}

#[derive(Debug)]
struct Resize {
    column: String,
    index: usize,
    target: Target,
    alg: ResizeAlg,
    schema: SchemaRef,
}

/// Resizes one image to `w`×`h`.
pub fn resize(p: PixelsRef<'_>, w: u32, h: u32, alg: ResizeAlg) -> Result<Pixels, String> {
    p.check()?;
    let data = if (p.width, p.height) == (w, h) {
        p.data.to_vec()
    } else {
        kiln_resize::resize(p.data, p.width, p.height, p.channels, w, h, alg)?
    };
    Ok(Pixels {
        width: w,
        height: h,
        channels: p.channels,
        data,
    })
}

impl Step for Resize {
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
        cx.count(
            "resized",
            (batch.num_rows() - batch.column(self.index).null_count()) as u64,
        );
        map_pixels(&batch, &self.schema, self.index, "image.resize", |p| {
            let (w, h) = self.target.size(p.width, p.height);
            resize(p, w, h, self.alg)
        })
        .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::image::test_util::gradient;

    #[test]
    fn shorter_side_keeps_the_aspect_ratio() {
        assert_eq!(Target::Shorter(256).size(640, 480), (341, 256));
        assert_eq!(Target::Shorter(256).size(480, 640), (256, 341));
        assert_eq!(Target::Shorter(10).size(10, 10), (10, 10));
        assert_eq!(Target::Exact(3, 2).size(640, 480), (3, 2));
    }

    #[test]
    fn resizes_to_the_size_asked_and_keeps_flat_colours() {
        let g = gradient(64, 48);
        let p = PixelsRef {
            width: 64,
            height: 48,
            channels: 3,
            data: &g.data,
        };
        let out = resize(p, 32, 24, ResizeAlg::Convolution(FilterType::Bilinear)).expect("resize");
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (32, 24, 32 * 24 * 3)
        );
        let flat = vec![200u8; 10 * 10 * 3];
        let p = PixelsRef {
            width: 10,
            height: 10,
            channels: 3,
            data: &flat,
        };
        let out = resize(p, 3, 7, ResizeAlg::Convolution(FilterType::Lanczos3)).expect("resize");
        assert!(out.data.iter().all(|&v| v == 200));
        let bad = PixelsRef {
            width: 10,
            height: 10,
            channels: 3,
            data: &flat[..5],
        };
        assert!(resize(bad, 3, 3, ResizeAlg::Nearest).is_err());
    }
}
