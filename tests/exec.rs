//! The `exec` step with real child processes: Python functions through `python -m
//! kiln.step` (python/kiln), the misbehaving steps of `tests/exec/steps.py`, and a child
//! that is not Python. Needs the Python of `make test`'s virtualenv (pyarrow).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// `kiln ARGS` from the repository root with the test Python as `KILN_PYTHON` and the
/// repository's `python/` on its path.
fn kiln_py(out: &Path, python: &str, args: &[&str]) -> Output {
    run_accounted(command(out, python), args)
}

fn command(out: &Path, python: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(repo())
        .env("KILN_OUT", out)
        .env_remove("KILN_LOG")
        .env("KILN_PYTHON", python)
        .env("PYTHONPATH", repo().join("python"));
    cmd
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "kiln failed ({:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
    o
}

/// Three objects of 1000 documents (`n` 0..3000) in `dir/in/`.
fn docs(dir: &Path) {
    for i in 0..3 {
        write_docs(&dir.join(format!("in/part-{i}.jsonl")), i * 1000, 1000);
    }
}

/// A pipeline over [`docs`] with one `exec` step running `function` of
/// tests/exec/steps.py, batches of 100 rows.
fn exec_pipeline(dir: &Path, name: &str, function: &str, options: &str, run: &str) -> PathBuf {
    let yaml = format!(
        "version: 1\nname: {name}\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - exec:\n      \
         command: [\"${{KILN_PYTHON}}\", -m, kiln.step, tests/exec/steps.py:{function}]\n      \
         {options}\nsink:\n  uri: ${{KILN_OUT}}/{name}\nrun:\n  batch_rows: 100\n  {run}\n",
        dir.display()
    );
    pipeline(dir, &format!("{name}.yaml"), &yaml)
}

fn column_i64(sink: &Path, name: &str) -> Vec<i64> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    read_shards(sink)
        .values()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect("column")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_python_step_gives_what_sql_gives_on_any_thread_and_process_count() {
    let Some(py) = test_python() else { return };
    let out = tempfile::tempdir().expect("tmp");
    let example = "examples/python-step/pipeline.yaml";
    let o = ok(kiln_py(out.path(), &py, &["validate", example]));
    assert!(stdout(&o).contains("5 output columns"), "{}", stdout(&o));
    let sink = out.path().join("python-step");
    ok(kiln_py(
        out.path(),
        &py,
        &["run", "-q", example, "--set", "run.threads=1"],
    ));
    let one = shard_files(&sink);
    for threads in ["2", "3"] {
        let set = format!("run.threads={threads}");
        ok(kiln_py(
            out.path(),
            &py,
            &["run", "-q", "--overwrite", example, "--set", &set],
        ));
        assert!(shard_files(&sink) == one, "{threads} threads: other bytes");
    }
    let python_rows = read_shards(&sink);

    // One process instead of two; the same transform in SQL.
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(repo().join(example)).expect("example");
    let one_process = text
        .replace("processes: 2", "processes: 1")
        .replace("out}/python-step/", "out}/one-process/");
    let p1 = pipeline(dir.path(), "one.yaml", &one_process);
    ok(kiln_py(
        out.path(),
        &py,
        &["run", "-q", &p1.to_string_lossy()],
    ));
    // The same bytes: the number of processes is not part of the output's identity.
    assert!(
        shard_files(&out.path().join("one-process")) == one,
        "1 process: other bytes"
    );

    let sql = text
        .replace(
            "  - exec:\n      command: [\"${KILN_PYTHON:-python3}\", -m, kiln.step, examples/python-step/steps.py:clean]\n      processes: 2\n",
            "  - derive: { text: \"lower(text)\", n_chars: \"length(lower(text))\" }\n  - cast: { n_chars: int32 }\n",
        )
        .replace("out}/python-step/", "out}/sql/");
    assert!(
        sql.contains("derive"),
        "the example's exec step is where the test expects it"
    );
    let p2 = pipeline(dir.path(), "sql.yaml", &sql);
    ok(kiln_py(
        out.path(),
        &py,
        &["run", "-q", &p2.to_string_lossy()],
    ));
    let sql_rows = read_shards(&out.path().join("sql"));
    assert_eq!(sql_rows.len(), python_rows.len());
    for ((name, a), b) in python_rows.iter().zip(sql_rows.values()) {
        assert_eq!(a.num_rows(), b.num_rows(), "{name}");
        for field in a.schema().fields() {
            assert_eq!(
                a.column_by_name(field.name()),
                b.column_by_name(field.name()),
                "{name}: column {}",
                field.name()
            );
        }
    }
    assert!(total_rows(&sink) > 400);
}

#[test]
fn a_step_that_raises_fails_the_run_or_leaves_out_its_batches() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let env = "env: { BAD_N: \"150,2510\" }";
    let out = tempfile::tempdir().expect("tmp");

    let p = exec_pipeline(dir.path(), "fail", "raises", env, "on_error: fail");
    let o = kiln_py(out.path(), &py, &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("ValueError: row n in 150,2510 is not allowed here"),
        "{e}"
    );
    assert!(
        e.contains("Traceback"),
        "the traceback is in the error: {e}"
    );
    assert!(e.contains("a batch of 100 rows"), "{e}");
    assert!(e.contains("part-0.jsonl"), "the object is named: {e}");

    let mut letters_by_threads = Vec::new();
    for (policy, name, threads) in [
        ("skip", "skip", 2),
        ("dead_letter", "letters", 2),
        // One thread: the steps run inline, on the task's thread; the same letters.
        ("dead_letter", "letters-1", 1),
        ("dead_letter", "letters-3", 3),
    ] {
        let run = format!("on_error: {policy}\n  max_error_ratio: 1\n  threads: {threads}");
        let p = exec_pipeline(dir.path(), name, "raises", env, &run);
        let report = out.path().join(format!("{name}.json"));
        let o = kiln_py(
            out.path(),
            &py,
            &[
                "run",
                "-q",
                &p.to_string_lossy(),
                "--report",
                &report.to_string_lossy(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let sink = out.path().join(name);
        let mut n = column_i64(&sink, "n");
        n.sort_unstable();
        let expected: Vec<i64> = (0..3000)
            .filter(|i| !(100..200).contains(i) && !(2500..2600).contains(i))
            .collect();
        assert_eq!(
            n, expected,
            "{policy}: the two failing batches are left out whole"
        );
        let r: Value =
            serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
        assert_eq!(r["rows_rejected"], 200, "{r:#}");
        assert_eq!(r["steps"][0]["rows_rejected"], 200, "{r:#}");
        let letters = dead_letters(&sink);
        if policy == "skip" {
            assert!(letters.is_empty());
            continue;
        }
        assert_eq!(letters.len(), 2, "{letters:#?}");
        letters_by_threads.push(letters.clone());
        for (l, (object, before)) in letters
            .iter()
            .zip([("part-0.jsonl", 100), ("part-2.jsonl", 2500)])
        {
            assert_eq!(l["kind"], "batch", "{l:#}");
            assert_eq!(l["rows"], 100, "{l:#}");
            assert_eq!(l["rows_before"], before, "{l:#}");
            assert_eq!(l["stage"], "step 1 exec", "{l:#}");
            assert!(
                l["object"].as_str().is_some_and(|o| o.ends_with(object)),
                "{l:#}"
            );
            let error = l["error"].as_str().expect("error");
            assert!(
                error.contains("Traceback") && error.contains("ValueError"),
                "{error}"
            );
        }
    }
    assert!(
        letters_by_threads.windows(2).all(|w| w[0] == w[1]),
        "the dead letters are the same on 1, 2 and 3 threads"
    );
}

#[test]
fn a_crashed_child_is_replaced_and_its_batch_tried_once_more() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let markers = tempfile::tempdir().expect("tmp");
    let out = tempfile::tempdir().expect("tmp");

    // Crashes once: the run succeeds with every row.
    let env = format!(
        "env: {{ BAD_N: \"1234\", MARKERS: \"{}\" }}",
        markers.path().display()
    );
    let p = exec_pipeline(dir.path(), "once", "crashes", &env, "threads: 2");
    let o = ok(kiln_py(out.path(), &py, &["run", &p.to_string_lossy()]));
    assert!(
        stderr(&o).contains("killed by signal 11"),
        "the crash is logged: {}",
        stderr(&o)
    );
    assert_eq!(total_rows(&out.path().join("once")), 3000);

    // Crashes every time: the run fails naming the batch, even under skip.
    let p = exec_pipeline(
        dir.path(),
        "always",
        "crashes",
        "env: { BAD_N: \"1234\" }",
        "on_error: skip\n  max_error_ratio: 1",
    );
    let o = kiln_py(out.path(), &py, &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("failed twice"), "{e}");
    assert!(e.contains("a batch of 100 rows"), "{e}");
    assert!(e.contains("part-1.jsonl"), "{e}");
}

#[test]
fn a_hung_child_is_killed_after_its_timeout() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let markers = tempfile::tempdir().expect("tmp");
    let out = tempfile::tempdir().expect("tmp");

    let env = format!(
        "env: {{ BAD_N: \"10\", MARKERS: \"{}\" }}\n      timeout: 2s",
        markers.path().display()
    );
    let p = exec_pipeline(dir.path(), "once", "hangs", &env, "threads: 2");
    let o = ok(kiln_py(out.path(), &py, &["run", &p.to_string_lossy()]));
    assert!(stderr(&o).contains("no answer within"), "{}", stderr(&o));
    assert_eq!(total_rows(&out.path().join("once")), 3000);

    let p = exec_pipeline(
        dir.path(),
        "always",
        "hangs",
        "env: { BAD_N: \"10\" }\n      timeout: 1s",
        "threads: 1",
    );
    let o = kiln_py(out.path(), &py, &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("failed twice"), "{}", stderr(&o));
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
}

#[test]
fn printing_to_stdout_goes_to_the_log_not_into_the_batches() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let p = exec_pipeline(dir.path(), "prints", "prints", "processes: 1", "threads: 2");
    let o = ok(kiln_py(out.path(), &py, &["run", &p.to_string_lossy()]));
    let e = stderr(&o);
    assert!(e.contains("a stray print from the step 100"), "{e}");
    assert!(e.contains("raw bytes on descriptor 1"), "{e}");
    let mut n = column_i64(&out.path().join("prints"), "n");
    n.sort_unstable();
    assert_eq!(n, (0..3000).collect::<Vec<_>>());
}

#[test]
fn a_program_that_writes_anything_but_frames_is_named() {
    // No Python here: any program can be a step, and one that writes text to its stdout
    // is refused with what it wrote.
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let yaml = |schema: &str| {
        format!(
            "version: 1\nname: garbage\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - exec:\n      \
             command: [sh, -c, \"echo hello from sh; cat > /dev/null\"]\n      {schema}\nsink:\n  \
             uri: ${{KILN_OUT}}/garbage\n",
            dir.path().display()
        )
    };
    let p = pipeline(dir.path(), "probe.yaml", &yaml("processes: 1"));
    let o = kiln(out.path(), &["validate", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("hello from sh") && e.contains("not a kiln frame"),
        "{e}"
    );
    assert!(e.contains("a batch of no rows"), "{e}");

    let p = pipeline(
        dir.path(),
        "declared.yaml",
        &yaml("schema: { text: string }"),
    );
    ok(kiln(out.path(), &["validate", &p.to_string_lossy()]));
    let o = kiln(out.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a kiln frame"), "{}", stderr(&o));

    // A program that is not there.
    let p = pipeline(
        dir.path(),
        "missing.yaml",
        &yaml("schema: { text: string }")
            .replace(
                "[sh, -c, \"echo hello from sh; cat > /dev/null\"]",
                "[/nonexistent/step]",
            )
            .replace("garbage", "missing"),
    );
    let o = kiln(out.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot start `/nonexistent/step`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_columns_are_learnt_declared_and_checked() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let out = tempfile::tempdir().expect("tmp");

    // Learnt from a batch of no rows: `plan` shows the column the function adds.
    let p = exec_pipeline(
        dir.path(),
        "words",
        "count_words",
        "processes: 1",
        "threads: 2",
    );
    let plan = stdout(&ok(kiln_py(
        out.path(),
        &py,
        &["plan", &p.to_string_lossy()],
    )));
    assert!(
        plan.contains("exec → id: Utf8, lang: Utf8, n: Int64, text: Utf8, n_words: Int64"),
        "{plan}"
    );
    ok(kiln_py(
        out.path(),
        &py,
        &["run", "-q", &p.to_string_lossy()],
    ));
    let words = column_i64(&out.path().join("words"), "n_words");
    assert_eq!(words.len(), 3000);
    assert!(words.iter().all(|&w| (20..200).contains(&w)));

    // A column the function reads and the input lacks: refused when the step is bound.
    let p = exec_pipeline(
        dir.path(),
        "missing",
        "reads_missing",
        "processes: 1",
        "threads: 2",
    );
    let o = kiln_py(out.path(), &py, &["validate", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no_such_column"), "{}", stderr(&o));

    // Other columns for one batch: that batch is bad (left out under skip).
    let p = exec_pipeline(
        dir.path(),
        "wrong",
        "wrong_schema",
        "env: { BAD_N: \"777\" }",
        "on_error: dead_letter\n  max_error_ratio: 1",
    );
    ok(kiln_py(
        out.path(),
        &py,
        &["run", "-q", &p.to_string_lossy()],
    ));
    assert_eq!(total_rows(&out.path().join("wrong")), 2900);
    let letters = dead_letters(&out.path().join("wrong"));
    assert_eq!(letters.len(), 1);
    let error = letters[0]["error"].as_str().expect("error");
    assert!(error.contains("not the step's"), "{error}");

    // Declared columns that the function does not return: every batch is refused.
    let p = exec_pipeline(
        dir.path(),
        "declared",
        "identity",
        "schema: { id: string, text: string }",
        "threads: 2",
    );
    let o = kiln_py(out.path(), &py, &["run", "-q", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("as `schema:` declares"),
        "{}",
        stderr(&o)
    );
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// True while `pid` runs (a zombie nobody reaped yet has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[test]
fn kill_9_leaves_no_child_and_the_rerun_gives_the_clean_result() {
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    for i in 0..6 {
        write_docs(
            &dir.path().join(format!("in/part-{i}.jsonl")),
            i * 1000,
            1000,
        );
    }
    let p = exec_pipeline(
        dir.path(),
        "killed",
        "slow",
        "env: { SLEEP: \"0.02\" }",
        "threads: 2\n  task_bytes: 200KB",
    );
    let p = p.to_string_lossy().into_owned();
    let clean = tempfile::tempdir().expect("tmp");
    ok(kiln_py(clean.path(), &py, &["run", "-q", &p]));
    let expected = shard_files(&clean.path().join("killed"));
    assert_eq!(total_rows(&clean.path().join("killed")), 6000);

    let out = tempfile::tempdir().expect("tmp");
    let sink = out.path().join("killed");
    let mut run = command(out.path(), &py)
        .args(["run", "-q", &p])
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let kids = loop {
        let committed = std::fs::read_dir(sink.join("_kiln/tasks")).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        });
        let kids = children_of(run.id());
        if (committed >= 1 && !kids.is_empty()) || Instant::now() > deadline {
            break kids;
        }
        if let Ok(Some(status)) = run.try_wait() {
            panic!("the run finished ({status}) before it could be killed; give it more input");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(!kids.is_empty(), "the step's children were seen");
    run.kill().expect("SIGKILL");
    assert!(run.wait().expect("wait").code().is_none());
    let deadline = Instant::now() + Duration::from_secs(10);
    while kids.iter().any(|&k| running(k)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = kids.iter().filter(|&&k| running(k)).collect();
    assert!(left.is_empty(), "children outlived kiln: {left:?}");
    assert!(!sink.join("_SUCCESS").exists());

    let rerun = ok(kiln_py(out.path(), &py, &["run", &p]));
    assert!(
        stderr(&rerun).contains("already committed and skipped"),
        "{}",
        stderr(&rerun)
    );
    let got = shard_files(&sink);
    assert_eq!(
        got.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(
        got == expected,
        "the resumed run's shards differ from the clean run's"
    );
}

#[test]
fn python_drives_kiln_and_reads_a_sink_two_workers_wrote() {
    let Some(py) = test_python() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let o = Command::new(&py)
        .current_dir(repo())
        .arg("tests/exec/driver.py")
        .arg(tmp.path())
        .env("KILN_BIN", env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_PYTHON", &py)
        .env("PYTHONPATH", repo().join("python"))
        .env_remove("KILN_LOG")
        .output()
        .expect("python runs");
    assert!(
        o.status.success() && stdout(&o).contains("driver: ok"),
        "tests/exec/driver.py failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn children_get_one_numeric_thread_unless_told_otherwise() {
    // One child per thread fills the cores; OpenBLAS / MKL / OpenMP pools inside each
    // child would fight over them. `cat` answers each batch frame with itself.
    let dir = tempfile::tempdir().expect("tmp");
    docs(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let yaml = |name: &str, env: &str| {
        format!(
            "version: 1\nname: {name}\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - exec:\n      \
             command: [sh, -c, 'echo \"threads: $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS \
             $MKL_NUM_THREADS\" >&2; exec cat']\n      schema: {{ id: string, lang: string, n: \
             int64, text: string }}\n      processes: 1\n      {env}\nsink:\n  uri: \
             ${{KILN_OUT}}/{name}\n",
            dir.path().display()
        )
    };
    let run = |p: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.current_dir(repo()).env("KILN_OUT", out.path());
        for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
            cmd.env_remove(var);
        }
        stderr(&ok(run_accounted(cmd, &["run", &p.to_string_lossy()])))
    };
    let e = run(&pipeline(dir.path(), "one.yaml", &yaml("one", "")));
    assert!(e.contains("threads: 1 1 1"), "{e}");
    assert_eq!(column_i64(&out.path().join("one"), "n").len(), 3000);

    let e = run(&pipeline(
        dir.path(),
        "told.yaml",
        &yaml("told", "env: { OMP_NUM_THREADS: \"4\" }"),
    ));
    assert!(e.contains("threads: 4 1 1"), "{e}");
}
