//! Full-pass and fitted steps on several workers: each stage's per-task parts go
//! through the sink, every worker settles from all of them, and the dataset is byte
//! for byte the one a single process writes (docs/workers.md, "Stages").

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::*;

/// Steps in pipeline order: a dedup then a fit, near-dedup then a fit, a fit around a
/// dedup, and two dedups around a fit.
const ORDERS: [(&str, &str); 4] = [
    (
        "dedup-standardize",
        "  - dedup.exact: { column: note }\n  - standardize: { columns: [income], ddof: 0 }\n",
    ),
    (
        "minhash-onehot",
        "  - dedup.minhash: { column: note }\n  - one_hot: { columns: [device] }\n",
    ),
    (
        "standardize-dedup-onehot",
        "  - standardize: { columns: [income], ddof: 0 }\n  - dedup.exact: { column: note }\n  - one_hot: { columns: [plan] }\n",
    ),
    (
        "dedup-standardize-dedup",
        "  - dedup.exact: { column: note }\n  - standardize: { columns: [income], ddof: 0 }\n  - dedup.exact: { column: country }\n",
    ),
];

/// A pipeline over the customers sample in tasks of 8 KiB (7 tasks), writing to
/// `$KILN_OUT/ds`.
fn setup(dir: &Path, name: &str, steps: &str) -> PathBuf {
    pipeline(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "version: 1\nname: {name}\nsource:\n  uri: {}\nsteps:\n{steps}sink:\n  uri: ${{KILN_OUT}}/ds\n  max_rows: 200\nrun:\n  threads: 2\n  task_bytes: 8KiB\n",
            repo().join("sample-data/customers/train.csv").display()
        ),
    )
}

fn worker(out: &Path, p: &Path, w: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(repo())
        .env("KILN_OUT", out)
        .args(["run", "-q", &p.to_string_lossy(), "--worker", w])
        .args(extra);
    c
}

/// Waits at no stage: `--stage-wait 0s`, and never takes over (`--take-over-after 1h`).
const PATIENT: [&str; 4] = ["--stage-wait", "0s", "--take-over-after", "1h"];

/// Runs worker `w` of 2 with [`PATIENT`]; its exit code and stderr.
fn patient(out: &Path, p: &Path, w: usize) -> (Option<i32>, String) {
    let o = worker(out, p, &format!("{w}/2"), &PATIENT)
        .output()
        .expect("runs");
    (o.status.code(), stderr(&o))
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", stderr(o));
}

/// The shards, the rows in the manifest and the fitted statistics are the single run's;
/// the stage parts are gone.
fn assert_same(single: &Path, other: &Path, what: &str) {
    let (a, b) = (single.join("ds"), other.join("ds"));
    let fa = shard_files(&a);
    assert!(!fa.is_empty());
    assert!(fa == shard_files(&b), "{what}: the shards differ");
    let json = |d: &Path, f: &str| -> Option<serde_json::Value> {
        std::fs::read(d.join(f))
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("json"))
    };
    let m = |d: &Path| json(d, "_kiln/manifest.json").expect("a manifest")["rows"].clone();
    assert_eq!(m(&a), m(&b), "{what}: manifest rows");
    assert_eq!(
        json(&a, "_kiln/stats.json"),
        json(&b, "_kiln/stats.json"),
        "{what}: fitted statistics"
    );
    assert!(b.join("_SUCCESS").exists(), "{what}: complete");
    assert!(
        !b.join("_kiln/stages").exists(),
        "{what}: stage parts left after the manifest"
    );
}

#[test]
fn dedup_and_fits_on_workers_at_once_make_the_single_run_dataset() {
    let dir = tempfile::tempdir().expect("tmp");
    for (i, (name, steps)) in ORDERS.iter().enumerate() {
        let p = setup(dir.path(), name, steps);
        let single = tempfile::tempdir().expect("tmp");
        kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
        // 2, 3 and 5 workers, varied by pipeline so that each count meets a dedup and
        // a fit (7 tasks: 5 workers hold one or two each); and 9 workers for 7 tasks:
        // the two without tasks merge no section, so no one waits for them.
        let counts = if i == 0 {
            vec![2, 5, 9]
        } else {
            vec![2 + i % 2, 5 - i % 2]
        };
        for n in counts {
            let out = tempfile::tempdir().expect("tmp");
            let children: Vec<_> = (0..n)
                .map(|w| {
                    worker(out.path(), &p, &format!("{w}/{n}"), &[])
                        .env("KILN_LOG", "kiln=info")
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn")
                })
                .collect();
            for (w, c) in children.into_iter().enumerate() {
                let o = c.wait_with_output().expect("wait");
                ok(&o, &format!("{name}: worker {w}/{n}"));
                // All run at once: no one is taken over.
                assert!(!stderr(&o).contains("taking over"), "{}", stderr(&o));
            }
            assert_same(single.path(), out.path(), &format!("{name}, {n} at once"));
        }
    }
}

/// Workers one after another: the first takes over the stage parts of the one not
/// started yet (`--take-over-after 0s`) and writes its own tasks; the second finds
/// every part stored and computes none.
#[test]
fn a_waiting_worker_takes_over_the_parts_of_a_worker_that_is_not_running() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, steps) in ORDERS {
        let p = setup(dir.path(), name, steps);
        let single = tempfile::tempdir().expect("tmp");
        kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
        let out = tempfile::tempdir().expect("tmp");
        let quick = ["--take-over-after", "0s"];
        let first = worker(out.path(), &p, "0/2", &quick)
            .env("KILN_LOG", "kiln=info")
            .output()
            .expect("runs");
        ok(&first, name);
        let log = stderr(&first);
        assert!(
            log.contains("taking over the stage parts of worker(s) 1/2"),
            "{log}"
        );
        assert!(!out.path().join("ds/_SUCCESS").exists());
        let second = worker(out.path(), &p, "1/2", &quick)
            .env("KILN_LOG", "kiln=info")
            .output()
            .expect("runs");
        ok(&second, name);
        let log = stderr(&second);
        assert!(!log.contains("taking over"), "{log}");
        assert!(log.contains("computed=0"), "{log}");
        assert_same(
            single.path(),
            out.path(),
            &format!("{name}, one after another"),
        );
    }
}

/// A worker that waits longer than `--stage-wait` for a running worker exits 75 with
/// its share kept. Run in turn, each picking up where the stages are, the two workers
/// get through both stages (the dedup's parts and sections, the fit's parts) and finish
/// the dataset.
#[test]
fn a_worker_that_waits_too_long_exits_75_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (name, steps) = ORDERS[0];
    let p = setup(dir.path(), name, steps);
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let out = tempfile::tempdir().expect("tmp");
    let (code, e) = patient(out.path(), &p, 0);
    assert_eq!(code, Some(75), "{e}");
    assert!(
        e.contains("at the stage of `dedup.exact` for 3 parts")
            && e.contains("1 (worker 1/2)")
            && e.contains("run it again"),
        "{e}"
    );
    let parts = std::fs::read_dir(out.path().join("ds/_kiln/stages/step-001"))
        .expect("worker 0's parts are stored")
        .count();
    assert_eq!(parts, 4, "tasks 0, 2, 4 and 6 of 7");
    let status = stdout(&kiln_ok(
        out.path(),
        &["status", &out.path().join("ds").to_string_lossy()],
    ));
    assert!(
        status.contains("stage     step 1 `dedup.exact`: parts of 4 of 7 tasks stored"),
        "{status}"
    );
    // Then each in turn: every run gets one wait further, or finishes.
    let mut waits = vec![e];
    let mut finished = [false, false];
    for turn in 1..10 {
        let w = turn % 2;
        match patient(out.path(), &p, w) {
            (Some(0), _) => finished[w] = true,
            (Some(75), e) => waits.push(e),
            (_, e) => panic!("worker {w}: {e}"),
        }
        if finished == [true, true] {
            break;
        }
    }
    assert_eq!(finished, [true, true], "{waits:#?}");
    let said = waits.join("\n");
    for stage in [
        "`dedup.exact` for 3 parts",
        "`dedup.exact` for 4 sections",
        "`standardize` for",
    ] {
        assert!(said.contains(stage), "{stage}: {said}");
    }
    assert_same(single.path(), out.path(), "after exits 75");
}

/// Every worker of a dataset must run the same kiln: a stage part another version wrote
/// is refused (exit 2), naming the part and both versions.
#[test]
fn a_part_of_another_kiln_version_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let (name, steps) = ORDERS[1];
    let p = setup(dir.path(), name, steps);
    let out = tempfile::tempdir().expect("tmp");
    let (code, e) = patient(out.path(), &p, 0);
    assert_eq!(code, Some(75), "{e}");
    let part = out.path().join("ds/_kiln/stages/step-001/00000.part");
    let bytes = std::fs::read(&part).expect("worker 0's part of task 0");
    let text = String::from_utf8_lossy(
        &bytes[..bytes
            .iter()
            .position(|&b| b == b'\n')
            .expect("a header line")],
    )
    .into_owned();
    let version = format!("\"kiln_version\":\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&version), "{text}");
    let mut changed = text
        .replace(&version, "\"kiln_version\":\"0.0.9\"")
        .into_bytes();
    changed.extend_from_slice(&bytes[text.len()..]);
    std::fs::write(&part, changed).expect("write");
    let (code, e) = patient(out.path(), &p, 1);
    assert_eq!(code, Some(2), "{e}");
    assert!(
        e.contains("00000.part was written by kiln 0.0.9")
            && e.contains(&format!("this is kiln {}", env!("CARGO_PKG_VERSION"))),
        "{e}"
    );
}

/// Two workers and a helper (a third `kiln run` naming no worker) on pipelines with
/// dedups and fits: worker 1 is stopped as soon as it runs, the helper joins while it is
/// stopped (computing stage parts and tasks no one has started), then worker 1 goes on;
/// the single run's dataset.
#[test]
fn a_helper_joins_the_stages_of_two_workers() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, steps) in &ORDERS[..2] {
        let p = setup(dir.path(), name, steps);
        let single = tempfile::tempdir().expect("tmp");
        kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
        let out = tempfile::tempdir().expect("tmp");
        let runs = out.path().join("ds/_kiln/runs");
        let slow = worker(out.path(), &p, "1/2", &[])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        wait_until("worker 1's record", || runs.join("w00001.json").exists());
        signal(slow.id(), "-STOP");
        let helper = unnamed_run(out.path(), &p)
            .stderr(Stdio::piped())
            .spawn()
            .expect("helper");
        wait_until("the helper's record", || {
            runs.exists()
                && files(&runs)
                    .iter()
                    .any(|f| f.to_string_lossy().contains("helper-"))
        });
        signal(slow.id(), "-CONT");
        let first = worker(out.path(), &p, "0/2", &[])
            .output()
            .expect("worker 0");
        ok(&first, &format!("{name}: worker 0/2"));
        let h = helper.wait_with_output().expect("wait");
        ok(&h, &format!("{name}: the helper"));
        assert!(stderr(&h).contains("as a helper"), "{}", stderr(&h));
        ok(
            &slow.wait_with_output().expect("wait"),
            &format!("{name}: worker 1/2"),
        );
        assert_same(single.path(), out.path(), &format!("{name}, with a helper"));
    }
}
