//! `sink.shuffle`: the rows of the whole dataset in a seeded random order, the same
//! bytes for any task size and thread count, every row once, not correlated with the
//! input order; another seed gives another order.

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::util::*;

/// Six files of 2,000 documents; `n` numbers them in input order.
fn input(dir: &Path) {
    for i in 0..6 {
        write_docs(&dir.join(format!("in/part-{i}.jsonl")), i * 2000, 2000);
    }
}

fn pipeline_file(dir: &Path, seed: u64) -> String {
    let yaml = format!(
        "version: 1\nname: shuffled\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - filter: \"lang = 'en'\"\nsink:\n  uri: ${{KILN_OUT}}/shuffled\n  max_rows: 2500\n  shuffle: {{ seed: {seed}, bucket_bytes: 1MiB }}\n",
        dir.display()
    );
    pipeline(dir, &format!("shuffle-{seed}.yaml"), &yaml)
        .to_string_lossy()
        .into_owned()
}

/// `n` of every row, shards in name order.
fn order(sink: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for b in read_shards(sink).values() {
        let n = b
            .column_by_name("n")
            .expect("n")
            .as_primitive::<Int64Type>();
        out.extend((0..n.len()).map(|i| n.value(i)));
    }
    out
}

/// Spearman's rank correlation of output position and input position.
fn rank_correlation(order: &[i64]) -> f64 {
    let mut by_input: Vec<(i64, usize)> = order.iter().enumerate().map(|(p, &n)| (n, p)).collect();
    by_input.sort_unstable();
    let m = order.len() as f64;
    let d2: f64 = by_input
        .iter()
        .enumerate()
        .map(|(rank, &(_, pos))| {
            let d = rank as f64 - pos as f64;
            d * d
        })
        .sum();
    1.0 - 6.0 * d2 / (m * (m * m - 1.0))
}

#[test]
fn the_order_depends_on_the_seed_alone_and_not_on_the_input_order() {
    let dir = tempfile::tempdir().expect("tmp");
    input(dir.path());
    let p = pipeline_file(dir.path(), 42);
    let outs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    // One task per file on one thread; tasks of 100 KB (several per file) on two.
    kiln_ok(outs[0].path(), &["run", "-q", &p, "--set", "run.threads=1"]);
    kiln_ok(
        outs[1].path(),
        &[
            "run",
            "-q",
            &p,
            "--set",
            "run.threads=2",
            "--set",
            "run.task_bytes=100KB",
            "--set",
            "run.batch_rows=333",
        ],
    );
    let q = pipeline_file(dir.path(), 43);
    kiln_ok(outs[2].path(), &["run", "-q", &q]);
    let sinks: Vec<_> = outs.iter().map(|o| o.path().join("shuffled")).collect();
    let a = shard_files(&sinks[0]);
    let b = shard_files(&sinks[1]);
    assert!(a.len() >= 4, "several buckets, several shards: {}", a.len());
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(a == b, "the same bytes for any task size and thread count");

    let first = order(&sinks[0]);
    let other = order(&sinks[2]);
    // Every English row once, in both orders.
    let mut want: Vec<i64> = (0..12_000).filter(|i| i % 10 != 0).collect();
    let mut got = first.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    let mut got = other.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_ne!(first, other, "another seed, another order");
    // Not the input's order: the rank correlation of 10,800 rows is within noise of 0
    // (its standard deviation is ~0.01), for either seed.
    for o in [&first, &other] {
        let rho = rank_correlation(o);
        assert!(
            rho.abs() < 0.05,
            "rank correlation with the input order: {rho}"
        );
    }
    // The manifest lists the shards, not the scattered parts, and the scratch is gone.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sinks[0].join("_kiln/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["rows"], 10_800);
    assert_eq!(manifest["rows_in"], 12_000);
    assert!(
        manifest["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .all(|s| s["path"].as_str().is_some_and(|p| p.starts_with("part-"))),
        "{:#}",
        manifest["shards"]
    );
    assert!(!sinks[0].join("_kiln/shuffle").exists(), "scratch removed");
    // A rerun of the complete dataset changes nothing.
    kiln_ok(outs[0].path(), &["run", "-q", &p, "--set", "run.threads=1"]);
    assert!(shard_files(&sinks[0]) == a);
}

#[test]
fn workers_one_after_another_or_at_once_write_the_bytes_one_run_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    input(dir.path());
    let p = pipeline_file(dir.path(), 9);
    let one = tempfile::tempdir().expect("tmp");
    kiln_ok(one.path(), &["run", "-q", &p]);
    let expected = shard_files(&one.path().join("shuffled"));
    assert!(expected.len() >= 4, "several buckets: {}", expected.len());
    // Three workers one after another: the last finds every task committed and
    // gathers every bucket.
    let seq = tempfile::tempdir().expect("tmp");
    for w in ["0/3", "1/3", "2/3"] {
        kiln_ok(
            seq.path(),
            &[
                "run",
                "-q",
                &p,
                "--worker",
                w,
                "--own-tasks-only",
                "--set",
                "run.task_bytes=200KB",
            ],
        );
    }
    assert!(shard_files(&seq.path().join("shuffled")) == expected);
    // Two workers at once, small tasks: whichever finds the tasks done first claims
    // buckets; the other writes or waits for the rest.
    let both = tempfile::tempdir().expect("tmp");
    kiln_ok_at_once(
        both.path(),
        &["run", "-q", &p, "--set", "run.task_bytes=200KB"],
        &["0/2", "1/2"],
    );
    let sink = both.path().join("shuffled");
    assert!(
        shard_files(&sink) == expected,
        "the same bytes from two workers at once"
    );
    assert!(!sink.join("_kiln/shuffle").exists(), "scratch removed");
    assert!(
        files(&sink.join("_kiln/claims")).is_empty(),
        "claims removed: {:?}",
        files(&sink.join("_kiln/claims"))
    );
}

#[test]
fn a_window_shuffle_permutes_each_window_of_a_task_and_nothing_more() {
    let dir = tempfile::tempdir().expect("tmp");
    input(dir.path());
    let yaml = format!(
        "version: 1\nname: windowed\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - filter: \"lang = 'en'\"\nsink:\n  uri: ${{KILN_OUT}}/windowed\n  max_rows: 2500\n  shuffle: {{ seed: 3, window: 1000 }}\n",
        dir.path().display()
    );
    let p = pipeline(dir.path(), "windowed.yaml", &yaml)
        .to_string_lossy()
        .into_owned();
    let outs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    kiln_ok(outs[0].path(), &["run", "-q", &p]);
    kiln_ok(
        outs[1].path(),
        &[
            "run",
            "-q",
            &p,
            "--set",
            "run.threads=1",
            "--set",
            "run.batch_rows=333",
        ],
    );
    let sinks: Vec<_> = outs.iter().map(|o| o.path().join("windowed")).collect();
    assert!(
        shard_files(&sinks[0]) == shard_files(&sinks[1]),
        "the same bytes for any thread count and batch size"
    );
    // One task (the input is far below run.task_bytes): the English rows in input order,
    // each window of 1,000 permuted within itself.
    let got = order(&sinks[0]);
    let want: Vec<i64> = (0..12_000).filter(|i| i % 10 != 0).collect();
    assert_eq!(got.len(), want.len());
    let mut moved = 0;
    for (g, w) in got.chunks(1000).zip(want.chunks(1000)) {
        let mut sorted = g.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, w, "a window holds the rows of its window");
        moved += g.iter().zip(w).filter(|(a, b)| a != b).count();
        assert!(
            g.len() < 100 || rank_correlation(g).abs() < 0.2,
            "permuted within the window: {}",
            rank_correlation(g)
        );
    }
    assert!(
        moved > want.len() * 9 / 10,
        "{moved} of {} rows moved",
        want.len()
    );
    // No scatter, no gather: nothing under _kiln/shuffle, and plan says what it does.
    assert!(!sinks[0].join("_kiln/shuffle").exists());
    let o = kiln_ok(outs[0].path(), &["plan", &p]);
    assert!(
        stdout(&o).contains("within windows of 1000 rows"),
        "{}",
        stdout(&o)
    );
}
