//! A run killed with SIGKILL while writing leaves no partial shard and no `_SUCCESS`;
//! running it again yields exactly the shards of an uninterrupted run.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Commit records in the sink: `NNNNN.json` files only, not a record still being
/// written under the store's temporary name (`NNNNN.json#1`).
fn committed(sink: &std::path::Path) -> usize {
    std::fs::read_dir(sink.join("_kiln/tasks")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .count()
    })
}

/// A temporary folder with `n` gzipped JSONL objects of 4000 documents, `in/part-NN.jsonl.gz`.
fn gz_parts(n: usize) -> tempfile::TempDir {
    let data = tempfile::tempdir().expect("tmp");
    for i in 0..n {
        write_docs(
            &data.path().join(format!("in/part-{i:02}.jsonl.gz")),
            i * 4000,
            4000,
        );
    }
    data
}

#[test]
fn sigkill_mid_run_then_rerun_gives_the_clean_result() {
    let data = gz_parts(24);
    let yaml = format!(
        "version: 1\nname: kill\nsource:\n  uri: {}/in/*.jsonl.gz\nsteps:\n  - derive: {{ n_chars: \"length(text)\" }}\nsink:\n  uri: ${{KILN_OUT}}/kill\n  max_rows: 700\nrun:\n  task_bytes: 1MB\n  threads: 2\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "kill.yaml", &yaml)
        .to_string_lossy()
        .into_owned();

    let clean = tempfile::tempdir().expect("tmp");
    kiln_ok(clean.path(), &["run", "-q", &p]);
    let expected = shard_files(&clean.path().join("kill"));
    assert_eq!(total_rows(&clean.path().join("kill")), 24 * 4000);

    let out = tempfile::tempdir().expect("tmp");
    let sink = out.path().join("kill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .args(["run", "-q", &p])
        .spawn()
        .expect("spawn");
    // Kill once a task has committed and shards are being written.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed = committed(&sink);
        if committed >= 1 || Instant::now() > deadline {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run finished ({status}) before it could be killed; give it more input");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(
        status.code().is_none(),
        "killed by a signal, not finished: {status}"
    );

    assert!(!sink.join("_SUCCESS").exists(), "no _SUCCESS after a kill");
    assert!(
        !sink.join("_kiln/manifest.json").exists(),
        "no manifest after a kill"
    );
    let visible = shard_files(&sink);
    assert!(
        visible.len() < expected.len(),
        "the kill came before the end"
    );
    for (name, _) in &visible {
        // Every visible shard is whole: it opens and reads to the end.
        let _ = read_parquet(&sink.join(name));
    }

    // What a kill mid-write leaves: LocalFileSystem's staging files (`NAME#N`). One may
    // or may not be there now; plant one of each kind for the last task, not committed.
    let last = expected
        .last()
        .and_then(|(name, _)| name.get(5..10))
        .expect("a shard name");
    std::fs::write(
        sink.join(format!("part-{last}-00000.parquet#9")),
        b"half a shard",
    )
    .expect("plant");
    std::fs::write(sink.join(format!("_kiln/tasks/{last}.json#3")), b"{").expect("plant");
    let debris = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        files(dir)
            .into_iter()
            .filter(|f| f.to_string_lossy().contains('#'))
            .collect()
    };
    assert!(debris(&sink).len() >= 2);

    let rerun = kiln_ok(out.path(), &["run", &p]);
    assert!(
        debris(&sink).is_empty(),
        "a rerun removes the staging files of the tasks it redoes: {:?}",
        debris(&sink)
    );
    assert!(
        stderr(&rerun).contains("already committed and skipped"),
        "{}",
        stderr(&rerun)
    );
    let got = shard_files(&sink);
    assert_eq!(got.len(), expected.len());
    for ((a, x), (b, y)) in got.iter().zip(&expected) {
        assert_eq!(a, b);
        assert!(x == y, "{a} differs from the clean run's");
    }
    assert!(sink.join("_SUCCESS").exists());
}

/// A run of 16 gzipped JSONL objects in 1 MB tasks on 2 threads, started with `--grace`
/// and waited on until its first task commits; with the clean run's shards to compare.
struct SignalledRun {
    _data: tempfile::TempDir,
    p: String,
    expected: Vec<(String, Vec<u8>)>,
    out: tempfile::TempDir,
    sink: std::path::PathBuf,
    child: std::process::Child,
}

impl SignalledRun {
    fn start(name: &str, grace: &str) -> SignalledRun {
        let data = gz_parts(16);
        let yaml = format!(
            "version: 1\nname: {name}\nsource:\n  uri: {}/in/*.jsonl.gz\nsink:\n  uri: ${{KILN_OUT}}/{name}\n  max_rows: 1500\nrun:\n  task_bytes: 1MB\n  threads: 2\n",
            data.path().display()
        );
        let p = pipeline(data.path(), &format!("{name}.yaml"), &yaml)
            .to_string_lossy()
            .into_owned();
        let clean = tempfile::tempdir().expect("tmp");
        kiln_ok(clean.path(), &["run", "-q", &p]);
        let expected = shard_files(&clean.path().join(name));

        let out = tempfile::tempdir().expect("tmp");
        let sink = out.path().join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(repo())
            .env("KILN_OUT", out.path())
            .args(["run", &p, "--grace", grace])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed(&sink) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        SignalledRun {
            _data: data,
            p,
            expected,
            out,
            sink,
            child,
        }
    }

    fn signal(&self, sig: &str) {
        let s = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(s.success());
    }
}

/// SIGTERM with a grace period: no new task starts, the running ones finish and commit,
/// the run exits 75, and running it again completes the clean dataset.
#[test]
fn sigterm_lets_running_tasks_finish_then_exits_75() {
    let run = SignalledRun::start("term", "60s");
    run.signal("-TERM");
    let SignalledRun {
        p,
        expected,
        out,
        sink,
        child,
        ..
    } = run;
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("stopping: no new tasks"), "{err}");
    // The signal came once one task had committed; the task on the other thread was
    // running then and was let finish (without the grace period it is abandoned).
    let committed = committed(&sink);
    assert!(committed >= 2, "{committed} tasks committed");
    assert!(!sink.join("_SUCCESS").exists());
    // The stopped run left a record for operators.
    let status = stdout(&kiln_ok(out.path(), &["status", &sink.to_string_lossy()]));
    assert!(
        status.contains("failures  1 run failed or stopped (1 retryable); last: worker 0/1")
            && status.contains("exit 75: stopped by a signal"),
        "{status}"
    );

    kiln_ok(out.path(), &["run", "-q", &p]);
    assert_eq!(shard_files(&sink), expected);
    // Failure records are not shards: the dataset is the clean run's.
    assert!(sink.join("_kiln/failures").exists());
}

/// A second signal exits at once (75), without waiting for running tasks, and still
/// leaves no partial shard: every visible shard reads whole, and a rerun completes the
/// clean dataset.
#[test]
fn a_second_signal_exits_at_once_without_partial_shards() {
    let run = SignalledRun::start("twice", "600s");
    run.signal("-TERM");
    std::thread::sleep(Duration::from_millis(10));
    run.signal("-INT");
    let SignalledRun {
        p,
        expected,
        out,
        sink,
        child,
        ..
    } = run;
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    // At once: the running tasks were not let finish (the first signal granted them
    // 600 s), so there is no end-of-run summary.
    assert!(err.contains("stopping: no new tasks"), "{err}");
    assert!(!err.contains("rows in →"), "{err}");
    assert!(!sink.join("_SUCCESS").exists());
    for (name, _) in shard_files(&sink) {
        let _ = read_parquet(&sink.join(name));
    }
    kiln_ok(out.path(), &["run", "-q", &p]);
    assert_eq!(shard_files(&sink), expected);
}

#[test]
fn shards_of_a_task_that_failed_are_never_visible() {
    // One task: 300 good lines, closed into shards of 50 rows as it goes, then a line that
    // is not JSON, which fails the run. Regression: the closed shards stayed in the sink
    // as ordinary `part-*.parquet` files, which a `**/*.parquet` reader picked up. Now a
    // shard's upload completes only when its task commits.
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!("{{\"id\":{i},\"text\":\"document {i}\"}}\n"));
    }
    text.push_str("{\"id\":300,\"text\":oops}\n");
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(dir.path().join("in/a.jsonl"), &text).expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: fails\nsource:\n  uri: {}/in/*.jsonl\n\
         sink:\n  uri: {}\n  max_rows: 50\nrun:\n  batch_rows: 20\n",
        dir.path().display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let o = kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 301"), "{}", stderr(&o));
    let left: Vec<_> = files(&sink)
        .into_iter()
        .filter(|f| !f.starts_with(sink.join("_kiln")))
        .collect();
    assert!(left.is_empty(), "a failed task left files: {left:?}");
    assert_eq!(committed(&sink), 0);
    // Fixed, the same run commits every shard.
    std::fs::write(
        dir.path().join("in/a.jsonl"),
        text.replace("oops", "\"ok\""),
    )
    .expect("write");
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(total_rows(&sink), 301);
    assert_eq!(shard_files(&sink).len(), 7);
}

/// A run record of worker 0 as another process would leave it, heartbeat `age_s` ago.
fn foreign_run_record(sink: &std::path::Path, age_s: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let record = serde_json::json!({
        "worker": "0/1", "run_id": "elsewhere-4711-0", "host": "elsewhere", "pid": 4711,
        "started_at": "2026-12-02T00:00:00Z", "heartbeat_ms": now - age_s * 1000,
        "heartbeat_at": "2026-12-02T00:00:00Z", "kiln_version": "0.1.0"
    });
    std::fs::create_dir_all(sink.join("_kiln/runs")).expect("mkdir");
    std::fs::write(sink.join("_kiln/runs/w00000.json"), record.to_string()).expect("write");
}

#[test]
fn a_sink_in_use_by_a_live_run_is_neither_run_twice_nor_overwritten() {
    // Regression: two identical runs on one sink both did all the work, and --overwrite
    // by another pipeline deleted a sink under a run that was writing it.
    let data = gz_parts(2);
    let sink = data.path().join("out");
    let yaml = format!(
        "version: 1\nname: lease\nsource:\n  uri: {}/in/*.jsonl.gz\nsink:\n  uri: {}\n",
        data.path().display(),
        sink.display()
    );
    let p = pipeline(data.path(), "p.yaml", &yaml);
    let p = p.to_str().expect("utf-8");
    foreign_run_record(&sink, 2);
    // The same worker, named, is refused (a run naming none joins as a helper: below).
    let o = kiln(data.path(), &["run", "-q", p, "--worker", "0/1"]);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already running (worker 0/1, pid 4711 on elsewhere"),
        "{}",
        stderr(&o)
    );
    let o = kiln(data.path(), &["run", "-q", "--overwrite", p]);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is in use by a live run"),
        "{}",
        stderr(&o)
    );
    assert!(
        sink.join("_kiln/runs/w00000.json").exists(),
        "nothing deleted"
    );
    assert_eq!(committed(&sink), 0, "no work done");

    // The same record 60 s old: a run that died. `status` says so, and a run takes over.
    foreign_run_record(&sink, 60);
    let status = kiln(data.path(), &["status", &sink.to_string_lossy()]);
    let text = stdout(&status);
    assert!(text.contains("state     incomplete"), "{text}");
    assert!(
        text.contains("dead      worker 0/1, pid 4711 on elsewhere"),
        "{text}"
    );
    kiln_ok(data.path(), &["run", "-q", p]);
    assert_eq!(total_rows(&sink), 2 * 4000);
    assert!(
        !sink.join("_kiln/runs/w00000.json").exists(),
        "a run that ends removes its record"
    );

    // Naming no worker, a second run joins a live one as a helper and runs the tasks it
    // has not claimed (here every task: the stand-in record claims none), leaving the
    // live run's record alone and removing its own.
    let other = data.path().join("other");
    foreign_run_record(&other, 2);
    let at = format!("sink.uri={}", other.display());
    let o = kiln_ok(data.path(), &["run", p, "--set", &at]);
    assert!(stderr(&o).contains("as a helper"), "{}", stderr(&o));
    assert_eq!(total_rows(&other), 2 * 4000);
    assert!(other.join("_kiln/runs/w00000.json").exists());
    assert_eq!(
        files(&other.join("_kiln/runs")).len(),
        1,
        "the helper's record is gone"
    );
}
