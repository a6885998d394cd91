//! Stage parts in the sink: what one task of a full pass or a fit pass found, stored so
//! that every worker can settle the step with every task's part (docs/workers.md,
//! "Stages"). The runtime decides when to write and read them (`runtime/shared.rs`);
//! this file is where they are and how they travel.
//!
//! A part is `_kiln/stages/step-KKK/TTTTT.part`: one line of JSON (the [`PartHeader`])
//! and then what the step wrote. It is written once by one streaming upload, which a
//! reader sees whole or not at all (a PUT, or a multipart upload completed at the end;
//! on local disk a file renamed into place). Parts are a pure function of the input
//! and the steps, so two workers writing the same part write the same bytes.

use std::collections::BTreeSet;
use std::path::Path as FsPath;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::layout::STAGES_DIR;
use crate::storage::Location;

/// The first line of a stored part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    pub kiln_version: String,
    pub pipeline_hash: String,
    /// The step's name and its 1-based place in the pipeline.
    pub step: String,
    pub index: usize,
    pub task: usize,
    /// Rows the task read (a fit's row count sums them).
    pub rows: u64,
    /// For a step that settles in sections: where each section of the part ends,
    /// counted from the byte after this line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<u64>,
}

/// The first line of a section's decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionHeader {
    pub kiln_version: String,
    pub pipeline_hash: String,
    pub step: String,
    pub index: usize,
    pub section: usize,
    pub sections: usize,
}

/// What the sink holds of the stages: parts and sections' decisions, as (step, task)
/// and (step, section) with `k` 0-based.
#[derive(Debug, Default)]
pub struct Stored {
    pub parts: BTreeSet<(usize, usize)>,
    pub sections: BTreeSet<(usize, usize)>,
}

/// Where the part of step `k` (0-based) for `task` is, relative to the sink.
pub fn part_path(k: usize, task: usize) -> String {
    format!("{STAGES_DIR}/step-{:03}/{task:05}.part", k + 1)
}

/// Where the decisions of section `section` of step `k` (0-based) are.
pub fn section_path(k: usize, section: usize) -> String {
    format!("{STAGES_DIR}/step-{:03}/section-{section:05}.out", k + 1)
}

/// The parts and sections the sink holds.
pub async fn stored(sink: &Location) -> Result<Stored> {
    let paths = super::list_under(sink, STAGES_DIR).await?;
    let mut out = Stored::default();
    for p in &paths {
        match parse(&sink.relative(p)) {
            Some(Entry::Part(k, t)) => {
                out.parts.insert((k, t));
            }
            Some(Entry::Section(k, s)) => {
                out.sections.insert((k, s));
            }
            None => {}
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq)]
enum Entry {
    Part(usize, usize),
    Section(usize, usize),
}

/// What a relative path under the stages is; None for anything else (a local upload's
/// staging file `NAME#N`).
fn parse(rel: &str) -> Option<Entry> {
    let rest = rel.strip_prefix(STAGES_DIR)?.strip_prefix("/step-")?;
    let (step, file) = rest.split_once('/')?;
    let k = step.parse::<usize>().ok()?.checked_sub(1)?;
    if let Some(section) = file.strip_prefix("section-") {
        return Some(Entry::Section(
            k,
            section.strip_suffix(".out")?.parse().ok()?,
        ));
    }
    Some(Entry::Part(k, file.strip_suffix(".part")?.parse().ok()?))
}

/// Uploads `head` and then the local file `file` as the object at `rel`, streaming.
pub async fn put_part(sink: &Location, rel: &str, head: &[u8], file: &FsPath) -> Result<()> {
    let shown = sink.display_child(rel);
    let mut local = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::sink(&shown, format!("cannot open the local part: {e}")))?;
    let mut w = object_store::buffered::BufWriter::new(sink.store.clone(), sink.child(rel));
    let copied = async {
        w.write_all(head).await?;
        tokio::io::copy(&mut local, &mut w).await?;
        w.shutdown().await
    }
    .await;
    if let Err(e) = copied {
        let _ = w.abort().await;
        return Err(Error::sink(
            shown,
            format!("cannot upload a stage part: {e}"),
        ));
    }
    Ok(())
}

/// Downloads the part at `rel` into the local file `file`.
pub async fn get_part(sink: &Location, rel: &str, file: &FsPath) -> Result<()> {
    let shown = sink.display_child(rel);
    let got = sink
        .store
        .get(&sink.child(rel))
        .await
        .map_err(|e| Error::store("read", &shown, e))?;
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(|e| Error::sink(&shown, format!("cannot create a local copy: {e}")))?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::store("read", &shown, e))?;
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::sink(&shown, format!("cannot write a local copy: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| Error::sink(&shown, format!("cannot write a local copy: {e}")))
}

/// Bytes `range` of the object at `rel`.
pub async fn get_range(
    sink: &Location,
    rel: &str,
    range: std::ops::Range<u64>,
) -> Result<bytes::Bytes> {
    if range.is_empty() {
        // Stores refuse an empty range; an empty section needs no request.
        return Ok(bytes::Bytes::new());
    }
    sink.store
        .get_range(&sink.child(rel), range)
        .await
        .map_err(|e| Error::store("read", sink.display_child(rel), e))
}

/// The size of the object at `rel`.
pub async fn size(sink: &Location, rel: &str) -> Result<u64> {
    sink.store
        .head(&sink.child(rel))
        .await
        .map(|m| m.size)
        .map_err(|e| Error::store("read", sink.display_child(rel), e))
}

/// Deletes every object under `dir` (relative to the sink); returns how many there were.
pub async fn delete_under(sink: &Location, dir: &str) -> Result<usize> {
    let paths = super::list_under(sink, dir).await?;
    let n = paths.len();
    for p in paths {
        match sink.store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(Error::store(
                    "delete",
                    sink.display_child(&sink.relative(&p)),
                    e,
                ));
            }
        }
    }
    Ok(n)
}

/// Deletes every stage part: once the manifest is written nothing needs them (every
/// task is committed). Best effort: a part left behind is not in the
/// manifest and is removed by the next `kiln finalize`.
pub async fn remove_all(sink: &Location) -> Result<usize> {
    let n = delete_under(sink, STAGES_DIR).await?;
    if let Some(root) = sink.identity.strip_prefix("file://") {
        // Local disk keeps the emptied folders, and the staging files of uploads a
        // SIGKILL cut short (`NAME#N`, which no listing shows).
        let _ = std::fs::remove_dir_all(FsPath::new(root).join(STAGES_DIR));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_paths_read_back() {
        assert_eq!(part_path(0, 7), "_kiln/stages/step-001/00007.part");
        assert_eq!(
            parse(&part_path(11, 123_456)),
            Some(Entry::Part(11, 123_456))
        );
        assert_eq!(parse(&section_path(2, 7)), Some(Entry::Section(2, 7)));
        assert_eq!(
            section_path(2, 7),
            "_kiln/stages/step-003/section-00007.out"
        );
        assert_eq!(parse("_kiln/stages/step-001/00007.part#3"), None);
        assert_eq!(parse("_kiln/stages/step-000/00007.part"), None);
        assert_eq!(parse("_kiln/tasks/00007.json"), None);
    }
}
