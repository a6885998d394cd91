//! kiln's one call into `fast_image_resize`, behind a function that is not generic.
//!
//! `Resizer::resize` is generic over the image types, and its SIMD convolutions are
//! generic over the pixel type: every one of them is instantiated in the crate that calls
//! it. Called from kiln, that was about a third of kiln's LLVM IR (`cargo llvm-lines`),
//! compiled twice (kiln's library and its unit tests) at the very end of every clean
//! build. Called from here, it compiles once, beside the other dependencies. (Tested
//! through kiln's `image.resize` tests: this crate is a dependency, not a member.)
//!
//! And only for the three pixel types kiln resizes: `Resizer::resize` on a dynamic image
//! instantiates every convolution for all thirteen of the crate's pixel types (16-bit,
//! float, two-channel), which made this crate the longest single compile of a clean
//! build; `resize_typed` for 8-bit gray, RGB and RGBA compiles only those (at opt-level
//! 1: 57 s wall, 108 CPU-s before; 39 s, 75 CPU-s after).

pub use fast_image_resize::{FilterType, ResizeAlg};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::pixels::{U8, U8x3, U8x4};
use fast_image_resize::{PixelTrait, PixelType, ResizeOptions, Resizer};

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
    let options = ResizeOptions::new().resize_alg(alg);
    match channels {
        1 => typed::<U8>(&src, &mut dst, &options),
        3 => typed::<U8x3>(&src, &mut dst, &options),
        _ => typed::<U8x4>(&src, &mut dst, &options),
    }?;
    Ok(dst.into_vec())
}

/// [`Resizer::resize_typed`] for images of pixel type `P`.
fn typed<P: PixelTrait>(
    src: &ImageRef<'_>,
    dst: &mut Image<'_>,
    options: &ResizeOptions,
) -> Result<(), String> {
    let (Some(from), Some(mut to)) = (src.typed_image::<P>(), dst.typed_image_mut::<P>()) else {
        return Err("the images' pixel type is not the one resized".into());
    };
    Resizer::new()
        .resize_typed(&from, &mut to, options)
        .map_err(|e| e.to_string())
}
