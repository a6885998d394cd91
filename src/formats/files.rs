//! Whole objects as rows: `path` and `bytes`, one row per object (images, audio, any
//! binary), and with `source.labels: folder` the ImageFolder convention's label: the
//! name of the object's folder (`cat/001.jpg` → `cat`) and its dense id, the index of
//! that name among the sorted folder names of the whole listing.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::{DecodeContext, Emit, ObjectInput, SourceFormat};
use crate::error::{Error, Result};

/// An object larger than this is refused rather than read into one row.
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// The classes of an ImageFolder listing: folder name → dense id.
#[derive(Debug, Clone, Default)]
pub struct Classes(BTreeMap<String, i64>);

impl Classes {
    /// The classes of a listing (object paths as the user sees them), sorted by name.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut names: Vec<&str> = paths.into_iter().map(folder_of).collect();
        names.sort_unstable();
        names.dedup();
        Ok(Classes(
            names
                .into_iter()
                .zip(0i64..)
                .map(|(n, i)| (n.to_string(), i))
                .collect(),
        ))
    }

    /// The classes of a source's listing when `source.labels` asks for them.
    pub fn of_source<'a>(
        source: &crate::spec::Source,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Arc<Self>>> {
        match source.labels {
            Some(crate::spec::LabelsFrom::Folder) => Ok(Some(Arc::new(Self::from_paths(paths)?))),
            None => Ok(None),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// The `label_id` column as a `datasets` `ClassLabel`.
    pub fn class_labels(&self) -> crate::hf::ClassLabels {
        crate::hf::ClassLabels {
            column: "label_id".into(),
            names: self.names(),
        }
    }
}

/// The name of the folder holding an object (`''` for an object at the top).
pub fn folder_of(path: &str) -> &str {
    path.rsplit('/').nth(1).unwrap_or("")
}

#[derive(Debug, Default)]
pub struct Files {
    /// With `source.labels: folder`.
    pub classes: Option<Arc<Classes>>,
}

impl Files {
    pub fn schema(&self) -> Schema {
        let mut fields = vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("bytes", DataType::Binary, false),
        ];
        if self.classes.is_some() {
            // Never null, but declared nullable: `datasets` takes a column's ClassLabel
            // from the schema metadata only when the field equals its own, nullable one.
            fields.push(Field::new("label", DataType::Utf8, true));
            fields.push(Field::new("label_id", DataType::Int64, true));
        }
        Schema::new(fields)
    }
}

impl SourceFormat for Files {
    fn infer_schema(&self, input: ObjectInput<'_>, _: usize, cx: &DecodeContext) -> Result<Schema> {
        // Read the object, so the plan measures a row's size and sizes batches by it.
        let mut sink = std::io::sink();
        std::io::copy(&mut input.bytes()?, &mut sink)
            .map_err(|e| Error::read(&cx.object, None, e))?;
        Ok(self.schema())
    }

    fn decode(
        &self,
        input: ObjectInput<'_>,
        cx: &DecodeContext,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let mut bytes = Vec::new();
        input
            .bytes()?
            .take(MAX_OBJECT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::read(&cx.object, None, e))?;
        if bytes.len() as u64 > MAX_OBJECT_BYTES {
            return Err(Error::input(
                &cx.object,
                None,
                format!(
                    "larger than {} : the files format holds each object in one row; \
                     leave it out of source.uri",
                    crate::spec::ByteSize(MAX_OBJECT_BYTES)
                ),
            ));
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![cx.object.as_str()])),
            Arc::new(BinaryArray::from(vec![bytes.as_slice()])),
        ];
        if let Some(classes) = &self.classes {
            let folder = folder_of(&cx.object);
            let id = *classes.0.get(folder).ok_or_else(|| {
                Error::input(
                    &cx.object,
                    None,
                    format!("folder `{folder}` is not among the planned labels"),
                )
            })?;
            columns.push(Arc::new(StringArray::from(vec![folder])));
            columns.push(Arc::new(Int64Array::from(vec![id])));
        }
        let batch = RecordBatch::try_new(cx.schema.clone(), columns)
            .map_err(|e| Error::Internal(format!("files batch: {e}")))?;
        emit(super::Decoded::Batch(batch))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_folder_names_with_dense_sorted_ids() {
        let c = Classes::from_paths([
            "data/train/dog/1.jpg",
            "data/train/cat/2.png",
            "data/train/dog/3.jpg",
            "data/train/bird/4.webp",
        ])
        .expect("classes");
        assert_eq!(c.names(), ["bird", "cat", "dog"]);
        assert_eq!(c.0["dog"], 2);
        assert_eq!(folder_of("top.jpg"), "");
    }
}
