//! kiln's one call into `fast_image_resize`, behind a function that is not generic.
//!
//! `Resizer::resize` is generic over the image types, and its SIMD convolutions are
//! generic over the pixel type: every one of them is instantiated in the crate that calls
//! it. Called from kiln, that was about a third of kiln's LLVM IR (`cargo llvm-lines`),
//! compiled twice (kiln's library and its unit tests) at the very end of every clean
//! build. Called from here, it compiles once, beside the other dependencies. (Tested
//! through kiln's `image.resize` tests: this crate is a dependency, not a member.)

pub use fast_image_resize::{FilterType, ResizeAlg};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeOptions, Resizer};

/// Resizes an 8-bit image of 1 (gray), 3 (RGB) or 4 (RGBA) interleaved channels,
/// `width`×`height`, to `to_width`×`to_height`, antialiased when shrinking.
pub fn resize(
    data: &[u8],
    width: u32,
    height: u32,
    channels: u8,
    to_width: u32,
    to_height: u32,
    alg: ResizeAlg,
) -> Result<Vec<u8>, String> {
    let pixel_type = match channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(format!("{n} channels: only 1, 3 and 4 are resized")),
    };
    let src = ImageRef::new(width, height, data, pixel_type).map_err(|e| e.to_string())?;
    let mut dst = Image::new(to_width, to_height, pixel_type);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
        .map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
}
