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
