//! Every pipeline under pipelines/ runs, and its output is checked against values
//! computed independently from the sample inputs.

use std::collections::BTreeMap;
use std::io::Read;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimeUnit, UInt64Type};

use crate::util::*;

fn sample_docs() -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for f in [
        "crawl-00000.jsonl",
        "crawl-00001.jsonl",
        "crawl-00002.jsonl.gz",
    ] {
        let bytes = std::fs::read(repo().join("sample-data/text").join(f)).expect("sample");
        let mut text = String::new();
        if f.ends_with(".gz") {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("gunzip");
        } else {
            text = String::from_utf8(bytes).expect("utf8");
        }
        docs.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")),
        );
    }
    docs
}

#[test]
fn every_example_pipeline_validates_and_runs() {
    let out = tempfile::tempdir().expect("tmp");
    let mut seen = 0;
    let mut paths: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .expect("pipelines/")
        .map(|e| e.expect("entry").path())
        .collect();
    // In name order: tabular-valid.yaml reads what tabular-train.yaml fitted.
    paths.sort();
    for path in paths {
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let p = path.to_string_lossy().into_owned();
        kiln_ok(out.path(), &["validate", &p]);
        kiln_ok(out.path(), &["run", "-q", &p]);
        seen += 1;
    }
    assert!(seen >= 3, "at least three example pipelines");
}

#[test]
fn web_text_filters_derives_and_partitions() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/web-text.yaml"]);
    let sink = out.path().join("web-text");
    let expected: Vec<_> = sample_docs()
        .into_iter()
        .filter(|d| d["lang"] == "en" && d["text"].as_str().expect("text").chars().count() >= 200)
        .collect();
    let mut by_split: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &expected {
        let first = d["id"].as_str().expect("id").chars().next().expect("char");
        *by_split
            .entry(if first == '0' || first == '1' {
                "val"
            } else {
                "train"
            })
            .or_default() += 1;
    }
    let shards = read_shards(&sink);
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    let by_id: BTreeMap<&str, &serde_json::Value> = expected
        .iter()
        .map(|d| (d["id"].as_str().expect("id"), d))
        .collect();
    for (path, batch) in &shards {
        let split = if path.starts_with("split=val/") {
            "val"
        } else {
            "train"
        };
        assert!(path.starts_with(&format!("split={split}/part-")), "{path}");
        *got.entry(split).or_default() += batch.num_rows();
        assert!(
            batch.num_rows() <= 200,
            "max_rows: {path} has {}",
            batch.num_rows()
        );
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["id", "url", "text", "lang", "timestamp", "n_chars", "host"]
        );
        assert_eq!(batch.schema().field(5).data_type(), &DataType::Int32);
        let ids = batch.column(0).as_string::<i32>();
        let texts = batch.column(2).as_string::<i32>();
        let n_chars = batch.column(5).as_primitive::<Int32Type>();
        let hosts = batch.column(6).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let doc = by_id
                .get(ids.value(row))
                .expect("every output row is an expected document");
            assert_eq!(texts.value(row), doc["text"].as_str().expect("text"));
            assert_eq!(
                n_chars.value(row) as usize,
                texts.value(row).chars().count()
            );
            assert!(
                doc["url"]
                    .as_str()
                    .expect("url")
                    .contains(&format!("//{}/", hosts.value(row)))
            );
        }
    }
    assert_eq!(got, by_split);
    assert!(sink.join("_SUCCESS").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["rows"].as_u64(), Some(expected.len() as u64));
    assert_eq!(
        manifest["shards"].as_array().map(|s| s.len()),
        Some(shards.len())
    );
    assert_eq!(manifest["partition_by"], serde_json::json!(["split"]));
}

#[test]
fn csv_events_are_typed_and_filtered() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/csv-events.yaml"]);
    let mut expected_rows = 0;
    let mut expected_amount = 0.0;
    for f in ["events-0.csv", "events-1.csv"] {
        let text =
            std::fs::read_to_string(repo().join("sample-data/tabular").join(f)).expect("csv");
        // Independent count: a tiny RFC 4180 splitter is enough for these files.
        let mut rows = Vec::new();
        let (mut field, mut record, mut quoted) = (String::new(), Vec::new(), false);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                ('\r', false) => {}
                (',', false) => record.push(std::mem::take(&mut field)),
                ('\n', false) => {
                    record.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut record));
                }
                (c, _) => field.push(c),
            }
        }
        for r in rows.iter().skip(1) {
            if r[8] == "true" {
                expected_rows += 1;
                expected_amount += r[5].parse::<f64>().expect("amount");
            }
        }
    }
    let shards = read_shards(&out.path().join("csv-events"));
    let batch = shards.values().next().expect("a shard");
    let schema = batch.schema();
    assert!(schema.index_of("comment").is_err(), "comment was dropped");
    assert_eq!(
        schema
            .field_with_name("event_time")
            .expect("col")
            .data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        schema.field_with_name("user_id").expect("col").data_type(),
        &DataType::Int32
    );
    let rows: usize = shards.values().map(|b| b.num_rows()).sum();
    assert_eq!(rows, expected_rows);
    let amount: f64 = shards
        .values()
        .map(|b| {
            b.column(schema.index_of("amount_eur").expect("col"))
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .sum::<f64>()
        })
        .sum();
    assert!(
        (amount - expected_amount).abs() < 1e-6,
        "{amount} vs {expected_amount}"
    );
    for b in shards.values() {
        let band = b
            .column(schema.index_of("age_band").expect("col"))
            .as_string::<i32>();
        let age = b
            .column(schema.index_of("age").expect("col"))
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let want = if age.is_null(i) {
                "unknown"
            } else if age.value(i) < 30 {
                "young"
            } else {
                "adult"
            };
            assert_eq!(band.value(i), want);
        }
    }
}

#[test]
fn parquet_products_projects_samples_and_limits() {
    let out = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(
        out.path(),
        &["plan", "pipelines/parquet-products.yaml"],
    ));
    let read_line = plan
        .lines()
        .find(|l| l.starts_with("read"))
        .expect("read line");
    assert!(
        !read_line.contains("description"),
        "unused columns are not decoded: {read_line}"
    );
    kiln_ok(
        out.path(),
        &["run", "-q", "pipelines/parquet-products.yaml"],
    );
    let first = read_shards(&out.path().join("parquet-products"));
    let rows: usize = first.values().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 300,
        "the sample keeps ~half of ~1300 eligible rows, then the limit caps it"
    );
    for b in first.values() {
        let names: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["product_id", "name", "category", "price", "price_band"]
        );
        assert_eq!(b.column(2).null_count(), 0);
    }
    // The sample is deterministic: a second run into another sink keeps the same rows.
    let out2 = tempfile::tempdir().expect("tmp");
    kiln_ok(
        out2.path(),
        &["run", "-q", "pipelines/parquet-products.yaml"],
    );
    assert_eq!(first, read_shards(&out2.path().join("parquet-products")));
}

#[test]
fn text_lines_keep_path_line_and_count_words() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/text-lines.yaml"]);
    let source =
        std::fs::read_to_string(repo().join("sample-data/notes/field-notes.txt")).expect("notes");
    let expected: Vec<(usize, &str)> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let shards = read_shards(&out.path().join("text-lines"));
    let batch = shards.values().next().expect("one shard");
    assert_eq!(batch.num_rows(), expected.len());
    let lines = batch.column(1).as_primitive::<UInt64Type>();
    let text = batch.column(2).as_string::<i32>();
    for (row, (i, l)) in expected.iter().enumerate() {
        assert_eq!(lines.value(row), *i as u64 + 1);
        assert_eq!(text.value(row), *l);
    }
    assert!(
        batch
            .column(0)
            .as_string::<i32>()
            .value(0)
            .ends_with("notes/field-notes.txt")
    );
}

#[test]
fn warc_pages_keeps_the_html_responses_of_the_archive() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/warc-pages.yaml"]);
    let shards = read_shards(&out.path().join("warc-pages"));
    let batch = shards.values().next().expect("one shard");
    let urls: Vec<&str> = batch
        .column_by_name("url")
        .expect("url")
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    // The four UTF-8 pages and the Latin-1 one, in archive order; not the 404, the
    // redirect, the PNG, the requests, warcinfo or metadata.
    assert_eq!(
        urls,
        [
            "http://example.com/0",
            "http://example.com/1",
            "http://example.com/2",
            "http://example.com/3",
            "http://example.org/caf%C3%A9"
        ]
    );
    let text = batch
        .column_by_name("text")
        .expect("text")
        .as_string::<i32>();
    assert!(text.value(0).starts_with("<!doctype html>"));
    assert!(
        text.value(4).contains("Le café"),
        "the Latin-1 page read as its Content-Type says"
    );
    let charsets: Vec<&str> = batch
        .column_by_name("charset")
        .expect("charset")
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(
        charsets,
        ["UTF-8", "UTF-8", "UTF-8", "UTF-8", "windows-1252"]
    );
    let hosts = batch
        .column_by_name("host")
        .expect("host")
        .as_string::<i32>();
    assert_eq!(hosts.value(4), "example.org");
}
