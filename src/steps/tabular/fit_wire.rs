//! A fit's part as it travels between workers (a stage shared through the sink,
//! docs/workers.md): the accumulators of one task with their floats as bits, so that
//! every worker merges exactly the numbers the observing one had.

use datafusion_functions_aggregate_common::tdigest::{Centroid, TDigest};
use serde::{Deserialize, Serialize};

use super::fit::{Acc, Counts, Moments};
use crate::steps::StepError;

/// An accumulator as a stored part holds it (a stage across workers): floats as their
/// bits, so that every worker merges exactly the numbers the observing one had (and
/// infinities and NaN survive), value counts sorted by value.
#[derive(Serialize, Deserialize)]
pub(super) enum WireAcc {
    Num {
        count: u64,
        nulls: u64,
        mean: u64,
        m2: u64,
        min: u64,
        max: u64,
        digest: Option<WireDigest>,
    },
    Cat {
        values: Vec<(String, u64)>,
        nulls: u64,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireDigest {
    max_size: usize,
    sum: u64,
    count: u64,
    max: u64,
    min: u64,
    /// (mean, weight) of each centroid, as bits, in the digest's order.
    centroids: Vec<(u64, u64)>,
}

impl From<&Acc> for WireAcc {
    fn from(acc: &Acc) -> Self {
        match acc {
            Acc::Num(m) => WireAcc::Num {
                count: m.count,
                nulls: m.nulls,
                mean: m.mean.to_bits(),
                m2: m.m2.to_bits(),
                min: m.min.to_bits(),
                max: m.max.to_bits(),
                digest: m.digest.as_ref().map(|d| WireDigest {
                    max_size: d.max_size(),
                    sum: d.sum().to_bits(),
                    count: d.count().to_bits(),
                    max: d.max().to_bits(),
                    min: d.min().to_bits(),
                    centroids: d
                        .centroids()
                        .iter()
                        .map(|c| (c.mean().to_bits(), c.weight().to_bits()))
                        .collect(),
                }),
            },
            Acc::Cat(c) => {
                let mut values: Vec<(String, u64)> =
                    c.values.iter().map(|(v, n)| (v.clone(), *n)).collect();
                values.sort_unstable();
                WireAcc::Cat {
                    values,
                    nulls: c.nulls,
                }
            }
        }
    }
}

impl WireAcc {
    pub(super) fn into_acc(self) -> Result<Acc, StepError> {
        Ok(match self {
            WireAcc::Num {
                count,
                nulls,
                mean,
                m2,
                min,
                max,
                digest,
            } => Acc::Num(Moments {
                count,
                nulls,
                mean: f64::from_bits(mean),
                m2: f64::from_bits(m2),
                min: f64::from_bits(min),
                max: f64::from_bits(max),
                digest: digest
                    .map(|d| {
                        let centroids = d
                            .centroids
                            .iter()
                            .map(|&(m, w)| Centroid::new(f64::from_bits(m), f64::from_bits(w)))
                            .collect();
                        TDigest::try_from_parts(
                            d.max_size,
                            f64::from_bits(d.sum),
                            f64::from_bits(d.count),
                            f64::from_bits(d.max),
                            f64::from_bits(d.min),
                            centroids,
                        )
                        .map_err(|e| StepError::internal(format!("a stored quantile sketch: {e}")))
                    })
                    .transpose()?,
            }),
            WireAcc::Cat { values, nulls } => Acc::Cat(Counts {
                values: values.into_iter().collect(),
                nulls,
            }),
        })
    }
}
