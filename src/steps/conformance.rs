//! One suite over every registered step, as object_store runs one suite over every
//! backend: a step added to the registry is tested here without a line of its own,
//! except its entry in [`prefix`] if it needs a column another step makes.
//!
//! For each step's `EXAMPLE` (the YAML `kiln steps` prints), on a fixture batch with the
//! columns the examples name:
//! - it parses, binds and runs (full pass or fit included), and every batch it emits has
//!   the schema it declared;
//! - an empty input, an all-null column, a column of the wrong type and a missing column
//!   each give a result or an error naming the column, never a panic (the expected
//!   outcome of each is in [`WRONG_TYPE_ACCEPTED`] and the asserts);
//! - its output is the same on a pool of 1 and of 2 threads;
//! - a step that says it is batch-local gives each batch, in a context of its own, what
//!   it gives in the task's one context (output and counters), as the runtime relies on
//!   when it spreads a task's batches over threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, StringArray, new_null_array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::{Kind, STEPS, StepContext, StepSpec};

/// Steps that bind to a column of any type, and why. Every other step refuses a
/// column of the wrong type at bind time, with an error naming it.
const WRONG_TYPE_ACCEPTED: &[&str] = &[
    // Move, rename or convert a column of any type.
    "select",
    "drop",
    "rename",
    "cast",
    // SQL: DataFusion coerces (`length(42)` is the length of "42") or fails on the
    // expression that names the column.
    "filter",
    "derive",
    // Hash the value's bytes, whatever its type.
    "split",
    "hash_bucket",
    // A vocabulary (and a mode) of any values.
    "one_hot",
    "ordinal",
    "fill_null",
];

/// Steps this suite leaves to a suite of their own, and why.
const OWN_SUITE: &[&str] = &[
    // Runs the user's program (its example: a Python function, which needs pyarrow):
    // tests/exec.rs runs it with the real child through the cases here (empty input,
    // wrong and missing columns, one and two processes) and through its failures.
    "exec",
];

/// Steps a step's example needs before it: the columns it reads are made by another step.
fn prefix(name: &str) -> &'static str {
    match name {
        "pack" => "- tokenize: { tokenizer: sample-data/tokenizer/tokenizer.json }",
        "mix" => {
            "- tokenize: { tokenizer: sample-data/tokenizer/tokenizer.json }\n- derive: { source: \"CASE id % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'code' ELSE 'books' END\" }"
        }
        "image.resize" | "image.center_crop" | "image.encode" | "image.to_tensor" => {
            "- image.decode: { column: bytes, output: image }"
        }
        _ => "",
    }
}

fn parse(yaml: &str) -> Vec<StepSpec> {
    if yaml.is_empty() {
        return Vec::new();
    }
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}\ndoes not parse: {e}"))
}

const WORDS: &[&str] = &[
    "the",
    "river",
    "carried",
    "cold",
    "water",
    "past",
    "a",
    "small",
    "village",
    "where",
    "people",
    "grew",
    "barley",
    "and",
    "kept",
    "bees",
    "every",
    "summer",
    "market",
    "sold",
    "honey",
    "bread",
    "to",
    "travellers",
    "from",
    "north",
];

/// A PNG of `w`×`h` pixels, different for every `seed`.
fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7 + seed) as u8,
            (y * 5 + seed * 3) as u8,
            (x + y) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encodes a PNG");
    out.into_inner()
}

/// `n` rows with every column the examples name: text of a few dozen words (one row in
/// ten null, one in thirteen a copy of the row before), numbers with nulls, categories,
/// and small PNG images.
fn fixture(n: usize) -> RecordBatch {
    let text: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 10 == 9 {
                return None;
            }
            let j = if i % 13 == 12 { i - 1 } else { i };
            let len = 40 + (j * 7) % 60;
            let words: Vec<&str> = (0..len)
                .map(|k| WORDS[(j * 31 + k * k) % WORDS.len()])
                .collect();
            Some(format!(
                "{}. Contact me at user{j}@example.com.",
                words.join(" ")
            ))
        })
        .collect();
    let num = |f: &dyn Fn(usize) -> f64, every: usize| -> ArrayRef {
        Arc::new(Float64Array::from(
            (0..n)
                .map(|i| (i % every != every - 1).then(|| f(i)))
                .collect::<Vec<_>>(),
        ))
    };
    let cat = |values: &[&str], every: usize| -> ArrayRef {
        Arc::new(StringArray::from(
            (0..n)
                .map(|i| (i % every != every - 1).then(|| values[(i * 7) % values.len()]))
                .collect::<Vec<_>>(),
        ))
    };
    let images: Vec<Vec<u8>> = (0..n)
        .map(|i| png(24 + (i % 5) as u32 * 4, 20 + (i % 3) as u32 * 6, i as u32))
        .collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        (
            "url",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("https://site{}.example/page/{i}", i % 7)),
            )),
        ),
        ("text", Arc::new(StringArray::from(text))),
        ("lang", cat(&["en", "en", "de"], 1000)),
        (
            "timestamp",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("2024-01-{:02}T10:00:00Z", 1 + i % 28)),
            )),
        ),
        (
            "n_links",
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| (i % 5) as i64))),
        ),
        ("score", num(&|i| i as f64 * 0.5, 1000)),
        ("age", num(&|i| 18.0 + (i * 13 % 60) as f64, 11)),
        ("income", num(&|i| 1000.0 * (1 + i * 17 % 90) as f64, 7)),
        (
            "clicks",
            Arc::new(Int64Array::from(
                (0..n)
                    .map(|i| (i % 9 != 8).then_some((i * 3 % 40) as i64))
                    .collect::<Vec<_>>(),
            )),
        ),
        ("comment", cat(&["fine", "late", "great"], 4)),
        ("country", cat(&["fr", "de", "us", "jp"], 6)),
        ("category", cat(&["books", "garden", "toys"], 5)),
        ("user_id", cat(&["u1", "u2", "u3", "u4", "u5"], 1000)),
        (
            "bytes",
            Arc::new(BinaryArray::from_iter_values(
                images.iter().map(Vec::as_slice),
            )),
        ),
    ];
    RecordBatch::try_from_iter(columns).expect("fixture batch")
}

/// Runs `specs` over `batches` (one task, in order), a step at a time as the runtime
/// does: a full-pass step observes everything and settles first; a fitted step is fitted
/// and bound again with its statistics (through JSON text). Checks that every batch a
/// step emits has the schema it declared.
fn run(specs: &[StepSpec], batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, String> {
    run_steps(specs, batches).map_err(|e| e.to_string())
}

fn run_steps(
    specs: &[StepSpec],
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, super::StepError> {
    run_steps_with(specs, batches, false).map(|(out, _)| out)
}

/// A step's named counters over a task.
type Counts = BTreeMap<String, u64>;

/// [`run_steps`], with each step's counters; `apart`: a batch-local step gets a fresh
/// context for each batch (counters summed), as on the runtime's threads.
fn run_steps_with(
    specs: &[StepSpec],
    batches: Vec<RecordBatch>,
    apart: bool,
) -> Result<(Vec<RecordBatch>, Vec<Counts>), super::StepError> {
    let mut counts = Vec::new();
    let mut schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or("no batches")?;
    let mut current = batches;
    for spec in specs {
        let mut step = spec.bind(&schema)?;
        let observed = || super::test_util::observe_tasks_fallible(step.kind(), &current);
        match step.kind() {
            Kind::Map => {}
            Kind::FullPass(p) => p.settle(
                observed()?,
                &mut super::keys::KeyIndex::none(),
                super::test_util::BUDGET,
            )?,
            Kind::Fit(f) => {
                let stats = f.settle(observed()?)?;
                let stats: serde_json::Value =
                    serde_json::from_str(&stats.to_string()).map_err(|e| e.to_string())?;
                step = spec.bind_fitted(&schema, &stats)?;
                assert!(
                    !step.kind().needs_fit(),
                    "{}: still needs a fit",
                    spec.name()
                );
            }
        }
        let mut cx = StepContext::for_task(0, 7);
        let mut out = Vec::new();
        for b in current {
            let rows = b.num_rows() as u64;
            if apart && step.batch_local() {
                let mut own = StepContext::default();
                out.push(step.apply(b, &mut own)?);
                for (name, n) in own.counts {
                    cx.count(&name, n);
                }
            } else {
                out.push(step.apply(b, &mut cx)?);
            }
            cx.rows_before += rows;
        }
        out.extend(step.finish(&mut cx)?);
        for o in &out {
            assert_eq!(
                o.schema().fields(),
                step.output_schema().fields(),
                "{}: a batch's schema is not the declared one",
                spec.name()
            );
        }
        schema = step.output_schema().clone();
        current = out;
        counts.push(cx.counts);
    }
    Ok((current, counts))
}

/// Each registered step: its name, the steps before it, its example.
fn cases() -> Vec<(&'static str, Vec<StepSpec>, Vec<StepSpec>)> {
    STEPS
        .iter()
        .filter(|info| !OWN_SUITE.contains(&info.name))
        .map(|info| {
            let example = parse(info.example);
            assert!(
                example.iter().any(|s| s.name() == info.name),
                "{}: the example does not use the step: {}",
                info.name,
                info.example
            );
            (info.name, parse(prefix(info.name)), example)
        })
        .collect()
}

/// The fixture as it reaches the example: through the prefix steps.
fn input(prefix: &[StepSpec], n: usize) -> RecordBatch {
    let b = fixture(n);
    let out = run(prefix, vec![b.clone()]).expect("the prefix runs");
    concat_batches(&out[0].schema(), &out).expect("concat")
}

/// The columns of `input` the first step of `example` reads: those it asks the decoder
/// for on its own account or, for a step that asks for none on its own (it only passes
/// on what the steps after it need: `select`, `drop`, `rename`, `cast`), those its
/// options name.
fn reads(example: &[StepSpec], input: &RecordBatch) -> Vec<String> {
    let step = example[0].bind(&input.schema()).expect("binds");
    let mut cols = step.required_input(&BTreeSet::new());
    if cols.is_empty() {
        let options = serde_json::to_value(&example[0]).expect("options serialize");
        named(&options, &mut cols);
    }
    input
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| cols.contains(n))
        .collect()
}

/// Every string and key in `v`.
fn named(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| named(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.insert(k.clone());
                named(x, out);
            }
        }
        _ => {}
    }
}

fn replace(input: &RecordBatch, name: &str, with: Option<ArrayRef>) -> RecordBatch {
    let schema = input.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(input.columns()) {
        if f.name() != name {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        } else if let Some(w) = &with {
            fields.push(Field::new(name, w.data_type().clone(), true));
            columns.push(w.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("replaced")
}

/// A column of another type than `a`'s, with values.
fn wrong_type(a: &ArrayRef) -> ArrayRef {
    let n = a.len();
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary => {
            Arc::new(Int64Array::from_iter_values(0..n as i64))
        }
        _ => Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("x{i}")),
        )),
    }
}

/// Whether error `e` names column `col`: in backticks, or inside the quoted SQL
/// expression that reads it (`filter`, `derive`).
fn names(e: &str, col: &str) -> bool {
    e.contains(&format!("`{col}`")) || (e.contains("expression `") && e.contains(col))
}

#[test]
fn every_example_parses_binds_and_runs_with_its_declared_schema() {
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 64);
        // Two batches, so that a step's position across batches matters.
        let batches = vec![b.slice(0, 40), b.slice(40, 24)];
        let out = run(&example, batches).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!out.is_empty(), "{name}: emitted nothing at all");
    }
}

#[test]
fn every_step_takes_an_empty_input() {
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 64).slice(0, 0);
        match run(&example, vec![b]) {
            Ok(out) => {
                let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
                assert_eq!(rows, 0, "{name}: rows out of nothing");
            }
            // A fit over no rows has nothing to learn from; it says which column.
            Err(e) => assert!(
                e.contains("no values") || e.contains("every row is null"),
                "{name}: an empty input failed with: {e}"
            ),
        }
    }
}

#[test]
fn an_all_null_column_gives_a_result_or_an_error_naming_it() {
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 64);
        for col in reads(&example, &b) {
            let a = b.column_by_name(&col).expect("column");
            let nulls = new_null_array(a.data_type(), a.len());
            let with = replace(&b, &col, Some(nulls));
            if let Err(e) = run(&example, vec![with]) {
                assert!(
                    names(&e, &col),
                    "{name}: all-null `{col}` failed without naming it: {e}"
                );
            }
        }
    }
}

#[test]
fn a_column_of_the_wrong_type_is_refused_by_name() {
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 64);
        for col in reads(&example, &b) {
            let a = b.column_by_name(&col).expect("column").clone();
            let with = replace(&b, &col, Some(wrong_type(&a)));
            // At bind time: before any data is read.
            match example[0].bind(&with.schema()) {
                Err(e) => assert!(
                    names(&e, &col),
                    "{name}: a wrong-typed `{col}` was refused without naming it: {e}"
                ),
                Ok(_) => {
                    assert!(
                        WRONG_TYPE_ACCEPTED.contains(&name),
                        "{name}: bound to `{col}` of type {} (it reads {})",
                        with.schema()
                            .field_with_name(&col)
                            .expect("field")
                            .data_type(),
                        a.data_type()
                    );
                    if let Err(e) = run(&example, vec![with]) {
                        assert!(
                            names(&e, &col),
                            "{name}: a wrong-typed `{col}` failed without naming it: {e}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_missing_column_is_refused_by_name_at_bind_time() {
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 64);
        for col in reads(&example, &b) {
            let without = replace(&b, &col, None);
            match example[0].bind(&without.schema()) {
                Err(e) => assert!(
                    names(&e, &col),
                    "{name}: without `{col}` the error does not name it: {e}"
                ),
                Ok(_) => panic!("{name}: bound without the column `{col}` it reads"),
            }
        }
    }
}

#[test]
fn output_is_the_same_on_one_and_two_threads() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("pool")
    };
    let (one, two) = (pool(1), pool(2));
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 300);
        let batches = vec![b.slice(0, 150), b.slice(150, 150)];
        let a = one
            .install(|| run(&example, batches.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = two
            .install(|| run(&example, batches))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let schema: SchemaRef = a[0].schema();
        assert_eq!(
            concat_batches(&schema, &a).expect("concat"),
            concat_batches(&schema, &c).expect("concat"),
            "{name}: 1 and 2 threads differ"
        );
    }
}

#[test]
fn batch_local_steps_give_each_batch_what_the_task_context_gives() {
    let mut checked = 0;
    for (name, prefix, example) in cases() {
        let b = input(&prefix, 300);
        let batches = vec![b.slice(0, 100), b.slice(100, 120), b.slice(220, 80)];
        let (together, counts) = run_steps_with(&example, batches.clone(), false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (apart, counts_apart) =
            run_steps_with(&example, batches, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let schema: SchemaRef = together[0].schema();
        assert_eq!(
            concat_batches(&schema, &together).expect("concat"),
            concat_batches(&schema, &apart).expect("concat"),
            "{name}: says it is batch-local, but its output depends on the batches before"
        );
        assert_eq!(counts, counts_apart, "{name}: counters differ apart");
        let step = example[0].bind(&b.schema()).expect("binds");
        checked += usize::from(step.batch_local());
    }
    // Most steps are batch-local; the check must not pass by checking none.
    assert!(checked > 20, "only {checked} batch-local examples");
}
