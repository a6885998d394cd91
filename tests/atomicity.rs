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
