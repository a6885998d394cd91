//! `mix`'s fit (`mix.rs`): per task, the rows and units of each source in 4,096 key-hash
//! buckets; merged, the sources' sizes give their rates, and each rate's fraction its
//! hash threshold (the point below which the rows add up to exactly that fraction).

use std::collections::BTreeSet;
use std::io::{Read, Write};

use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{BUCKET_BITS, BUCKET_WIDTH, BUCKETS, Fitted, Mix, MixOptions, SourceFit, Unit};
use crate::steps::{FitPass, Observer, Part, Step, StepError};

/// One task's counts: per source, per hash bucket, rows and units.
struct Counts(Vec<Vec<[u64; 2]>>);

impl Counts {
    fn new(sources: usize) -> Self {
        Counts(vec![vec![[0, 0]; BUCKETS]; sources])
    }
}

struct MixObserver<'a> {
    step: &'a Mix,
    counts: Counts,
}

impl Observer for MixObserver<'_> {
    fn observe(&mut self, batch: &RecordBatch, _rows_before: u64) -> Result<(), StepError> {
        let rows = self.step.rows(batch)?;
        for r in 0..batch.num_rows() {
            let b = (rows.hash[r] >> (64 - BUCKET_BITS)) as usize;
            let c = &mut self.counts.0[rows.source[r]][b];
            c[0] += 1;
            c[1] += rows.units[r];
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Part, StepError> {
        Ok(Box::new(self.counts))
    }
}

/// A part as stored between workers: per source, the non-empty buckets.
#[derive(Serialize, Deserialize)]
struct WirePart(Vec<Vec<(u16, u64, u64)>>);

impl FitPass for Mix {
    fn fit_columns(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let reads = self.required_input(&BTreeSet::new());
        // It changes which rows there are: a fitted step after it sees its output, so
        // nothing after it is fitted in the same pass.
        let writes = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        (reads, writes)
    }

    fn observer(&self, _task: usize) -> Result<Box<dyn Observer + '_>, StepError> {
        Ok(Box::new(MixObserver {
            step: self,
            counts: Counts::new(self.names.len()),
        }))
    }

    fn settle(&self, parts: Vec<Part>) -> Result<serde_json::Value, StepError> {
        let mut total = Counts::new(self.names.len());
        for part in crate::steps::parts::<Counts>(parts, "mix")? {
            for (t, p) in total.0.iter_mut().zip(part.0) {
                for (a, b) in t.iter_mut().zip(p) {
                    a[0] += b[0];
                    a[1] += b[1];
                }
            }
        }
        let fitted = decide(&self.opts, &self.names, &self.factors, &total)?;
        serde_json::to_value(fitted).map_err(|e| StepError::internal(e.to_string()))
    }

    fn write_part(&self, part: Part, out: &mut dyn Write) -> Result<(), StepError> {
        let [counts] = crate::steps::parts::<Counts>(vec![part], "mix")?
            .try_into()
            .map_err(|_| StepError::internal("one part"))?;
        let wire = WirePart(
            counts
                .0
                .iter()
                .map(|s| {
                    s.iter()
                        .enumerate()
                        .filter(|(_, c)| c[0] > 0)
                        .map(|(b, c)| (b as u16, c[0], c[1]))
                        .collect()
                })
                .collect(),
        );
        serde_json::to_writer(out, &wire)
            .map_err(|e| StepError::internal(format!("cannot write a part of `mix`: {e}")))
    }

    fn read_part(&self, input: &mut dyn Read) -> Result<Part, StepError> {
        let wire: WirePart = serde_json::from_reader(input).map_err(|e| {
            StepError::internal(format!("a stored part of `mix` does not read back: {e}"))
        })?;
        if wire.0.len() != self.names.len() {
            return Err(StepError::internal(format!(
                "a stored part of `mix` has {} sources, the step mixes {}",
                wire.0.len(),
                self.names.len()
            )));
        }
        let mut counts = Counts::new(self.names.len());
        for (s, buckets) in wire.0.into_iter().enumerate() {
            for (b, rows, units) in buckets {
                let c = counts
                    .0
                    .get_mut(s)
                    .and_then(|s| s.get_mut(usize::from(b)))
                    .ok_or_else(|| StepError::internal("a stored part of `mix` is out of range"))?;
                *c = [rows, units];
            }
        }
        Ok(Box::new(counts))
    }
}

/// The rates from the sizes, and each rate's copies and threshold.
fn decide(
    opts: &MixOptions,
    names: &[String],
    factors: &[f64],
    counts: &Counts,
) -> Result<Fitted, StepError> {
    let units: Vec<u64> = counts
        .0
        .iter()
        .map(|s| s.iter().map(|c| c[1]).sum())
        .collect();
    let rows: Vec<u64> = counts
        .0
        .iter()
        .map(|s| s.iter().map(|c| c[0]).sum())
        .collect();
    let rates: Vec<f64> = if opts.weights.is_some() && units.iter().any(|u| *u > 0) {
        let sum: f64 = factors.iter().sum();
        for (s, name) in names.iter().enumerate() {
            if factors[s] > 0.0 && units[s] == 0 {
                let e = StepError::data(format!(
                    "source `{name}` has weight {} but no {} reach `mix`; check its input \
                     and the steps before",
                    factors[s],
                    opts.unit.name()
                ));
                return Err(match opts.unit {
                    Unit::Rows => e.in_column(&opts.column),
                    Unit::Tokens => e.in_column(opts.tokens.as_deref().unwrap_or("tokens")),
                });
            }
        }
        // The output size: given, or the largest at which no source repeats.
        let total = match opts.total {
            Some(t) => t as f64,
            None => (0..names.len())
                .filter(|&s| factors[s] > 0.0)
                .map(|s| units[s] as f64 * sum / factors[s])
                .fold(f64::INFINITY, f64::min),
        };
        (0..names.len())
            .map(|s| {
                if factors[s] == 0.0 {
                    0.0
                } else {
                    total * factors[s] / sum / units[s] as f64
                }
            })
            .collect()
    } else if opts.weights.is_some() {
        // Nothing reached the step: nothing goes out.
        vec![0.0; names.len()]
    } else {
        factors.to_vec()
    };
    let out_units: Vec<f64> = (0..names.len())
        .map(|s| rates[s] * units[s] as f64)
        .collect();
    let out_total: f64 = out_units.iter().sum();
    let mut sources = IndexMap::new();
    for (s, name) in names.iter().enumerate() {
        let rate = rates[s];
        let copies = rate.floor() as u64;
        let fraction = rate - copies as f64;
        let (threshold, extra_rows, extra_units) = threshold(&counts.0[s], fraction);
        let tokens = (opts.unit == Unit::Tokens).then_some(units[s]);
        sources.insert(
            name.clone(),
            SourceFit {
                rows: rows[s],
                tokens,
                rate,
                copies,
                threshold,
                out_rows: copies * rows[s] + extra_rows,
                out_tokens: tokens.map(|t| copies * t + extra_units),
                share: if out_total > 0.0 {
                    out_units[s] / out_total
                } else {
                    0.0
                },
            },
        );
    }
    Ok(Fitted {
        unit: opts.unit,
        sources,
    })
}

/// The hash below which rows add up to `fraction` of a source's units, and the rows
/// and units below it (expected, within the last bucket).
fn threshold(buckets: &[[u64; 2]], fraction: f64) -> (u64, u64, u64) {
    if fraction <= 0.0 {
        return (0, 0, 0);
    }
    let total: u64 = buckets.iter().map(|c| c[1]).sum();
    let target = fraction * total as f64;
    let (mut rows, mut units) = (0u64, 0u64);
    for (b, c) in buckets.iter().enumerate() {
        if (units + c[1]) as f64 >= target && c[1] > 0 {
            let within = ((target - units as f64) / c[1] as f64).clamp(0.0, 1.0);
            let at =
                (b as u64 * BUCKET_WIDTH).saturating_add((within * BUCKET_WIDTH as f64) as u64);
            let extra_rows = rows + (within * c[0] as f64).round() as u64;
            return (at, extra_rows, target.round() as u64);
        }
        rows += c[0];
        units += c[1];
    }
    (u64::MAX, rows, units)
}
