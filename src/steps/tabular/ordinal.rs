//! `ordinal`: a categorical column to dense uint32 ids (label / ordinal encoding), the
//! vocabulary fitted in a full pass, given, or taken from `stats_from`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::one_hot::fit_vocabularies;
use super::vocab::{Order, VocabOptions, Vocabulary};
use super::{Fit, Layout, as_strings, categorical_column, one_output_each};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `ordinal`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrdinalOptions {
    /// Categorical columns (strings, integers, booleans); each becomes uint32 ids
    /// 0..n−1 in vocabulary order; a value outside the vocabulary gets id n with `oov`
    /// (else null); nulls stay null.
    pub columns: Vec<String>,
    /// Write `<column><suffix>` beside each column instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// A fixed vocabulary for every column instead of a fitted one (no full pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<Vec<String>>,
    /// Order of the vocabulary and so of the ids (default `frequency`: id 0 is the most
    /// frequent value).
    #[serde(default)]
    pub order: Order,
    /// Keep only the `top_k` most frequent values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Keep only values seen at least this often (default 1).
    #[serde(default = "super::default_one")]
    pub min_count: u64,
    /// Values outside the vocabulary get id n, one past the last (default true);
    /// without it they become null.
    #[serde(default = "super::default_true")]
    pub oov: bool,
    /// Distinct values the fit counts per column before it refuses (bounds memory).
    #[serde(default = "super::default_max_distinct")]
    pub max_distinct: usize,
}

impl OrdinalOptions {
    fn vocab(&self) -> VocabOptions {
        VocabOptions {
            order: self.order,
            top_k: self.top_k,
            min_count: self.min_count,
        }
    }
}

impl StepOptions for OrdinalOptions {
    const SUMMARY: &'static str = "categorical columns to dense uint32 ids; vocabulary by frequency or value, top_k, min_count, oov";
    const EXAMPLE: &'static str = "- ordinal: { columns: [country], order: lexical, suffix: _id }";

    vocabulary_binding!();
}

impl OrdinalOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Vec<Vocabulary>>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the categorical columns".into());
        }
        let (inputs, layout) = one_output_each(
            input,
            &self.columns,
            &self.suffix,
            |_| DataType::UInt32,
            |s, c| categorical_column(s, c, "ordinal"),
        )?;
        let integers = inputs
            .iter()
            .map(|&i| input.field(i).data_type().is_integer())
            .collect();
        Ok(Arc::new(Ordinal {
            opts: self.clone(),
            inputs,
            integers,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct Ordinal {
    opts: OrdinalOptions,
    inputs: Vec<usize>,
    integers: Vec<bool>,
    layout: Layout,
    fit: Fit<Vec<Vocabulary>>,
}

impl Step for Ordinal {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let vocabs = self.fit.params()?;
        let mut made = Vec::with_capacity(self.inputs.len());
        let mut unknown = 0u64;
        for (&i, vocab) in self.inputs.iter().zip(vocabs) {
            let index = vocab.index();
            let s = as_strings(batch.column(i))?;
            let s = s.as_string::<i32>();
            let n = vocab.values.len() as u32;
            let out: UInt32Array = (0..s.len())
                .map(|r| {
                    if s.is_null(r) {
                        return None;
                    }
                    match index.get(s.value(r)) {
                        Some(&id) => Some(id),
                        None => {
                            unknown += 1;
                            self.opts.oov.then_some(n)
                        }
                    }
                })
                .collect();
            made.push(vec![Arc::new(out) as ArrayRef]);
        }
        cx.count("out_of_vocabulary", unknown);
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    delegate_fit!(columns);
}

impl super::Fitted for Ordinal {
    fitted_columns!();

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        fit_vocabularies(&self.opts.columns, &self.integers, accs, &self.opts.vocab())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::fit_and_bind;
    use arrow::array::Int64Array;
    use arrow::datatypes::UInt32Type;

    #[test]
    fn lexical_ids_numeric_for_integers_and_oov_past_the_end() {
        let c: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(10),
            Some(9),
            None,
            Some(10),
            Some(-1),
        ]));
        let b = RecordBatch::try_from_iter(vec![("c", c)]).expect("batch");
        let opts: OrdinalOptions = serde_json::from_value(
            serde_json::json!({"columns": ["c"], "order": "lexical", "min_count": 2, "suffix": "_id"}),
        )
        .expect("options");
        let (step, stats) = fit_and_bind(&opts, &b);
        assert_eq!(stats["columns"]["c"]["values"], serde_json::json!(["10"]));
        let mut cx = StepContext::default();
        let out = step.apply(b, &mut cx).expect("applies");
        let ids: Vec<Option<u32>> = out.column(1).as_primitive::<UInt32Type>().iter().collect();
        assert_eq!(ids, [Some(0), Some(1), None, Some(0), Some(1)]);
        assert_eq!(cx.counts["out_of_vocabulary"], 2);
        let all: OrdinalOptions =
            serde_json::from_value(serde_json::json!({"columns": ["c"], "order": "lexical"}))
                .expect("options");
        let (_, stats) = fit_and_bind(&all, &crate::steps::tabular::ordinal::tests::int_batch());
        assert_eq!(
            stats["columns"]["c"]["values"],
            serde_json::json!(["-1", "9", "10"])
        );
    }

    fn int_batch() -> RecordBatch {
        let c: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(10),
            Some(9),
            None,
            Some(10),
            Some(-1),
        ]));
        RecordBatch::try_from_iter(vec![("c", c)]).expect("batch")
    }
}
