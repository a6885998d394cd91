//! `dedup.exact` deciding in one pass (the default when nothing after it needs its
//! decisions first) against the two passes it replaces: the same shards, byte for byte,
//! fresh, past its memory (the tasks left get two passes), resumed over a sink whose
//! committed tasks are not a prefix, and with a fit after it (two passes again); and
//! settling past its memory (with `dedup.minhash`), from disk as from memory.

use std::collections::BTreeMap;
use std::io::Write;

use crate::util::*;

/// Six JSONL objects of 700 rows whose texts come from a pool of 900, written in
/// several spellings (`normalize: true` folds them), with nulls: copies inside an
/// object, across objects, and of later objects' rows.
fn corpus(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("in")).expect("mkdir");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for f in 0..6 {
        let mut out =
            std::fs::File::create(dir.join(format!("in/part-{f}.jsonl"))).expect("create");
        for r in 0..700 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pick = x % 900;
            let text = match x % 23 {
                0 => serde_json::Value::Null,
                1 => format!("DOC  number {pick}  about w{}", pick % 37).into(),
                _ => format!("doc number {pick} about w{}", pick % 37).into(),
            };
            let row = serde_json::json!({"id": f * 1000 + r, "text": text, "n": x % 1000});
            writeln!(out, "{row}").expect("write");
        }
    }
}

fn yaml(dir: &std::path::Path, name: &str, dedup: &str, more_steps: &str) -> std::path::PathBuf {
    pipeline(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "version: 1\nname: dedup-once\nsource:\n  uri: {}/in/*.jsonl\n  format: jsonl\nsteps:\n  - dedup.exact: {{ column: text, normalize: true{dedup} }}\n{more_steps}sink:\n  uri: ${{KILN_OUT}}/{name}\n  max_rows: 500\nrun:\n  task_bytes: 40KiB\n  threads: 2\n",
            dir.display()
        ),
    )
}

/// Checks that `kiln plan` on `p` says `says` of the dedup step.
fn plan_says(out: &std::path::Path, p: &std::path::Path, says: &str) {
    let plan = kiln_ok(out, &["plan", &p.to_string_lossy()]);
    assert!(stdout(&plan).contains(says), "{}", stdout(&plan));
}

/// The run's report (`--report`) after running `p` into `out`.
fn run(out: &std::path::Path, p: &std::path::Path) -> serde_json::Value {
    let rep = out.join(format!(
        "{}.report.json",
        p.file_stem().expect("stem").to_string_lossy()
    ));
    kiln_ok(
        out,
        &[
            "run",
            "-q",
            &p.to_string_lossy(),
            "--report",
            &rep.to_string_lossy(),
        ],
    );
    serde_json::from_slice(&std::fs::read(&rep).expect("report")).expect("json")
}

fn duplicates(report: &serde_json::Value) -> u64 {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "dedup.exact"))
        .and_then(|s| s["counts"]["duplicates"].as_u64())
        .expect("dedup.exact's duplicates")
}

#[test]
fn one_pass_exact_dedup_writes_what_two_passes_write() {
    let dir = tempfile::tempdir().expect("tmp");
    corpus(dir.path());
    let out = tempfile::tempdir().expect("tmp");

    // The plan says which it does.
    let once = yaml(dir.path(), "once", "", "");
    plan_says(out.path(), &once, "one pass, tasks one at a time");
    let twice = yaml(dir.path(), "twice", ", one_pass: false", "");
    plan_says(out.path(), &twice, "decides in a full pass");

    let r_twice = run(out.path(), &twice);
    let expected = shard_files(&out.path().join("twice"));
    assert!(expected.len() > 2, "several shards: {}", expected.len());
    let dups = duplicates(&r_twice);
    assert!(dups > 2500, "the corpus repeats itself: {dups} duplicates");

    let r_once = run(out.path(), &once);
    assert_eq!(shard_files(&out.path().join("once")), expected);
    assert_eq!(duplicates(&r_once), dups);
    assert_eq!(
        r_once["rows_out"], r_twice["rows_out"],
        "the same rows written"
    );

    // Past its memory after the first task: the tasks left get two passes.
    let small = yaml(dir.path(), "small", ", memory: 1KiB", "");
    let r_small = run(out.path(), &small);
    assert_eq!(shard_files(&out.path().join("small")), expected);
    assert_eq!(duplicates(&r_small), dups);

    // The options are not the output's identity: the three runs are one pipeline.
    assert_eq!(r_once["pipeline_hash"], r_twice["pipeline_hash"]);
    assert_eq!(r_once["pipeline_hash"], r_small["pipeline_hash"]);
}

/// Past `memory` while settling, the exact dedup's drop lists go to a file and the near
/// dedup's clusters are found on disk, in rounds over sorted runs: the same shards as
/// with everything in memory, and one pipeline.
#[test]
fn decisions_past_their_memory_write_what_decisions_in_memory_write() {
    let dir = tempfile::tempdir().expect("tmp");
    corpus(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let in_memory = yaml(
        dir.path(),
        "in-memory",
        ", one_pass: false",
        "  - dedup.minhash: { column: text }\n",
    );
    let on_disk = yaml(
        dir.path(),
        "on-disk",
        ", one_pass: false, memory: 1KiB",
        "  - dedup.minhash: { column: text, memory: 1KiB }\n",
    );
    let r_memory = run(out.path(), &in_memory);
    let expected = shard_files(&out.path().join("in-memory"));
    assert!(expected.len() > 2, "several shards: {}", expected.len());
    let near = |r: &serde_json::Value| {
        r["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "dedup.minhash"))
            .and_then(|s| s["counts"]["near_duplicates"].as_u64())
            .expect("dedup.minhash's near_duplicates")
    };
    // Well past 1 KiB of decisions: 64 rows a drop list holds, a few nodes the union-find.
    assert!(duplicates(&r_memory) > 2500 && near(&r_memory) > 100);
    let r_disk = run(out.path(), &on_disk);
    assert_eq!(shard_files(&out.path().join("on-disk")), expected);
    assert_eq!(duplicates(&r_disk), duplicates(&r_memory));
    assert_eq!(near(&r_disk), near(&r_memory));
    assert_eq!(r_memory["pipeline_hash"], r_disk["pipeline_hash"]);
}

/// Takes back the commits of `undo` (and their shards, `_SUCCESS`, the manifest), as if
/// a run had stopped before them; returns how many tasks the sink had.
fn undo_tasks(sink: &std::path::Path, undo: &[usize]) -> usize {
    let tasks = std::fs::read_dir(sink.join("_kiln/tasks"))
        .expect("tasks")
        .count();
    for &t in undo {
        let t = if t == usize::MAX { tasks - 1 } else { t };
        std::fs::remove_file(sink.join(format!("_kiln/tasks/{t:05}.json"))).expect("undo");
        for e in std::fs::read_dir(sink).expect("sink") {
            let e = e.expect("entry");
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("part-{t:05}-"))
            {
                std::fs::remove_file(e.path()).expect("remove shard");
            }
        }
    }
    std::fs::remove_file(sink.join("_SUCCESS")).expect("success");
    std::fs::remove_file(sink.join("_kiln/manifest.json")).expect("manifest");
    tasks
}

/// Resumed over a sink whose committed tasks are not a prefix (tasks 1, 3 and the last
/// undone), one pass first observes the committed tasks: rows of the undone tasks have
/// first copies both before and after them.
#[test]
fn a_resumed_one_pass_knows_the_rows_of_the_tasks_committed_before() {
    let dir = tempfile::tempdir().expect("tmp");
    corpus(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let p = yaml(dir.path(), "resume", "", "");
    run(out.path(), &p);
    let sink = out.path().join("resume");
    let expected = shard_files(&sink);
    let tasks = undo_tasks(&sink, &[1, 3, usize::MAX]);
    assert!(tasks >= 5, "tasks: {tasks}");
    let r = run(out.path(), &p);
    assert_eq!(r["tasks_skipped"].as_u64(), Some(tasks as u64 - 3), "{r}");
    assert_eq!(shard_files(&sink), expected);
}

/// A fit after the dedup needs its decisions first: two passes, as `kiln plan` says.
/// Resumed, the fit's statistics are read back, nothing after the dedup needs a pass
/// any more, and it decides in one pass: the same shards.
#[test]
fn exact_dedup_before_a_fit_runs_two_passes_and_one_when_resumed() {
    let dir = tempfile::tempdir().expect("tmp");
    corpus(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let p = yaml(dir.path(), "fit", "", "  - standardize: { columns: [n] }\n");
    plan_says(out.path(), &p, "decides in a full pass");
    run(out.path(), &p);
    let sink = out.path().join("fit");
    let expected = shard_files(&sink);
    let tasks = undo_tasks(&sink, &[0, 2, usize::MAX]);
    let o = kiln_ok(out.path(), &["run", &p.to_string_lossy()]);
    assert!(
        stderr(&o).contains(&format!(
            "observing the tasks already committed, for the decisions of `dedup.exact` tasks={}",
            tasks - 3
        )),
        "one pass after reading the committed tasks: {}",
        stderr(&o)
    );
    let got: BTreeMap<_, _> = shard_files(&sink).into_iter().collect();
    let expected: BTreeMap<_, _> = expected.into_iter().collect();
    assert!(got == expected, "the resumed shards differ");
}
