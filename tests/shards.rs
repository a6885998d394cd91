//! Shard limits: `max_rows`, `max_bytes` (compressed bytes on disk, within 10%) and
//! hive-style partition folders.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::util::*;

fn input(dir: &std::path::Path, files: usize, docs: usize) {
    for i in 0..files {
        write_docs(&dir.join(format!("in/part-{i}.jsonl")), i * docs, docs);
    }
}

#[test]
fn max_rows_is_honoured_per_shard() {
    let data = tempfile::tempdir().expect("tmp");
    input(data.path(), 2, 5000);
    let yaml = format!(
        "version: 1\nname: rows\nsource:\n  uri: {}/in/*.jsonl\nsink:\n  uri: ${{KILN_OUT}}/rows\n  max_rows: 1234\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "rows.yaml", &yaml);
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
    let shards = read_shards(&out.path().join("rows"));
    let counts: Vec<usize> = shards.values().map(|b| b.num_rows()).collect();
    // One task (the input is small): 10000 rows → 8 full shards and a remainder.
    assert_eq!(
        counts,
        [1234, 1234, 1234, 1234, 1234, 1234, 1234, 1234, 128]
    );
    assert_eq!(
        shards.keys().next().map(String::as_str),
        Some("part-00000-00000.parquet")
    );
}

#[test]
fn max_bytes_is_honoured_within_ten_percent() {
    let data = tempfile::tempdir().expect("tmp");
    input(data.path(), 4, 20_000);
    let limit = 512 * 1024;
    let yaml = format!(
        "version: 1\nname: bytes\nsource:\n  uri: {}/in/*.jsonl\nsink:\n  uri: ${{KILN_OUT}}/bytes\n  max_bytes: {limit}\n  max_rows: 100000000\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "bytes.yaml", &yaml);
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
    let mut sizes: Vec<(String, u64)> = files(&out.path().join("bytes"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::metadata(&p).expect("meta").len(),
            )
        })
        .collect();
    sizes.sort();
    assert!(sizes.len() >= 4, "several shards: {sizes:?}");
    let last = sizes.pop().expect("a last shard");
    assert!(last.1 <= limit * 11 / 10, "{last:?}");
    for (name, size) in &sizes {
        assert!(
            *size <= limit * 11 / 10,
            "{name} is {size} bytes, over max_bytes {limit} by more than 10%"
        );
        assert!(
            *size >= limit * 8 / 10,
            "{name} is {size} bytes: closed too early for max_bytes {limit}"
        );
    }
    assert_eq!(total_rows(&out.path().join("bytes")), 80_000);
}

#[test]
fn partitions_land_in_their_folders() {
    let data = tempfile::tempdir().expect("tmp");
    input(data.path(), 1, 3000);
    let yaml = format!(
        "version: 1\nname: parts\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - derive: {{ bucket: \"n % 4\" }}\nsink:\n  uri: ${{KILN_OUT}}/parts\n  partition_by: [lang, bucket]\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "parts.yaml", &yaml);
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
    let shards = read_shards(&out.path().join("parts"));
    // `de` rows have n % 10 == 0, so only the even buckets: 2 + 4 folders.
    assert_eq!(shards.len(), 6, "{:?}", shards.keys().collect::<Vec<_>>());
    let mut total = 0;
    for (path, batch) in &shards {
        let (lang, rest) = path
            .strip_prefix("lang=")
            .expect("lang folder")
            .split_once("/bucket=")
            .expect("bucket folder");
        let bucket: i64 = rest
            .split('/')
            .next()
            .expect("value")
            .parse()
            .expect("number");
        assert!(
            batch.schema().index_of("lang").is_err() && batch.schema().index_of("bucket").is_err()
        );
        let n = batch
            .column(batch.schema().index_of("n").expect("n"))
            .as_primitive::<Int64Type>();
        for v in n.iter().flatten() {
            assert_eq!(v % 4, bucket, "{path}");
            assert_eq!(if v % 10 == 0 { "de" } else { "en" }, lang, "{path}");
        }
        total += batch.num_rows();
    }
    assert_eq!(total, 3000);
}

#[test]
fn hostile_partition_values_never_leave_the_sink() {
    // Values that would climb out of the sink, name absolute paths, or carry control
    // characters become one folder level each, below the sink, and decode back.
    let data = tempfile::tempdir().expect("tmp");
    let values = [
        "..",
        "../../etc",
        "/abs/path",
        "a\nb\r\u{0}c",
        "",
        "x=y%2F",
        "C:\\win",
        "ünï cödé",
    ];
    let mut lines = String::new();
    for (i, v) in values.iter().enumerate() {
        lines.push_str(&serde_json::json!({"id": i, "part": v}).to_string());
        lines.push('\n');
    }
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    std::fs::write(data.path().join("in/p.jsonl"), lines).expect("write");
    let yaml = format!(
        "version: 1\nname: hostile-parts\nsource:\n  uri: {}/in/*.jsonl\n\
         sink:\n  uri: ${{KILN_OUT}}/sink/parts\n  partition_by: [part]\n",
        data.path().display()
    );
    let p = pipeline(data.path(), "p.yaml", &yaml);
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
    let everything = files(out.path());
    assert!(
        everything
            .iter()
            .all(|f| f.starts_with(out.path().join("sink/parts"))),
        "{everything:?}"
    );
    let shards = read_shards(&out.path().join("sink/parts"));
    assert_eq!(
        shards.len(),
        values.len(),
        "{:?}",
        shards.keys().collect::<Vec<_>>()
    );
    for (path, batch) in &shards {
        let folder = path.strip_prefix("part=").expect("one partition level");
        let (raw, file) = folder.split_once('/').expect("folder/file");
        assert!(!file.contains('/'), "one level: {path}");
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .expect("utf-8");
        let id = batch
            .column(batch.schema().index_of("id").expect("id"))
            .as_primitive::<Int64Type>()
            .value(0) as usize;
        assert_eq!(value, values[id], "{path}");
    }
}

/// A shard that fills up in the middle of a Parquet source object closes and uploads
/// while the Parquet reader is still running (regression: the two waited on nested
/// executors and panicked).
#[test]
fn shards_close_in_the_middle_of_a_parquet_object() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            "pipelines/parquet-products.yaml",
            "--set",
            "sink.max_rows=25",
        ],
    );
    let shards = read_shards(&out.path().join("parquet-products"));
    assert!(shards.len() > 2, "{:?}", shards.keys());
    assert!(shards.values().all(|b| b.num_rows() <= 25));
    let reference = tempfile::tempdir().expect("tmp");
    kiln_ok(
        reference.path(),
        &["run", "-q", "pipelines/parquet-products.yaml"],
    );
    assert_eq!(
        total_rows(&out.path().join("parquet-products")),
        total_rows(&reference.path().join("parquet-products"))
    );
}

#[test]
fn the_string_hive_uses_for_null_gets_a_folder_of_its_own() {
    // Regression: a null and the string "__HIVE_DEFAULT_PARTITION__" shared a folder, so
    // a reader could not tell them apart.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(
        dir.path().join("in/a.jsonl"),
        "{\"id\":1,\"k\":null}\n{\"id\":2,\"k\":\"__HIVE_DEFAULT_PARTITION__\"}\n{\"id\":3,\"k\":\"x\"}\n",
    )
    .expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: hive\nsource:\n  uri: {}/in/*.jsonl\n\
         sink:\n  uri: {}\n  partition_by: [k]\n",
        dir.path().display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    let mut folders: Vec<String> = std::fs::read_dir(&sink)
        .expect("sink")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("k="))
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        [
            "k=%5F_HIVE_DEFAULT_PARTITION__",
            "k=__HIVE_DEFAULT_PARTITION__",
            "k=x"
        ]
    );
    assert_eq!(total_rows(&sink), 3);
}
