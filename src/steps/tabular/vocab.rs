//! Vocabularies for `one_hot` and `ordinal`: fitted from value counts, by frequency or
//! value order, cut by `top_k` and `min_count`, with an optional out-of-vocabulary
//! bucket.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ColumnStats, Counts, Fit, Need};

/// How a vocabulary is ordered (and so which id or column each value gets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Most frequent first; equally frequent values by value (scikit-learn's
    /// `max_categories`, tf.Transform's `compute_and_apply_vocabulary`).
    #[default]
    Frequency,
    /// By value: text in byte order, integers numerically (pandas `Categorical`,
    /// Polars `to_dummies`, DuckDB `ORDER BY`).
    Lexical,
}

/// What decides a vocabulary, from the options of `one_hot` and `ordinal` (documented
/// there, where users read them).
#[derive(Debug, Clone)]
pub struct VocabOptions {
    pub order: Order,
    pub top_k: Option<usize>,
    pub min_count: u64,
}

/// A vocabulary step's fitting state: a given vocabulary (the same for every column)
/// needs no fit; otherwise the columns' values are counted.
pub(super) fn given_or_fitting(
    columns: &[String],
    vocabulary: &Option<Vec<String>>,
    max_distinct: usize,
) -> Fit<Vec<Vocabulary>> {
    match vocabulary {
        Some(v) => {
            let vocab = Vocabulary {
                values: v.clone(),
                counts: vec![0; v.len()],
                nulls: 0,
                distinct: v.len() as u64,
                out_of_vocabulary: 0,
            };
            Fit::Fitted(columns.iter().map(|_| vocab.clone()).collect())
        }
        None => Fit::fitting(
            columns.iter().map(|c| (c.clone(), Need::Counts)).collect(),
            max_distinct,
        ),
    }
}

/// The fitted vocabularies of `columns` from statistics.
/// Builds a vocabulary step with the vocabulary it is given, else the one fitted in
/// `stats` (`bind_fitted`), else one to be fitted (`bind`, `stats` None).
pub(super) fn bind_with<T>(
    columns: &[String],
    given: &Option<Vec<String>>,
    max_distinct: usize,
    stats: Option<&serde_json::Value>,
    build: impl FnOnce(Fit<Vec<Vocabulary>>) -> Result<T, String>,
) -> Result<T, String> {
    match stats {
        Some(stats) if given.is_none() => build(fitted(columns, stats)?),
        _ => build(given_or_fitting(columns, given, max_distinct)),
    }
}

pub(super) fn fitted(
    columns: &[String],
    stats: &serde_json::Value,
) -> Result<Fit<Vec<Vocabulary>>, String> {
    let stats = ColumnStats::<Vocabulary>::from_json(stats, columns)?;
    Ok(Fit::Fitted(
        columns.iter().map(|c| stats.columns[c].clone()).collect(),
    ))
}

/// A fitted vocabulary, as `_kiln/stats.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// The values, in id order.
    pub values: Vec<String>,
    /// How often each occurred in the fitted data.
    pub counts: Vec<u64>,
    /// Null rows in the fitted data.
    pub nulls: u64,
    /// Distinct values in the fitted data.
    pub distinct: u64,
    /// Rows whose value was left out of the vocabulary (by `top_k` / `min_count`).
    pub out_of_vocabulary: u64,
}

impl Vocabulary {
    pub fn fit(counts: &Counts, opts: &VocabOptions, integers: bool) -> Vocabulary {
        let mut all: Vec<(&str, u64)> = counts
            .values
            .iter()
            .map(|(v, n)| (v.as_str(), *n))
            .collect();
        // Frequency order decides which values survive `top_k` in either order.
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut kept: Vec<(&str, u64)> = all
            .iter()
            .copied()
            .filter(|(_, n)| *n >= opts.min_count)
            .take(opts.top_k.unwrap_or(usize::MAX))
            .collect();
        if opts.order == Order::Lexical {
            if integers {
                kept.sort_by_key(|(v, _)| v.parse::<i128>().unwrap_or(i128::MAX));
            } else {
                kept.sort_by(|a, b| a.0.cmp(b.0));
            }
        }
        let total: u64 = all.iter().map(|(_, n)| n).sum();
        let in_vocab: u64 = kept.iter().map(|(_, n)| n).sum();
        Vocabulary {
            values: kept.iter().map(|(v, _)| v.to_string()).collect(),
            counts: kept.iter().map(|(_, n)| *n).collect(),
            nulls: counts.nulls,
            distinct: all.len() as u64,
            out_of_vocabulary: total - in_vocab,
        }
    }

    /// Value → id.
    pub fn index(&self) -> HashMap<&str, u32, foldhash::fast::RandomState> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i as u32))
            .collect()
    }
}

/// The name of the out-of-vocabulary entry (one-hot column suffix, class name).
pub const OOV: &str = "__oov__";

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> Counts {
        let mut c = Counts::default();
        for (v, n) in pairs {
            c.values.insert(v.to_string(), *n);
        }
        c.nulls = 2;
        c
    }

    fn opts(order: Order, top_k: Option<usize>, min_count: u64) -> VocabOptions {
        VocabOptions {
            order,
            top_k,
            min_count,
        }
    }

    #[test]
    fn frequency_order_breaks_ties_by_value_and_cuts() {
        let c = counts(&[("b", 5), ("a", 5), ("c", 9), ("d", 1)]);
        let v = Vocabulary::fit(&c, &opts(Order::Frequency, None, 2), false);
        assert_eq!(v.values, ["c", "a", "b"]);
        assert_eq!(v.counts, [9, 5, 5]);
        assert_eq!((v.distinct, v.out_of_vocabulary, v.nulls), (4, 1, 2));
        let v = Vocabulary::fit(&c, &opts(Order::Lexical, Some(2), 1), false);
        assert_eq!(
            v.values,
            ["a", "c"],
            "the top 2 by frequency, in value order"
        );
    }

    #[test]
    fn integers_sort_numerically() {
        let c = counts(&[("10", 1), ("9", 1), ("-3", 1)]);
        let v = Vocabulary::fit(&c, &opts(Order::Lexical, None, 1), true);
        assert_eq!(v.values, ["-3", "9", "10"]);
    }
}
