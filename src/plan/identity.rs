//! What identifies a pipeline's output (the hash every record carries), the plan as
//! stored in the sink (`_kiln/plan.json`), and adopting a stored plan.

use sha2::{Digest, Sha256};

use super::schema::with_hf_metadata;
use super::{Plan, PlannedStep, Task};
use crate::error::{Error, Result};
use crate::formats::{self, Compression};
use crate::layout;
use crate::sink::records::{ColumnRecord, InputRecord, StoredInput, StoredPlan, StoredTask};
use crate::spec::{Pipeline, Sink, Source};
use crate::steps::StepSpec;
use crate::storage::Object;

/// The hash that identifies a pipeline's output: everything but `run` and `sink.uri`,
/// which never change the rows or bytes written. (So the same pipeline writes the same
/// bytes into any sink.) `run.on_error` decides whether a task with bad input commits,
/// not what a committed task holds: a task committed under `fail` had nothing to leave
/// out, so a run resumed with `skip` (the usual fix for a failed run) keeps it.
///
/// The pipeline is serialized straight from its types, never through
/// `serde_json::Value` (whose mappings are sorted): the order of some mappings is
/// meaning (`split`'s fractions are cut in the order written, `derive`'s expressions
/// see the ones before them, `cast`, `rename`, `source.schema`), so two pipelines that
/// differ only there write different rows and must not resume into each other.
pub fn pipeline_hash(p: &Pipeline) -> String {
    let identity = Identity {
        hash: HASH_VERSION,
        version: p.version,
        name: &p.name,
        source: p.source.as_ref().map(without_run_options),
        sources: p
            .sources
            .iter()
            .map(|(name, s)| (name.as_str(), without_run_options(s)))
            .collect(),
        steps: p.steps.iter().map(step_identity).collect(),
        sink: Sink {
            uri: String::new(),
            ..p.sink.clone()
        },
    };
    // Serializing plain data (strings, numbers, ordered maps) cannot fail.
    let text = serde_json::to_string(&identity).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bumped when what the hash covers, or how it is written, changes: a sink written by
/// a kiln that hashed otherwise is then refused as another pipeline's output, instead
/// of being resumed (2: mappings kept in the order written).
const HASH_VERSION: u32 = 2;

/// What [`pipeline_hash`] covers, in the order of its fields.
#[derive(serde::Serialize)]
struct Identity<'a> {
    hash: u32,
    version: u32,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<(&'a str, Source)>,
    steps: Vec<StepSpec>,
    sink: Sink,
}

/// `source` with its own steps' run options cleared.
fn without_run_options(source: &Source) -> Source {
    Source {
        steps: source.steps.iter().map(step_identity).collect(),
        ..source.clone()
    }
}

/// A step's options without those that change no row: how many child processes run an
/// `exec` step and how long one may take over a batch (like `run.threads`), and whether
/// `dedup.exact` decides in one pass or two and with how much memory (the same rows go).
fn step_identity(step: &StepSpec) -> StepSpec {
    let mut step = step.clone();
    match &mut step {
        StepSpec::Exec(exec) => {
            exec.processes = None;
            exec.timeout = crate::spec::Duration(std::time::Duration::ZERO);
        }
        StepSpec::DedupExact(dedup) => {
            dedup.one_pass = true;
            dedup.memory = None;
        }
        StepSpec::DedupMinhash(dedup) => dedup.memory = None,
        _ => {}
    }
    step
}

/// The output hash of `pipeline` run with `steps`: [`pipeline_hash`], with the files the
/// steps read (a tokenizer) and the statistics from another sink (their digest).
pub(super) fn output_hash(
    pipeline: &Pipeline,
    steps: &[PlannedStep],
    inputs_files: Vec<String>,
    stats_digest: Option<String>,
) -> String {
    // Files a step reads (a tokenizer) are part of what the output is: a changed
    // tokenizer.json must not resume into a sink written with the old one.
    let mut files: Vec<String> = inputs_files;
    files.extend(steps.iter().filter_map(|s| s.step.fingerprint()));
    // So are statistics from another sink (their content, not where they live).
    files.extend(stats_digest);
    if files.is_empty() {
        pipeline_hash(pipeline)
    } else {
        let digest = Sha256::digest(format!("{}|{}", pipeline_hash(pipeline), files.join("|")));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Plan {
    /// This plan as stored in the sink for `workers` workers.
    /// The pipeline as stored in the sink: JSON, secrets redacted.
    pub fn pipeline_json(&self) -> serde_json::Value {
        let mut p = serde_json::to_value(&self.pipeline).unwrap_or_default();
        crate::secrets::redact_json(&mut p);
        p
    }

    pub fn stored(&self, workers: usize) -> StoredPlan {
        StoredPlan {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.pipeline.name.clone(),
            pipeline_hash: self.pipeline_hash.clone(),
            pipeline: self.pipeline_json(),
            created_at: crate::sink::now_rfc3339(),
            workers,
            schema: self
                .file_schema
                .fields()
                .iter()
                .map(|f| ColumnRecord {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            partition_by: self.pipeline.sink.partition_by.clone(),
            objects: self
                .objects
                .iter()
                .map(|o| InputRecord {
                    path: o.path.to_string(),
                    bytes: o.size,
                })
                .collect(),
            tasks: self
                .tasks
                .iter()
                .map(|t| StoredTask {
                    start: t.objects.start,
                    end: t.objects.end,
                    bytes: t.bytes,
                    range: t.range.as_ref().map(|r| [r.start, r.end]),
                    inside_member: t.inside_member,
                })
                .collect(),
            features: crate::hf::features(
                &self.file_schema,
                self.single_input()
                    .and_then(|i| i.classes.as_ref())
                    .map(|c| c.class_labels())
                    .as_ref(),
            ),
            token_column: self
                .file_schema
                .fields()
                .iter()
                .find(|f| crate::sink::columns::is_token_column(f.data_type()))
                .map(|f| f.name().clone()),
            inputs: self
                .inputs
                .iter()
                .filter_map(|i| {
                    Some(StoredInput {
                        name: i.name.clone()?,
                        start: i.objects.start,
                        end: i.objects.end,
                    })
                })
                .collect(),
        }
    }

    /// The plan that follows a stored plan: its listing and its tasks replace this
    /// run's (objects added since it was stored are not read; objects it names must
    /// still be there). Consumes the plan as built: nothing holds the one it replaces.
    ///
    /// # Errors
    /// [`Error::Plan`] when the stored plan is another pipeline's or does not fit.
    pub fn adopt(mut self, stored: &StoredPlan) -> Result<Plan> {
        if stored.pipeline_hash != self.pipeline_hash {
            return Err(Error::Plan(format!(
                "{} holds the plan of another pipeline ({}); choose another sink or pass --overwrite",
                self.sink.display_child(layout::PLAN),
                stored.name
            )));
        }
        // Each input's share of the stored listing: one input has all of it.
        let ranges: Vec<std::ops::Range<usize>> = match self.inputs.as_slice() {
            [_] => std::iter::once(0..stored.objects.len()).collect(),
            inputs => {
                let named: Vec<Option<&str>> = inputs.iter().map(|i| i.name.as_deref()).collect();
                let stored_names: Vec<Option<&str>> = stored
                    .inputs
                    .iter()
                    .map(|i| Some(i.name.as_str()))
                    .collect();
                if named != stored_names
                    || stored
                        .inputs
                        .iter()
                        .any(|i| i.start > i.end || i.end > stored.objects.len())
                {
                    return Err(Error::Plan(format!(
                        "{} does not list this pipeline's sources; delete it to plan again",
                        self.sink.display_child(layout::PLAN)
                    )));
                }
                stored.inputs.iter().map(|i| i.start..i.end).collect()
            }
        };
        let mut objects = Vec::with_capacity(stored.objects.len());
        let mut compressions = Vec::with_capacity(stored.objects.len());
        for (input, range) in self.inputs.iter_mut().zip(ranges) {
            let base = &input.source.base;
            for o in &stored.objects[range.clone()] {
                let path = object_store::path::Path::parse(&o.path)
                    .unwrap_or_else(|_| object_store::path::Path::from(o.path.as_str()));
                let rel = base.relative(&path);
                let display = if rel.is_empty() || path == base.prefix {
                    base.display.trim_end_matches('/').to_string()
                } else {
                    base.display_child(&rel)
                };
                compressions.push(Compression::resolve(input.spec.compression, path.as_ref()));
                objects.push(Object {
                    path,
                    size: o.bytes,
                    display,
                });
            }
            input.objects = range;
        }
        self.objects = objects;
        self.compressions = compressions;
        if let [input] = self.inputs.as_mut_slice()
            && input.classes.is_some()
        {
            // Labels come from the stored listing, like everything else.
            input.classes = formats::files::Classes::of_source(
                &input.spec,
                self.objects.iter().map(|o| o.display.as_str()),
            )?;
            self.file_schema = with_hf_metadata(&self.file_schema, input.classes.as_deref());
            input.format =
                formats::format_for_source(input.format_name, &input.spec, input.classes.clone())?;
        }
        if stored
            .tasks
            .iter()
            .any(|t| t.start > t.end || t.end > self.objects.len())
        {
            return Err(Error::Plan(format!(
                "{} is corrupt (a task outside the listing); delete it to plan again",
                self.sink.display_child(layout::PLAN)
            )));
        }
        self.tasks = stored
            .tasks
            .iter()
            .enumerate()
            .map(|(id, t)| Task {
                id,
                objects: t.start..t.end,
                bytes: t.bytes,
                range: t.range.map(|[a, b]| a..b),
                inside_member: t.inside_member,
            })
            .collect();
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::pipeline_hash;
    use crate::spec::load_str;

    fn hash(steps: &str, sink: &str) -> String {
        let text = format!(
            "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsteps:\n{steps}sink:\n  uri: {sink}\n"
        );
        pipeline_hash(&load_str(&text, "t.yaml", &[]).expect("valid"))
    }

    /// Two pipelines that differ only in the order of a mapping write different rows
    /// (split fractions are cut in order, derive's expressions see the ones before),
    /// so their hashes differ; options that change no row do not change it.
    #[test]
    fn the_order_of_a_mapping_is_part_of_the_identity() {
        let split = |f: &str| {
            hash(
                &format!("  - split: {{ key: id, fractions: {{ {f} }} }}\n"),
                "out/",
            )
        };
        let one = split("train: 0.5, validation: 0.3, test: 0.2");
        assert_eq!(one, split("train: 0.5, validation: 0.3, test: 0.2"));
        assert_ne!(one, split("train: 0.5, test: 0.2, validation: 0.3"));
        let derive = |d: &str| hash(&format!("  - derive: {{ {d} }}\n"), "out/");
        assert_ne!(
            derive("z: \"1\", a: \"z + 1\""),
            derive("a: \"z + 1\", z: \"1\"")
        );

        let exec = |more: &str| {
            hash(
                &format!(
                    "  - exec: {{ command: [python3, step.py]{more} }}\n  - dedup.exact: {{ column: text{more2} }}\n",
                    more2 = if more.is_empty() {
                        ""
                    } else {
                        ", one_pass: false, memory: 1MiB"
                    }
                ),
                "out/",
            )
        };
        assert_eq!(exec(""), exec(", processes: 3, timeout: 5s"));
        assert_eq!(
            split("a: 1"),
            hash(
                "  - split: { key: id, fractions: { a: 1 } }\n",
                "elsewhere/"
            )
        );
    }
}
