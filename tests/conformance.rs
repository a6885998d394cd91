//! Public conformance suites, vendored under `tests/conformance/` with their licences:
//!
//! - JSONTestSuite (Nicolas Seriot, MIT): every `test_parsing` case as a JSON Lines record,
//!   four ways, must get the suite's verdict — `y_` cases read, `n_` cases refused as
//!   bad records (never "repaired"), `i_` cases either, but without a crash.
//! - parquet-testing (Apache-2.0): every file read by kiln and by pyarrow, the values
//!   compared (`tests/interop/parquet_conformance.py`); a file pyarrow reads and kiln
//!   does not must be listed with its cause in `tests/conformance/parquet-gaps.tsv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

fn suite() -> PathBuf {
    repo().join("tests/conformance/JSONTestSuite/test_parsing")
}

/// The suite's cases: (name, bytes), in name order.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(suite())
        .expect("the vendored JSONTestSuite")
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 318, "the whole test_parsing folder");
    out
}

/// The case as the value of one field of a one-line record. JSON whitespace stays; the
/// trailing newline some cases end with is dropped, and the two `y_` cases with a newline
/// inside keep their meaning with a space. An `n_` case with a newline inside stays as it
/// is, so its record spans lines — each of them bad.
fn as_value(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    if name.starts_with("y_") {
        for b in &mut v {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    v
}

/// Runs `pipeline` (on_error: dead_letter) and returns (exit code, stderr, the error of
/// each object's first rejection by file name, rows written).
fn run(dir: &Path, yaml: &str) -> (Option<i32>, String, BTreeMap<String, String>, usize) {
    let p = pipeline(dir, "p.yaml", yaml);
    let o = kiln(
        dir,
        &["run", "-q", "--overwrite", p.to_str().expect("utf-8")],
    );
    let sink = dir.join("out");
    let mut rejected = BTreeMap::new();
    for f in files(&sink.join("_kiln/errors")) {
        for line in std::fs::read_to_string(&f).expect("dead letters").lines() {
            let r: serde_json::Value = serde_json::from_str(line).expect("dead letter JSON");
            let object = r["object"].as_str().expect("object");
            let name = object.rsplit('/').next().unwrap_or(object);
            let error = r["error"].as_str().unwrap_or_default().to_string();
            rejected
                .entry(name.trim_end_matches(".jsonl").to_string())
                .or_insert(error);
        }
    }
    let rows = if o.status.success() || o.status.code() == Some(3) {
        total_rows(&sink)
    } else {
        0
    };
    (o.status.code(), stderr(&o), rejected, rows)
}

/// What kiln did with a case, against what the suite says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Read,
    Refused,
}

/// Adds the wrong verdicts to `wrong`. `typed`: the value is typed by the schema, so a
/// `y_` case may be refused for its type (arrow has no type for a list of mixed values),
/// though never as malformed; otherwise a `y_` case must be read.
fn check(
    mode: &str,
    typed: bool,
    outcomes: &BTreeMap<String, (Outcome, String)>,
    wrong: &mut Vec<String>,
) {
    let mut table: BTreeMap<(char, Outcome), usize> = BTreeMap::new();
    for (name, (outcome, why)) in outcomes {
        let verdict = name.chars().next().expect("name");
        *table.entry((verdict, *outcome)).or_default() += 1;
        match (verdict, outcome) {
            ('n', Outcome::Read) => {
                wrong.push(format!("{mode}: {name} was read (must be refused)"))
            }
            ('y', Outcome::Refused) if !typed || why.contains("malformed JSON") => {
                wrong.push(format!("{mode}: {name} was refused: {why}"))
            }
            _ => {}
        }
        if why.contains("panic") {
            wrong.push(format!("{mode}: {name} crashed kiln: {why}"));
        }
    }
    eprintln!("JSONTestSuite, {mode}: {table:?}");
    for (name, (outcome, why)) in outcomes {
        if name.starts_with("y_") && *outcome == Outcome::Refused {
            eprintln!("  {mode}: {name} refused: {why}");
        }
    }
}

#[test]
fn json_test_suite_cases_get_the_suites_verdict_four_ways() {
    let cases = cases();
    let mut wrong = Vec::new();

    // 1. The value inside the inference window: one run per case, the schema inferred
    //    from a good record and the case's.
    let mut inferred = BTreeMap::new();
    let results: Vec<(String, (Outcome, String))> = std::thread::scope(|s| {
        let chunks: Vec<&[(String, Vec<u8>)]> = cases.chunks(cases.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (name, bytes) in chunk {
                        let dir = tempfile::tempdir().expect("tmp");
                        let mut data = b"{\"k\":0}\n{\"k\":1,\"v\":".to_vec();
                        data.extend_from_slice(&as_value(name, bytes));
                        data.extend_from_slice(b"}\n");
                        std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
                        std::fs::write(dir.path().join("in/case.jsonl"), &data).expect("write");
                        let (code, err, rejected, rows) = run(
                            dir.path(),
                            &format!(
                                "version: 1\nname: json-suite\nsource:\n  uri: {}/in/*.jsonl\n\
                                 sink:\n  uri: {}/out\nrun:\n  on_error: dead_letter\n  \
                                 max_error_ratio: 1\n",
                                dir.path().display(),
                                dir.path().display()
                            ),
                        );
                        let outcome = match (code, rows) {
                            (Some(0), 2) if rejected.is_empty() => (Outcome::Read, String::new()),
                            (Some(0 | 3), 1) if !rejected.is_empty() => {
                                let why = rejected.values().next().cloned().unwrap_or_default();
                                (Outcome::Refused, why)
                            }
                            (Some(2), _) => (Outcome::Refused, err),
                            other => (Outcome::Refused, format!("unexpected {other:?}: {err}")),
                        };
                        out.push((name.clone(), outcome));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    for (name, outcome) in results {
        if outcome.1.starts_with("unexpected") {
            wrong.push(format!("inferred: {name}: {}", outcome.1));
        }
        inferred.insert(name, outcome);
    }
    check("inside the inferred schema", true, &inferred, &mut wrong);

    // 2-4: one run over every case, each case an object of its own.
    let many = |tag: &str, first: Option<&str>, record: &dyn Fn(&[u8]) -> Vec<u8>, extra: &str| {
        let dir = tempfile::tempdir().expect("tmp");
        let input = dir.path().join("in");
        std::fs::create_dir_all(&input).expect("mkdir");
        if let Some(first) = first {
            std::fs::write(input.join("000-first.jsonl"), first).expect("write");
        }
        for (name, bytes) in &cases {
            let mut data = record(&as_value(name, bytes));
            data.push(b'\n');
            std::fs::write(input.join(format!("{name}.jsonl")), data).expect("write");
        }
        let (code, err, rejected, rows) = run(
            dir.path(),
            &format!(
                "version: 1\nname: json-suite-{tag}\nsource:\n  uri: {}/*.jsonl\n  format: jsonl\n{extra}\
                 sink:\n  uri: {}/out\nrun:\n  on_error: dead_letter\n  max_error_ratio: 1\n",
                input.display(),
                dir.path().display()
            ),
        );
        assert!(matches!(code, Some(0 | 3)), "{tag}: {err}");
        let mut outcomes = BTreeMap::new();
        for (name, bytes) in &cases {
            // A line of JSON whitespace is no record: passed over, as JSON Lines readers
            // do, neither read nor rejected (a UTF-8 byte order mark opening an object is
            // passed over too).
            let data = record(&as_value(name, bytes));
            let blank = data
                .strip_prefix(b"\xEF\xBB\xBF")
                .unwrap_or(&data)
                .iter()
                .all(|b| b" \t\r\n".contains(b));
            let outcome = match rejected.get(name) {
                Some(why) => (Outcome::Refused, why.clone()),
                None if blank => (Outcome::Refused, "a blank line".to_string()),
                None => (Outcome::Read, String::new()),
            };
            outcomes.insert(name.clone(), outcome);
        }
        let read = outcomes
            .values()
            .filter(|(o, _)| *o == Outcome::Read)
            .count();
        assert_eq!(
            rows,
            read + usize::from(first.is_some()),
            "{tag}: a row for every object without a rejection"
        );
        outcomes
    };
    let wrapped = |v: &[u8]| {
        let mut r = b"{\"k\":1,\"v\":".to_vec();
        r.extend_from_slice(v);
        r.push(b'}');
        r
    };
    // 2. The value in a field a declared schema leaves out.
    let declared = many(
        "declared",
        None,
        &wrapped,
        "  schema: { k: int64 }\n  on_schema_mismatch: cast\n",
    );
    check("outside a declared schema", false, &declared, &mut wrong);
    // 3. The value in a field first seen after the inference window.
    let late = many(
        "late",
        Some("{\"k\":0}\n"),
        &wrapped,
        "  infer_rows: 1\n  on_schema_mismatch: cast\n",
    );
    check("after the inference window", false, &late, &mut wrong);
    // 4. The case as the record itself: a JSON Lines record must be an object, so a
    //    `y_` case that is not one is refused too (but not as malformed JSON).
    let raw = many(
        "raw",
        None,
        &|v: &[u8]| v.to_vec(),
        "  schema: { k: int64 }\n  on_schema_mismatch: cast\n",
    );
    for (name, bytes) in &cases {
        // Past a byte order mark, which kiln passes over at the start of an object.
        let value = as_value(name, bytes);
        let value = value.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&value);
        let is_object = value.iter().find(|b| !b" \t\r\n".contains(b)) == Some(&b'{');
        if name.starts_with("y_") && is_object && raw[name].0 == Outcome::Refused {
            wrong.push(format!(
                "raw: {name} is an object and valid, but was refused"
            ));
        }
        if !is_object && raw[name].0 == Outcome::Read {
            wrong.push(format!(
                "raw: {name} is not an object, but was read as a record"
            ));
        }
    }
    check("as the record", true, &raw, &mut wrong);

    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn parquet_testing_files_read_as_pyarrow_reads_them() {
    let Some(python) = std::env::var("KILN_TEST_PYTHON").ok() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "KILN_TEST_PYTHON unset under CI"
        );
        eprintln!("\n!!!! SKIPPED: KILN_TEST_PYTHON unset (run through `make test`) !!!!\n");
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let o = std::process::Command::new(python)
        .current_dir(repo())
        .args([
            "tests/interop/parquet_conformance.py",
            env!("CARGO_BIN_EXE_kiln"),
            "tests/conformance/parquet-testing",
            "tests/conformance/parquet-gaps.tsv",
            &work.path().to_string_lossy(),
        ])
        .output()
        .expect("python runs");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    eprintln!("{out}");
    assert!(
        o.status.success(),
        "parquet-testing conformance failed:\n{out}"
    );
}

/// A temporary folder whose `out/` holds a kiln copy of one parquet-testing file.
fn copy_suite_file(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: suite\nsource:\n  uri: {}\nsink:\n  uri: {}/out\n",
            repo()
                .join("tests/conformance/parquet-testing")
                .join(file)
                .display(),
            dir.path().display()
        ),
    );
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    dir
}

#[test]
fn int96_timestamps_past_2262_are_read_as_microseconds_not_wrapped() {
    // The values parquet-testing documents for this Spark file (int96_from_spark.md). As
    // nanoseconds (the parquet crate's default, and pyarrow's) the last one wraps to 1815.
    let dir = copy_suite_file("data/int96_from_spark.parquet");
    let batches = read_shards(&dir.path().join("out"));
    let batch = batches.values().next().expect("a shard");
    let a = batch.column_by_name("a").expect("a");
    assert_eq!(
        a.data_type(),
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
    );
    let a = a
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .expect("µs");
    let got: Vec<Option<i64>> = a.iter().collect();
    assert_eq!(
        got,
        [
            Some(1_704_141_296_123_456),
            Some(1_704_070_800_000_000),
            Some(253_402_225_200_000_000),
            Some(1_735_599_600_000_000),
            None,
            Some(9_089_380_393_200_000_000),
        ]
    );
}

#[test]
fn a_footer_that_says_zero_rows_does_not_hide_the_row_groups() {
    // parquet-rs 0.3 wrote `num_rows: 0` in the footer of this file; its row group holds
    // 6 rows, which pyarrow reads. Regression: kiln exited 0 having read none.
    let dir = copy_suite_file("data/repeated_no_annotation.parquet");
    assert_eq!(total_rows(&dir.path().join("out")), 6);
}
