//! `source.on_schema_mismatch`: objects whose columns differ from the run's schema (a
//! column renamed away, a new column, another order, int in one file and text in the
//! next) are refused naming both objects under `fail`, read by name and converted under
//! `cast`, and with the missing columns as nulls under `null_fill`. A value that does
//! not convert is a bad record: an error naming its row under `on_error: fail`, left
//! out and recorded under `dead_letter`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::util::*;

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// Runs `source` (a YAML block) into a fresh sink with `run` settings; returns the
/// process output, the sink and the report (when one was written).
fn run(
    dir: &Path,
    name: &str,
    source: &str,
    run: &str,
) -> (std::process::Output, std::path::PathBuf, Option<Value>) {
    let sink = dir.join(format!("out-{name}"));
    let yaml = format!(
        "version: 1\nname: drift-{name}\nsource:\n{source}\nsink:\n  uri: {}\nrun:\n  batch_rows: 1024\n{run}",
        sink.display()
    );
    let p = pipeline(dir, &format!("{name}.yaml"), &yaml);
    let rep = dir.join(format!("{name}.report.json"));
    let o = kiln(
        dir,
        &[
            "run",
            "-q",
            p.to_str().expect("utf-8"),
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    let report = std::fs::read(&rep)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("report JSON"));
    (o, sink, report)
}

/// Every row of the sink as `id` → (the other columns as display strings).
fn rows(sink: &Path) -> BTreeMap<i64, Vec<String>> {
    let mut out = BTreeMap::new();
    for batch in read_shards(sink).values() {
        let ids = batch
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let rest = batch
                .columns()
                .iter()
                .zip(batch.schema().fields())
                .filter(|(_, f)| f.name() != "id")
                .map(|(c, _)| {
                    if c.is_null(row) {
                        "null".to_string()
                    } else {
                        arrow::util::display::array_value_to_string(c, row).expect("display")
                    }
                })
                .collect();
            out.insert(ids.value(row), rest);
        }
    }
    out
}

#[test]
fn parquet_objects_that_drift_are_refused_converted_or_null_filled() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    // The first object sets the schema: id int64, score float64, tag string.
    write_parquet(
        &input.join("a.parquet"),
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("score", Arc::new(Float64Array::from(vec![0.5, 1.5]))),
            ("tag", Arc::new(StringArray::from(vec!["x", "y"]))),
        ],
    );
    // Then score as text (one value is not a number), another column order, a new
    // column, and int ids as text.
    write_parquet(
        &input.join("b.parquet"),
        vec![
            (
                "tag",
                Arc::new(StringArray::from(vec!["z", "w", "v"])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(StringArray::from(vec![Some("2.5"), Some("oops"), None])),
            ),
            ("id", Arc::new(StringArray::from(vec!["3", "4", "5"]))),
            ("new", Arc::new(Int64Array::from(vec![7, 8, 9]))),
        ],
    );
    let source = format!("  uri: {}/*.parquet", input.display());

    // fail (the default): refused, naming the object, the column and the first object.
    let (o, _, _) = run(dir.path(), "fail", &source, "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("b.parquet") && e.contains("`id` is Utf8 here") && e.contains("a.parquet"),
        "{e}"
    );
    assert!(
        e.contains("on_schema_mismatch: cast"),
        "says what to do: {e}"
    );

    // cast, on_error fail: the value that does not convert is an error naming its row.
    let cast = format!("{source}\n  on_schema_mismatch: cast");
    let (o, _, _) = run(dir.path(), "cast-fail", &cast, "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("b.parquet")
            && e.contains("row 2")
            && e.contains("`score`")
            && e.contains("`oops`"),
        "{e}"
    );

    // cast, dead_letter: that row is left out and recorded; the rest converted by name.
    let (o, sink, report) = run(
        dir.path(),
        "cast-dead",
        &cast,
        "  on_error: dead_letter\n  max_error_ratio: 0.5\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows(&sink);
    let want: BTreeMap<i64, Vec<String>> = [
        (1, vec!["0.5", "x"]),
        (2, vec!["1.5", "y"]),
        (3, vec!["2.5", "z"]),
        (5, vec!["null", "v"]),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want);
    let batch = read_shards(&sink).into_values().next().expect("a shard");
    assert_eq!(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "score", "tag"],
        "the new column is left out"
    );
    assert!(
        batch
            .column_by_name("score")
            .expect("score")
            .as_primitive_opt::<Float64Type>()
            .is_some()
    );
    let report = report.expect("report");
    assert_eq!(report["rows_rejected"], 1, "{report:#}");
    let errors = files(&sink.join("_kiln/errors"));
    let text = std::fs::read_to_string(&errors[0]).expect("errors");
    let rejected: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
    assert!(
        rejected["object"]
            .as_str()
            .expect("object")
            .ends_with("b.parquet")
    );
    assert_eq!(rejected["stage"], "parquet");
    assert!(
        rejected["error"].as_str().expect("error").contains("row 2"),
        "{rejected}"
    );
    assert!(
        rejected["record"]
            .as_str()
            .expect("record")
            .contains("oops"),
        "{rejected}"
    );

    // A third object without `tag`: an error under cast, nulls under null_fill.
    write_parquet(
        &input.join("c.parquet"),
        vec![
            ("id", Arc::new(Int64Array::from(vec![6])) as ArrayRef),
            ("score", Arc::new(Float64Array::from(vec![6.5]))),
        ],
    );
    let (o, sink, report) = run(
        dir.path(),
        "cast-missing",
        &cast,
        "  on_error: dead_letter\n  max_error_ratio: 0.5\n",
    );
    // Under dead_letter the object is left out and recorded.
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(report.expect("report")["objects_rejected"], 1);
    let errors = files(&sink.join("_kiln/errors"));
    let text: String = errors
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("errors"))
        .collect();
    let left_out = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|r| r["kind"] == "object")
        .expect("the object is recorded");
    assert!(
        left_out["object"]
            .as_str()
            .expect("object")
            .ends_with("c.parquet")
    );
    let why = left_out["error"].as_str().expect("error");
    assert!(
        why.contains("no column `tag`") && why.contains("null_fill"),
        "{why}"
    );
    let null_fill = format!("{source}\n  on_schema_mismatch: null_fill");
    let (o, sink, _) = run(
        dir.path(),
        "null-fill",
        &null_fill,
        "  on_error: dead_letter\n  max_error_ratio: 0.5\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&sink)[&6], vec!["6.5".to_string(), "null".to_string()]);
    assert_eq!(rows(&sink).len(), 5);
}

#[test]
fn csv_columns_are_read_by_name_under_cast_and_null_fill() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("a.csv"), "id,name,score\n1,ann,0.5\n2,bob,1.5\n").expect("write");
    // Another order, a new column, no `name`.
    std::fs::write(input.join("b.csv"), "score,extra,id\n2.5,q,3\n3.5,r,4\n").expect("write");
    let source = format!("  uri: {}/*.csv", input.display());

    let (o, _, _) = run(dir.path(), "fail", &source, "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("b.csv") && e.contains("a.csv") && e.contains("on_schema_mismatch"),
        "{e}"
    );

    let (o, _, _) = run(
        dir.path(),
        "cast",
        &format!("{source}\n  on_schema_mismatch: cast"),
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("b.csv") && e.contains("no column `name`") && e.contains("null_fill"),
        "{e}"
    );

    for on_error in ["fail", "dead_letter"] {
        let (o, sink, report) = run(
            dir.path(),
            &format!("null-fill-{on_error}"),
            &format!("{source}\n  on_schema_mismatch: null_fill"),
            &format!("  on_error: {on_error}\n"),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let want: BTreeMap<i64, Vec<String>> = [
            (1, vec!["ann", "0.5"]),
            (2, vec!["bob", "1.5"]),
            (3, vec!["null", "2.5"]),
            (4, vec!["null", "3.5"]),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(rows(&sink), want, "on_error: {on_error}");
        assert_eq!(report.expect("report")["rows_in"], 4);
    }
    // A fitted step's full pass reads only the columns it needs (a projection of the
    // object's own columns), then the transform pass reads them all.
    let (o, sink, _) = run(
        dir.path(),
        "null-fill-fitted",
        &format!(
            "{source}\n  on_schema_mismatch: null_fill\n\
             steps:\n  - standardize: {{ columns: [score] }}\n  - fill_null: {{ value: {{ name: none }} }}"
        ),
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows(&sink);
    assert_eq!(got[&3][0], "none");
    let z: Vec<f64> = got
        .values()
        .map(|r| r[1].parse().expect("a float"))
        .collect();
    // 0.5, 1.5, 2.5, 3.5: mean 2, standard deviation 1.118 (ddof 0, the default).
    assert!(
        (z[0] + 1.341641).abs() < 1e-5 && (z[3] - 1.341641).abs() < 1e-5,
        "{z:?}"
    );
}

#[test]
fn json_values_of_another_type_are_converted_under_cast() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(
        input.join("a.jsonl"),
        "{\"id\":1,\"tag\":\"a\"}\n{\"id\":\"2\",\"tag\":7,\"new\":true}\n{\"id\":3}\n",
    )
    .expect("write");
    let source = format!(
        "  uri: {}/*.jsonl\n  schema: {{ id: int64, tag: string }}",
        input.display()
    );
    let (o, _, _) = run(dir.path(), "fail", &source, "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("on_schema_mismatch: cast"),
        "{}",
        stderr(&o)
    );

    let (o, sink, _) = run(
        dir.path(),
        "cast",
        &format!("{source}\n  on_schema_mismatch: cast"),
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let want: BTreeMap<i64, Vec<String>> = [(1, vec!["a"]), (2, vec!["7"]), (3, vec!["null"])]
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(rows(&sink), want);
}
