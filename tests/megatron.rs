//! `sink.format: megatron`: the shards are read back by megatron-core's own
//! `IndexedDataset` (`tests/interop/megatron_read.py`, in `.venv-train`) and hold, document
//! for document, the token ids the Parquet run of the same pipeline writes; the same bytes
//! on one worker or two; bad token columns refused with what to do.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;

use crate::util::*;

/// Every document of a Parquet sink's token column, shards in name order.
fn parquet_documents(sink: &Path, column: &str) -> Vec<Vec<u64>> {
    let mut docs = Vec::new();
    for batch in read_shards(sink).values() {
        let lists = batch
            .column_by_name(column)
            .expect("token column")
            .as_list::<i32>();
        for i in 0..lists.len() {
            let v = lists.value(i);
            docs.push(
                v.as_primitive::<UInt32Type>()
                    .values()
                    .iter()
                    .map(|&x| u64::from(x))
                    .collect(),
            );
        }
    }
    docs
}

fn manifest(sink: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest"))
        .expect("manifest JSON")
}

/// The `.bin` and `.idx` files of a sink, by name and bytes.
fn megatron_files(sink: &Path) -> Vec<(String, Vec<u8>)> {
    files(sink)
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(sink).ok()?.to_string_lossy().into_owned();
            (!rel.starts_with("_kiln/") && (rel.ends_with(".bin") || rel.ends_with(".idx")))
                .then(|| (rel, std::fs::read(&p).expect("read")))
        })
        .collect()
}

#[test]
fn megatron_core_reads_the_tokens_the_parquet_run_writes() {
    let parquet = tempfile::tempdir().expect("tmp");
    let megatron = tempfile::tempdir().expect("tmp");
    // Several shards per task (max_rows), so document indices restart per shard.
    let set = ["--set", "sink.max_rows=500"];
    kiln_ok(
        parquet.path(),
        &[
            "run",
            "-q",
            "pipelines/pretrain-megatron.yaml",
            "--set",
            "sink.format=parquet",
            set[0],
            set[1],
        ],
    );
    kiln_ok(
        megatron.path(),
        &[
            "run",
            "-q",
            "pipelines/pretrain-megatron.yaml",
            set[0],
            set[1],
        ],
    );
    let p_sink = parquet.path().join("pretrain-megatron");
    let m_sink = megatron.path().join("pretrain-megatron");
    let want = parquet_documents(&p_sink, "tokens");
    assert!(want.len() > 1000, "the sample yields many documents");

    // The manifest: every .bin with its .idx, sizes and checksums as stored; the same
    // rows and tokens as the Parquet run.
    let m = manifest(&m_sink);
    let p = manifest(&p_sink);
    assert_eq!(m["rows"], p["rows"]);
    assert_eq!(m["tokens"], p["tokens"], "{:#}", m["tokens"]);
    assert_eq!(m["splits"][0]["data_files"], "part-*.bin");
    let shards = m["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), want.len().div_ceil(500));
    for s in shards {
        let bin = s["path"].as_str().expect("path");
        let idx = s["index"]["path"]
            .as_str()
            .expect("every shard has its .idx");
        assert_eq!(idx, bin.replace(".bin", ".idx"));
        for (file, rec) in [(bin, s), (idx, &s["index"])] {
            let bytes = std::fs::read(m_sink.join(file)).expect("shard file");
            assert_eq!(rec["bytes"].as_u64(), Some(bytes.len() as u64), "{file}");
            assert_eq!(
                rec["crc32c"].as_str(),
                Some(format!("{:08x}", crc32c::crc32c(&bytes)).as_str()),
                "{file}"
            );
        }
    }
    // The sample tokenizer has 4,096 ids: uint16, as Megatron's preprocess_data chooses.
    let bins: u64 = shards
        .iter()
        .map(|s| s["bytes"].as_u64().expect("bytes"))
        .sum();
    let tokens: u64 = want.iter().map(|d| d.len() as u64).sum();
    assert_eq!(bins, tokens * 2);
    let out = stdout(&kiln_ok(
        megatron.path(),
        &["inspect", &m_sink.to_string_lossy()],
    ));
    assert!(out.contains("IndexedDataset("), "{out}");

    // The same run into the local S3 server (when there is one), for megatron-core's
    // object-storage reader.
    let bucket = crate::s3::Bucket::new("megatron");
    if let Some(b) = &bucket {
        crate::s3::kiln_env_ok(
            &b.env(),
            &[
                "run",
                "-q",
                "pipelines/pretrain-megatron.yaml",
                set[0],
                set[1],
                "--set",
                &format!("sink.uri={}", b.uri("pretrain-megatron/")),
            ],
        );
    }
    let Some(python) = train_python() else {
        return;
    };
    // One process (megatron-core and torch take ~10 s to import): the local sink, the
    // training-loop example on it, and the S3 sink.
    let mut cmd = std::process::Command::new(python);
    cmd.current_dir(repo()).args([
        "tests/interop/megatron_read.py",
        &m_sink.to_string_lossy(),
        "--example-seq-len",
        "512",
    ]);
    if let Some(b) = &bucket {
        cmd.args(["--also", &b.uri("pretrain-megatron")]);
        for (k, v) in b.env() {
            cmd.env(k, v);
        }
    }
    let o = cmd.output().expect("python runs");
    assert!(
        o.status.success(),
        "megatron-core's read failed: {}",
        stderr(&o)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let read = out["shards"].as_array().expect("shards");
    let mut got: Vec<Vec<u64>> = Vec::new();
    for (shard, manifest_shard) in read.iter().zip(shards) {
        assert_eq!(shard["dtype"], "uint16");
        let n = shard["sequences"].as_u64().expect("sequences");
        assert_eq!(Some(n), manifest_shard["rows"].as_u64());
        // One sequence per document: the document indices are 0..=n.
        let docs: Vec<u64> = (0..=n).collect();
        assert_eq!(shard["document_indices"], serde_json::json!(docs));
        for d in shard["documents"].as_array().expect("documents") {
            got.push(
                d.as_array()
                    .expect("ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id"))
                    .collect(),
            );
        }
    }
    assert_eq!(read.len(), shards.len());
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "megatron-core reads other tokens than the Parquet run holds"
    );

    // The training-loop example (examples/megatron_dataloader.py), run in the same
    // process: documents packed into 512-token sequences.
    let r = &out["example"];
    assert_eq!(r["dataset_tokens"], tokens, "{r}");
    assert_eq!(r["sequences"], (tokens - 1) / 512, "{r}");
    assert_eq!(
        r["tokens"],
        r["sequences"].as_u64().expect("n") * 512,
        "{r}"
    );
    assert_eq!(r["last_batch_shape"][1], 512, "{r}");

    // From S3, with megatron-core's object-storage reader: the same documents.
    if bucket.is_some() {
        let from_s3: Vec<Vec<u64>> = out["also"]
            .as_array()
            .expect("the S3 sink's shards")
            .iter()
            .flat_map(|s| s["documents"].as_array().expect("documents").clone())
            .map(|d| {
                d.as_array()
                    .expect("ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id"))
                    .collect()
            })
            .collect();
        assert!(from_s3 == want, "megatron-core reads other tokens from S3");
    }
}

#[test]
fn megatron_shards_are_the_same_bytes_on_one_worker_or_two() {
    let one = tempfile::tempdir().expect("tmp");
    let two = tempfile::tempdir().expect("tmp");
    // One task per object (two objects): two tasks, one per worker.
    let args = |w: Option<&'static str>| {
        let mut a = vec![
            "run",
            "-q",
            "pipelines/pretrain-megatron.yaml",
            "--set",
            "run.task_bytes=1",
        ];
        if let Some(w) = w {
            a.extend(["--worker", w]);
        }
        a
    };
    kiln_ok(one.path(), &args(None));
    // Two workers at once (the near-dedup stage is shared through the sink).
    let workers: Vec<_> = ["0/2", "1/2"]
        .into_iter()
        .map(|w| {
            std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
                .current_dir(repo())
                .env("KILN_OUT", two.path())
                .env_remove("KILN_LOG")
                .args(args(Some(w)))
                .spawn()
                .expect("kiln starts")
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().expect("kiln ends").success());
    }
    assert!(two.path().join("pretrain-megatron/_SUCCESS").exists());
    let a = megatron_files(&one.path().join("pretrain-megatron"));
    let b = megatron_files(&two.path().join("pretrain-megatron"));
    assert!(
        a.len() >= 4,
        "two tasks, a .bin and an .idx each: {a:?}",
        a = a.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(a == b, "the same bytes on one worker or two");
    assert_eq!(
        manifest(&one.path().join("pretrain-megatron"))["shards"],
        manifest(&two.path().join("pretrain-megatron"))["shards"]
    );
}

#[test]
fn megatron_token_columns_of_any_integer_type_and_what_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("ids");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("a.jsonl"),
        "{\"ids\": [1, 2, 3], \"text\": \"a\"}\n{\"ids\": [70000], \"text\": \"b\"}\n{\"ids\": [], \"text\": \"c\"}\n",
    )
    .expect("write");
    let yaml = |sink: &str, extra: &str| {
        format!(
            "version: 1\nname: ids\nsource:\n  uri: {}/*.jsonl\nsink:\n  uri: {}/{sink}/\n  format: megatron\n{extra}",
            data.display(),
            dir.path().display()
        )
    };
    // No tokenize: int64 ids from JSON, stored as int32 (auto with no vocabulary);
    // an empty list is a document of no tokens.
    let p = pipeline(dir.path(), "ok.yaml", &yaml("ok", ""));
    kiln_ok(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    let idx = std::fs::read(dir.path().join("ok/part-00000-00000.idx")).expect("idx");
    assert_eq!(idx[17], 4, "int32");
    let bin = std::fs::read(dir.path().join("ok/part-00000-00000.bin")).expect("bin");
    let ids: Vec<i32> = bin
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(ids, [1, 2, 3, 70000]);
    assert_eq!(u64::from_le_bytes(idx[18..26].try_into().expect("8")), 3);

    // uint16 asked for, an id above 65,535: refused, naming the id and the fix.
    let p = pipeline(
        dir.path(),
        "u16.yaml",
        &yaml("u16", "  megatron: { dtype: uint16 }\n"),
    );
    let o = kiln(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    assert_ne!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert!(e.contains("70000") && e.contains("dtype: int32"), "{e}");
    assert!(!dir.path().join("u16/_SUCCESS").exists());
    assert!(
        !dir.path().join("u16/part-00000-00000.bin").exists(),
        "nothing published"
    );

    // No list-of-integer column, a named column that is not one, a dataset card: plan
    // errors (exit 2) before anything runs.
    for (name, extra, drop_ids, want) in [
        ("none", "", true, "add a `tokenize` step"),
        (
            "named",
            "  megatron: { column: text }\n",
            false,
            "not a list of integers",
        ),
        ("card", "  dataset_card: true\n", false, "dataset_card"),
    ] {
        let mut y = yaml(name, extra);
        if drop_ids {
            y = y.replace("sink:\n", "steps:\n  - drop: [ids]\nsink:\n");
        }
        let p = pipeline(dir.path(), &format!("{name}.yaml"), &y);
        let o = kiln(dir.path(), &["run", "-q", &p.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
    }
}
