//! What a finished sink says about itself: the manifest's summary (splits, tokens, step
//! counters, column statistics), the dataset card and `kiln inspect`, each checked
//! against the shards read back.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};

use crate::util::*;

/// Tokenized web text in train/test folders, with quality counters.
const PIPELINE: &str = r#"version: 1
name: card
description: Web text, tokenized, in two splits.
source:
  uri: sample-data/web/crawl-00000.jsonl.gz
steps:
  - select: [id, url, text]
  - text.quality: { families: [gopher_repetition] }
  - tokenize: { tokenizer: sample-data/tokenizer/tokenizer.json, eos: "<|endoftext|>" }
  - derive:
      split: "CASE WHEN length(text) % 5 = 0 THEN 'test' ELSE 'train' END"
      n_chars: "length(text)"
sink:
  uri: OUT
  max_rows: 300
  partition_by: [split]
  dataset_card: true
"#;

fn manifest(sink: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(sink.join("_kiln/manifest.json")).expect("manifest"))
        .expect("json")
}

#[test]
fn manifest_card_and_inspect_agree_with_the_shards() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = dir.path().join("out");
    let p = pipeline(
        dir.path(),
        "card.yaml",
        &PIPELINE.replace("OUT", &sink.display().to_string()),
    );
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    let m = manifest(&sink);

    // The truth, from the shards.
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
    let (mut text_bytes, mut min_chars, mut max_chars) = (0u64, i64::MAX, i64::MIN);
    for (path, batch) in read_shards(&sink) {
        let split = path
            .split('/')
            .next()
            .and_then(|d| d.strip_prefix("split="))
            .expect("split folder")
            .to_string();
        *rows.entry(split.clone()).or_default() += batch.num_rows() as u64;
        let lists = batch
            .column_by_name("tokens")
            .expect("tokens")
            .as_list::<i32>();
        *tokens.entry(split).or_default() += lists.values().len() as u64;
        let text = batch
            .column_by_name("text")
            .expect("text")
            .as_string::<i32>();
        text_bytes += text.value_data().len() as u64;
        let n = batch.column_by_name("n_chars").expect("n_chars");
        let n = arrow::compute::cast(n, &arrow::datatypes::DataType::Int64).expect("cast");
        let n = n.as_primitive::<arrow::datatypes::Int64Type>();
        min_chars = min_chars.min(arrow::compute::min(n).expect("min"));
        max_chars = max_chars.max(arrow::compute::max(n).expect("max"));
    }
    assert_eq!(rows.len(), 2, "{rows:?}");

    let splits = m["splits"].as_array().expect("splits");
    assert_eq!(splits[0]["name"], "train", "train first");
    for s in splits {
        let name = s["name"].as_str().expect("name");
        assert_eq!(s["rows"].as_u64(), Some(rows[name]), "{s}");
        assert_eq!(s["tokens"].as_u64(), Some(tokens[name]), "{s}");
        assert_eq!(s["data_files"], format!("split={name}/part-*.parquet"));
    }
    let all_tokens: u64 = tokens.values().sum();
    assert_eq!(m["tokens"]["column"], "tokens");
    assert_eq!(m["tokens"]["tokens"].as_u64(), Some(all_tokens));
    // The tokenize step counted the same tokens it wrote.
    let steps = m["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(names, ["select", "text.quality", "tokenize", "derive"]);
    assert_eq!(steps[2]["counts"]["tokens"].as_u64(), Some(all_tokens));
    let dropped: u64 = steps[1]["counts"]
        .as_object()
        .expect("quality counts")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(
        m["rows_in"].as_u64().expect("rows_in") - m["rows"].as_u64().expect("rows"),
        dropped,
        "every dropped row is counted by a rule"
    );
    let col = |name: &str| {
        m["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .expect("column")
    };
    assert_eq!(col("text")["values"].as_u64(), Some(text_bytes));
    assert_eq!(col("n_chars")["min"].as_i64(), Some(min_chars));
    assert_eq!(col("n_chars")["max"].as_i64(), Some(max_chars));
    assert_eq!(col("tokens")["values"].as_u64(), Some(all_tokens));
    assert_eq!(col("url")["nulls"], 0);
    assert!(m["input"]["listing_sha256"].as_str().expect("hash").len() == 64);

    // The card: the Hugging Face header and the body.
    let card = std::fs::read_to_string(sink.join("README.md")).expect("README.md");
    assert!(card.starts_with("---\n"), "{card}");
    for want in [
        "  - split: train\n    path: split=train/part-*.parquet\n".to_string(),
        "  - split: test\n    path: split=test/part-*.parquet\n".to_string(),
        format!("    num_examples: {}\n", rows["train"]),
        "  - list: uint32\n    name: tokens\n".to_string(),
        format!("{all_tokens} tokens in all"),
        "| 3 | `tokenize` | tokens |".to_string(),
        "tokenizer: sample-data/tokenizer/tokenizer.json".to_string(),
    ] {
        assert!(card.contains(&want), "card lacks {want:?}:\n{card}");
    }

    // kiln inspect on the sink: the summary; on a shard: row groups and the page index.
    let o = kiln_ok(dir.path(), &["inspect", sink.to_str().expect("utf-8")]);
    let out = stdout(&o);
    assert!(out.contains("(card: complete)"), "{out}");
    assert!(
        out.contains(&format!("tokens    {all_tokens} (column `tokens`)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("train  {}", rows["train"])),
        "split table: {out}"
    );
    assert!(out.contains("2. text.quality: gopher_repetition."), "{out}");
    let shard = sink.join(m["shards"][0]["path"].as_str().expect("path"));
    let o = kiln_ok(
        dir.path(),
        &["inspect", shard.to_str().expect("utf-8"), "-n", "1"],
    );
    let out = stdout(&o);
    assert!(
        out.contains("page index: column index and offset index"),
        "{out}"
    );
    assert!(out.contains("kiln.pipeline_hash = "), "{out}");
    assert!(out.contains("row group  rows"), "{out}");
}

#[test]
fn a_sink_with_and_without_a_card_read_back_as_a_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let first = dir.path().join("first");
    let p = pipeline(
        dir.path(),
        "first.yaml",
        &format!(
            "version: 1\nname: first\nsource:\n  uri: sample-data/text/*.jsonl*\n\
             sink:\n  uri: {}\n  dataset_card: true\n",
            first.display()
        ),
    );
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert!(first.join("README.md").exists(), "dataset_card: true");
    // The folder of a kiln dataset is a source: its card, _kiln/ and _SUCCESS are not data.
    let second = dir.path().join("second");
    let p = pipeline(
        dir.path(),
        "second.yaml",
        &format!(
            "version: 1\nname: second\nsource:\n  uri: {}/\nsink:\n  uri: {}\n",
            first.display(),
            second.display()
        ),
    );
    kiln_ok(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(manifest(&second)["rows"], manifest(&first)["rows"]);
    // No card unless asked for: the folder holds Parquet, `_kiln/` and `_SUCCESS` only.
    assert!(!second.join("README.md").exists(), "no card by default");
    assert!(second.join("_SUCCESS").exists());
}
