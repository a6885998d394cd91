//! `mix`'s unit tests: shares within 0.5% of the weights by rows and by tokens, epochs,
//! independence from tasks and batches, parts through the wire, refusals.

use std::collections::BTreeMap;

use arrow::array::{ListArray, StringArray};
use arrow::datatypes::Int32Type;

use super::*;
use crate::steps::test_util::observe_tasks;

/// `n` rows of source `name`, ids `name-i`, with 1..=`max_len` tokens each (varied).
fn rows(name: &str, n: usize, max_len: usize) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("{name}-{i}")).collect();
    let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>((0..n).map(|i| {
        let len = 1 + (i * 7919 + name.len() * 31) % max_len;
        Some((0..len).map(move |k| Some((i + k) as i32)))
    }));
    RecordBatch::try_from_iter(vec![
        (
            "source",
            Arc::new(StringArray::from(vec![name; n])) as ArrayRef,
        ),
        ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("tokens", Arc::new(tokens) as ArrayRef),
    ])
    .expect("batch")
}

fn input() -> Vec<RecordBatch> {
    vec![
        rows("web", 3000, 400),
        rows("code", 800, 1500),
        rows("books", 120, 2000),
    ]
}

fn options(yaml: serde_json::Value) -> MixOptions {
    serde_json::from_value(yaml).expect("options")
}

/// Fits over `tasks` (each a list of batches), binds with the statistics through JSON
/// text, and applies to every batch in a context of its own: the output and the summed
/// counters.
fn mix(
    opts: &MixOptions,
    tasks: &[Vec<RecordBatch>],
) -> (Vec<RecordBatch>, BTreeMap<String, u64>, serde_json::Value) {
    let schema = tasks[0][0].schema();
    let step = opts.bind(&schema).expect("binds");
    let Kind::Fit(fit) = step.kind() else {
        panic!("mix needs a fit");
    };
    let refs: Vec<(usize, Vec<&RecordBatch>)> = tasks
        .iter()
        .enumerate()
        .map(|(t, b)| (t, b.iter().collect()))
        .collect();
    let parts = observe_tasks(step.kind(), &refs);
    let stats = fit.settle(parts).expect("settles");
    let stats: serde_json::Value = serde_json::from_str(&stats.to_string()).expect("json");
    let fitted = opts.bind_fitted(&schema, &stats).expect("binds fitted");
    assert!(!fitted.kind().needs_fit());
    let mut counts = BTreeMap::new();
    let mut out = Vec::new();
    for b in tasks.iter().flatten() {
        let mut cx = StepContext::default();
        out.push(fitted.apply(b.clone(), &mut cx).expect("applies"));
        for (k, v) in cx.counts {
            *counts.entry(k).or_default() += v;
        }
    }
    (out, counts, stats)
}

fn shares(counts: &BTreeMap<String, u64>, unit: &str) -> BTreeMap<String, f64> {
    let of: BTreeMap<String, u64> = counts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_suffix(&format!(".{unit}"))?.to_string(), *v)))
        .collect();
    let total: u64 = of.values().sum();
    of.into_iter()
        .map(|(k, v)| (k, v as f64 / total as f64))
        .collect()
}

/// Each output row's id, sorted: the multiset of what went out.
fn ids(out: &[RecordBatch]) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .flat_map(|b| {
            let a = b.column(1).as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn token_shares_are_within_half_a_percent_of_the_weights() {
    let opts = options(serde_json::json!({
        "weights": {"web": 0.6, "code": 0.3, "books": 0.1}, "unit": "tokens", "seed": 42
    }));
    let (out, counts, stats) = mix(&opts, &[input()]);
    let got = shares(&counts, "tokens");
    for (name, w) in [("web", 0.6), ("code", 0.3), ("books", 0.1)] {
        assert!(
            (got[name] - w).abs() < 0.005,
            "{name}: {} against {w} ({got:?})",
            got[name]
        );
    }
    // No source repeats: the one shortest of its share goes out once, whole.
    let rates: Vec<f64> = ["web", "code", "books"]
        .iter()
        .map(|n| stats["sources"][n]["rate"].as_f64().expect("rate"))
        .collect();
    assert!(rates.iter().all(|r| *r <= 1.0 + 1e-9), "{rates:?}");
    assert!(rates.iter().any(|r| (r - 1.0).abs() < 1e-9), "{rates:?}");
    // The counters and the stored expectation agree with what went out.
    let rows: u64 = out.iter().map(|b| b.num_rows() as u64).sum();
    let counted: u64 = counts
        .iter()
        .filter(|(k, _)| k.ends_with(".rows"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rows, counted);
    for n in ["web", "code", "books"] {
        let expected = stats["sources"][n]["out_tokens"].as_u64().expect("tokens");
        let got = counts[&format!("{n}.tokens")];
        assert!(
            got.abs_diff(expected) <= 6000,
            "{n}: {got} tokens against the fit's {expected}"
        );
    }
}

#[test]
fn up_sampling_to_a_total_by_rows() {
    let opts = options(serde_json::json!({
        "weights": {"web": 1, "code": 1, "books": 1}, "total": 9000, "seed": 7
    }));
    let (out, counts, _) = mix(&opts, &[input()]);
    let got = shares(&counts, "rows");
    for n in ["web", "code", "books"] {
        assert!((got[n] - 1.0 / 3.0).abs() < 0.005, "{n}: {got:?}");
    }
    let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
    assert!(rows.abs_diff(9000) <= 3, "{rows}");
    // books (120 rows) goes out 25 times: every row 25 times.
    let all = ids(&out);
    assert_eq!(all.iter().filter(|i| *i == "books-0").count(), 25);
}

#[test]
fn epochs_repeat_and_sample_each_source() {
    let opts = options(serde_json::json!({
        "epochs": {"web": 0.5, "code": 2.5, "books": 0}, "seed": 1
    }));
    let (out, counts, _) = mix(&opts, &[input()]);
    assert!(counts["web.rows"].abs_diff(1500) <= 1, "{counts:?}");
    assert!(counts["code.rows"].abs_diff(2000) <= 1, "{counts:?}");
    assert_eq!(counts["books.rows"], 0);
    let all = ids(&out);
    for i in 0..800 {
        let n = all
            .iter()
            .filter(|x| x.as_str() == format!("code-{i}"))
            .count();
        assert!(n == 2 || n == 3, "code-{i} went out {n} times");
    }
}

#[test]
fn the_same_rows_go_out_whatever_the_tasks_and_batches() {
    let opts = options(serde_json::json!({
        "weights": {"web": 0.5, "code": 0.4, "books": 0.1}, "unit": "tokens", "seed": 3
    }));
    let whole = ids(&mix(&opts, &[input()]).0);
    // The same rows cut into 7 tasks of uneven batches, sources interleaved.
    let all = arrow::compute::concat_batches(&input()[0].schema(), &input()).expect("concat");
    let mut tasks = Vec::new();
    let mut at = 0;
    for t in 0..7 {
        let len = if t == 6 {
            all.num_rows() - at
        } else {
            300 + t * 97
        };
        let mut batches = Vec::new();
        let mut i = 0;
        while i < len {
            let n = (37 + t * 11).min(len - i);
            batches.push(all.slice(at + i, n));
            i += n;
        }
        tasks.push(batches);
        at += len;
    }
    assert_eq!(ids(&mix(&opts, &tasks).0), whole);
    // Another seed picks other rows.
    let other = options(serde_json::json!({
        "weights": {"web": 0.5, "code": 0.4, "books": 0.1}, "unit": "tokens", "seed": 4
    }));
    assert_ne!(ids(&mix(&other, &[input()]).0), whole);
}

#[test]
fn a_part_reads_back_as_it_was_written() {
    let opts = options(serde_json::json!({"weights": {"web": 1, "code": 2, "books": 3}}));
    let step = opts.bind(&input()[0].schema()).expect("binds");
    let Kind::Fit(fit) = step.kind() else {
        panic!("a fit");
    };
    let batches = input();
    let refs = vec![(0, batches.iter().collect())];
    let direct = fit
        .settle(observe_tasks(step.kind(), &refs))
        .expect("settles");
    let mut bytes = Vec::new();
    let part = observe_tasks(step.kind(), &refs).remove(0);
    fit.write_part(part, &mut bytes).expect("writes");
    let read = fit.read_part(&mut bytes.as_slice()).expect("reads");
    assert_eq!(fit.settle(vec![read]).expect("settles"), direct);
}

#[test]
fn refusals_say_what_to_do() {
    let schema = input()[0].schema();
    let bind = |v: serde_json::Value| options(v).bind(&schema).map(|_| ()).expect_err("refused");
    assert!(
        bind(serde_json::json!({"weights": {"a": 1}, "epochs": {"a": 1}})).contains("not both")
    );
    assert!(bind(serde_json::json!({})).contains("give `weights`"));
    assert!(bind(serde_json::json!({"weights": {"a": -1}})).contains("non-negative"));
    assert!(
        bind(serde_json::json!({"weights": {"a": 1}, "unit": "tokens", "tokens": "id"}))
            .contains("not a list of token ids")
    );
    assert!(bind(serde_json::json!({"weights": {"a": 1}, "column": "nope"})).contains("no column"));
    // A row of a source the mix does not name stops the fit, naming it.
    let opts = options(serde_json::json!({"weights": {"web": 1, "code": 1}}));
    let step = opts.bind(&schema).expect("binds");
    let err = crate::steps::test_util::observe_tasks_fallible(step.kind(), &input())
        .map(|_| ())
        .expect_err("books has no weight");
    assert!(
        err.to_string().contains("`books` is not in the mix"),
        "{err}"
    );
    // A weighted source with nothing in it cannot have its share.
    let opts =
        options(serde_json::json!({"weights": {"web": 1, "code": 1, "books": 1, "wiki": 1}}));
    let step = opts.bind(&schema).expect("binds");
    let Kind::Fit(fit) = step.kind() else {
        panic!("a fit");
    };
    let batches = input();
    let parts = observe_tasks(step.kind(), &[(0, batches.iter().collect())]);
    let err = fit.settle(parts).expect_err("wiki is empty");
    assert!(err.to_string().contains("`wiki` has weight 1"), "{err}");
}
