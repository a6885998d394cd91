//! Run records: a sink in use is visibly in use.
//!
//! While a run works on a sink it holds `_kiln/runs/wIIIII.json` for its worker index
//! (`I` of `--worker I/N`; 0 for a single worker), created by a conditional put and
//! renewed every [`HEARTBEAT`]. A second run of the same worker finds the record live
//! and is refused with exit 75 ("run again later") instead of doing the same work
//! twice into the same shard names — unless it named no worker, when it joins as a
//! helper holding `_kiln/runs/helper-<run id>.json` (`runtime::lease`); `--overwrite` refuses a sink that any live run
//! holds, so a sink is never deleted under a run. A record whose heartbeat is older
//! than [`EXPIRES`] belongs to a run that died (SIGKILL, a lost machine): it is taken
//! over, and `kiln status` shows that run as dead rather than in progress. On the same
//! host a record is also dead as soon as its process is gone (pid and start time from
//! `/proc`), so a run killed with -9 and started again need not wait. A run that ends,
//! failed or not, removes its record.
//!
//! Workers of one job (`--worker 0/3`, `1/3`, ...) hold different records and run side
//! by side. Workers that take over each other's tasks build on the same records: a dead
//! worker's tasks (`runtime::take_over`), and the tasks of a slow one that no run has
//! claimed (`sink/claims.rs`, whose claims name a record's `run_id`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::storage::Location;

/// How often a live run renews its record.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A record not renewed for this long belongs to a run that is gone.
pub const EXPIRES: Duration = Duration::from_secs(30);

/// `_kiln/runs/wIIIII.json` of one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// `I/N`.
    pub worker: String,
    /// Unique per run: the host, the process and when it started.
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: String,
    /// The last heartbeat, as milliseconds since the Unix epoch (and as RFC 3339 for
    /// people reading the file).
    pub heartbeat_ms: u64,
    pub heartbeat_at: String,
    pub kiln_version: String,
    /// When the process started, in clock ticks since boot (`/proc/PID/stat`), so that
    /// a run on this host can tell a dead process from a live one at once, even after
    /// its pid was reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl RunRecord {
    /// Time since the last heartbeat (zero for a clock that went back).
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.heartbeat_ms))
    }

    /// The run renewed its record recently enough to be taken as running, and, when it
    /// ran on this host, its process is still there (a run killed with -9 and started
    /// again on the same machine need not wait for the record to expire).
    pub fn live(&self) -> bool {
        if self.age() >= EXPIRES {
            return false;
        }
        if self.host == host()
            && let Some(start) = self.process_start
        {
            return process_start(self.pid) == Some(start);
        }
        true
    }

    /// Whether the run is a helper: no share of the tasks of its own.
    pub fn is_helper(&self) -> bool {
        self.worker.starts_with("helper")
    }

    /// `worker 0/1, pid 4711 on host-a, heartbeat 3s ago` (`helper of 2, pid …`).
    pub fn describe(&self) -> String {
        format!(
            "{}{}, pid {} on {}, started {}, heartbeat {}s ago",
            if self.is_helper() { "" } else { "worker " },
            self.worker,
            self.pid,
            self.host,
            self.started_at,
            self.age().as_secs()
        )
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Field 22 of `/proc/PID/stat` (the process's start time), where there is a `/proc`.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The record path of worker `index`.
pub fn record_path(index: usize) -> String {
    layout::run_record(index)
}

/// Every run record in the sink, live or not, by worker.
///
/// # Errors
/// The store's, or a record that is not JSON.
pub async fn runs(sink: &Location) -> Result<Vec<RunRecord>> {
    let mut paths = super::list_under(sink, layout::RUNS_DIR).await?;
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let rel = sink.relative(&path);
        // A record still being written under the local store's staging name.
        if !rel.ends_with(".json") {
            continue;
        }
        if let Some(r) = super::get_json::<RunRecord>(sink, &rel).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Refuses to go on while another live run holds the sink (for `--overwrite`).
///
/// # Errors
/// [`Error::Busy`] naming the live run.
pub async fn refuse_if_in_use(sink: &Location, what: &str) -> Result<()> {
    if let Some(r) = runs(sink).await?.into_iter().find(RunRecord::live) {
        return Err(Error::Busy(format!(
            "sink {} is in use by a live run ({}); {what} would delete its output under it. \
             Stop that run, or wait {}s after it was killed, then run again",
            sink.display,
            r.describe(),
            EXPIRES.as_secs()
        )));
    }
    Ok(())
}

/// A held run record, renewed in the background until [`Lease::release`].
pub struct Lease {
    sink: Location,
    relative: String,
    heartbeat: tokio::task::JoinHandle<()>,
    /// The held record's `run_id`.
    pub run_id: String,
}

/// Takes worker `index` of `count`'s run record.
///
/// # Errors
/// [`Error::Busy`] when a live run holds it; the store's.
pub async fn acquire(sink: &Location, index: usize, count: usize) -> Result<Lease> {
    let started = crate::sink::now_rfc3339();
    let pid = std::process::id();
    let host = host();
    let run_id = format!("{host}-{pid}-{}", now_ms());
    // A helper (index `count`: no share of its own) holds a record of its own run.
    let (relative, worker) = if index >= count {
        (layout::helper_record(&run_id), format!("helper of {count}"))
    } else {
        (record_path(index), format!("{index}/{count}"))
    };
    let mut record = RunRecord {
        worker,
        run_id,
        host,
        pid,
        started_at: started,
        heartbeat_ms: now_ms(),
        heartbeat_at: crate::sink::now_rfc3339(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        process_start: process_start(pid),
    };
    let body = |r: &RunRecord| -> Result<Bytes> {
        serde_json::to_vec_pretty(r)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(e.to_string()))
    };
    let path = sink.child(&relative);
    let uri = sink.display_child(&relative);
    // Two rounds: the second after removing a dead run's record.
    for _ in 0..2 {
        let put = sink
            .store
            .put_opts(
                &path,
                PutPayload::from_bytes(body(&record)?),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {
                let run_id = record.run_id.clone();
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the heartbeat is aborted when the lease is released or dropped"
                )]
                let heartbeat = tokio::spawn(renew(sink.clone(), relative.clone(), record));
                return Ok(Lease {
                    sink: sink.clone(),
                    relative,
                    heartbeat,
                    run_id,
                });
            }
            // S3 answers 412 (Precondition) where the local store says AlreadyExists.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let Some(held) = super::get_json::<RunRecord>(sink, &relative).await? else {
                    continue; // released meanwhile
                };
                if held.live() {
                    return Err(Error::Busy(format!(
                        "worker {index}/{count} of sink {} is already running ({}); running it \
                         twice would do the same work twice. Run again once it has finished \
                         (or {}s after it was killed)",
                        sink.display,
                        held.describe(),
                        EXPIRES.as_secs()
                    )));
                }
                // Of the runs that find the same dead record, one replaces it (a
                // take-over marker, `claims::may_take`); it reads the record again,
                // as a later winner finds it replaced.
                let others = || {
                    Error::Busy(format!(
                        "worker {index}/{count} of sink {}: another run is taking over from \
                         the run that is gone ({}); run again",
                        sink.display,
                        held.describe()
                    ))
                };
                if !super::claims::may_take(sink, &relative, &held.run_id, &record.run_id).await? {
                    return Err(others());
                }
                let still = match super::get_json::<RunRecord>(sink, &relative).await? {
                    Some(now) if now.run_id != held.run_id => return Err(others()),
                    still => still.is_some(),
                };
                tracing::info!(
                    "taking over from a run that is gone ({}, no heartbeat for {}s)",
                    held.describe(),
                    held.age().as_secs()
                );
                if still {
                    sink.store
                        .delete(&path)
                        .await
                        .map_err(|e| Error::store("delete", &uri, e))?;
                }
                record.heartbeat_ms = now_ms();
            }
            Err(e) => return Err(Error::store("write", &uri, e)),
        }
    }
    Err(Error::Busy(format!(
        "worker {index}/{count} of sink {}: another run took its record at the same moment; \
         run again",
        sink.display
    )))
}

/// Renews the record every [`HEARTBEAT`] until aborted. A failed renewal is logged and
/// tried again at the next beat: the record expires only after [`EXPIRES`].
async fn renew(sink: Location, relative: String, mut record: RunRecord) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        record.heartbeat_ms = now_ms();
        record.heartbeat_at = crate::sink::now_rfc3339();
        if let Err(e) = super::put_json(&sink, &relative, &record).await {
            tracing::warn!("could not renew the run record: {e}");
        }
    }
}

impl Lease {
    /// Stops the heartbeat and removes the record.
    pub async fn release(mut self) {
        self.heartbeat.abort();
        let _ = (&mut self.heartbeat).await;
        let path = self.sink.child(&self.relative);
        if let Err(e) = self.sink.store.delete(&path).await {
            tracing::debug!("could not remove the run record: {e}");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lives_until_its_heartbeat_is_older_than_the_expiry() {
        let mut r = RunRecord {
            worker: "0/1".into(),
            run_id: "h-1-0".into(),
            host: "h".into(),
            pid: 1,
            started_at: String::new(),
            heartbeat_ms: now_ms(),
            heartbeat_at: String::new(),
            kiln_version: String::new(),
            process_start: None,
        };
        assert!(r.live());
        assert!(r.describe().contains("worker 0/1, pid 1 on h"));
        // On this host: live while its process is.
        r.host = host();
        r.pid = std::process::id();
        r.process_start = process_start(r.pid);
        assert!(r.process_start.is_some(), "Linux has /proc");
        assert!(r.live());
        r.process_start = r.process_start.map(|s| s + 1);
        assert!(!r.live(), "another process with the same pid");
        r.heartbeat_ms = now_ms() - EXPIRES.as_millis() as u64 - 1000;
        assert!(!r.live());
    }

    /// Runs that find the same dead run's record at once: exactly one takes it over, the
    /// others are told another run is taking it (before, each deleted the record and
    /// created its own, so two could both hold it); and the same for a dead run's claim.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[expect(
        clippy::disallowed_methods,
        reason = "every task spawned is joined below, before the round ends"
    )]
    async fn of_the_runs_taking_over_a_dead_run_at_once_one_does() {
        use crate::sink::claims::{Claim, take_at};
        for round in 0..10 {
            let dir = tempfile::tempdir().expect("tempdir");
            let sink =
                crate::storage::open(&format!("{}/", dir.path().display()), &Default::default())
                    .expect("sink");
            let dead = RunRecord {
                worker: "0/1".into(),
                run_id: format!("gone-{round}"),
                host: "elsewhere".into(),
                pid: 1,
                started_at: String::new(),
                heartbeat_ms: now_ms() - EXPIRES.as_millis() as u64 - 1000,
                heartbeat_at: String::new(),
                kiln_version: String::new(),
                process_start: None,
            };
            super::super::put_json(&sink, &record_path(0), &dead)
                .await
                .expect("dead record");
            let claim = crate::sink::claims::claim_path(3);
            let gone = Claim {
                run_id: dead.run_id.clone(),
                worker: "0/1".into(),
            };
            super::super::put_json(&sink, &claim, &gone)
                .await
                .expect("dead claim");
            let mut leases = Vec::new();
            let mut takes = Vec::new();
            for i in 0..8 {
                let at = sink.clone();
                leases.push(tokio::spawn(async move { acquire(&at, 0, 1).await }));
                let (at, claim, gone) = (sink.clone(), claim.clone(), dead.run_id.clone());
                takes.push(tokio::spawn(async move {
                    let me = Claim {
                        run_id: format!("run-{i}"),
                        worker: "helper of 1".into(),
                    };
                    take_at(&at, &claim, &gone, &me).await.map(|won| (won, me))
                }));
            }
            let mut held = Vec::new();
            for l in leases {
                match l.await.expect("joins") {
                    Ok(lease) => held.push(lease),
                    // Lost: another run is taking it, or has taken it (live).
                    Err(Error::Busy(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(
                held.len(),
                1,
                "round {round}: {} runs took the record",
                held.len()
            );
            let mut won = Vec::new();
            for t in takes {
                let (w, me) = t.await.expect("joins").expect("takes");
                if w {
                    won.push(me);
                }
            }
            assert_eq!(
                won.len(),
                1,
                "round {round}: {} runs took the claim",
                won.len()
            );
            let now: Claim = super::super::get_json(&sink, &claim)
                .await
                .expect("reads")
                .expect("a claim");
            assert_eq!(now, won[0]);
            for lease in held {
                lease.release().await;
            }
        }
    }
}
