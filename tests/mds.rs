//! `sink.format: mds`: MosaicML Streaming's own `StreamingDataset`
//! (`tests/interop/mds_read.py`, in `.venv-train`) reads every split of a kiln MDS sink,
//! from local disk and from the local S3 server, and sees, sample for sample, the rows
//! of the Parquet run of the same pipeline; columns MDS cannot hold are refused.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type, UInt32Type};

use crate::s3::Bucket;
use crate::util::*;

/// The samples `StreamingDataset` reads, by split, one JSON object each.
fn streaming_read(
    python: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut cmd = std::process::Command::new(python);
    cmd.current_dir(repo())
        .arg("tests/interop/mds_read.py")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("python runs");
    assert!(
        o.status.success(),
        "StreamingDataset failed: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).expect("JSON")
}

/// Every row of the Parquet shards below `dir`, shards in name order, as the JSON
/// `mds_read.py` prints for the pipeline's columns.
fn parquet_samples(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for batch in read_shards(dir).values() {
        for row in 0..batch.num_rows() {
            out.push(sample(batch, row));
        }
    }
    out
}

fn sample(batch: &RecordBatch, row: usize) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let v = match f.data_type() {
            DataType::Utf8 => serde_json::json!(c.as_string::<i32>().value(row)),
            DataType::Int32 => serde_json::json!(c.as_primitive::<Int32Type>().value(row)),
            // As float32 widened: what numpy's float32.item() gives.
            DataType::Float32 => {
                serde_json::json!(f64::from(c.as_primitive::<Float32Type>().value(row)))
            }
            DataType::List(_) => {
                let v = c.as_list::<i32>().value(row);
                serde_json::json!({
                    "array": "uint32",
                    "values": v.as_primitive::<UInt32Type>().values().to_vec(),
                })
            }
            other => panic!("no comparison for {other}"),
        };
        m.insert(f.name().clone(), v);
    }
    serde_json::Value::Object(m)
}

/// The two runs agree sample for sample (floats compared as float32).
fn assert_same(got: &[serde_json::Value], want: &[serde_json::Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: samples");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, wv) in w.as_object().expect("object") {
            let gv = &g[k];
            let same = match (gv.as_f64(), wv.as_f64()) {
                (Some(a), Some(b)) if wv.is_f64() => (a as f32) == (b as f32),
                _ => gv == wv,
            };
            assert!(same, "{what}: sample {i}, column {k}: {gv} != {wv}");
        }
        assert_eq!(
            g.as_object().expect("object").len(),
            w.as_object().expect("object").len(),
            "{what}: sample {i} columns"
        );
    }
}

#[test]
fn streaming_dataset_reads_each_split_as_the_parquet_run_holds_it() {
    let parquet = tempfile::tempdir().expect("tmp");
    let mds = tempfile::tempdir().expect("tmp");
    // Several shards per split (max_rows), so index.json lists more than one.
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "run",
            "-q",
            "pipelines/pretrain-mds.yaml",
            "--set",
            "sink.max_rows=400",
        ];
        a.extend(extra);
        kiln_ok(out, &a);
    };
    run(parquet.path(), &["--set", "sink.format=parquet"]);
    run(mds.path(), &[]);
    let p_sink = parquet.path().join("pretrain-mds");
    let m_sink = mds.path().join("pretrain-mds");

    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(m_sink.join("_kiln/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let shards = manifest["shards"].as_array().expect("shards");
    for split in ["train", "validation"] {
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(m_sink.join(format!("split={split}/index.json"))).expect("index.json"),
        )
        .expect("JSON");
        let listed = index["shards"].as_array().expect("shards");
        let of_split: Vec<_> = shards
            .iter()
            .filter(|s| {
                s["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("split={split}/")))
            })
            .collect();
        assert_eq!(
            listed.len(),
            of_split.len(),
            "{split}: index.json lists every shard"
        );
        for (entry, shard) in listed.iter().zip(&of_split) {
            let path = shard["path"].as_str().expect("path");
            assert!(path.ends_with(entry["raw_data"]["basename"].as_str().expect("basename")));
            let bytes = std::fs::read(m_sink.join(path)).expect("shard");
            assert_eq!(
                entry["raw_data"]["bytes"].as_u64(),
                Some(bytes.len() as u64)
            );
            assert_eq!(entry["samples"], shard["rows"]);
            assert_eq!(
                entry["column_encodings"],
                serde_json::json!(["str", "float32", "int32", "str", "ndarray:uint32", "str"])
            );
        }
    }
    assert!(
        shards.len() >= 4,
        "train has several shards: {}",
        shards.len()
    );
    assert_eq!(manifest["tokens"], {
        let p: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p_sink.join("_kiln/manifest.json")).expect("manifest"),
        )
        .expect("JSON");
        p["tokens"].clone()
    });

    let Some(python) = train_python() else {
        return;
    };
    let read = streaming_read(
        &python,
        &[
            "--local",
            &m_sink.to_string_lossy(),
            "--split",
            "split=train",
            "--split",
            "split=validation",
        ],
        &[],
    );
    for split in ["train", "validation"] {
        let want = parquet_samples(&p_sink.join(format!("split={split}")));
        assert!(!want.is_empty());
        assert_same(&read[&format!("split={split}")], &want, split);
    }
    // The training-loop example: an epoch stopped after 5 batches and resumed from the
    // loader's saved state is the uninterrupted epoch.
    let o = std::process::Command::new(&python)
        .current_dir(repo())
        .args([
            "examples/mds_dataloader.py",
            &m_sink.to_string_lossy(),
            "--split",
            "split=train",
            "--json",
        ])
        .output()
        .expect("python runs");
    assert!(o.status.success(), "the example failed: {}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(r["resumed_equals_uninterrupted"], true, "{r}");
    assert_eq!(
        r["samples"].as_u64(),
        Some(parquet_samples(&p_sink.join("split=train")).len() as u64),
        "{r}"
    );
    assert_eq!(r["before_restart"], 40, "{r}");

    // The same pipeline into the local S3 server, read by StreamingDataset from there.
    let Some(b) = Bucket::new("mds") else {
        return;
    };
    let env = b.env();
    crate::s3::kiln_env_ok(
        &env,
        &[
            "run",
            "-q",
            "pipelines/pretrain-mds.yaml",
            "--set",
            "sink.max_rows=400",
            "--set",
            &format!("sink.uri={}", b.uri("pretrain-mds/")),
        ],
    );
    let cache = tempfile::tempdir().expect("tmp");
    let mut py_env: Vec<(&str, String)> = env.clone();
    py_env.push((
        "S3_ENDPOINT_URL",
        env.iter()
            .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
            .map(|(_, v)| v.clone())
            .expect("endpoint"),
    ));
    let got = streaming_read(
        &python,
        &[
            "--remote",
            &b.uri("pretrain-mds"),
            "--local",
            &cache.path().to_string_lossy(),
            "--split",
            "split=train",
        ],
        &py_env,
    );
    assert_same(
        &got["split=train"],
        &parquet_samples(&p_sink.join("split=train")),
        "train from S3",
    );
}

#[test]
fn columns_mds_cannot_hold_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("rows");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("a.jsonl"),
        "{\"id\": 1, \"name\": \"a\", \"ok\": true}\n{\"id\": 2, \"name\": null, \"ok\": false}\n",
    )
    .expect("write");
    let yaml = |sink: &str, steps: &str, extra: &str| {
        format!(
            "version: 1\nname: rows\nsource:\n  uri: {}/*.jsonl\n{steps}sink:\n  uri: {}/{sink}/\n  format: mds\n{extra}",
            data.display(),
            dir.path().display()
        )
    };
    // A null: the task stops, naming the column; nothing is published.
    let p = pipeline(dir.path(), "null.yaml", &yaml("null", "", ""));
    let o = kiln(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("column `name` holds a null"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("null/_SUCCESS").exists());
    assert!(!dir.path().join("null/part-00000-00000.mds").exists());
    // Without it: booleans as uint8, the shard listed in index.json.
    let p = pipeline(
        dir.path(),
        "ok.yaml",
        &yaml("ok", "steps:\n  - filter: \"name IS NOT NULL\"\n", ""),
    );
    kiln_ok(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ok/index.json")).expect("index"))
            .expect("JSON");
    assert_eq!(
        index["shards"][0]["column_names"],
        serde_json::json!(["id", "name", "ok"])
    );
    assert_eq!(
        index["shards"][0]["column_encodings"],
        serde_json::json!(["int64", "str", "uint8"])
    );
    // A date, a card, shards over 4 GiB: plan errors before anything runs.
    for (name, steps, extra, want) in [
        (
            "date",
            "steps:\n  - derive: { d: \"CAST('2026-01-01' AS DATE)\" }\n",
            "",
            "`d` is Date32",
        ),
        ("card", "", "  dataset_card: true\n", "dataset_card"),
        ("big", "", "  max_bytes: 5GiB\n", "4 GiB"),
    ] {
        let p = pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &yaml(name, steps, extra),
        );
        let o = kiln(dir.path(), &["run", "-q", &p.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
    }
}
