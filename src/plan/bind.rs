//! Binding: every step to the schema before it (with fitted statistics where it has
//! them), which columns the steps read, the fit groups, and binding again after a fit.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sha2::{Digest, Sha256};

use super::schema::file_schema;
use super::{Plan, PlannedStep};
use crate::error::{Error, Result};
use crate::layout;
use crate::sink::records::{StatsEntry, StatsFile};
use crate::spec::{FormatName, Pipeline};
use crate::steps::Kind;

/// Binds every step to the schema before it. A fitted step finds its statistics in
/// `fitted` by name and occurrence; with `stats_from` (`required`), a fitted step without
/// an entry there is an error, else it is bound to be fitted.
pub(super) fn bind_steps(
    p: &Pipeline,
    input: &SchemaRef,
    fitted: &[StatsEntry],
    required: Option<&str>,
) -> Result<Vec<PlannedStep>> {
    bind_steps_after(p, input, fitted, required, &[])
}

/// [`bind_steps`], keeping the steps already bound in `keep` (the first `keep.len()`
/// steps, with whatever state they hold: a settled full pass) and binding the rest.
fn bind_steps_after(
    p: &Pipeline,
    input: &SchemaRef,
    fitted: &[StatsEntry],
    required: Option<&str>,
    keep: &[PlannedStep],
) -> Result<Vec<PlannedStep>> {
    let mut schema = input.clone();
    let mut out = Vec::with_capacity(p.steps.len());
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, spec) in p.steps.iter().enumerate() {
        let error = |message| Error::Step {
            index: i + 1,
            step: spec.name().to_string(),
            message,
        };
        let occurrence = {
            let n = seen.entry(spec.name()).or_default();
            *n += 1;
            *n
        };
        if let Some(kept) = keep.get(i) {
            schema = kept.step.output_schema().clone();
            out.push(kept.clone());
            continue;
        }
        let mut step = spec.bind(&schema).map_err(error)?;
        if step.kind().needs_fit() {
            let entry = fitted
                .iter()
                .find(|e| e.step == spec.name() && e.occurrence == occurrence);
            match (entry, required) {
                (Some(e), _) => {
                    let stats = serde_json::Value::Object(e.stats.clone());
                    step = spec.bind_fitted(&schema, &stats).map_err(|m| {
                        error(match required {
                            Some(from) => format!("statistics from {from}: {m}"),
                            None => m,
                        })
                    })?;
                }
                (None, Some(from)) => {
                    let have: Vec<String> = fitted
                        .iter()
                        .map(|e| format!("{} #{}", e.step, e.occurrence))
                        .collect();
                    return Err(error(format!(
                        "stats_from: {from} has no statistics for this step (the {} `{}` of \
                         the pipeline); it has: {}. Fit them with a pipeline that has this step",
                        ordinal(occurrence),
                        spec.name(),
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    )));
                }
                (None, None) => {}
            }
        }
        schema = step.output_schema().clone();
        out.push(PlannedStep {
            name: spec.name(),
            step,
        });
    }
    Ok(out)
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Reads `stats_from`'s `_kiln/stats.json`, and the SHA-256 of its content.
pub(super) async fn load_stats(uri: &str, pipeline: &Pipeline) -> Result<(StatsFile, String)> {
    let location = crate::storage::open(uri, &pipeline.storage)?;
    let shown = location.display_child(layout::STATS);
    let file = crate::sink::read_stats(&location).await?.ok_or_else(|| {
        Error::Plan(format!(
            "stats_from: there is no {shown}; point it at the sink of a run whose pipeline \
             fitted the statistics (one with standardize, one_hot, fill_null: mean, ...)"
        ))
    })?;
    let text = serde_json::to_string(&file.steps).map_err(|e| Error::Internal(e.to_string()))?;
    let digest = Sha256::digest(text.as_bytes());
    Ok((file, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The input columns that `steps` read or pass on to `output`.
pub(super) fn columns_read(steps: &[PlannedStep], output: &SchemaRef) -> BTreeSet<String> {
    let mut need: BTreeSet<String> = output.fields().iter().map(|f| f.name().clone()).collect();
    for s in steps.iter().rev() {
        need = s.step.required_input(&need);
    }
    need
}

pub(super) fn last_schema(steps: &[PlannedStep], input: &SchemaRef) -> SchemaRef {
    steps
        .last()
        .map_or_else(|| input.clone(), |s| s.step.output_schema().clone())
}

/// Binds the steps on the full input schema to learn which columns they use, then,
/// for a format that can skip columns (`random_access`: Parquet), again on just those.
/// Returns the input schema as read and the bound steps.
pub(super) fn bind_for_input(
    pipeline: &Pipeline,
    full_schema: &SchemaRef,
    random_access: bool,
    fitted: &[StatsEntry],
    required: Option<&str>,
) -> Result<(SchemaRef, Vec<PlannedStep>)> {
    let mut steps = bind_steps(pipeline, full_schema, fitted, required)?;
    let mut input_schema = full_schema.clone();
    if random_access {
        let need = columns_read(&steps, &last_schema(&steps, full_schema));
        let keep: Vec<usize> = (0..full_schema.fields().len())
            .filter(|&i| need.contains(full_schema.field(i).name()))
            .collect();
        if keep.len() < full_schema.fields().len() && !keep.is_empty() {
            input_schema = Arc::new(
                full_schema
                    .project(&keep)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
            steps = bind_steps(pipeline, &input_schema, fitted, required)?;
        }
    }
    Ok((input_schema, steps))
}

impl Plan {
    /// The plan a fit pass of steps `from..=to` runs: the steps up to `to` (the group's
    /// own step values, which hold what they observe), and for CSV only the columns
    /// those steps read decoded (a fit of five numeric columns skips parsing the text
    /// and timestamps) when `project`.
    ///
    /// # Errors
    /// As binding the steps.
    pub fn for_fit(&self, from: usize, to: usize, project: bool) -> Result<Plan> {
        let mut p = self.clone();
        p.steps.truncate(to + 1);
        // Projecting binds the steps before the group again: a settled full pass among
        // them would lose its decisions.
        if !project
            || self.single_input().map(|i| i.format_name) != Some(FormatName::Csv)
            || self.decode_projection.is_some()
            || self.steps[..from]
                .iter()
                .any(|s| s.step.kind().needs_pass())
        {
            return Ok(p);
        }
        let mut need: BTreeSet<String> = BTreeSet::new();
        for s in &self.steps[from..=to] {
            match s.step.kind() {
                Kind::Fit(f) => need.extend(f.fit_columns().0),
                _ => return Ok(p),
            }
        }
        for s in self.steps[..from].iter().rev() {
            need = s.step.required_input(&need);
        }
        let keep: Vec<usize> = (0..self.input_schema.fields().len())
            .filter(|&i| need.contains(self.input_schema.field(i).name()))
            .collect();
        if keep.is_empty() || keep.len() == self.input_schema.fields().len() {
            return Ok(p);
        }
        let projected = Arc::new(
            self.input_schema
                .project(&keep)
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        let mut prefix = self.pipeline.clone();
        prefix.steps.truncate(from);
        let mut steps = bind_steps(
            &prefix,
            &projected,
            &self.fitted,
            self.stats_origin.as_deref(),
        )?;
        steps.extend(self.steps[from..=to].iter().cloned());
        p.steps = steps;
        p.decode_projection = Some(keep);
        Ok(p)
    }

    /// True while a fitted step has no statistics yet.
    pub fn needs_fit(&self) -> bool {
        self.steps.iter().any(|s| s.step.kind().needs_fit())
    }

    /// The full-pass step that can decide in the main pass, reading the input once
    /// ([`crate::steps::FullPass::in_order`]): the last step that needs a pass, when it
    /// can. (A step after it that needs a pass needs its decisions before the main pass.)
    pub fn in_order_step(&self) -> Option<usize> {
        let k = self
            .steps
            .iter()
            .rposition(|s| s.step.kind().needs_pass())?;
        match self.steps[k].step.kind() {
            Kind::FullPass(p) if p.in_order().is_some() => Some(k),
            _ => None,
        }
    }

    /// The next steps to fit in one pass: the first step that needs a fit and the
    /// fitted steps right after it whose fits read no column an earlier one of them
    /// writes (so observing them all on the batch that reaches the first is exact).
    pub fn fit_group(&self) -> Option<(usize, usize)> {
        let from = self.steps.iter().position(|s| s.step.kind().needs_fit())?;
        let Kind::Fit(first) = self.steps[from].step.kind() else {
            return None;
        };
        let (_, mut written) = first.fit_columns();
        let mut to = from;
        for s in &self.steps[from + 1..] {
            let Kind::Fit(f) = s.step.kind() else {
                break;
            };
            let (reads, writes) = f.fit_columns();
            if reads.iter().any(|c| written.contains(c)) {
                break;
            }
            written.extend(writes);
            to += 1;
        }
        Some((from, to))
    }

    /// The plan bound with these fitted statistics (after a fit, or read back for a
    /// resumed run): every step bound again, and the schemas they now make followed.
    ///
    /// # Errors
    /// As binding the steps.
    pub fn with_fitted(self, fitted: Vec<StatsEntry>) -> Result<Plan> {
        self.with_fitted_from(0, fitted)
    }

    /// [`Plan::with_fitted`], keeping the steps before `from` as they are (bound, and a
    /// full-pass step among them settled): a fit after a full pass binds the steps from
    /// its group on.
    ///
    /// # Errors
    /// As binding the steps.
    pub fn with_fitted_from(mut self, from: usize, fitted: Vec<StatsEntry>) -> Result<Plan> {
        let keep = &self.steps[..from.min(self.steps.len())];
        self.steps = bind_steps_after(
            &self.pipeline,
            &self.input_schema,
            &fitted,
            self.stats_origin.as_deref(),
            keep,
        )?;
        self.fitted = fitted;
        self.output_schema = last_schema(&self.steps, &self.input_schema);
        let classes = self.single_input().and_then(|i| i.classes.clone());
        self.file_schema = file_schema(&self.pipeline, &self.output_schema, classes.as_deref())?;
        self.sequential = self.steps.iter().any(|s| s.step.needs_global_order());
        Ok(self)
    }
}
