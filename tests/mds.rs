//! `sink.format: mds`: MosaicML Streaming's own `StreamingDataset`
//! (`tests/interop/mds_read.py`, in `.venv-train`) reads every split of a kiln MDS sink,
//! from local disk and from the local S3 server, and sees, sample for sample, the rows
//! of the Parquet run of the same pipeline; columns MDS cannot hold are refused.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type, UInt8Type, UInt32Type};

use crate::s3::Bucket;
use crate::util::*;

/// What `mds_read.py` prints: samples by where and split, and the example's epoch.
fn streaming_read(python: &str, args: &[&str], env: &[(&str, String)]) -> serde_json::Value {
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
            DataType::List(item) => {
                let v = c.as_list::<i32>().value(row);
                match item.data_type() {
                    DataType::Int32 => serde_json::json!({
                        "array": "int32",
                        "values": v.as_primitive::<Int32Type>().values().to_vec(),
                    }),
                    DataType::UInt8 => serde_json::json!({
                        "array": "uint8",
                        "values": v.as_primitive::<UInt8Type>().values().to_vec(),
                    }),
                    _ => serde_json::json!({
                        "array": "uint32",
                        "values": v.as_primitive::<UInt32Type>().values().to_vec(),
                    }),
                }
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

    // The same pipeline into the local S3 server (when there is one).
    let bucket = Bucket::new("mds");
    let mut py_env: Vec<(&str, String)> = Vec::new();
    if let Some(b) = &bucket {
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
        py_env = env.clone();
        py_env.push((
            "S3_ENDPOINT_URL",
            env.iter()
                .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
                .map(|(_, v)| v.clone())
                .expect("endpoint"),
        ));
    }
    let Some(python) = train_python() else {
        return;
    };
    // One process (streaming and torch take ~10 s to import): both splits from disk,
    // the train split from S3, and the training-loop example.
    let cache = tempfile::tempdir().expect("tmp");
    let local = m_sink.to_string_lossy().into_owned();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let remote = bucket.as_ref().map(|b| b.uri("pretrain-mds"));
    // The mixture example (packed rows: input_ids, cu_seqlens, loss_mask) as MDS and as
    // Parquet, read in the same process.
    let mixture = tempfile::tempdir().expect("tmp");
    let p = "pipelines/pretrain-mixture.yaml";
    kiln_ok(mixture.path(), &["run", "-q", p]);
    kiln_ok(
        mixture.path(),
        &[
            "run",
            "-q",
            p,
            "--set",
            "sink.format=parquet",
            "--set",
            &format!("sink.uri={}/mixture-parquet", mixture.path().display()),
        ],
    );
    let mixed = mixture
        .path()
        .join("pretrain-mixture")
        .to_string_lossy()
        .into_owned();
    let mut args = vec![
        "--local",
        local.as_str(),
        "--split",
        "split=train",
        "--split",
        "split=validation",
        "--example",
        "split=train",
        "--also",
        mixed.as_str(),
    ];
    if let Some(r) = &remote {
        args.extend([
            "--remote",
            r,
            "--cache",
            &cache_dir,
            "--remote-split",
            "split=train",
        ]);
    }
    let read = streaming_read(&python, &args, &py_env);
    let got: Vec<serde_json::Value> =
        serde_json::from_value(read["also"].clone()).expect("samples");
    let want = parquet_samples(&mixture.path().join("mixture-parquet"));
    assert!(want.len() > 300, "{} packed rows", want.len());
    assert_same(&got, &want, "the mixture example");
    for split in ["train", "validation"] {
        let want = parquet_samples(&p_sink.join(format!("split={split}")));
        assert!(!want.is_empty());
        let got: Vec<serde_json::Value> =
            serde_json::from_value(read["local"][format!("split={split}")].clone())
                .expect("samples");
        assert_same(&got, &want, split);
    }
    if remote.is_some() {
        let got: Vec<serde_json::Value> =
            serde_json::from_value(read["remote"]["split=train"].clone()).expect("samples");
        assert_same(
            &got,
            &parquet_samples(&p_sink.join("split=train")),
            "train from S3",
        );
    }
    // The training-loop example (examples/mds_dataloader.py): an epoch stopped after 5
    // batches and resumed from the loader's saved state is the uninterrupted epoch.
    let r = &read["example"];
    assert_eq!(r["resumed_equals_uninterrupted"], true, "{r}");
    assert_eq!(
        r["samples"].as_u64(),
        Some(parquet_samples(&p_sink.join("split=train")).len() as u64),
        "{r}"
    );
    assert_eq!(r["before_restart"], 40, "{r}");
}
