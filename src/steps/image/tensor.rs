//! `image.to_tensor`: decoded pixels → float32 in CHW order, scaled to [0, 1] and
//! normalized per channel, `(x / 255 - mean) / std` (torchvision's `ToTensor` then
//! `Normalize`). For small images: a 224×224 RGB tensor is 600 KB per row.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Builder, Int32Builder, ListBuilder};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PixelsRef, default_image_column, pixel_column, read_pixels};
use crate::steps::StepError;
use crate::steps::text::{put_columns, with_field};
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `image.to_tensor`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToTensorOptions {
    /// The decoded-image column.
    #[serde(default = "default_image_column")]
    pub column: String,
    /// The tensor column: `list<float32>`, CHW, flattened.
    #[serde(default = "default_output")]
    pub output: String,
    /// Its shape `[channels, height, width]` as `list<int32>`.
    #[serde(default = "default_shape")]
    pub shape: String,
    /// Per-channel mean, subtracted after scaling to [0, 1] (default 0). ImageNet:
    /// `[0.485, 0.456, 0.406]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation to divide by (default 1). ImageNet:
    /// `[0.229, 0.224, 0.225]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
}

fn default_output() -> String {
    "pixel_values".into()
}

fn default_shape() -> String {
    "pixel_values_shape".into()
}

impl StepOptions for ToTensorOptions {
    const SUMMARY: &'static str =
        "decoded images to CHW float32 (x/255 - mean) / std, with their shape; for small images";
    const EXAMPLE: &'static str =
        "- image.to_tensor: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = pixel_column(input, &self.column)?;
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(v) = v
                && !(1..=4).contains(&v.len())
            {
                return Err(format!(
                    "{what} has {} values; give one per channel",
                    v.len()
                ));
            }
        }
        if let Some(s) = &self.std
            && s.iter().any(|x| *x == 0.0 || !x.is_finite())
        {
            return Err("std values must be finite and not 0".into());
        }
        let item = |t| Arc::new(Field::new("item", t, false));
        let (schema, index) = with_field(
            input,
            &self.output,
            Field::new(&self.output, DataType::List(item(DataType::Float32)), true),
        );
        let (schema, shape) = with_field(
            &schema,
            &self.shape,
            Field::new(&self.shape, DataType::List(item(DataType::Int32)), true),
        );
        Ok(Arc::new(ToTensor {
            opts: self.clone(),
            source,
            index,
            shape,
            schema,
        }))
    }
}

#[derive(Debug)]
struct ToTensor {
    opts: ToTensorOptions,
    source: usize,
    index: usize,
    shape: usize,
    schema: SchemaRef,
}

/// Appends the CHW tensor of `p` to `out`.
pub fn to_chw(
    p: PixelsRef<'_>,
    mean: &[f32],
    std: &[f32],
    out: &mut Float32Builder,
) -> Result<(), String> {
    p.check()?;
    let c = p.channels as usize;
    if mean.len() != c || std.len() != c {
        return Err(format!(
            "the image has {c} channels but mean/std give {}/{} values",
            mean.len(),
            std.len()
        ));
    }
    for ch in 0..c {
        let (m, s) = (mean[ch], std[ch]);
        for px in p.data.chunks_exact(c) {
            out.append_value((f32::from(px[ch]) / 255.0 - m) / s);
        }
    }
    Ok(())
}

impl Step for ToTensor {
    fn row_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.opts.output);
        need.remove(&self.opts.shape);
        need.insert(self.opts.column.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let rows = read_pixels(batch.column(self.source))?;
        let item = |t| Arc::new(Field::new("item", t, false));
        let mut values =
            ListBuilder::new(Float32Builder::new()).with_field(item(DataType::Float32));
        let mut shapes = ListBuilder::new(Int32Builder::new()).with_field(item(DataType::Int32));
        for p in rows {
            match p {
                Some(p) => {
                    let c = p.channels as usize;
                    let mean = self.opts.mean.clone().unwrap_or_else(|| vec![0.0; c]);
                    let std = self.opts.std.clone().unwrap_or_else(|| vec![1.0; c]);
                    to_chw(p, &mean, &std, values.values())
                        .map_err(|e| format!("image.to_tensor of `{}`: {e}", self.opts.column))?;
                    values.append(true);
                    shapes
                        .values()
                        .append_slice(&[c as i32, p.height as i32, p.width as i32]);
                    shapes.append(true);
                }
                None => {
                    values.append(false);
                    shapes.append(false);
                }
            }
        }
        let columns: Vec<(usize, ArrayRef)> = vec![
            (self.index, Arc::new(values.finish())),
            (self.shape, Arc::new(shapes.finish())),
        ];
        put_columns(&batch, &self.schema, columns).map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float32Type;

    use super::*;
    use crate::steps::image::build_pixels;
    use crate::steps::image::test_util::gradient;

    #[test]
    fn chw_order_scaling_and_normalization() {
        let g = gradient(2, 1); // pixels (0, 0, 0) and (1, 0, 1)
        let col = build_pixels(vec![Some(g)]);
        let batch = RecordBatch::try_from_iter(vec![("image", col)]).expect("batch");
        let opts: ToTensorOptions =
            serde_json::from_str(r#"{"mean": [0.5, 0.0, 0.0], "std": [0.5, 1.0, 2.0]}"#)
                .expect("options");
        let step = opts.bind(&batch.schema()).expect("bind");
        let out = step
            .apply(batch, &mut StepContext::default())
            .expect("apply");
        let t = out
            .column_by_name("pixel_values")
            .expect("tensor")
            .as_list::<i32>();
        let v = t.value(0);
        let v = v.as_primitive::<Float32Type>();
        let want = [
            -1.0,
            (1.0 / 255.0 - 0.5) / 0.5,
            0.0,
            0.0,
            0.0,
            1.0 / 255.0 / 2.0,
        ];
        assert_eq!(v.len(), 6);
        for (a, b) in v.values().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let s = out
            .column_by_name("pixel_values_shape")
            .expect("shape")
            .as_list::<i32>();
        assert_eq!(
            s.value(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            vec![3, 1, 2]
        );
        assert!(!t.is_null(0));
    }
}
