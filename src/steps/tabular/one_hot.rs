//! `one_hot`: a categorical column to one uint8 column per vocabulary value
//! (`<column>_<value>`), the vocabulary fitted in a full pass, given, or taken from
//! `stats_from`.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt8Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vocab::{OOV, Order, VocabOptions, Vocabulary};
use super::{Acc, ColumnStats, Fit, Layout, as_strings, categorical_column};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `one_hot`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneHotOptions {
    /// Categorical columns (strings, integers, booleans). Each is replaced by one uint8
    /// column per vocabulary value, `<column><separator><value>`, plus
    /// `<column><separator>__oov__` with `oov`. A null row is all zeros.
    pub columns: Vec<String>,
    /// Between the column name and the value (default `_`).
    #[serde(default = "underscore")]
    pub separator: String,
    /// Keep the input column before its one-hot columns (default false).
    #[serde(default)]
    pub keep_input: bool,
    /// A fixed vocabulary for every column instead of a fitted one (no full pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<Vec<String>>,
    /// Order of the vocabulary and so of the columns (default `frequency`).
    #[serde(default)]
    pub order: Order,
    /// Keep only the `top_k` most frequent values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Keep only values seen at least this often (default 1).
    #[serde(default = "super::default_one")]
    pub min_count: u64,
    /// A `__oov__` column for values outside the vocabulary (default true); without
    /// it such a row is all zeros.
    #[serde(default = "super::default_true")]
    pub oov: bool,
    /// Distinct values the fit counts per column before it refuses (bounds memory).
    #[serde(default = "super::default_max_distinct")]
    pub max_distinct: usize,
}

fn underscore() -> String {
    "_".into()
}

impl OneHotOptions {
    fn vocab(&self) -> VocabOptions {
        VocabOptions {
            order: self.order,
            top_k: self.top_k,
            min_count: self.min_count,
        }
    }
}

impl StepOptions for OneHotOptions {
    const SUMMARY: &'static str = "categorical columns to one uint8 column per value; vocabulary by frequency, top_k, min_count, oov";
    const EXAMPLE: &'static str = "- one_hot: { columns: [category], top_k: 20, order: frequency }";

    vocabulary_binding!();
}

impl OneHotOptions {
    fn build(&self, input: &SchemaRef, fit: Fit<Vec<Vocabulary>>) -> Result<Arc<dyn Step>, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty; name the categorical columns".into());
        }
        let mut items = Vec::new();
        let mut integers = Vec::new();
        for (k, c) in self.columns.iter().enumerate() {
            let i = categorical_column(input, c, "one_hot")?;
            integers.push(input.field(i).data_type().is_integer());
            // Before the fit the columns are unknown: the plan shows none.
            let mut fields = Vec::new();
            if let Fit::Fitted(vocabs) = &fit {
                let names = vocabs[k].values.iter().map(String::as_str);
                let names = names.chain(self.oov.then_some(OOV));
                for v in names {
                    fields.push(Field::new(
                        format!("{c}{}{v}", self.separator),
                        DataType::UInt8,
                        false,
                    ));
                }
            }
            items.push((i, fields));
        }
        let layout = Layout::new(input, &items, self.keep_input)?;
        Ok(Arc::new(OneHot {
            opts: self.clone(),
            inputs: items.iter().map(|(i, _)| *i).collect(),
            integers,
            layout,
            fit,
        }))
    }
}

#[derive(Debug)]
struct OneHot {
    opts: OneHotOptions,
    inputs: Vec<usize>,
    integers: Vec<bool>,
    layout: Layout,
    fit: Fit<Vec<Vocabulary>>,
}

impl Step for OneHot {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn apply(&self, batch: RecordBatch, _: &mut StepContext) -> Result<RecordBatch, StepError> {
        let vocabs = self.fit.params()?;
        let mut made = Vec::with_capacity(self.inputs.len());
        for (&i, vocab) in self.inputs.iter().zip(vocabs) {
            let index = vocab.index();
            let s = as_strings(batch.column(i))?;
            let s = s.as_string::<i32>();
            let n = vocab.values.len() as u32;
            // Per row: its column (n = out of vocabulary), or none for a null.
            let codes: Vec<u32> = (0..s.len())
                .map(|r| {
                    if s.is_null(r) {
                        u32::MAX
                    } else {
                        index.get(s.value(r)).copied().unwrap_or(n)
                    }
                })
                .collect();
            let width = vocab.values.len() + usize::from(self.opts.oov);
            let columns = (0..width as u32)
                .map(|j| {
                    let a: UInt8Array = codes
                        .iter()
                        .map(|&c| u8::from(c == j))
                        .collect::<Vec<u8>>()
                        .into();
                    Arc::new(a) as ArrayRef
                })
                .collect();
            made.push(columns);
        }
        self.layout.assemble(&batch, made).map_err(StepError::from)
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.extend(self.opts.columns.iter().cloned());
        need
    }

    delegate_fit!();
}

impl super::Fitted for OneHot {
    fn fitter(&self) -> Result<&super::Fitter, StepError> {
        self.fit.fitter()
    }

    fn writes(&self) -> BTreeSet<String> {
        // Its output columns are not known before the fit: it writes its inputs.
        self.opts.columns.iter().cloned().collect()
    }

    fn stats(&self, accs: Vec<super::Acc>) -> Result<serde_json::Value, StepError> {
        fit_vocabularies(&self.opts.columns, &self.integers, accs, &self.opts.vocab())
    }
}

/// The vocabularies of counted columns, as statistics.
pub(super) fn fit_vocabularies(
    columns: &[String],
    integers: &[bool],
    accs: Vec<Acc>,
    opts: &VocabOptions,
) -> Result<serde_json::Value, StepError> {
    let mut out = indexmap::IndexMap::new();
    for ((c, acc), &ints) in columns.iter().zip(accs).zip(integers) {
        let Acc::Cat(counts) = acc else {
            return Err(StepError::internal("a vocabulary fitted from moments"));
        };
        out.insert(c.clone(), Vocabulary::fit(&counts, opts, ints));
    }
    Ok(ColumnStats { columns: out }.to_json()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tabular::tests_util::fit_and_bind;
    use arrow::array::StringArray;
    use arrow::datatypes::UInt8Type;

    #[test]
    fn one_column_per_value_by_frequency_and_an_oov_column() {
        let c: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            Some("b"),
            None,
            Some("c"),
        ]));
        let b = RecordBatch::try_from_iter(vec![("c", c)]).expect("batch");
        let opts: OneHotOptions =
            serde_json::from_value(serde_json::json!({"columns": ["c"], "top_k": 2}))
                .expect("options");
        let unfitted = opts.bind(&b.schema()).expect("binds");
        assert_eq!(
            unfitted.output_schema().fields().len(),
            0,
            "columns come from the fit"
        );
        let (step, stats) = fit_and_bind(&opts, &b);
        assert_eq!(
            stats["columns"]["c"]["values"],
            serde_json::json!(["b", "a"])
        );
        let out = step.apply(b, &mut StepContext::default()).expect("applies");
        let names: Vec<&str> = out
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["c_b", "c_a", "c___oov__"]);
        let col = |k: usize| out.column(k).as_primitive::<UInt8Type>().values().to_vec();
        assert_eq!(col(0), [1, 0, 1, 0, 0]);
        assert_eq!(col(1), [0, 1, 0, 0, 0]);
        assert_eq!(
            col(2),
            [0, 0, 0, 0, 1],
            "c is cut by top_k; the null row is all zeros"
        );
    }

    #[test]
    fn a_given_vocabulary_needs_no_fit() {
        let opts: OneHotOptions = serde_json::from_value(
            serde_json::json!({"columns": ["text"], "vocabulary": ["a", "hello"], "oov": false}),
        )
        .expect("options");
        let step = opts
            .bind(&crate::steps::test_util::schema())
            .expect("binds");
        assert!(!step.kind().needs_fit());
        let out = step
            .apply(
                crate::steps::test_util::batch(),
                &mut StepContext::default(),
            )
            .expect("applies");
        assert_eq!(
            out.column(1).as_primitive::<UInt8Type>().values().to_vec(),
            [1, 0, 0, 0]
        );
        assert_eq!(
            out.column(2).as_primitive::<UInt8Type>().values().to_vec(),
            [0, 1, 0, 0]
        );
    }
}
