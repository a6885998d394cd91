//! Tasks: consecutive objects grouped by `run.task_bytes`, and an object larger than
//! that cut into slices where its records can be found from any offset (uncompressed
//! JSONL, CSV and text, Parquet row groups, the frames of seekable zstd, the members of
//! a multi-member gzip object: JSONL, CSV, text and WARC).

use futures::{StreamExt, TryStreamExt};

use super::listing::Listing;
use super::{PlannedStep, Task};
use crate::error::{Error, Result};
use crate::formats::{self, Compression};
use crate::spec::{FormatName, Pipeline};
use crate::storage::Object;

/// The tasks of `listing`, and why an object larger than `run.task_bytes` runs as one
/// task, when one does. Reads the seek tables of large zstd objects.
pub(super) async fn plan_tasks(
    pipeline: &Pipeline,
    listing: &Listing,
    steps: &[PlannedStep],
    output_schema: &arrow::datatypes::SchemaRef,
) -> Result<(Vec<Task>, Option<&'static str>)> {
    let Listing {
        source,
        objects,
        format_name,
        compressions,
        ..
    } = listing;
    let format_name = *format_name;
    // Text rows carry their line number, which a slice cannot know: text is cut
    // only when no step and no output column uses `line`.
    let line_used = format_name == FormatName::Text
        && super::bind::columns_read(steps, output_schema).contains("line");
    // Large zstd objects in the seekable format can be cut at their frames, large gzip
    // objects of many members at their members: read their seek tables and first
    // members (a range request or two each, a few at a time).
    let task_bytes = pipeline.run.task_bytes.get();
    // A CDX index says where a .warc.gz's records start: cut there, without a probe.
    let mut cuts = indexed_cuts(pipeline, listing).await?;
    let probed: Vec<usize> = (0..objects.len())
        .filter(|&i| {
            !cuts.contains_key(&i)
                && compressions[i] != Compression::None
                && objects[i].size > task_bytes.max(MIN_SLICE)
                // Whether it could be cut if its frames or members allow.
                && split_rule(
                    pipeline,
                    format_name,
                    compressions[i],
                    line_used,
                    Some(&Cuts::Anywhere),
                )
                .is_ok()
        })
        .collect();
    let probes: Vec<(usize, Cuts)> = futures::stream::iter(probed.into_iter().map(|i| {
        let store = source.base.store.clone();
        let o = objects[i].clone();
        let gzip = compressions[i] == Compression::Gzip;
        async move {
            let cuts = if gzip {
                use formats::members::GzipCut;
                formats::members::probe(store.as_ref(), &o.path, o.size)
                    .await
                    .map_err(|e| Error::store("read the first gzip member of", &o.display, e))?
                    .map(|cut| match cut {
                        GzipCut::Members => Cuts::Anywhere,
                        GzipCut::Blocks => Cuts::InsideMember,
                    })
            } else {
                formats::seekable::frames(store.as_ref(), &o.path, o.size)
                    .await
                    .map_err(|e| Error::store("read the seek table of", &o.display, e))?
                    .map(|f| Cuts::At(f.boundaries()))
            };
            Ok::<_, Error>(cuts.map(|c| (i, c)))
        }
    }))
    .buffered(8)
    .try_collect::<Vec<_>>()
    .await?
    .into_iter()
    .flatten()
    .collect();
    cuts.extend(probes);
    let rule = |i: usize| {
        split_rule(
            pipeline,
            format_name,
            compressions[i],
            line_used,
            cuts.get(&i),
        )
    };
    let tasks = make_tasks(objects, task_bytes, |i| rule(i).unwrap_or(Cuts::None));
    let unsplit = tasks
        .iter()
        .filter(|t| t.range.is_none() && t.objects.len() == 1)
        .filter(|t| t.bytes > pipeline.run.task_bytes.get())
        .find_map(|t| rule(t.objects.start).err());
    Ok((tasks, unsplit))
}

/// The cuts of the large `.warc.gz` objects that `source.warc.cdx` indexes: at their
/// records' offsets (a slice still starts at the first member at or after its cut, so
/// an index of other files cuts badly but reads right; one whose offsets run past the
/// object's end is refused as not of this object).
async fn indexed_cuts(
    pipeline: &Pipeline,
    listing: &Listing,
) -> Result<std::collections::HashMap<usize, Cuts>> {
    let mut cuts = std::collections::HashMap::new();
    let Some(uri) = pipeline.source().warc.as_ref().and_then(|w| w.cdx.as_ref()) else {
        return Ok(cuts);
    };
    if listing.format_name != FormatName::Warc {
        return Err(Error::Plan(
            "source.warc.cdx is an index of WARC files; this source is not format: warc".into(),
        ));
    }
    let name = |o: &Object| o.path.filename().unwrap_or_default().to_string();
    let listed = listing.objects.iter().map(name).collect();
    let index = formats::cdx::Index::load(uri, &pipeline.storage, &listed).await?;
    let mut seen: std::collections::HashMap<String, &Object> = Default::default();
    let mut named = 0;
    for (i, o) in listing.objects.iter().enumerate() {
        let Some((offsets, origin)) = index.offsets(&name(o)) else {
            continue;
        };
        named += 1;
        if let Some(other) = seen.insert(name(o), o) {
            return Err(Error::Plan(format!(
                "source.warc.cdx names files by their names, and `{}` and `{}` share one; \
                 list them in separate runs or rename one",
                other.display, o.display
            )));
        }
        if let Some(&past) = offsets.last().filter(|&&last| last >= o.size) {
            return Err(Error::Plan(format!(
                "the CDX index {origin} gives the offset {past} for `{}`, past its end \
                 ({} bytes): the index is of another file of that name",
                o.display, o.size
            )));
        }
        if listing.compressions[i] == Compression::Gzip {
            cuts.insert(i, Cuts::At(offsets.to_vec()));
        }
    }
    tracing::debug!("source.warc.cdx: {named} listed objects indexed");
    Ok(cuts)
}

/// Whether an object of this format and compression can be cut into tasks, or why not.
/// `probed`: where a compressed object can be cut, as its seek table (zstd) or its
/// members (gzip) say; `None` before they are read, or when it has neither.
fn split_rule(
    pipeline: &Pipeline,
    format: FormatName,
    compression: Compression,
    line_used: bool,
    probed: Option<&Cuts>,
) -> std::result::Result<Cuts, &'static str> {
    if !pipeline.source().split {
        return Err("source.split is false");
    }
    let compressed = |probed: Option<&Cuts>| match (compression, probed) {
        (Compression::None, _) => Ok(Cuts::Anywhere),
        (_, Some(cuts)) => Ok(cuts.clone()),
        (Compression::Zstd, None) => Err(
            "a zstd stream without a seek table must be read from its start; write it in \
             zstd's seekable format to split it",
        ),
        (Compression::Gzip, None) if format == FormatName::Warc => Err(
            "its first gzip member does not end within its first MiB: one member, or a \
             large first record; give its CDX index as source.warc.cdx to cut it at its \
             records",
        ),
        (Compression::Gzip, None) => Err(
            "its first gzip member does not end within its first MiB, so it is read from \
             its start; write it as many members (bgzip, or gzip each part and \
             concatenate) or with pigz --independent to split it",
        ),
    };
    match format {
        // Row groups are found from the footer, whatever codec the pages use.
        FormatName::Parquet => Ok(Cuts::Anywhere),
        FormatName::Files => Err("the files format makes one row of each object"),
        FormatName::Warc => match compression {
            Compression::Gzip if probed == Some(&Cuts::InsideMember) => Err(
                "it is one gzip member (flushed into independent blocks); WARC records are \
                 found only at the members of a .warc.gz of one member per record",
            ),
            Compression::Gzip => compressed(probed),
            _ => Err(
                "WARC records are found from any offset only in a .warc.gz of many gzip \
                 members (one per record, as WARC writers do)",
            ),
        },
        FormatName::Text if line_used => Err(
            "text rows number their lines from the start of the object; drop the `line` column to split",
        ),
        FormatName::Jsonl | FormatName::Csv | FormatName::Text => compressed(probed),
    }
}

/// Where an object larger than `run.task_bytes` may be cut into tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cuts {
    /// Not at all: one task.
    None,
    /// At any byte (the slice finds its first record itself).
    Anywhere,
    /// At any byte of a gzip object of one member flushed into independent blocks (the
    /// slice finds its first block, then its first record).
    InsideMember,
    /// Only at these offsets (the frames of a seekable zstd object).
    At(Vec<u64>),
}

/// The smallest slice of an object worth a task (and a request) of its own.
pub const MIN_SLICE: u64 = 4 << 10;

/// Groups consecutive objects into tasks of about `task_bytes` stored bytes. An object
/// larger than that is cut into slices of `task_bytes` when `splittable(i)` says its
/// records can be found from any offset (see [`split_rule`]), so one large object
/// spreads over threads and workers.
pub fn make_tasks(
    objects: &[Object],
    task_bytes: u64,
    splittable: impl Fn(usize) -> Cuts,
) -> Vec<Task> {
    let task_bytes = task_bytes.max(1);
    let mut tasks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    let flush = |tasks: &mut Vec<Task>, start: usize, end: usize, bytes: u64| {
        if start < end {
            tasks.push(Task {
                id: tasks.len(),
                objects: start..end,
                bytes,
                range: None,
                inside_member: false,
            });
        }
    };
    for (i, o) in objects.iter().enumerate() {
        let cuts = if o.size > task_bytes.max(MIN_SLICE) {
            splittable(i)
        } else {
            Cuts::None
        };
        if cuts != Cuts::None {
            flush(&mut tasks, start, i, bytes);
            let slice = task_bytes.max(MIN_SLICE);
            let inside_member = cuts == Cuts::InsideMember;
            let mut push = |at: u64, end: u64| {
                tasks.push(Task {
                    id: tasks.len(),
                    objects: i..i + 1,
                    bytes: end - at,
                    range: Some(at..end),
                    inside_member,
                });
            };
            match cuts {
                Cuts::Anywhere | Cuts::InsideMember => {
                    let mut at = 0;
                    while at < o.size {
                        let end = (at + slice).min(o.size);
                        push(at, end);
                        at = end;
                    }
                }
                Cuts::At(points) => {
                    // Whole frames of about `slice` bytes; the last slice runs to the
                    // object's end (past its last frame: the seek table).
                    let mut at = 0;
                    for &p in points.iter().filter(|&&p| p > 0 && p < o.size) {
                        if p - at >= slice {
                            push(at, p);
                            at = p;
                        }
                    }
                    push(at, o.size);
                }
                Cuts::None => {}
            }
            (start, bytes) = (i + 1, 0);
            continue;
        }
        if i > start && bytes + o.size > task_bytes {
            flush(&mut tasks, start, i, bytes);
            (start, bytes) = (i, 0);
        }
        bytes += o.size;
    }
    flush(&mut tasks, start, objects.len(), bytes);
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;

    #[test]
    fn tasks_group_consecutive_objects_by_bytes() {
        let k = MIN_SLICE;
        let objs: Vec<Object> = [40 * k, 40 * k, 40 * k, 200 * k, 10 * k]
            .iter()
            .enumerate()
            .map(|(i, &size)| Object {
                path: Path::from(format!("o{i}")),
                size,
                display: format!("o{i}"),
            })
            .collect();
        let tasks = make_tasks(&objs, 100 * k, |_| Cuts::None);
        let ranges: Vec<_> = tasks.iter().map(|t| t.objects.clone()).collect();
        assert_eq!(ranges, [0..2, 2..3, 3..4, 4..5]);
        // The 200-byte object, splittable, becomes two slices.
        let tasks = make_tasks(&objs, 100 * k, |i| {
            if i == 3 { Cuts::Anywhere } else { Cuts::None }
        });
        let parts: Vec<_> = tasks
            .iter()
            .map(|t| (t.objects.clone(), t.range.clone()))
            .collect();
        assert_eq!(
            parts,
            [
                (0..2, None),
                (2..3, None),
                (3..4, Some(0..100 * k)),
                (3..4, Some(100 * k..200 * k)),
                (4..5, None)
            ]
        );
        // Frames: cut only at their starts, whole frames of at least a slice each.
        let tasks = make_tasks(&objs, 100 * k, |i| {
            if i == 3 {
                Cuts::At(vec![0, 30 * k, 90 * k, 120 * k, 150 * k, 190 * k])
            } else {
                Cuts::None
            }
        });
        let slices: Vec<_> = tasks.iter().filter_map(|t| t.range.clone()).collect();
        assert_eq!(slices, [0..120 * k, 120 * k..200 * k]);
    }
}
