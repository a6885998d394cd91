//! `sink.format: webdataset`: the `webdataset` package (`tests/interop/webdataset_read.py`,
//! in `.venv-train`) reads each split's tar shards and sees, sample for sample, the rows
//! of the Parquet run of the same pipeline: the same images (by SHA-256), labels, class
//! ids and paths; keys from a column; what no member type fits is refused.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use sha2::Digest;

use crate::util::*;

/// The tar shards of a folder, in name order.
fn tars(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The rows of a split of the Parquet run, as `webdataset_read.py` prints a sample
/// (without the key).
fn parquet_samples(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for batch in read_shards(dir).values() {
        let path = batch
            .column_by_name("path")
            .expect("path")
            .as_string::<i32>();
        let label = batch
            .column_by_name("label")
            .expect("label")
            .as_string::<i32>();
        let id = batch
            .column_by_name("label_id")
            .expect("label_id")
            .as_primitive::<Int64Type>();
        let image = batch.column_by_name("image").expect("image").as_struct();
        let bytes = image
            .column_by_name("bytes")
            .expect("bytes")
            .as_binary::<i32>();
        for r in 0..batch.num_rows() {
            assert!(bytes.is_valid(r));
            out.push(serde_json::json!({
                "path.txt": path.value(r),
                "label.txt": label.value(r),
                "label_id.cls": id.value(r),
                "image.jpg": { "sha256": format!("{:x}", sha2::Sha256::digest(bytes.value(r))) },
            }));
        }
    }
    out
}

#[test]
fn webdataset_reads_each_split_as_the_parquet_run_holds_it() {
    let parquet = tempfile::tempdir().expect("tmp");
    let wds = tempfile::tempdir().expect("tmp");
    kiln_ok(
        parquet.path(),
        &[
            "run",
            "-q",
            "pipelines/images-webdataset.yaml",
            "--set",
            "sink.format=parquet",
        ],
    );
    // Shards of at most 3 samples: a split spans several tars.
    kiln_ok(
        wds.path(),
        &[
            "run",
            "-q",
            "pipelines/images-webdataset.yaml",
            "--set",
            "sink.max_rows=3",
        ],
    );
    let p_sink = parquet.path().join("images-webdataset");
    let w_sink = wds.path().join("images-webdataset");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w_sink.join("_kiln/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let splits = manifest["splits"].as_array().expect("splits");
    assert_eq!(splits.len(), 2);
    assert_eq!(splits[0]["data_files"], "split=train/part-*.tar");
    let out = stdout(&kiln_ok(
        wds.path(),
        &["inspect", &w_sink.to_string_lossy()],
    ));
    assert!(out.contains("webdataset.WebDataset("), "{out}");

    let Some(python) = train_python() else {
        return;
    };
    for split in ["train", "test"] {
        let shards = tars(&w_sink.join(format!("split={split}")));
        assert!(shards.len() > 1, "{split}: several shards");
        let o = std::process::Command::new(&python)
            .current_dir(repo())
            .arg("tests/interop/webdataset_read.py")
            .args(&shards)
            .output()
            .expect("python runs");
        assert!(o.status.success(), "webdataset failed: {}", stderr(&o));
        let mut got: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("JSON");
        let keys: Vec<String> = got
            .iter_mut()
            .map(|s| {
                s.as_object_mut()
                    .and_then(|m| m.remove("__key__"))
                    .and_then(|k| k.as_str().map(str::to_string))
                    .expect("key")
            })
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{split}: keys are unique");
        let want = parquet_samples(&p_sink.join(format!("split={split}")));
        assert_eq!(got.len(), want.len(), "{split}: samples");
        assert!(
            got == want,
            "{split}: webdataset reads other samples than the Parquet run holds"
        );
    }
    // The training-loop example: decoded image tensors in batches, two DataLoader workers.
    let o = std::process::Command::new(&python)
        .current_dir(repo())
        .args([
            "examples/webdataset_dataloader.py",
            &w_sink.to_string_lossy(),
            "--workers",
            "2",
            "--json",
        ])
        .output()
        .expect("python runs");
    assert!(o.status.success(), "the example failed: {}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(r["samples"], r["manifest_rows"], "{r}");
    assert_eq!(
        r["last_batch_shape"].as_array().map(|s| s[1..].to_vec()),
        Some(vec![3.into(), 224.into(), 224.into()]),
        "{r}"
    );
}

#[test]
fn keys_come_from_a_column_and_what_no_member_fits_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("rows");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("a.jsonl"),
        "{\"id\": \"doc-1\", \"score\": 0.5, \"n\": 3}\n{\"id\": \"doc-2\", \"score\": null, \"n\": 4}\n",
    )
    .expect("write");
    let yaml = |sink: &str, steps: &str, extra: &str| {
        format!(
            "version: 1\nname: rows\nsource:\n  uri: {}/*.jsonl\n{steps}sink:\n  uri: {}/{sink}/\n  format: webdataset\n{extra}",
            data.display(),
            dir.path().display()
        )
    };
    let p = pipeline(
        dir.path(),
        "ok.yaml",
        &yaml("ok", "", "  webdataset: { key: id }\n"),
    );
    kiln_ok(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    let tar = std::fs::read(dir.path().join("ok/part-00000-00000.tar")).expect("tar");
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(tar.as_slice());
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut e, &mut body).expect("read");
        names.push(format!("{name}={body}"));
    }
    // A null is an absent member.
    assert_eq!(
        names,
        [
            "doc-1.id.txt=doc-1",
            "doc-1.score.json=0.5",
            "doc-1.n.cls=3",
            "doc-2.id.txt=doc-2",
            "doc-2.n.cls=4",
        ]
    );
    // A key with a dot stops the task; a date, a float key, a card: plan errors.
    let p = pipeline(
        dir.path(),
        "dot.yaml",
        &yaml(
            "dot",
            "steps:\n  - derive: { id: \"concat(id, '.x')\" }\n",
            "  webdataset: { key: id }\n",
        ),
    );
    let o = kiln(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("without `.` or `/`"), "{}", stderr(&o));
    assert!(!dir.path().join("dot/part-00000-00000.tar").exists());
    for (name, steps, extra, want) in [
        (
            "date",
            "steps:\n  - derive: { d: \"CAST('2026-01-01' AS DATE)\" }\n",
            "",
            "`d` is Date32",
        ),
        (
            "floatkey",
            "",
            "  webdataset: { key: score }\n",
            "string or an integer",
        ),
        ("card", "", "  dataset_card: true\n", "dataset_card"),
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
