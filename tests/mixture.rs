//! `sources:` and `mix`: several inputs, each with its own steps, read as one dataset
//! and mixed by weight; the token shares within 0.5% of the weights, the same bytes for
//! any task size, thread count and worker count, refusals that say what to do.

use std::path::Path;

use arrow::array::{Array, AsArray};

use crate::util::*;

#[test]
fn the_mixture_example_lands_on_its_weights_the_same_bytes_on_any_threads_and_workers() {
    let outs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let p = "pipelines/pretrain-mixture.yaml";
    let o = kiln_ok(outs[0].path(), &["run", p]);
    assert!(
        stderr(&o).contains("mixture by tokens: news 2") && stderr(&o).contains("web 69."),
        "{}",
        stderr(&o)
    );
    kiln_ok(
        outs[1].path(),
        &[
            "run",
            "-q",
            p,
            "--set",
            "run.threads=1",
            "--set",
            "run.batch_rows=100",
        ],
    );
    // Two workers at once: the fit of `mix` and the shuffle's gather shared.
    kiln_ok_at_once(outs[2].path(), &["run", "-q", p], &["0/2", "1/2"]);
    let sinks: Vec<_> = outs
        .iter()
        .map(|o| o.path().join("pretrain-mixture"))
        .collect();
    let bytes = |sink: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = files(sink)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "mds" || e == "json"))
            .filter(|f| !f.to_string_lossy().contains("_kiln"))
            .map(|f| {
                let rel = f
                    .strip_prefix(sink)
                    .expect("below")
                    .to_string_lossy()
                    .into_owned();
                (rel, std::fs::read(&f).expect("read"))
            })
            .collect();
        files.sort();
        files
    };
    let first = bytes(&sinks[0]);
    assert!(first.iter().any(|(f, _)| f.ends_with(".mds")), "MDS shards");
    assert!(
        first == bytes(&sinks[1]),
        "the same bytes on one thread, 100-row batches"
    );
    assert!(
        first == bytes(&sinks[2]),
        "the same bytes from two workers at once"
    );
    // The manifest counts each source's rows and tokens: the shares within 0.5%.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sinks[0].join("_kiln/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let mix = manifest["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "mix")
        .expect("the mix step");
    let tokens = |s: &str| {
        mix["counts"][format!("{s}.tokens")]
            .as_u64()
            .expect("tokens")
    };
    let total: u64 = ["web", "news", "notes"].iter().map(|s| tokens(s)).sum();
    assert!(
        total.abs_diff(100_000) < 500,
        "{total} tokens, asked 100,000"
    );
    for (source, weight) in [("web", 0.7), ("news", 0.2), ("notes", 0.1)] {
        let share = tokens(source) as f64 / total as f64;
        assert!(
            (share - weight).abs() < 0.005,
            "{source}: {share} of the tokens, weight {weight} ({mix:#})"
        );
    }
    // Packed rows: every mixed token is in a row, each row 256 ids, its loss mask zero on
    // the padding alone.
    let pack = manifest["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "pack")
        .expect("the pack step");
    let capacity = pack["counts"]["capacity_tokens"]
        .as_u64()
        .expect("capacity");
    let padded = pack["counts"]["padded_tokens"].as_u64().expect("padded");
    assert_eq!(capacity - padded, total, "every mixed token packed once");
    let o = kiln_ok(
        outs[0].path(),
        &["inspect", &sinks[0].display().to_string()],
    );
    assert!(stdout(&o).contains("mixture by tokens:"), "{}", stdout(&o));
    // `kiln plan` shows each input, its own steps and the weights.
    let o = kiln_ok(outs[0].path(), &["plan", p]);
    let plan = stdout(&o);
    for want in [
        "web ",
        "news ",
        "notes ",
        "own 1",
        "source: Utf8",
        "web 70%",
    ] {
        assert!(plan.contains(want), "`{want}` not in:\n{plan}");
    }
}

/// Two inputs of generated documents: `big` (ids 0..6000) and `small` (ids
/// 100000..100600, whose text the own steps upper-case).
fn inputs(dir: &Path) {
    for i in 0..3 {
        write_docs(&dir.join(format!("big/part-{i}.jsonl")), i * 2000, 2000);
    }
    write_docs(&dir.join("small/all.jsonl.gz"), 100_000, 600);
}

fn mixture_file(dir: &Path, extra: &str) -> String {
    let yaml = format!(
        "version: 1\nname: mixed\nsources:\n  big:\n    uri: {d}/big/*.jsonl\n    steps:\n      - select: [n, text]\n  small:\n    uri: {d}/small/*.jsonl.gz\n    steps:\n      - derive: {{ text: \"upper(text)\" }}\n      - select: [text, n]\nsteps:\n  - mix: {{ weights: {{ big: 1, small: 1 }}, key: n, seed: 5 }}\n{extra}sink:\n  uri: ${{KILN_OUT}}/mixed\n  max_rows: 1000\n",
        d = dir.display()
    );
    pipeline(dir, "mixed.yaml", &yaml)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn sources_mix_on_several_workers_as_on_one() {
    let dir = tempfile::tempdir().expect("tmp");
    inputs(dir.path());
    let p = mixture_file(dir.path(), "");
    let one = tempfile::tempdir().expect("tmp");
    kiln_ok(one.path(), &["run", "-q", &p]);
    // Two workers at once (the fit of `mix` is a stage they share), smaller tasks.
    let two = tempfile::tempdir().expect("tmp");
    kiln_ok_at_once(
        two.path(),
        &[
            "run",
            "-q",
            &p,
            "--set",
            "run.task_bytes=100KB",
            "--stage-wait",
            "60s",
        ],
        &["0/2", "1/2"],
    );
    let (a, b) = (one.path().join("mixed"), two.path().join("mixed"));
    let rows_a = read_shards(&a);
    let rows: usize = rows_a.values().map(|b| b.num_rows()).sum();
    // Equal weights by rows, no source repeated: all 600 of `small`, 600 of `big`.
    assert_eq!(rows, 1200);
    let mut small = 0;
    for batch in rows_a.values() {
        let source = arrow::compute::cast(
            batch.column_by_name("source").expect("source"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("utf8");
        let source = source.as_string::<i32>();
        let text = batch
            .column_by_name("text")
            .expect("text")
            .as_string::<i32>();
        for i in 0..batch.num_rows() {
            if source.value(i) == "small" {
                small += 1;
                assert_eq!(text.value(i), text.value(i).to_uppercase(), "own steps ran");
            } else {
                assert!(text.value(i).starts_with('w'), "big's own steps only");
            }
        }
        assert!(!source.is_nullable() || source.null_count() == 0);
    }
    assert_eq!(small, 600);
    // Task ids, workers and task size change nothing but where the rows are cut.
    let rows_b: usize = read_shards(&b).values().map(|b| b.num_rows()).sum();
    assert_eq!(rows_b, 1200);
    let key = |sink: &Path| {
        let mut v: Vec<String> = read_shards(sink)
            .values()
            .flat_map(|b| {
                let n = b.column_by_name("n").expect("n");
                let n = arrow::compute::cast(n, &arrow::datatypes::DataType::Utf8).expect("n");
                let n = n.as_string::<i32>();
                (0..n.len())
                    .map(|i| n.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&a), key(&b));
}

#[test]
fn inputs_that_do_not_agree_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    inputs(dir.path());
    let refused = |yaml: &str| {
        let p = pipeline(dir.path(), "bad.yaml", yaml);
        let o = kiln(dir.path(), &["validate", &p.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        stderr(&o)
    };
    let d = dir.path().display();
    let e = refused(&format!(
        "version: 1\nname: x\nsources:\n  big:\n    uri: {d}/big/*.jsonl\n  small:\n    uri: {d}/small/*.jsonl.gz\n    steps:\n      - select: [text]\nsink:\n  uri: {d}/o\n"
    ));
    assert!(
        e.contains("`big` and `small` make different columns") && e.contains("select"),
        "{e}"
    );
    let e = refused(&format!(
        "version: 1\nname: x\nsources:\n  big:\n    uri: {d}/big/*.jsonl\n    steps:\n      - limit: 10\nsink:\n  uri: {d}/o\n"
    ));
    assert!(
        e.contains("sources.big.steps: step 1 `limit`") && e.contains("pipeline's `steps`"),
        "{e}"
    );
    let e = refused(&format!(
        "version: 1\nname: x\nsource:\n  uri: {d}/big/*.jsonl\nsources:\n  big:\n    uri: {d}/big/*.jsonl\nsink:\n  uri: {d}/o\n"
    ));
    assert!(e.contains("not both"), "{e}");
    let e = refused(&format!(
        "version: 1\nname: x\nsources:\n  big:\n    uri: {d}/big/*.jsonl\n    steps:\n      - derive: {{ source: \"'mine'\" }}\nsink:\n  uri: {d}/o\n"
    ));
    assert!(e.contains("already have a `source` column"), "{e}");
    let e = refused(&format!(
        "version: 1\nname: x\nsources:\n  big:\n    uri: {d}/big/*.jsonl\n    steps:\n      - select: [n]\n  small:\n    uri: {d}/small/*.jsonl.gz\n    steps:\n      - derive: {{ n: \"cast(n as varchar)\" }}\n      - select: [n]\nsink:\n  uri: {d}/o\n"
    ));
    assert!(
        e.contains("column `n` is Int64 in `big` and Utf8") && e.contains("cast"),
        "{e}"
    );
}
