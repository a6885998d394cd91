//! Key indexes in the sink, for incremental dedup (`against:`; `steps/keys.rs` says
//! what a key index is). The index of a dedup step is a folder
//! `_kiln/index/<id>/` (the id names the step and the options its keys depend on) of
//! files `keys-LLL-HHH.bin`, each holding the buckets `LLL..HHH` of the key space: one
//! line of JSON (the [`IndexHeader`], with where each bucket ends) and then the keys,
//! sorted, 16 bytes each. A run on one worker writes one file for all 256 buckets; a
//! stage shared by workers one file per section. Written before any task of the run
//! commits (or, deciding in one pass, before the manifest), so a finished dataset has
//! its index whole; it stays after the run, beside the shards.
//!
//! A later run reads, for the buckets it settles, the byte ranges of those buckets
//! (ranged reads, streamed to a local file), never the earlier shards.

use std::path::Path as FsPath;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::layout::{INDEX_BUCKETS as BUCKETS, INDEX_DIR, INDEX_KEY as KEY, MANIFEST};
use crate::storage::Location;

/// The version of the index format: a later kiln reads what this one wrote, or says it
/// cannot.
pub const FORMAT: u32 = 1;

/// The first line of an index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHeader {
    pub format: u32,
    pub kiln_version: String,
    /// The index's folder name, and the step options it was made with.
    pub id: String,
    pub params: serde_json::Value,
    /// The buckets this file holds.
    pub lo: usize,
    pub hi: usize,
    pub keys: u64,
    /// Where each bucket of `lo..hi` ends, counted from the byte after this line.
    pub ends: Vec<u64>,
}

/// The path of the file holding buckets `lo..hi` of index `id`.
pub fn file_path(id: &str, lo: usize, hi: usize) -> String {
    format!("{INDEX_DIR}/{id}/keys-{lo:03}-{hi:03}.bin")
}

/// Stores the local file `keys` (sorted keys) as the index file of `header`.
pub async fn put(sink: &Location, header: &IndexHeader, keys: &FsPath) -> Result<()> {
    let mut head = serde_json::to_vec(header).map_err(|e| Error::Internal(e.to_string()))?;
    head.push(b'\n');
    super::stages::put_part(
        sink,
        &file_path(&header.id, header.lo, header.hi),
        &head,
        keys,
    )
    .await
}

/// An index file of an earlier dataset: where it is and where its keys start.
#[derive(Debug, Clone)]
pub struct Stored {
    pub rel: String,
    pub body: u64,
    pub header: IndexHeader,
}

/// The index `id` of the finished dataset at `sink`, its files in bucket order.
///
/// # Errors
/// [`Error::Plan`] naming the dataset when it is not finished, holds no index of `id`
/// (with the indexes it does hold), or its index is incomplete or of another format.
pub async fn open(sink: &Location, id: &str, params: &serde_json::Value) -> Result<Vec<Stored>> {
    let bad = |why: String| {
        Error::Plan(format!(
            "`against: {}`: {why}",
            sink.display.trim_end_matches('/')
        ))
    };
    if super::get_json::<serde_json::Value>(sink, MANIFEST)
        .await?
        .is_none()
    {
        return Err(bad(
            "is not a finished kiln dataset (no _kiln/manifest.json); finish that run first".into(),
        ));
    }
    let dir = format!("{INDEX_DIR}/{id}");
    let paths = super::list_under(sink, &dir).await?;
    if paths.is_empty() {
        let mut held: Vec<String> = super::list_under(sink, INDEX_DIR)
            .await?
            .iter()
            .filter_map(|p| {
                let rel = sink.relative(p);
                let rest = rel.strip_prefix(INDEX_DIR)?.strip_prefix('/')?;
                Some(rest.split_once('/')?.0.to_string())
            })
            .collect();
        held.dedup();
        return Err(bad(format!(
            "holds no index for this step with these options ({params}); {}",
            if held.is_empty() {
                "it holds none: it was made with `index: false`, with no dedup step, or by a \
                 kiln before indexes"
                    .to_string()
            } else {
                format!(
                    "it holds {}: the same step with the same options is needed",
                    held.join(", ")
                )
            }
        )));
    }
    let mut files = Vec::with_capacity(paths.len());
    for p in &paths {
        let rel = sink.relative(p);
        if !rel.ends_with(".bin") {
            continue;
        }
        let shown = sink.display_child(&rel);
        let size = super::stages::size(sink, &rel).await?;
        let head = super::stages::get_range(sink, &rel, 0..size.min(1 << 16)).await?;
        let nl = head
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::sink(&shown, "not a kiln index file (no header line)"))?;
        let header: IndexHeader = serde_json::from_slice(&head[..nl])
            .map_err(|e| Error::sink(&shown, format!("not a kiln index file: {e}")))?;
        let body = nl as u64 + 1;
        if header.format != FORMAT {
            return Err(bad(format!(
                "{shown} is an index of format {} (kiln {}); this kiln reads format {FORMAT}",
                header.format, header.kiln_version
            )));
        }
        if header.id != id
            || header.hi > BUCKETS
            || header.lo >= header.hi
            || header.ends.len() != header.hi - header.lo
            || header.ends.last().is_some_and(|&e| body + e != size)
            || header.ends.iter().any(|e| e % KEY as u64 != 0)
        {
            return Err(Error::sink(
                &shown,
                "a damaged index file (its header does not match its size)",
            ));
        }
        files.push(Stored { rel, body, header });
    }
    files.sort_by_key(|f| f.header.lo);
    let mut next = 0;
    for f in &files {
        if f.header.lo != next {
            return Err(bad(format!(
                "its index `{id}` is incomplete (buckets {next}..{} missing or written twice)",
                f.header.lo
            )));
        }
        next = f.header.hi;
    }
    if next != BUCKETS {
        return Err(bad(format!(
            "its index `{id}` is incomplete (buckets {next}..{BUCKETS} missing)"
        )));
    }
    Ok(files)
}

/// Copies the keys of buckets `lo..hi` of an index ([`open`]) into the local file `out`,
/// in order (ranged reads, streamed).
pub async fn fetch(
    sink: &Location,
    files: &[Stored],
    lo: usize,
    hi: usize,
    out: &FsPath,
) -> Result<u64> {
    let mut local = tokio::fs::File::create(out)
        .await
        .map_err(|e| Error::sink(out.display().to_string(), e.to_string()))?;
    let mut copied = 0;
    for f in files {
        let (a, b) = (lo.max(f.header.lo), hi.min(f.header.hi));
        if a >= b {
            continue;
        }
        let end_of = |bucket: usize| {
            if bucket == f.header.lo {
                0
            } else {
                f.header.ends[bucket - f.header.lo - 1]
            }
        };
        let range = f.body + end_of(a)..f.body + end_of(b);
        if range.is_empty() {
            continue;
        }
        let shown = sink.display_child(&f.rel);
        let options = object_store::GetOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        let got = sink
            .store
            .get_opts(&sink.child(&f.rel), options)
            .await
            .map_err(|e| Error::store("read", &shown, e))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::store("read", &shown, e))?;
            local
                .write_all(&chunk)
                .await
                .map_err(|e| Error::sink(out.display().to_string(), e.to_string()))?;
            copied += chunk.len() as u64;
        }
    }
    local
        .flush()
        .await
        .map_err(|e| Error::sink(out.display().to_string(), e.to_string()))?;
    Ok(copied)
}

/// Whether the sink holds index `id` whole (every bucket, in files that tile them).
pub async fn complete(sink: &Location, id: &str) -> Result<bool> {
    let paths = super::list_under(sink, &format!("{INDEX_DIR}/{id}")).await?;
    let mut ranges: Vec<(usize, usize)> = paths
        .iter()
        .filter_map(|p| parse(&sink.relative(p)))
        .collect();
    ranges.sort_unstable();
    let mut next = 0;
    for (lo, hi) in ranges {
        if lo != next {
            return Ok(false);
        }
        next = hi;
    }
    Ok(next == BUCKETS)
}

/// The buckets of an index file's path; None for anything else.
fn parse(rel: &str) -> Option<(usize, usize)> {
    let name = rel.rsplit('/').next()?;
    let (lo, hi) = name
        .strip_prefix("keys-")?
        .strip_suffix(".bin")?
        .split_once('-')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_read_back() {
        let p = file_path("dedup.exact-0123456789abcdef", 0, 256);
        assert_eq!(
            p,
            "_kiln/index/dedup.exact-0123456789abcdef/keys-000-256.bin"
        );
        assert_eq!(parse(&p), Some((0, 256)));
        assert_eq!(parse(&file_path("x", 32, 64)), Some((32, 64)));
        assert_eq!(parse("_kiln/index/x/keys-000-256.bin#2"), None);
    }
}
