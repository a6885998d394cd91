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

use futures::{StreamExt, TryStreamExt};
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
}

/// Where the part of step `k` (0-based) for `task` is, relative to the sink.
pub fn part_path(k: usize, task: usize) -> String {
    format!("{STAGES_DIR}/step-{:03}/{task:05}.part", k + 1)
}

/// The (step, task) pairs whose parts the sink holds; `k` 0-based.
pub async fn stored(sink: &Location) -> Result<BTreeSet<(usize, usize)>> {
    let prefix = sink.child(STAGES_DIR);
    let paths: Vec<object_store::path::Path> = sink
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            e => Err(Error::store("list", sink.display_child(STAGES_DIR), e)),
        })?;
    Ok(paths
        .iter()
        .filter_map(|p| parse(&sink.relative(p)))
        .collect())
}

/// `(k, task)` of a part's relative path; None for anything else (a local upload's
/// staging file `NAME#N`).
fn parse(rel: &str) -> Option<(usize, usize)> {
    let rest = rel.strip_prefix(STAGES_DIR)?.strip_prefix("/step-")?;
    let (step, file) = rest.split_once('/')?;
    let task = file.strip_suffix(".part")?;
    let step: usize = step.parse().ok()?;
    Some((step.checked_sub(1)?, task.parse().ok()?))
}

/// Uploads the local file `file` as the part at `rel`, streaming.
pub async fn put_part(sink: &Location, rel: &str, file: &FsPath) -> Result<()> {
    let shown = sink.display_child(rel);
    let mut local = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::sink(&shown, format!("cannot open the local part: {e}")))?;
    let mut w = object_store::buffered::BufWriter::new(sink.store.clone(), sink.child(rel));
    let copied = async {
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

/// Deletes every stage part: once the manifest is about to be written nothing needs
/// them (every task is committed). Best effort: a part left behind is not in the
/// manifest and is removed by the next `kiln finalize`.
pub async fn remove_all(sink: &Location) -> Result<usize> {
    let prefix = sink.child(STAGES_DIR);
    let paths: Vec<object_store::path::Path> = sink
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            e => Err(Error::store("list", sink.display_child(STAGES_DIR), e)),
        })?;
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
        assert_eq!(parse(&part_path(11, 123_456)), Some((11, 123_456)));
        assert_eq!(parse("_kiln/stages/step-001/00007.part#3"), None);
        assert_eq!(parse("_kiln/stages/step-000/00007.part"), None);
        assert_eq!(parse("_kiln/tasks/00007.json"), None);
    }
}
