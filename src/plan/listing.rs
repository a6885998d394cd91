//! The listing: the source's objects, their format (declared or from their names, the
//! same for all), their compression, and the ImageFolder classes of the `files`
//! format; and where the sink may be, given the source.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::formats::{self, Compression, SourceFormat};
use crate::spec::{FormatName, Pipeline};
use crate::storage::{Location, Object, SourceUri};

/// What the source lists, and how to read it.
pub(super) struct Listing {
    pub source: SourceUri,
    pub objects: Vec<Object>,
    pub format_name: FormatName,
    pub format: Arc<dyn SourceFormat>,
    pub classes: Option<Arc<formats::files::Classes>>,
    pub compressions: Vec<Compression>,
}

/// Lists `pipeline.source` and settles how its objects are read.
///
/// # Errors
/// [`Error::Plan`] when nothing matches, the format cannot be told or differs between
/// objects.
pub(super) async fn list(pipeline: &Pipeline) -> Result<Listing> {
    let source = SourceUri::parse(&pipeline.source().uri, &pipeline.storage)?;
    let objects = source.list().await?;
    if objects.is_empty() {
        return Err(Error::Plan(format!(
            "source.uri `{}` matched no objects{}",
            pipeline.source().uri,
            if source.pattern().is_some() {
                "; check the glob"
            } else {
                "; check that the path exists"
            }
        )));
    }
    let format_name = match pipeline.source().format {
            Some(f) => f,
            None => formats::format_from_name(objects[0].path.as_ref()).ok_or_else(|| {
                Error::Plan(format!(
                    "cannot tell the format of `{}` from its name; set source.format (jsonl, csv, parquet, text)",
                    objects[0].display
                ))
            })?,
        };
    if pipeline.source().format.is_none()
        && let Some(other) = objects
            .iter()
            .find(|o| formats::format_from_name(o.path.as_ref()) != Some(format_name))
    {
        return Err(Error::Plan(format!(
            "source.uri matches objects of different formats: `{}` and `{}`; narrow the glob or set source.format",
            objects[0].display, other.display
        )));
    }
    let classes = formats::files::Classes::of_source(
        pipeline.source(),
        objects.iter().map(|o| o.display.as_str()),
    )?;
    let format = formats::format_for_source(format_name, pipeline.source(), classes.clone())?;
    let compressions: Vec<Compression> = objects
        .iter()
        .map(|o| Compression::resolve(pipeline.source().compression, o.path.as_ref()))
        .collect();

    Ok(Listing {
        source,
        objects,
        format_name,
        format,
        classes,
        compressions,
    })
}

/// Opens the sink, refusing one inside a listed source (a later run would read its
/// own output) or an existing file.
pub(super) fn open_sink_for(
    pipeline: &Pipeline,
    inputs: &[super::Input],
    objects: &[Object],
) -> Result<Location> {
    let sink = crate::storage::open(&pipeline.sink.uri, &pipeline.storage)?;
    for input in inputs {
        let source = &input.source;
        let objects = &objects[input.objects.clone()];
        // A sink inside the listed prefix would be read back by the next run. (A source
        // that names one object lists nothing else.)
        let single_object = source.pattern().is_none()
            && objects.len() == 1
            && objects[0].path == source.base.prefix;
        if !single_object && sink.is_inside(&source.base) {
            return Err(Error::Plan(format!(
                "sink.uri `{}` lies inside the source `{}`; a later run would read its own output",
                pipeline.sink.uri, input.spec.uri
            )));
        }
    }
    // A sink is a folder: a file of that name would fail only at the first write.
    if let Some(local) = sink.identity.strip_prefix("file://") {
        let path = std::path::Path::new(local.trim_end_matches('/'));
        if path.is_file() {
            return Err(Error::Plan(format!(
                "sink.uri `{}` is an existing file; a sink is a folder — choose another \
                     path, or remove the file",
                pipeline.sink.uri
            )));
        }
    }

    Ok(sink)
}
