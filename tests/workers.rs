//! N workers (`--worker I/N` or a scheduler's environment) make exactly the dataset one
//! process makes: the stored plan fixes who does what, the last worker writes the
//! manifest, and `kiln status` / `kiln finalize` report and complete a dataset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::*;

/// `files` JSONL inputs of varied sizes (deterministic from `seed`) and a pipeline over
/// them with small tasks, so there are about as many tasks as files.
fn setup(dir: &Path, files: usize, seed: usize) -> PathBuf {
    for i in 0..files {
        let docs = 20 + (i * 37 + seed * 11) % 90;
        write_docs(&dir.join(format!("in/part-{i:03}.jsonl")), i * 1000, docs);
    }
    pipeline(
        dir,
        "p.yaml",
        &format!(
            "version: 1\nname: workers\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - filter: \"n % 7 <> 3\"\n  - sample: {{ fraction: 0.8, seed: 1 }}\nsink:\n  uri: ${{KILN_OUT}}/ds\n  max_rows: 150\nrun:\n  task_bytes: 20KiB\n",
            dir.display()
        ),
    )
}

/// The number of tasks `kiln plan` reports.
fn task_count(out: &Path, p: &Path) -> usize {
    let plan = stdout(&kiln_ok(out, &["plan", &p.to_string_lossy()]));
    let line = plan
        .lines()
        .find(|l| l.starts_with("tasks "))
        .expect("a tasks line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

fn worker_cmd(out: &Path, p: &Path, worker: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(repo()).env("KILN_OUT", out).args([
        "run",
        "-q",
        &p.to_string_lossy(),
        "--worker",
        worker,
    ]);
    c
}

fn assert_same_dataset(a: &Path, b: &Path) {
    let (fa, fb) = (shard_files(a), shard_files(b));
    assert!(!fa.is_empty());
    assert_eq!(
        fa.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        fb.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(fa == fb, "shards differ in content");
    let rows = |d: &Path| -> serde_json::Value {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.join("_kiln/manifest.json")).expect("manifest"),
        )
        .expect("json");
        m["rows"].clone()
    };
    assert_eq!(rows(a), rows(b));
    assert!(b.join("_SUCCESS").exists());
}

#[test]
fn any_number_of_workers_one_after_another_make_the_single_run_dataset() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 13, 1);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let tasks = task_count(single.path(), &p);
    assert!(
        tasks >= 13,
        "{tasks} tasks for 13 files (the larger ones in slices)"
    );
    for n in [2usize, 3, 5, 13, tasks + 3] {
        let out = tempfile::tempdir().expect("tmp");
        for i in 0..n {
            let o = worker_cmd(out.path(), &p, &format!("{i}/{n}"))
                .output()
                .expect("runs");
            assert!(o.status.success(), "worker {i}/{n}: {}", stderr(&o));
            // With more workers than tasks, the workers past the last task find the
            // dataset complete.
            let done = out.path().join("ds/_SUCCESS").exists();
            assert_eq!(
                done,
                i >= n.min(tasks) - 1,
                "the last worker completes ({i}/{n})"
            );
        }
        assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    }
}

#[test]
fn workers_running_at_once_make_the_single_run_dataset() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 16, 2);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    for round in 0..3 {
        let out = tempfile::tempdir().expect("tmp");
        let n = 4;
        let children: Vec<Child> = (0..n)
            .map(|i| {
                worker_cmd(out.path(), &p, &format!("{i}/{n}"))
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            let o = c.wait_with_output().expect("wait");
            assert!(
                o.status.success(),
                "round {round} worker {i}: {}",
                stderr(&o)
            );
        }
        assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    }
}

#[test]
fn the_stored_plan_decides_listing_and_worker_count() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 6, 3);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);

    let out = tempfile::tempdir().expect("tmp");
    let o = worker_cmd(out.path(), &p, "0/2").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    // Another worker count is refused, naming the stored one.
    let o = worker_cmd(out.path(), &p, "1/3").output().expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("among 2 workers"), "{}", stderr(&o));
    // An object added mid-run is not read: the stored listing wins.
    write_docs(&data.path().join("in/part-999.jsonl"), 99_000, 50);
    let plan = stdout(&kiln_ok(
        out.path(),
        &["plan", &p.to_string_lossy(), "--worker", "1/2"],
    ));
    assert!(
        plan.contains("stored plan in the sink: 2 workers"),
        "{plan}"
    );
    let tasks = task_count(single.path(), &p);
    assert!(
        plan.contains(&format!("worker    1/2: {} task", tasks / 2)),
        "{plan}"
    );
    let status = stdout(&kiln_ok(
        out.path(),
        &["status", &out.path().join("ds").to_string_lossy()],
    ));
    // One worker done, the other not started: no run is live.
    assert!(status.contains("state     incomplete"), "{status}");
    assert!(
        status.contains(&format!(
            "tasks     {} of {tasks} committed, 2 workers",
            tasks.div_ceil(2)
        )),
        "{status}"
    );
    assert!(status.contains("1 (worker 1)"), "{status}");
    // The second worker, from a scheduler's environment (Slurm array 0-1, index 1).
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .args(["run", "-q", &p.to_string_lossy()])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(data.path().join("in/part-999.jsonl")).expect("rm");
    assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    let status = stdout(&kiln_ok(
        out.path(),
        &["status", &out.path().join("ds").to_string_lossy()],
    ));
    assert!(status.contains("state     complete"), "{status}");
}

#[test]
fn finalize_completes_a_dataset_whose_tasks_are_all_committed() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 4, 4);
    let out = tempfile::tempdir().expect("tmp");
    let sink = out.path().join("ds");
    let sink_s = sink.to_string_lossy().into_owned();
    let o = worker_cmd(out.path(), &p, "0/2").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kiln(out.path(), &["finalize", &sink_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let tasks = task_count(out.path(), &p);
    assert!(
        stderr(&o).contains(&format!("{} of {tasks} tasks are not committed", tasks / 2)),
        "{}",
        stderr(&o)
    );
    let o = worker_cmd(out.path(), &p, "1/2").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest");
    // The last worker died between its commit and the manifest: finalize finishes.
    std::fs::remove_file(sink.join("_kiln/manifest.json")).expect("rm");
    std::fs::remove_file(sink.join("_SUCCESS")).expect("rm");
    let done = stdout(&kiln_ok(out.path(), &["finalize", &sink_s]));
    assert!(
        done.contains(&format!("is complete: {tasks} tasks")),
        "{done}"
    );
    assert!(sink.join("_SUCCESS").exists());
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("m"))
            .expect("json");
    let before: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(again["shards"], before["shards"]);
    assert_eq!(again["rows"], before["rows"]);
}

#[test]
fn worker_mistakes_are_refused_before_anything_is_written() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 3, 5);
    let out = tempfile::tempdir().expect("tmp");
    let p = p.to_string_lossy();
    let o = kiln(out.path(), &["run", "-q", &p, "--worker", "2/2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("INDEX/COUNT"), "{}", stderr(&o));
    let o = kiln(
        out.path(),
        &["run", "-q", &p, "--worker", "0/2", "--overwrite"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--overwrite cannot be combined"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .env("JOB_COMPLETION_INDEX", "1")
        .args(["run", "-q", &p])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("KILN_WORKERS"), "{}", stderr(&o));
    assert!(!out.path().join("ds").exists(), "nothing written");
}

/// One large JSONL object is cut into byte-range slices (one task each); lines that
/// straddle a cut belong to the slice they start in, so the rows are exactly those of
/// reading it whole, in order, however many workers share the slices.
#[test]
fn a_large_jsonl_object_is_split_into_slices_with_the_same_rows() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let data = tempfile::tempdir().expect("tmp");
    // Lines of varied length, so the 37 KiB cuts fall inside lines.
    write_docs(&data.path().join("in/big.jsonl"), 0, 3000);
    let yaml = |task_bytes: &str| {
        format!(
            "version: 1\nname: split\nsource:\n  uri: {}/in/big.jsonl\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: {task_bytes}\n",
            data.path().display()
        )
    };
    let whole = pipeline(data.path(), "whole.yaml", &yaml("1GiB"));
    let sliced = pipeline(data.path(), "sliced.yaml", &yaml("37KiB"));
    let ids = |dir: &Path| -> Vec<i64> {
        read_shards(dir)
            .values()
            .flat_map(|b| {
                b.column_by_name("n")
                    .expect("n")
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    let a = tempfile::tempdir().expect("tmp");
    kiln_ok(a.path(), &["run", "-q", &whole.to_string_lossy()]);
    let expected = ids(&a.path().join("ds"));
    assert_eq!(expected, (0..3000).collect::<Vec<i64>>());

    // (A fresh sink: one that holds a stored plan follows it, whatever run.task_bytes.)
    let fresh = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(fresh.path(), &["plan", &sliced.to_string_lossy()]));
    assert!(
        plan.contains("slices of objects larger than run.task_bytes"),
        "{plan}"
    );
    for workers in [1, 3] {
        let out = tempfile::tempdir().expect("tmp");
        for i in 0..workers {
            let o = worker_cmd(out.path(), &sliced, &format!("{i}/{workers}"))
                .output()
                .expect("runs");
            assert!(o.status.success(), "{}", stderr(&o));
        }
        // Shards are named by task: in name order, the rows are in file order.
        assert_eq!(ids(&out.path().join("ds")), expected, "{workers} workers");
        let tasks = std::fs::read_dir(out.path().join("ds/_kiln/tasks"))
            .expect("tasks")
            .count();
        assert!(tasks > 10, "{tasks} slices");
    }
}

/// A gzip stream of one member cannot be cut: `plan` says so and the object runs as one
/// task.
#[test]
fn plan_says_when_a_large_object_cannot_be_split() {
    let data = tempfile::tempdir().expect("tmp");
    write_docs(&data.path().join("in/big.jsonl.gz"), 0, 3000);
    let p = pipeline(
        data.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: gz\nsource:\n  uri: {}/in/*.jsonl.gz\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: 16KiB\n",
            data.path().display()
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(out.path(), &["plan", &p.to_string_lossy()]));
    assert!(plan.contains("tasks     1 "), "{plan}");
    assert!(
        plan.contains("cannot be split (its first gzip member does not end within its first MiB"),
        "{plan}"
    );
}

/// Elastic workers: worker 1's run died (a run record whose heartbeat stopped long ago,
/// as a SIGKILL or a lost node leaves). Worker 0, done with its own tasks, takes that
/// record over and runs worker 1's tasks too, so the dataset completes without it; a
/// later run of worker 1 finds it complete.
#[test]
fn a_finished_worker_runs_the_tasks_of_a_worker_whose_run_died() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 10, 4);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let tasks = task_count(single.path(), &p);

    let out = tempfile::tempdir().expect("tmp");
    let runs = out.path().join("ds/_kiln/runs");
    std::fs::create_dir_all(&runs).expect("mkdir");
    let dead = serde_json::json!({
        "worker": "1/2", "run_id": "lost-node-4711-0", "host": "lost-node", "pid": 4711,
        "started_at": "2026-01-01T00:00:00Z", "heartbeat_ms": 1_767_225_600_000u64,
        "heartbeat_at": "2026-01-01T00:00:00Z", "kiln_version": "0.1.0"
    });
    std::fs::write(runs.join("w00001.json"), dead.to_string()).expect("record");

    let o = worker_cmd(out.path(), &p, "0/2")
        .env("KILN_LOG", "kiln=info")
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    assert!(
        log.contains(&format!(
            "taking over {} task(s) of worker 1/2, whose run is gone",
            tasks / 2
        )),
        "{log}"
    );
    assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    assert!(!runs.join("w00001.json").exists(), "the record is released");
    let o = worker_cmd(out.path(), &p, "1/2").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A worker done with its own tasks runs those a slow (here: stopped) worker has not
/// started, and the slow worker skips them when it goes on; the tasks the slow worker
/// holds stay its own (a live run's claim is never taken). The dataset is the single
/// run's, and no claim is left.
#[test]
fn an_idle_worker_runs_the_tasks_a_slow_worker_has_not_started() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 16, 4);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let out = tempfile::tempdir().expect("tmp");
    let slow = worker_cmd(out.path(), &p, "1/2")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Stopped as soon as its run is visible: live (its process is there), and slow.
    let record = out.path().join("ds/_kiln/runs/w00001.json");
    wait_until("worker 1's record", || record.exists());
    signal(slow.id(), "-STOP");
    let idle = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .env("RUST_LOG", "kiln=info")
        .args(["run", &p.to_string_lossy(), "--worker", "0/2"])
        .output()
        .expect("runs");
    // Worker 1 is still running (stopped, its process there): `kiln status` says so,
    // with the task it holds if it had claimed one.
    let status = stdout(&kiln_ok(
        out.path(),
        &["status", &out.path().join("ds").to_string_lossy()],
    ));
    signal(slow.id(), "-CONT");
    assert!(status.contains("running   worker 1/2"), "{status}");
    assert!(idle.status.success(), "worker 0: {}", stderr(&idle));
    assert!(
        stderr(&idle).contains("task(s) no other worker had started"),
        "worker 0 ran none of worker 1's tasks: {}",
        stderr(&idle)
    );
    let o = slow.wait_with_output().expect("wait");
    assert!(o.status.success(), "worker 1: {}", stderr(&o));
    assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    assert!(
        !out.path().join("ds/_kiln/claims").exists()
            || files(&out.path().join("ds/_kiln/claims")).is_empty()
    );
}

/// `kiln run` twice on one sink: the second, with no `--worker`, finds the first
/// running and joins it as a helper, running the tasks the first has not started; the
/// first, held stopped meanwhile, finishes what it holds. The single-run dataset.
#[test]
fn a_second_run_of_the_same_pipeline_joins_the_first_as_a_helper() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 16, 5);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let out = tempfile::tempdir().expect("tmp");
    let first = unnamed_run(out.path(), &p)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let record = out.path().join("ds/_kiln/runs/w00000.json");
    wait_until("the first run's record", || record.exists());
    signal(first.id(), "-STOP");
    let second = unnamed_run(out.path(), &p)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The helper commits tasks while the first is stopped; then the first goes on, and
    // the helper ends once the tasks the first holds are committed.
    let tasks = out.path().join("ds/_kiln/tasks");
    wait_until("the helper's commits", || {
        tasks.exists() && files(&tasks).len() >= 4
    });
    let status = stdout(&kiln_ok(
        out.path(),
        &["status", &out.path().join("ds").to_string_lossy()],
    ));
    signal(first.id(), "-CONT");
    let second = second.wait_with_output().expect("wait");
    assert!(
        second.status.success(),
        "the second run: {}",
        stderr(&second)
    );
    let said = stderr(&second);
    assert!(said.contains("as a helper"), "{said}");
    assert!(
        said.contains("task(s) no other worker had started"),
        "{said}"
    );
    assert!(status.contains("running   worker 0/1"), "{status}");
    let o = first.wait_with_output().expect("wait");
    assert!(o.status.success(), "the first run: {}", stderr(&o));
    assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));
    let leftover = |d: &str| {
        let d = out.path().join("ds/_kiln").join(d);
        !d.exists() || files(&d).is_empty()
    };
    assert!(
        leftover("claims") && leftover("runs"),
        "claims or run records left"
    );
}

/// A run with no `--worker` on a sink planned for 2 workers joins them as a helper
/// (it was refused: "this worker is 0 of 1"); one naming its worker keeps its share.
/// A pipeline whose dedup decides in one run's memory is not shared: exit 75, saying
/// how to share it.
#[test]
fn a_run_without_a_worker_joins_workers_as_a_helper_where_the_work_can_be_shared() {
    let data = tempfile::tempdir().expect("tmp");
    let p = setup(data.path(), 12, 6);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let out = tempfile::tempdir().expect("tmp");
    let slow = worker_cmd(out.path(), &p, "1/2")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let record = out.path().join("ds/_kiln/runs/w00001.json");
    wait_until("worker 1's record", || record.exists());
    signal(slow.id(), "-STOP");
    let helper = unnamed_run(out.path(), &p)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let tasks = out.path().join("ds/_kiln/tasks");
    wait_until("the helper's commits", || {
        tasks.exists() && files(&tasks).len() >= 3
    });
    signal(slow.id(), "-CONT");
    let helper = helper.wait_with_output().expect("wait");
    assert!(helper.status.success(), "{}", stderr(&helper));
    let said = stderr(&helper);
    assert!(said.contains("as a helper"), "{said}");
    assert!(
        said.contains("task(s) no other worker had started"),
        "{said}"
    );
    let o = slow.wait_with_output().expect("wait");
    assert!(o.status.success(), "worker 1: {}", stderr(&o));
    // With no run of the workers live, a run naming no worker is told what to run
    // instead of joining nobody.
    let alone = kiln(out.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(alone.status.code(), Some(2), "{}", stderr(&alone));
    assert!(
        stderr(&alone).contains("--worker I/2"),
        "{}",
        stderr(&alone)
    );
    // Worker 0 never started: the helper took none of its tasks; it runs them now.
    let o = worker_cmd(out.path(), &p, "0/2")
        .output()
        .expect("worker 0");
    assert!(o.status.success(), "worker 0: {}", stderr(&o));
    assert_same_dataset(&single.path().join("ds"), &out.path().join("ds"));

    // Exact dedup in one run's memory: a second run cannot share it.
    let d = pipeline(
        data.path(),
        "dedup.yaml",
        &format!(
            "version: 1\nname: dedup\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - dedup.exact: {{ column: text }}\nsink:\n  uri: ${{KILN_OUT}}/dd\nrun:\n  task_bytes: 20KiB\n",
            data.path().display()
        ),
    );
    let first = unnamed_run(out.path(), &d)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let record = out.path().join("dd/_kiln/runs/w00000.json");
    wait_until("the dedup run's record", || record.exists());
    signal(first.id(), "-STOP");
    let second = unnamed_run(out.path(), &d).output().expect("runs");
    signal(first.id(), "-CONT");
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("--worker I/N"),
        "{}",
        stderr(&second)
    );
    let o = first.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
}
