//! A dedup step's key index around its settle (`steps/keys.rs`, `sink/index.rs`): the
//! keys its `against` datasets hold in the buckets being settled, fetched to local
//! files first; and the index this run writes, stored in the sink once settled.

use std::time::Instant;

use super::schedule::on_pool;
use super::task::Pass;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::sink::index::{self, IndexHeader};
use crate::steps::keys::{IndexSpec, KeyIndex};
use crate::steps::{Kind, StepError};
use crate::storage::Location;

/// Step `k`'s index for the buckets `lo..hi`, open for its settle.
pub(super) struct Open {
    pub keys: KeyIndex,
    spec: Option<IndexSpec>,
    lo: usize,
    hi: usize,
    /// The local files: kept as long as the index reads and writes them.
    _old: Vec<tempfile::NamedTempFile>,
    new: Option<tempfile::NamedTempFile>,
}

/// What step `k` indexes (None for a step without an index).
pub(super) fn spec(plan: &Plan, k: usize) -> Option<IndexSpec> {
    match plan.steps[k].step.kind() {
        Kind::FullPass(p) => p.index(),
        _ => None,
    }
}

fn failed(plan: &Plan, k: usize) -> impl Fn(StepError) -> Error + '_ {
    move |e| Error::step_failed("the key index", k, plan.steps[k].name, None, e)
}

fn local(what: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::NamedTempFile::with_prefix("kiln-index-")
        .map_err(|e| Error::sink(format!("a local {what}"), e.to_string()))
}

/// The earlier datasets a step dedups against, each with its index's files.
pub(super) type Earlier = Vec<(Location, Vec<index::Stored>)>;

/// The earlier datasets step `k` dedups against, each with its index's files: checked
/// before the step's pass reads any input, and read once for all the sections a worker
/// settles.
pub(super) async fn against(plan: &Plan, k: usize) -> Result<Earlier> {
    let Some(spec) = spec(plan, k) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(spec.against.len());
    for uri in &spec.against {
        let at = crate::storage::open(uri, &plan.pipeline.storage)?;
        if at.identity == plan.sink.identity {
            return Err(Error::Plan(format!(
                "step {} `{}`: `against: {uri}` is this pipeline's own sink; name earlier datasets",
                k + 1,
                plan.steps[k].name
            )));
        }
        let files = index::open(&at, &spec.id, &spec.params).await?;
        out.push((at, files));
    }
    Ok(out)
}

/// Opens step `k`'s index for the buckets `lo..hi`: the earlier datasets' keys there
/// are fetched (`earlier`, from [`against`]), and a local file takes the new index when
/// the step writes one.
pub(super) async fn open(
    env: &Pass,
    k: usize,
    lo: usize,
    hi: usize,
    earlier: &Earlier,
) -> Result<Open> {
    let spec = spec(&env.plan, k);
    let Some(s) = spec.as_ref() else {
        return Ok(Open {
            keys: KeyIndex::none(),
            spec,
            lo,
            hi,
            _old: Vec::new(),
            new: None,
        });
    };
    let started = Instant::now();
    let mut old = Vec::new();
    let mut bytes = 0;
    for (at, files) in earlier {
        let file = local("copy of an earlier index")?;
        bytes += index::fetch(at, files, lo, hi, file.path()).await?;
        old.push(file);
    }
    if !s.against.is_empty() {
        tracing::info!(
            step = env.plan.steps[k].name,
            bytes,
            seconds = started.elapsed().as_secs_f64(),
            "read the index of {} earlier dataset(s), buckets {lo}..{hi}",
            s.against.len()
        );
    }
    let new = if s.write {
        Some(local("key index")?)
    } else {
        None
    };
    let paths: Vec<_> = old.iter().map(|f| f.path().to_path_buf()).collect();
    let keys = KeyIndex::open(&paths, new.as_ref().map(|f| f.path()), lo, hi)
        .map_err(failed(&env.plan, k))?;
    Ok(Open {
        keys,
        spec,
        lo,
        hi,
        _old: old,
        new,
    })
}

impl Open {
    /// Ends the index once the step settled and stores what it wrote in the sink.
    pub(super) async fn store(self, env: &Pass, k: usize) -> Result<()> {
        let Open {
            keys,
            spec,
            lo,
            hi,
            _old,
            new,
        } = self;
        let written = on_pool(env, move || keys.finish())
            .await?
            .map_err(failed(&env.plan, k))?;
        let (Some(spec), Some(written), Some(file)) = (spec, written, new) else {
            return Ok(());
        };
        let header = IndexHeader {
            format: index::FORMAT,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            id: spec.id,
            params: spec.params,
            lo,
            hi,
            keys: written.keys,
            ends: written.ends,
        };
        let t = Instant::now();
        index::put(&env.plan.sink, &header, file.path()).await?;
        env.stats.add_protocol(t.elapsed());
        Ok(())
    }
}
