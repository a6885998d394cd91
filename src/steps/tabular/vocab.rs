//! Vocabularies for `one_hot` and `ordinal`: fitted from value counts, by frequency or
//! value order, cut by `top_k` and `min_count`, with an optional out-of-vocabulary
//! bucket.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Counts;

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

/// The options every vocabulary step shares.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VocabOptions {
    /// Order of the vocabulary (default `frequency`).
    #[serde(default)]
    pub order: Order,
    /// Keep only the `top_k` most frequent values (the rest are out of vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Keep only values seen at least this often (default 1).
    #[serde(default = "one")]
    pub min_count: u64,
    /// Give values outside the vocabulary (cut by `top_k`/`min_count`, or never seen
    /// in the fitted data) a bucket of their own; without it they become null.
    #[serde(default = "yes")]
    pub oov: bool,
    /// Distinct values the fit counts per column before it refuses (bounds memory).
    #[serde(default = "max_distinct")]
    pub max_distinct: usize,
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn max_distinct() -> usize {
    super::DEFAULT_MAX_DISTINCT
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
            oov: true,
            max_distinct: 100,
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
