//! The interop suite (`make interop`, and part of `make test`): kiln datasets written to
//! local disk and to the local S3 server, read back by the readers training code uses —
//! pyarrow.dataset, DuckDB, Polars and Hugging Face `datasets` (images through its
//! `Image` feature) — through
//! `tests/interop/readers.py`, which checks rows, splits, types and column statistics
//! against each manifest, the Parquet layout (statistics, page index, dictionaries, the
//! pipeline hash) and the dataset card, including cards broken on purpose.

use crate::s3::{Bucket, kiln_env_ok};
use crate::util::*;

#[test]
fn training_readers_load_kiln_datasets_from_disk_and_s3() {
    let Some(b) = Bucket::new("interop") else {
        return;
    };
    let Some(python) = test_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    // Splits in folders, strings (web-text); token lists (pretrain-packed); numbers,
    // nulls, booleans and timestamps (csv-events).
    // Images as the Image feature (images). Tabular features fitted on the training
    // split and applied to the validation split (customers/*).
    let local = [
        "web-text",
        "pretrain-packed",
        "csv-events",
        "images",
        "customers/train",
        "customers/valid",
    ];
    for p in [
        "web-text",
        "pretrain-packed",
        "csv-events",
        "images",
        "tabular-train",
        "tabular-valid",
    ] {
        kiln_ok(
            &out,
            &[
                "run",
                "-q",
                &format!("pipelines/{p}.yaml"),
                "--set",
                "sink.dataset_card=true",
            ],
        );
    }
    // Without the card (the default), the folder itself, as a user types it, in each
    // reader's own way: a split partition and a plain sink.
    let plain = dir.path().join("plain");
    for p in ["web-text", "csv-events"] {
        kiln_ok(&plain, &["run", "-q", &format!("pipelines/{p}.yaml")]);
    }
    b.upload_dir(&repo().join("sample-data/text"), "raw-text");
    b.upload_dir(&repo().join("sample-data/web"), "raw-web");
    b.upload_dir(&repo().join("sample-data/images"), "raw-images");
    let env = b.env();
    for (p, source) in [
        ("web-text", "raw-text/*.jsonl*"),
        ("pretrain-packed", "raw-web/*.jsonl.gz"),
        ("images", "raw-images/**/*.{jpg,png,webp}"),
    ] {
        kiln_env_ok(
            &env,
            &[
                "run",
                "-q",
                &format!("pipelines/{p}.yaml"),
                "--set",
                &format!("source.uri={}", b.uri(source)),
                "--set",
                &format!("sink.uri={}", b.uri(&format!("{p}/"))),
            ],
        );
    }
    let mut datasets: Vec<serde_json::Value> = local
        .iter()
        .map(|p| serde_json::json!({ "uri": out.join(p) }))
        .collect();
    for p in ["web-text", "csv-events"] {
        datasets.push(serde_json::json!({ "uri": plain.join(p), "card": false }));
    }
    for p in ["web-text", "pretrain-packed", "images"] {
        datasets.push(serde_json::json!({
            "uri": b.uri(&format!("{p}/")),
            "endpoint": b.endpoint,
        }));
    }
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        serde_json::to_vec(&serde_json::json!({ "datasets": datasets, "repo": repo() }))
            .expect("json"),
    )
    .expect("write spec");
    let o = std::process::Command::new(python)
        .arg(repo().join("tests/interop/readers.py"))
        .arg(&spec)
        .current_dir(dir.path())
        // Offline mode would refuse the s3:// reads too; instead any call to the Hub
        // goes to a closed loopback port and fails at once.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_DATASETS_OFFLINE")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .expect("python runs");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "readers.py printed no report ({e}):\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    assert!(
        o.status.success(),
        "the readers disagree with kiln's manifests:\n{}",
        stderr(&o)
    );
    assert_eq!(report["failures"], serde_json::json!([]));
    // Every reader ran on every store, and the card was checked.
    for reader in [
        "parquet files[local]",
        "parquet files[s3]",
        "pyarrow.dataset[local]",
        "pyarrow.dataset[s3]",
        "duckdb[local]",
        "duckdb[s3]",
        "polars[local]",
        "polars[s3]",
        "datasets[local]",
        "datasets[s3]",
        "dataset card",
        "folder as typed",
        "tabular (numpy)",
        "datasets[tabular]",
    ] {
        let n = report["by_reader"][reader].as_u64().unwrap_or(0);
        assert!(n > 0, "no checks by {reader}: {report}");
    }

    // The training-loop example of docs/training.md (without torch, which `make test`
    // does not install: the same iterable dataset in a plain loop) sees every token.
    let sink = out.join("pretrain-packed");
    let o = std::process::Command::new(std::env::var("KILN_TEST_PYTHON").expect("checked above"))
        .arg(repo().join("examples/torch_dataloader.py"))
        .arg(&sink)
        .arg("--json")
        .output()
        .expect("python runs");
    assert!(o.status.success(), "the example failed:\n{}", stderr(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(got["tokens"], manifest["tokens"]["tokens"], "{got}");
    assert_eq!(got["rows"], manifest["rows"], "{got}");
    assert_eq!(got["last_batch_shape"][1], 512, "packed rows stack: {got}");
}

/// The Parquet training-loop example (`examples/torch_dataloader.py`) with torch: one
/// epoch stopped after 7 batches and resumed from the saved position equals the
/// uninterrupted epoch, stream for stream, with the shards dealt to two DataLoader
/// worker processes and with none. Several shards of several row groups, so the resume
/// skips whole row groups and rows within one.
#[test]
fn the_parquet_training_loop_resumes_mid_epoch_as_an_uninterrupted_epoch() {
    let Some(python) = train_python() else {
        return;
    };
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            "pipelines/pretrain-packed.yaml",
            "--set",
            "sink.max_rows=100",
            "--set",
            "sink.row_group_rows=30",
        ],
    );
    let sink = out.path().join("pretrain-packed");
    for workers in ["0", "2"] {
        let o = std::process::Command::new(&python)
            .arg(repo().join("examples/torch_dataloader.py"))
            .arg(&sink)
            .args(["--workers", workers, "--check-resume", "7", "--json"])
            .output()
            .expect("python runs");
        assert!(o.status.success(), "the example failed:\n{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(r["resumed_equals_uninterrupted"], true, "{r}");
        assert!(r["torch"].as_str().is_some(), "with torch: {r}");
        assert_eq!(r["before_restart"], 56, "7 batches of 8: {r}");
        assert_eq!(r["rows"], 436, "{r}");
        let streams = r["position"].as_object().expect("position").len();
        assert_eq!(streams, if workers == "2" { 2 } else { 1 }, "{r}");
    }
}
