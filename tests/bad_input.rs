//! `run.on_error: skip | dead_letter`: bad records and bad objects are left out, counted
//! and (dead_letter) recorded with where they were and why; everything else is written.
//! Every run here checks the accounting identity: records read = rows written + rows
//! filtered + records left out.

use std::io::Write;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use serde_json::Value;

use crate::util::*;

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("report JSON")
}

/// The `id` column of every shard, sorted.
fn ids(sink: &Path) -> Vec<i64> {
    let mut out: Vec<i64> = read_shards(sink)
        .values()
        .flat_map(|b| {
            b.column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

/// records read = rows written + rows filtered + records left out, where a step's
/// filtered rows are those it took in and neither passed on nor left out.
fn assert_rows_add_up(r: &Value, sink: &Path) {
    let n = |v: &Value| v.as_u64().expect("a count");
    let rows_out = n(&r["rows_out"]);
    assert_eq!(
        rows_out as usize,
        total_rows(sink),
        "rows_out is what the shards hold"
    );
    let filtered: u64 = r["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| n(&s["rows_in"]) - n(&s["rows_out"]) - s["rows_rejected"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        n(&r["rows_in"]),
        rows_out + filtered + n(&r["rows_rejected"]),
        "records read = written + filtered + left out: {r:#}"
    );
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn bad_json_lines_failed_casts_and_a_cut_gzip_are_left_out_and_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut a = Vec::new();
    a.extend_from_slice(b"{\"id\":1,\"text\":\"one\",\"n\":\"1\"}\n");
    a.extend_from_slice(b"{\"id\":2,\"text\":\"two\",\"n\":\"2\"}\n");
    a.extend_from_slice(b"{\"id\":3,\"text\":\"three\" oops}\n");
    a.extend_from_slice(b"{\"id\":\"four\",\"text\":\"four\",\"n\":\"4\"}\n");
    a.extend_from_slice(b"\n");
    a.extend_from_slice(b"{\"id\":6,\"text\":\"six\",\"n\":\"x6\"}\n");
    a.extend_from_slice(b"{\"id\":7,\"text\":\"seven \xff\xfe\",\"n\":\"7\"}\n");
    a.extend_from_slice(b"{\"id\":8,\"text\":\"eight\",\"n\":\"8\"}");
    std::fs::write(input.join("a.jsonl"), &a).expect("write");
    // 3000 good lines, gzipped, then cut: the rows before the cut are kept.
    let mut b = String::new();
    for i in 100..3100 {
        b.push_str(&format!(
            "{{\"id\":{i},\"text\":\"document {i} {}\",\"n\":\"{i}\"}}\n",
            "x".repeat(i % 97)
        ));
    }
    let b = gzip(b.as_bytes());
    std::fs::write(input.join("b.jsonl.gz"), &b[..b.len() * 6 / 10]).expect("write");

    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: bad-json\nsource:\n  uri: {}/*.jsonl*\n  infer_rows: 2\n\
         steps:\n  - cast: {{ n: int64 }}\n  - filter: \"id <> 2\"\n\
         sink:\n  uri: {}\nrun:\n  on_error: dead_letter\n  batch_rows: 1024\n",
        input.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let rep = dir.path().join("report.json");
    let args = [
        "run",
        "-q",
        p.to_str().expect("utf-8"),
        "--report",
        rep.to_str().expect("utf-8"),
    ];
    let o = kiln(dir.path(), &args);
    // The default max_error_ratio is 0: the dataset is complete, and the exit says it
    // left bad input out.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("run.max_error_ratio"), "{}", stderr(&o));
    assert!(sink.join("_SUCCESS").exists());
    let r = report(&rep);
    assert_eq!(r["status"], "too_many_errors");
    assert_rows_add_up(&r, &sink);

    let errors = dead_letters(&sink);
    let cut = errors
        .iter()
        .find(|e| e["kind"] == "object")
        .expect("the cut gzip is recorded");
    assert!(
        cut["object"]
            .as_str()
            .expect("object")
            .ends_with("b.jsonl.gz")
    );
    assert!(
        cut["error"].as_str().expect("error").contains("gzip"),
        "{cut}"
    );
    let kept = cut["rows_before"].as_u64().expect("rows_before") as i64;
    assert!(kept > 100 && kept < 3000, "{cut}");

    let mut want: Vec<i64> = vec![1, 8];
    want.extend(100..100 + kept);
    assert_eq!(ids(&sink), want, "exactly the good rows");

    let mut records: Vec<(u64, String)> = errors
        .iter()
        .filter(|e| e["kind"] == "record")
        .map(|e| {
            assert!(e["object"].as_str().expect("object").ends_with("a.jsonl"));
            (
                e["line"].as_u64().unwrap_or(0),
                e["stage"].as_str().expect("stage").to_string(),
            )
        })
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            (0, "step 1 cast".to_string()),
            (3, "jsonl".to_string()),
            (4, "jsonl".to_string()),
            (7, "jsonl".to_string()),
        ]
    );
    let by_line = |line: u64| {
        errors
            .iter()
            .find(|e| e["line"].as_u64() == Some(line))
            .expect("line")
    };
    assert!(
        by_line(3)["error"]
            .as_str()
            .expect("e")
            .starts_with("malformed JSON")
    );
    assert_eq!(by_line(3)["record"], "{\"id\":3,\"text\":\"three\" oops}");
    let line_start = |k: usize| -> u64 {
        a.split_inclusive(|&c| c == b'\n')
            .take(k - 1)
            .map(|l| l.len() as u64)
            .sum()
    };
    assert_eq!(by_line(4)["offset"].as_u64(), Some(line_start(4)));
    assert_eq!(by_line(7)["offset"].as_u64(), Some(line_start(7)));
    let cast = errors
        .iter()
        .find(|e| e["stage"] == "step 1 cast")
        .expect("cast");
    assert!(
        cast["record"]
            .as_str()
            .expect("record")
            .contains("\"n\":\"x6\""),
        "{cast}"
    );

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["rejected"]["rows"], 4);
    assert_eq!(manifest["rejected"]["undecoded"], 3);
    assert_eq!(manifest["rejected"]["objects"], 1);
    assert_eq!(manifest["rejected"]["by_stage"]["jsonl"], 3);

    // A ratio that allows this much: the same complete dataset, exit 0.
    let mut lenient = args.to_vec();
    lenient.extend(["--set", "run.max_error_ratio=0.5"]);
    let o = kiln(dir.path(), &lenient);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report(&rep)["status"], "already_complete");

    // Under fail, the first bad line ends the run and names it.
    let failing = dir.path().join("fail");
    let o = kiln(
        dir.path(),
        &[
            "run",
            "-q",
            p.to_str().expect("utf-8"),
            "--set",
            &format!("sink.uri={}", failing.display()),
            "--set",
            "run.on_error=fail",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a.jsonl line 3: malformed JSON"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn csv_rows_with_a_wrong_field_count_or_a_bad_number_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(
        input.join("prices.csv"),
        "id,name,price\n1,apple,1.5\n2,pear,2.0\n3,\"quoted\nname\",3.25\n4,plum\n\
         5,fig,abc\n6,kiwi,6.5,extra\n7,\"lime, green\",7.0\n",
    )
    .expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: bad-csv\nsource:\n  uri: {}/*.csv\n  infer_rows: 3\n\
         sink:\n  uri: {}\nrun:\n  on_error: skip\n  max_error_ratio: 0.5\n",
        input.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let rep = dir.path().join("report.json");
    kiln_ok(
        dir.path(),
        &[
            "run",
            "-q",
            p.to_str().expect("utf-8"),
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(ids(&sink), [1, 2, 3, 7]);
    let r = report(&rep);
    assert_eq!(r["rows_rejected"], 3);
    assert_eq!(r["rejected"]["csv"], 3);
    assert_rows_add_up(&r, &sink);
    let shards = read_shards(&sink);
    let names: Vec<String> = shards
        .values()
        .flat_map(|b| {
            let c = b.column_by_name("name").expect("name").as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.contains(&"quoted\nname".to_string()), "{names:?}");
    // `skip` counts but writes no dead letters.
    assert!(!sink.join("_kiln/errors").exists());
}

#[test]
fn a_corrupt_parquet_object_and_a_corrupt_image_are_left_out() {
    let dir = tempfile::tempdir().expect("tmp");
    // Parquet: a good file and one whose footer is garbage.
    let pq = dir.path().join("pq");
    std::fs::create_dir_all(&pq).expect("mkdir");
    let good = std::fs::read(repo().join("sample-data/parquet/products.parquet")).expect("read");
    std::fs::write(pq.join("a.parquet"), &good).expect("write");
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 8..n - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    std::fs::write(pq.join("b.parquet"), &bad).expect("write");
    let sink = dir.path().join("pq-out");
    let yaml = format!(
        "version: 1\nname: bad-parquet\nsource:\n  uri: {}/*.parquet\n\
         sink:\n  uri: {}\nrun:\n  on_error: dead_letter\n  max_error_ratio: 0.5\n",
        pq.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "pq.yaml", &yaml);
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    let source_rows = read_parquet(&pq.join("a.parquet")).num_rows();
    assert_eq!(total_rows(&sink), source_rows, "the good file, whole");
    let errors = dead_letters(&sink);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "object");
    assert!(
        errors[0]["object"]
            .as_str()
            .expect("o")
            .ends_with("b.parquet")
    );

    // Images: a good one, a truncated one and one that is not an image.
    let images = dir.path().join("imgs/dog");
    std::fs::create_dir_all(&images).expect("mkdir");
    let jpg = std::fs::read(repo().join("sample-data/images/circle/circle-000.jpg")).expect("jpg");
    std::fs::write(images.join("a-good.jpg"), &jpg).expect("write");
    // (zune-jpeg decodes a cut JPEG, greying the missing rows; a cut PNG is an error.)
    let png = std::fs::read(repo().join("sample-data/images/circle/circle-008.png")).expect("png");
    std::fs::write(images.join("b-truncated.png"), &png[..png.len() / 3]).expect("write");
    std::fs::write(images.join("c-text.jpg"), b"this is not a JPEG").expect("write");
    std::fs::write(images.join("d-good.jpg"), &jpg).expect("write");
    let sink = dir.path().join("img-out");
    let yaml = format!(
        "version: 1\nname: bad-images\nsource:\n  uri: \"{}/imgs/**/*.{{jpg,png}}\"\n\
         steps:\n  - image.decode: {{}}\n  - image.resize: {{ shorter_side: 16 }}\n  - image.encode: {{ format: png }}\n\
         sink:\n  uri: {}\nrun:\n  on_error: dead_letter\n  max_error_ratio: 0.5\n  task_bytes: 1KiB\n",
        dir.path().display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "img.yaml", &yaml);
    let rep = dir.path().join("img-report.json");
    kiln_ok(
        dir.path(),
        &[
            "run",
            "-q",
            p.to_str().expect("utf-8"),
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    let paths: Vec<String> = read_shards(&sink)
        .values()
        .flat_map(|b| {
            let c = b.column_by_name("path").expect("path").as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths.iter().all(|p| p.ends_with("good.jpg")), "{paths:?}");
    let errors = dead_letters(&sink);
    let mut rejected: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["stage"].as_str().expect("stage").to_string(),
                e["record"].as_str().expect("record").to_string(),
            )
        })
        .collect();
    rejected.sort();
    assert_eq!(rejected.len(), 2, "{errors:?}");
    assert!(
        rejected
            .iter()
            .all(|(stage, _)| stage == "step 1 image.decode")
    );
    assert!(rejected[0].1.contains("b-truncated.png") && rejected[0].1.contains("bytes>"));
    assert!(rejected[1].1.contains("c-text.jpg"));
    assert_rows_add_up(&report(&rep), &sink);
}

#[test]
fn a_resumed_run_keeps_the_rejections_of_committed_tasks() {
    // Two tasks; the first is committed by a run that is then made to fail on the second
    // (a bad line under `fail`); the rerun under dead_letter keeps the first task and its
    // (empty) rejections, and records the second's.
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("a.jsonl"), "{\"id\":1}\n{\"id\":2}\n").expect("write");
    std::fs::write(input.join("b.jsonl"), "{\"id\":3}\n{\"id\":\n{\"id\":5}\n").expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: resume\nsource:\n  uri: {}/*.jsonl\n  infer_rows: 1\n\
         sink:\n  uri: {}\nrun:\n  task_bytes: 1\n  threads: 1\n",
        input.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let p = p.to_str().expect("utf-8");
    let o = kiln(dir.path(), &["run", "-q", p]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        sink.join("_kiln/tasks/00000.json").exists(),
        "task 0 committed"
    );
    assert!(!sink.join("_kiln/tasks/00001.json").exists());
    let o = kiln(
        dir.path(),
        &[
            "run",
            "-q",
            p,
            "--set",
            "run.on_error=dead_letter",
            "--set",
            "run.max_error_ratio=0.5",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(ids(&sink), [1, 2, 3, 5]);
    let errors = dead_letters(&sink);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["line"], 2);
    assert!(sink.join("_kiln/errors/00001.jsonl").exists());
}

#[test]
fn an_object_deleted_after_the_listing_is_left_out_under_skip() {
    // The stored plan fixes the listing: a run that failed on b.jsonl stored it, b.jsonl is
    // then deleted, and the rerun (which follows the stored listing) finds it gone.
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("a.jsonl"), "{\"id\":1}\n").expect("write");
    std::fs::write(input.join("b.jsonl"), "{\"id\":2}\n{\"id\":\n").expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: gone\nsource:\n  uri: {}/*.jsonl\n  infer_rows: 1\n\
         sink:\n  uri: {}\nrun:\n  task_bytes: 1\n  threads: 1\n",
        input.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let p = p.to_str().expect("utf-8");
    let o = kiln(dir.path(), &["run", "-q", p]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    std::fs::remove_file(input.join("b.jsonl")).expect("delete");
    let rep = dir.path().join("report.json");
    let o = kiln(
        dir.path(),
        &[
            "run",
            "-q",
            p,
            "--set",
            "run.on_error=dead_letter",
            "--set",
            "run.max_error_ratio=1",
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(ids(&sink), [1]);
    assert_eq!(report(&rep)["objects_rejected"], 1);
    let errors = dead_letters(&sink);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], "object");
    assert!(
        errors[0]["object"]
            .as_str()
            .expect("o")
            .ends_with("b.jsonl")
    );
    assert!(
        errors[0]["error"]
            .as_str()
            .expect("e")
            .to_lowercase()
            .contains("not found"),
        "{}",
        errors[0]
    );
}

#[test]
fn dead_letters_past_the_memory_bound_are_spilled_and_all_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    // 2 good lines, then 30,000 malformed ones of ~400 bytes: about 13 MB of dead
    // letters, past the 8 MiB a task keeps in memory.
    let mut text = String::from("{\"id\":1}\n{\"id\":2}\n");
    for i in 0..30_000 {
        text.push_str(&format!("{{\"id\":{i}, oops {}}}\n", "x".repeat(380)));
    }
    std::fs::write(input.join("a.jsonl"), &text).expect("write");
    let sink = dir.path().join("out");
    let yaml = format!(
        "version: 1\nname: spill\nsource:\n  uri: {}/a.jsonl\nsink:\n  uri: {}\n\
         run:\n  on_error: dead_letter\n  max_error_ratio: 1\n",
        input.display(),
        sink.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let rep = dir.path().join("report.json");
    let o = kiln(
        dir.path(),
        &[
            "run",
            "-q",
            p.to_str().expect("utf-8"),
            "--report",
            rep.to_str().expect("utf-8"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["rows_rejected"], 30_000);
    assert_rows_add_up(&r, &sink);
    let errors = dead_letters(&sink);
    assert_eq!(errors.len(), 30_000, "every rejection is written");
    let lines: Vec<u64> = errors
        .iter()
        .map(|e| e["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, (3..30_003).collect::<Vec<u64>>(), "in input order");
}

#[test]
fn max_error_ratio_is_bad_records_over_records_read() {
    // 5 malformed lines of 10: a ratio of 0.5. Regression: the share was taken of the
    // records read plus the bad ones again (5 / 15 = 0.33), so 0.34 let this through.
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = String::new();
    for i in 0..10 {
        if i % 2 == 0 {
            text.push_str(&format!("{{\"id\":{i}}}\n"));
        } else {
            text.push_str(&format!("{{\"id\":{i},}}\n"));
        }
    }
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(dir.path().join("in/a.jsonl"), text).expect("write");
    for (ratio, code) in [("0.34", 3), ("0.49", 3), ("0.5", 0)] {
        let sink = dir.path().join(format!("out-{ratio}"));
        let yaml = format!(
            "version: 1\nname: ratio\nsource:\n  uri: {}/in/*.jsonl\n\
             sink:\n  uri: {}\nrun:\n  on_error: skip\n  max_error_ratio: {ratio}\n",
            dir.path().display(),
            sink.display()
        );
        let p = pipeline(dir.path(), &format!("p-{ratio}.yaml"), &yaml);
        let o = kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(code), "ratio {ratio}: {}", stderr(&o));
        if code == 3 {
            assert!(stderr(&o).contains("5 of 10 records"), "{}", stderr(&o));
        }
        assert_eq!(total_rows(&sink), 5);
    }
}

/// A Parquet object whose third row group (of five) is corrupt, under dead_letter: the
/// row groups before it are written, the rest of the object is left out as one object
/// rejection that counts the rows kept, and all of it is the same at 1 thread (row
/// groups decoded in turn) and at 3 (row groups decoded by other threads, one of which
/// fails while later ones are in flight).
#[test]
fn a_corrupt_row_group_leaves_out_the_rest_of_the_object_on_any_thread_count() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = tempfile::tempdir().expect("tmp");
    let numbers: Vec<i64> = (0..1000).collect();
    let text: Vec<String> = numbers
        .iter()
        .map(|i| format!("document {i} {}", "x".repeat(50)))
        .collect();
    let batch = arrow::record_batch::RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from(numbers)) as arrow::array::ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from(text)) as arrow::array::ArrayRef,
        ),
    ])
    .expect("batch");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(200))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let reader = SerializedFileReader::new(bytes::Bytes::from(buf.clone())).expect("reader");
    assert_eq!(reader.metadata().num_row_groups(), 5);
    let (start, len) = reader.metadata().row_group(2).column(1).byte_range();
    for b in &mut buf[start as usize..(start + len) as usize] {
        *b = 0xab;
    }
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(dir.path().join("in/a.parquet"), &buf).expect("write");
    let yaml = format!(
        "version: 1\nname: rg\nsource:\n  uri: {}/in/a.parquet\nsink:\n  uri: ${{KILN_OUT}}/rg\n\
         run:\n  on_error: dead_letter\n  max_error_ratio: 1\n  batch_rows: 64\n",
        dir.path().display()
    );
    let p = pipeline(dir.path(), "rg.yaml", &yaml);
    let mut outputs = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("out-{threads}"));
        kiln_ok(
            &out,
            &[
                "run",
                "-q",
                p.to_str().expect("utf-8"),
                "--set",
                &format!("run.threads={threads}"),
            ],
        );
        let sink = out.join("rg");
        assert_eq!(
            ids(&sink),
            (0..400).collect::<Vec<_>>(),
            "{threads} threads"
        );
        let errors = dead_letters(&sink);
        assert_eq!(errors.len(), 1, "{threads} threads: {errors:?}");
        assert_eq!(errors[0]["kind"], "object");
        assert_eq!(errors[0]["rows_before"], 400, "{errors:?}");
        assert!(
            errors[0]["error"]
                .as_str()
                .expect("error")
                .contains("a.parquet")
                || errors[0]["object"]
                    .as_str()
                    .expect("object")
                    .ends_with("a.parquet")
        );
        outputs.push((shard_files(&sink), dead_letters(&sink)));
    }
    assert!(outputs[0] == outputs[1], "1 and 3 threads differ");
}
