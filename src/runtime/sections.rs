//! The sections of a dedup stage shared by workers (see `shared.rs` and
//! [`crate::steps::Sectioned`]): where each part keeps its sections, merging a section
//! from every part's byte range of it, and settling from every section's decisions.

use std::io::{BufRead, Write};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use super::schedule::on_pool;
use super::shared::{check, header, put};
use super::task::Pass;
use crate::error::{Error, Result};
use crate::sink::stages;
use crate::steps::{Kind, Part};

/// Where each task's part of step `k` keeps its sections: the byte after its header
/// line and each section's end, read from the first bytes of every part.
async fn section_maps(env: &Pass, k: usize, sections: usize) -> Result<Vec<(u64, Vec<u64>)>> {
    let concurrency = env.plan.pipeline.run.io_concurrency.max(1);
    futures::stream::iter(env.plan.tasks.iter().map(|t| t.id).collect::<Vec<_>>())
        .map(|task| {
            let env = env.clone();
            async move {
                let rel = stages::part_path(k, task);
                let shown = env.plan.sink.display_child(&rel);
                let time = Instant::now();
                let size = stages::size(&env.plan.sink, &rel).await?;
                let head = stages::get_range(&env.plan.sink, &rel, 0..size.min(1 << 16)).await?;
                env.stats.add_shared_stages(time.elapsed());
                let nl = head
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or_else(|| Error::sink(&shown, "not a kiln stage part (no header line)"))?;
                let found: stages::PartHeader = serde_json::from_slice(&head[..nl])
                    .map_err(|e| Error::sink(&shown, format!("not a kiln stage part: {e}")))?;
                let mut expected = header(&env.plan, k, task, 0);
                expected.sections = found.sections.clone();
                check(&shown, &found, &expected, &found.kiln_version)?;
                let body = nl as u64 + 1;
                if found.sections.len() != sections
                    || found.sections.last().is_some_and(|&end| body + end != size)
                {
                    return Err(Error::sink(
                        &shown,
                        format!(
                            "holds {} sections ending at {:?} in {size} bytes, where this run \
                         expects {sections}; start the dataset over with --overwrite",
                            found.sections.len(),
                            found.sections.last()
                        ),
                    ));
                }
                Ok((body, found.sections))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

/// Merges sections `ids` of step `k`: each from its byte range of every task's part, in
/// task order, into its decisions, stored as `section-SSSSS.out`; a section `gate`
/// refuses (another live run holds its claim) is skipped.
pub(super) async fn merge(
    env: &Pass,
    k: usize,
    sections: usize,
    ids: Vec<usize>,
    gate: &super::schedule::Gate,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let maps = section_maps(env, k, sections).await?;
    let earlier = super::index::against(&env.plan, k).await?;
    let concurrency = env.plan.pipeline.run.io_concurrency.max(1);
    let name = env.plan.steps[k].name;
    for s in ids {
        if !gate(s).await? {
            continue;
        }
        let ranges: Vec<(usize, u64, u64)> = env
            .plan
            .tasks
            .iter()
            .zip(&maps)
            .map(|(t, (body, ends))| {
                let start = body + if s == 0 { 0 } else { ends[s - 1] };
                (t.id, start, body + ends[s])
            })
            .collect();
        let parts: Vec<Part> = futures::stream::iter(ranges)
            .map(|(task, start, end)| {
                let env = env.clone();
                async move {
                    let rel = stages::part_path(k, task);
                    let time = Instant::now();
                    let bytes = stages::get_range(&env.plan.sink, &rel, start..end).await?;
                    env.stats.add_shared_stages(time.elapsed());
                    let step = env.plan.steps[k].step.clone();
                    let shown = env.plan.sink.display_child(&rel);
                    on_pool(&env, move || {
                        step.kind()
                            .read_part(&mut &bytes[..])
                            .map_err(|e| Error::step_failed(&shown, k, name, None, e))
                    })
                    .await?
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await?;
        let step = env.plan.steps[k].step.clone();
        // The section's buckets of the key index: the earlier datasets' keys there, and
        // this run's index of them, stored before the section's decisions.
        let (lo, hi) = crate::steps::keys::section_buckets(s, sections);
        let mut index = super::index::open(env, k, lo, hi, &earlier).await?;
        let budget = env.plan.step_memory();
        let (out, index) = on_pool(env, move || {
            let out = merge_one(&step, parts, &mut index, budget, k, name);
            (out, index)
        })
        .await?;
        let out = out?;
        index.store(env, k).await?;
        put(
            env,
            &stages::section_path(k, s),
            &section_header(env, k, s, sections),
            out.path(),
        )
        .await?;
    }
    Ok(())
}

/// Merges one section of step `k` from `parts` into a local file of its decisions.
fn merge_one(
    step: &std::sync::Arc<dyn crate::steps::Step>,
    parts: Vec<Part>,
    index: &mut super::index::Open,
    budget: u64,
    k: usize,
    name: &'static str,
) -> Result<tempfile::NamedTempFile> {
    let failed = |e| Error::step_failed("a stage section", k, name, None, e);
    let mut f = tempfile::NamedTempFile::with_prefix("kiln-section-")
        .map_err(|e| Error::sink("a local stage section", e.to_string()))?;
    let Kind::FullPass(p) = step.kind() else {
        return Err(Error::Internal(
            "a section of a step without a full pass".into(),
        ));
    };
    let sectioned = p
        .sectioned()
        .ok_or_else(|| Error::Internal("a section of a step without sections".into()))?;
    sectioned
        .merge_section(parts, &mut index.keys, budget, f.as_file_mut())
        .map_err(failed)?;
    f.flush()
        .map_err(|e| Error::sink("a local stage section", e.to_string()))?;
    Ok(f)
}

fn section_header(env: &Pass, k: usize, section: usize, sections: usize) -> stages::SectionHeader {
    stages::SectionHeader {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline_hash: env.plan.pipeline_hash.clone(),
        step: env.plan.steps[k].name.to_string(),
        index: k + 1,
        section,
        sections,
    }
}

/// Settles step `k` from every section's decisions, in section order.
pub(super) async fn settle(env: &Pass, k: usize, sections: usize) -> Result<()> {
    let mut decided: Vec<Box<dyn std::io::Read + Send>> = Vec::with_capacity(sections);
    for s in 0..sections {
        let rel = stages::section_path(k, s);
        let shown = env.plan.sink.display_child(&rel);
        let file = tempfile::NamedTempFile::with_prefix("kiln-section-")
            .map_err(|e| Error::sink("a local stage section", e.to_string()))?;
        let t = Instant::now();
        stages::get_part(&env.plan.sink, &rel, file.path()).await?;
        env.stats.add_shared_stages(t.elapsed());
        let mut r = std::io::BufReader::new(
            file.reopen()
                .map_err(|e| Error::sink("a local stage section", e.to_string()))?,
        );
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)
            .map_err(|e| Error::sink(&shown, e.to_string()))?;
        let found: stages::SectionHeader = serde_json::from_slice(&line)
            .map_err(|e| Error::sink(&shown, format!("not a kiln stage section: {e}")))?;
        check(
            &shown,
            &found,
            &section_header(env, k, s, sections),
            &found.kiln_version,
        )?;
        // The temporary file is removed when the reader is dropped.
        decided.push(Box::new(TempReader { r, _file: file }));
    }
    let step = env.plan.steps[k].step.clone();
    let name = env.plan.steps[k].name;
    let budget = env.plan.step_memory();
    on_pool(env, move || {
        let Kind::FullPass(p) = step.kind() else {
            return Err(Error::Internal(
                "sections of a step without a full pass".into(),
            ));
        };
        let sectioned = p
            .sectioned()
            .ok_or_else(|| Error::Internal("sections of a step without sections".into()))?;
        sectioned.settle_sections(decided, budget).map_err(|e| {
            Error::step_failed("the whole input (the stage's sections)", k, name, None, e)
        })
    })
    .await?
}

/// A reader of a temporary file that lives as long as it.
struct TempReader {
    r: std::io::BufReader<std::fs::File>,
    _file: tempfile::NamedTempFile,
}

impl std::io::Read for TempReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}
