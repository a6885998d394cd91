//! Output does not depend on the thread count: shards are byte-identical.

use crate::util::*;

#[test]
fn one_and_two_threads_write_identical_shards() {
    let data = tempfile::tempdir().expect("tmp");
    for i in 0..6 {
        let ext = if i % 2 == 0 { "jsonl.gz" } else { "jsonl" };
        write_docs(
            &data.path().join(format!("in/part-{i}.{ext}")),
            i * 3000,
            3000,
        );
    }
    let yaml = format!(
        "version: 1\nname: det\nsource:\n  uri: {}/in/*\nsteps:\n  - filter: \"lang = 'en'\"\n  - sample: {{ fraction: 0.7, seed: 3 }}\n  - derive: {{ bucket: \"n % 3\" }}\nsink:\n  uri: ${{KILN_OUT}}/det\n  max_rows: 2500\n  partition_by: [bucket]\nrun:\n  task_bytes: 500KB\n  batch_rows: 1000\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "det.yaml", &yaml);
    let p = p.to_string_lossy();
    let one = tempfile::tempdir().expect("tmp");
    let two = tempfile::tempdir().expect("tmp");
    kiln_ok(one.path(), &["run", "-q", &p, "--set", "run.threads=1"]);
    kiln_ok(
        two.path(),
        &[
            "run",
            "-q",
            &p,
            "--set",
            "run.threads=2",
            "--set",
            "run.batch_rows=1000",
        ],
    );
    let a = shard_files(&one.path().join("det"));
    let b = shard_files(&two.path().join("det"));
    assert!(a.len() > 6, "several tasks and shards: {}", a.len());
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs between 1 and 2 threads");
    }
}

/// Thread counts (oversubscribed past the 2 cores CI has) and batch sizes a pipeline is
/// run with; every combination must write the same shards, byte for byte.
const CONFIGS: [(usize, Option<usize>); 4] =
    [(1, None), (2, Some(1000)), (3, Some(333)), (8, Some(8192))];

/// Runs `pipelines` (one after another, into one output folder) under every config,
/// with small row groups so that even the sample data makes many row groups per task
/// to encode in parallel, and asserts the shards are identical to the first config's.
fn identical_for_any_threads_and_batches(pipelines: &[&str]) {
    identical_for(pipelines, &CONFIGS);
}

fn identical_for(pipelines: &[&str], configs: &[(usize, Option<usize>)]) {
    let mut first: Option<Vec<(String, Vec<u8>)>> = None;
    for &(threads, batch_rows) in configs {
        let out = tempfile::tempdir().expect("tmp");
        for p in pipelines {
            // A pipeline file, then any arguments of its own (`--set ...`).
            let mut words = p.split_whitespace();
            let mut args = vec![
                "run".to_string(),
                "-q".to_string(),
                format!("pipelines/{}", words.next().expect("a pipeline")),
                "--set".to_string(),
                format!("run.threads={threads}"),
                "--set".to_string(),
                "sink.row_group_bytes=64KiB".to_string(),
                "--set".to_string(),
                "sink.row_group_rows=700".to_string(),
            ];
            if let Some(b) = batch_rows {
                args.extend(["--set".to_string(), format!("run.batch_rows={b}")]);
            }
            args.extend(words.map(str::to_string));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kiln_ok(out.path(), &args);
        }
        let shards = shard_files(out.path());
        assert!(!shards.is_empty(), "{pipelines:?} wrote no shards");
        match &first {
            None => first = Some(shards),
            Some(a) => {
                assert_eq!(
                    a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                    shards.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                    "{pipelines:?}: the same shard names at {threads} threads"
                );
                for ((name, x), (_, y)) in a.iter().zip(&shards) {
                    assert!(
                        x == y,
                        "{pipelines:?}: {name} differs at {threads} threads, batch_rows {batch_rows:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn web_text_is_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["web-text.yaml"]);
}

#[test]
fn fineweb_dedup_and_split_are_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["fineweb.yaml"]);
}

#[test]
fn packed_pretraining_rows_are_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["pretrain-packed.yaml"]);
    identical_for_any_threads_and_batches(&[
        "pretrain-packed.yaml --set steps.4.pack.strategy=best_fit --set steps.4.pack.window=64 --set steps.4.pack.boundaries=segment_ids",
    ]);
}

#[test]
fn megatron_mds_and_webdataset_shards_are_identical_for_any_threads_and_batches() {
    // The writers take rows in the task's order whatever the threads: one thread against
    // eight threads with other batches (the Parquet pipelines above run all four).
    let configs = [CONFIGS[0], CONFIGS[3]];
    identical_for(&["pretrain-megatron.yaml"], &configs);
    identical_for(&["pretrain-mds.yaml"], &configs);
    identical_for(&["images-webdataset.yaml"], &configs);
}

#[test]
fn limit_and_parquet_input_are_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["parquet-products.yaml"]);
}

#[test]
fn tabular_fits_are_identical_for_any_threads() {
    // Threads only: fitted moments are summed per batch, so run.batch_rows still changes
    // their last bits (and the standardized values) -- a known gap, not the writer's.
    let configs = CONFIGS.map(|(threads, _)| (threads, Some(1000)));
    identical_for(&["tabular-train.yaml", "tabular-valid.yaml"], &configs);
}

#[test]
fn images_are_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["images.yaml"]);
}

#[test]
fn csv_text_and_messy_inputs_are_identical_for_any_threads_and_batches() {
    identical_for_any_threads_and_batches(&["csv-events.yaml"]);
    identical_for_any_threads_and_batches(&["text-lines.yaml"]);
    identical_for_any_threads_and_batches(&["messy-events.yaml"]);
}

/// Every file a run leaves below `dir` that a reader or an operator sees: the shards and
/// the dead letters (`_kiln/errors/`), by name and bytes.
fn output_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(dir).ok()?.to_string_lossy().into_owned();
            (rel.ends_with(".parquet") || rel.contains("_kiln/errors/"))
                .then(|| (rel, std::fs::read(&p).expect("read")))
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 8,
        failure_persistence: None,
        .. proptest::prelude::ProptestConfig::default()
    })]

    /// One task (one gzip object and one plain one with a bad line) through steps that
    /// run on any thread (`filter`, `derive`, `cast`, `text.normalize`) and steps that
    /// need the task's order (`sample`, `dedup.exact`) between them, under
    /// `dead_letter`: for random batch sizes and thread counts, the shards and the dead
    /// letters are the same bytes as one thread's. (Against one thread at the same batch
    /// size: where a decoder's rejection falls among the steps' ones follows the batch
    /// boundaries; the shards do not depend on them, which the tests above check.)
    #[test]
    fn one_task_is_the_same_bytes_for_random_batches_and_threads(
        batch_rows in 1usize..3000,
        threads in 2usize..9,
    ) {
        let data = tempfile::tempdir().expect("tmp");
        write_docs(&data.path().join("in/a.jsonl.gz"), 0, 2500);
        write_docs(&data.path().join("in/b.jsonl"), 2000, 2500);
        // A malformed line (the decoder leaves it out); `cast` refuses every 50th row.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.path().join("in/b.jsonl"))
            .expect("open");
        std::io::Write::write_all(
            &mut f,
            b"{\"id\": \"x\", \"text\": \"broken\n{\"id\":\"y\",\"text\":\"t\",\"n\":-1,\"lang\":\"zz\"}\n",
        )
        .expect("append");
        let p = pipeline(
            data.path(),
            "one.yaml",
            &format!(
                "version: 1\nname: one\nsource:\n  uri: {}/in/*\n  format: jsonl\nsteps:\n  - filter: \"n % 7 <> 3\"\n  - derive: {{ short: \"substr(text, 1, 40)\", num: \"CASE WHEN n % 50 = 0 THEN 'x' ELSE CAST(n AS VARCHAR) END\" }}\n  - sample: {{ fraction: 0.8, seed: 5 }}\n  - cast: {{ num: int64 }}\n  - text.normalize: {{ column: text, form: NFKC }}\n  - dedup.exact: {{ column: short }}\n  - derive: {{ bucket: \"n % 4\" }}\nsink:\n  uri: ${{KILN_OUT}}/one\n  max_rows: 900\n  row_group_rows: 300\nrun:\n  on_error: dead_letter\n  max_error_ratio: 1.0\n",
                data.path().display()
            ),
        );
        let p = p.to_string_lossy();
        let one = tempfile::tempdir().expect("tmp");
        let batches = format!("run.batch_rows={batch_rows}");
        kiln_ok(one.path(), &["run", "-q", &p, "--set", "run.threads=1", "--set", &batches]);
        let many = tempfile::tempdir().expect("tmp");
        kiln_ok(
            many.path(),
            &[
                "run",
                "-q",
                &p,
                "--set",
                &format!("run.threads={threads}"),
                "--set",
                &batches,
            ],
        );
        let a = output_files(&one.path().join("one"));
        let b = output_files(&many.path().join("one"));
        proptest::prop_assert!(a.iter().any(|(n, _)| n.contains("_kiln/errors/")), "no dead letters");
        proptest::prop_assert_eq!(
            a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            b.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            proptest::prop_assert!(x == y, "{} differs at {} threads, batch_rows {}", name, threads, batch_rows);
        }
    }
}
