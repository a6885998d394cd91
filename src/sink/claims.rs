//! Task claims: which run runs a task of the main pass (or computes a part or a section
//! of a shared stage, `stage_claim_path`) when the workers of a job take work from each
//! other (docs/workers.md).
//!
//! Before a worker starts a task it creates `_kiln/claims/TTTTT.json` (its run's id) by a
//! conditional put; a task whose claim another run holds is not started, unless that
//! run is gone (no live run record with its id: killed, or ended by a failure), in which
//! case one run takes it over ([`may_take`]: of the runs that find it at once, one). So
//! a worker that has done its own tasks can take those a slower worker has not started
//! yet, and the slower worker skips them when it gets there. A task is deterministic:
//! two runs that both believe they hold a claim (a run taken for dead that was not)
//! write the same shards, and one commit record wins. The claims are removed with the
//! stage parts just before the manifest is written.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{CLAIMS_DIR, TASKS_DIR};
use crate::storage::Location;

/// What a claim holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The run record's id of the run holding it (`sink::lease`).
    pub run_id: String,
    /// `I/N` of that run, for people reading the file.
    pub worker: String,
}

/// Where the claim of `task` is.
pub fn claim_path(task: usize) -> String {
    format!("{CLAIMS_DIR}/{task:05}.json")
}

/// How a claim went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This run holds it now.
    Mine,
    /// Another run holds it (its claim).
    Theirs(Claim),
}

fn body(claim: &Claim) -> Result<Bytes> {
    serde_json::to_vec(claim)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Where the claim of item `i` (a task's part, or a section: `what`) of the stage of
/// step `k` (0-based) is.
pub fn stage_claim_path(k: usize, what: &str, i: usize) -> String {
    format!("{CLAIMS_DIR}/step-{:03}/{what}-{i:05}.json", k + 1)
}

/// Claims `task` for `me`: created, or already `me`'s; else the claim found.
///
/// # Errors
/// The store's.
pub async fn claim(sink: &Location, task: usize, me: &Claim) -> Result<Claimed> {
    claim_at(sink, &claim_path(task), me).await
}

/// Claims what the claim at `rel` stands for, as [`claim`] does a task.
///
/// # Errors
/// The store's.
pub async fn claim_at(sink: &Location, rel: &str, me: &Claim) -> Result<Claimed> {
    let rel = rel.to_string();
    for _ in 0..2 {
        if super::put_if_absent(sink, &rel, body(me)?).await? {
            return Ok(Claimed::Mine);
        }
        match super::get_json::<Claim>(sink, &rel).await? {
            Some(held) if held.run_id == me.run_id => return Ok(Claimed::Mine),
            Some(held) => return Ok(Claimed::Theirs(held)),
            // Removed between the put and the read (the dataset was finalized): again.
            None => {}
        }
    }
    Err(Error::Busy(format!(
        "the claim {} changes under this run; run again",
        sink.display_child(&rel)
    )))
}

/// Takes `task`'s claim from `gone`, the id of a run that is gone: true when this run
/// holds it now, false when another run took it first.
///
/// # Errors
/// The store's.
pub async fn take(sink: &Location, task: usize, gone: &str, me: &Claim) -> Result<bool> {
    take_at(sink, &claim_path(task), gone, me).await
}

/// Takes the claim at `rel` from `gone`, as [`take`] does a task's.
///
/// # Errors
/// The store's.
pub async fn take_at(sink: &Location, rel: &str, gone: &str, me: &Claim) -> Result<bool> {
    if !may_take(sink, rel, gone, &me.run_id).await? {
        return Ok(false);
    }
    // Won: the claim is still the gone run's, or was replaced by a run that came before
    // the marker this run created (see `may_take`), which then holds it.
    match super::get_json::<Claim>(sink, rel).await? {
        Some(held) if held.run_id != gone && held.run_id != me.run_id => Ok(false),
        _ => {
            super::put_json(sink, rel, me).await?;
            Ok(true)
        }
    }
}

/// A take-over marker: who created it, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    run_id: String,
    created_ms: u64,
}

/// Whether this run (run id `me`) may replace the object at `rel` (a task's claim, a
/// worker's run record) that `gone`, a run that is gone, holds, such that of several
/// runs that find it at once exactly one does. Each creates the marker
/// `_kiln/claims/takeover/<rel, without _kiln/ and .json>/<gone>-<n>.json` (for a run
/// record `…/takeover/runs/w00000/<gone>-0.json`) by a conditional put, from n = 0: the
/// run whose put succeeds may replace the object. A marker stays until the dataset is
/// complete (it is removed with the claims), so a run that comes later loses too; a
/// marker older than the run records' expiry (its run died between the marker and the
/// replacement) lets the next n be tried, and whoever wins that reads the object again
/// before it replaces it. Replacing by delete-then-create, or by an unconditional put,
/// let two runs that found the same dead holder both take it.
///
/// # Errors
/// The store's.
pub async fn may_take(sink: &Location, rel: &str, gone: &str, me: &str) -> Result<bool> {
    let now = super::lease::now_ms;
    let what = rel.strip_prefix("_kiln/").unwrap_or(rel);
    let dir = format!("{CLAIMS_DIR}/takeover/{}", what.trim_end_matches(".json"));
    for n in 0..16 {
        let marker = format!("{dir}/{gone}-{n}.json");
        let mine = Marker {
            run_id: me.to_string(),
            created_ms: now(),
        };
        let body = serde_json::to_vec(&mine)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(e.to_string()))?;
        if super::put_if_absent(sink, &marker, body).await? {
            return Ok(true);
        }
        match super::get_json::<Marker>(sink, &marker).await? {
            Some(m)
                if now().saturating_sub(m.created_ms)
                    < super::lease::EXPIRES.as_millis() as u64 =>
            {
                return Ok(false);
            }
            // Stale (its run died mid-way) or removed: the next.
            _ => {}
        }
    }
    Ok(false)
}

/// The tasks with a claim, and the tasks committed: what their files' names say (one
/// listing each, no reads).
///
/// # Errors
/// The store's.
pub async fn claimed_and_committed(sink: &Location) -> Result<(BTreeSet<usize>, BTreeSet<usize>)> {
    let ids = |paths: Vec<object_store::path::Path>, dir: &str| -> BTreeSet<usize> {
        paths
            .iter()
            .filter_map(|p| {
                let rel = sink.relative(p);
                rel.strip_prefix(dir)?
                    .strip_prefix('/')?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let claimed = ids(super::list_under(sink, CLAIMS_DIR).await?, CLAIMS_DIR);
    let committed = ids(super::list_under(sink, TASKS_DIR).await?, TASKS_DIR);
    Ok((claimed, committed))
}

/// Deletes every claim (every task is committed). Best effort, as for stage parts.
///
/// # Errors
/// The store's.
pub async fn remove_all(sink: &Location) -> Result<usize> {
    super::stages::delete_under(sink, CLAIMS_DIR).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths() {
        assert_eq!(claim_path(42), "_kiln/claims/00042.json");
        assert_eq!(
            stage_claim_path(0, "section", 7),
            "_kiln/claims/step-001/section-00007.json"
        );
    }
}
