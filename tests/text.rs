//! The text steps end to end: the FineWeb-style example pipeline on the sample web
//! corpus, checked against values computed here independently of kiln.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, UInt32Type};

use crate::util::*;

fn corpus() -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for f in ["crawl-00000.jsonl.gz", "crawl-00001.jsonl.gz"] {
        let file = std::fs::File::open(repo().join("sample-data/web").join(f)).expect("sample");
        for line in BufReader::new(flate2::read::MultiGzDecoder::new(file)).lines() {
            docs.push(serde_json::from_str(&line.expect("line")).expect("json"));
        }
    }
    docs
}

/// id → (text, tokens, num_tokens, split) of every output row.
fn rows(dir: &std::path::Path) -> BTreeMap<String, (String, Vec<u32>, i32, String)> {
    let mut out = BTreeMap::new();
    for (path, b) in read_shards(dir) {
        let split = path
            .split('/')
            .find_map(|p| p.strip_prefix("split="))
            .expect("hive folder")
            .to_string();
        let ids = b
            .column_by_name("id")
            .expect("id")
            .as_string::<i32>()
            .clone();
        let texts = b
            .column_by_name("text")
            .expect("text")
            .as_string::<i32>()
            .clone();
        let tokens = b
            .column_by_name("tokens")
            .expect("tokens")
            .as_list::<i32>()
            .clone();
        let counts = b.column_by_name("num_tokens").expect("num_tokens");
        let counts = counts.as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let t = tokens.value(i);
            let t = t.as_primitive::<UInt32Type>().values().to_vec();
            out.insert(
                ids.value(i).to_string(),
                (
                    texts.value(i).to_string(),
                    t,
                    counts.value(i),
                    split.clone(),
                ),
            );
        }
    }
    out
}

#[test]
fn fineweb_pipeline_dedups_redacts_tokenizes_and_splits_exactly() {
    let out = tempfile::tempdir().expect("tmp");
    let report = out.path().join("report.json");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            "pipelines/fineweb.yaml",
            "--report",
            &report.to_string_lossy(),
        ],
    );
    let got = rows(&out.path().join("fineweb"));

    // The quality decisions and C4's kept lines, from text.quality alone with
    // keep_reasons (checked against datatrove in quality.rs); then, computed here, the
    // first copy of each kept text in input order.
    let audit = pipeline(
        out.path(),
        "audit.yaml",
        r#"
version: 1
name: audit
source: { uri: sample-data/web/*.jsonl.gz }
steps:
  - text.normalize: { form: nfc }
  - text.language: { keep: [en] }
  - text.quality: { keep_reasons: true }
sink:
  uri: ${KILN_OUT}/audit/
"#,
    );
    kiln_ok(out.path(), &["run", "-q", &audit.to_string_lossy()]);
    let mut judged: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
    for b in read_shards(&out.path().join("audit")).values() {
        let ids = b.column_by_name("id").expect("id").as_string::<i32>();
        let texts = b.column_by_name("text").expect("text").as_string::<i32>();
        let reasons = b
            .column_by_name("quality_reason")
            .expect("reason")
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            judged.insert(
                ids.value(i).to_string(),
                (
                    reasons.is_valid(i).then(|| reasons.value(i).to_string()),
                    texts.value(i).to_string(),
                ),
            );
        }
    }
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut per_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut short = 0u64;
    for d in corpus() {
        let id = d["id"].as_str().expect("id").to_string();
        let Some((reason, text)) = judged.get(&id).cloned() else {
            continue; // not English
        };
        if let Some(r) = reason {
            *per_rule.entry(r).or_default() += 1;
            short += 1;
            continue;
        }
        if seen.insert(text.clone()) {
            kept.push((id, text));
        }
    }
    assert_eq!(got.len(), kept.len(), "rows out");
    let tok = tokenizers::Tokenizer::from_file(repo().join("sample-data/tokenizer/tokenizer.json"))
        .expect("tokenizer");
    let mut total_tokens = 0u64;
    let mut redacted = 0;
    for (id, text) in &kept {
        let (out_text, tokens, n, split) = got.get(id).unwrap_or_else(|| panic!("{id} kept"));
        assert!(split == "train" || split == "validation");
        if out_text != text {
            redacted += 1;
            assert!(
                out_text.contains('<'),
                "only redaction changes a text: {id}"
            );
            assert!(!out_text.contains('@'), "e-mail left in {id}");
        }
        // Token ids are those of the tokenizers crate on the output text, plus EOS (0).
        let mut want = tok
            .encode(out_text.as_str(), false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        want.push(0);
        assert_eq!(tokens, &want, "tokens of {id}");
        assert_eq!(*n as usize, want.len());
        total_tokens += want.len() as u64;
    }
    // The report's counters agree.
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let step = |name: &str| {
        r["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("step {name}"))
            .clone()
    };
    let quality = step("text.quality");
    assert_eq!(
        quality["rows_in"].as_u64().expect("n") - quality["rows_out"].as_u64().expect("n"),
        short
    );
    let counted: BTreeMap<String, u64> =
        serde_json::from_value(quality["counts"].clone()).expect("counts");
    assert_eq!(counted, per_rule, "drops per rule");
    assert!(
        per_rule.len() >= 8,
        "the corpus trips many rules: {per_rule:?}"
    );
    let dups = step("dedup.exact")["counts"]["duplicates"]
        .as_u64()
        .expect("duplicates");
    assert_eq!(dups as usize, judged.len() - short as usize - kept.len());
    let language = step("text.language");
    assert_eq!(
        language["rows_in"].as_u64().expect("n") - language["rows_out"].as_u64().expect("n"),
        2400 - judged.len() as u64,
        "rows dropped as not English"
    );
    assert_eq!(
        step("tokenize")["counts"]["tokens"].as_u64(),
        Some(total_tokens)
    );
    assert_eq!(
        step("text.pii")["counts"]["documents_redacted"].as_u64(),
        Some(redacted)
    );
    assert!(redacted > 50, "the corpus plants PII: {redacted}");
    let split = step("split");
    assert_eq!(
        split["counts"]["train"].as_u64().expect("train")
            + split["counts"]["validation"].as_u64().expect("validation"),
        kept.len() as u64
    );
}

#[test]
fn text_pipeline_output_is_independent_of_threads_and_task_size() {
    let one = tempfile::tempdir().expect("tmp");
    let two = tempfile::tempdir().expect("tmp");
    kiln_ok(
        one.path(),
        &[
            "run",
            "-q",
            "pipelines/fineweb.yaml",
            "--set",
            "run.threads=1",
        ],
    );
    kiln_ok(
        two.path(),
        &[
            "run",
            "-q",
            "pipelines/fineweb.yaml",
            "--set",
            "run.threads=2",
            "--set",
            "run.task_bytes=64KiB",
        ],
    );
    let a = rows(&one.path().join("fineweb"));
    let b = rows(&two.path().join("fineweb"));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "same rows, tokens and splits");
}

#[test]
fn packed_pipeline_rows_are_exactly_seq_len() {
    let out = tempfile::tempdir().expect("tmp");
    let p = pipeline(
        out.path(),
        "packed.yaml",
        r#"
version: 1
name: packed
source: { uri: sample-data/web/*.jsonl.gz }
steps:
  - tokenize: { tokenizer: sample-data/tokenizer/tokenizer.json, eos: "<|endoftext|>" }
  - pack: { seq_len: 128 }
sink:
  uri: ${KILN_OUT}/packed/
"#,
    );
    let report = out.path().join("report.json");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            &p.to_string_lossy(),
            "--report",
            &report.to_string_lossy(),
        ],
    );
    let shards = read_shards(&out.path().join("packed"));
    let mut rows = 0u64;
    for b in shards.values() {
        assert_eq!(b.num_columns(), 1);
        let l = b.column(0).as_list::<i32>();
        for i in 0..l.len() {
            assert_eq!(l.value(i).len(), 128);
        }
        rows += b.num_rows() as u64;
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let tokens = r["steps"][0]["counts"]["tokens"].as_u64().expect("tokens");
    let pack = &r["steps"][1]["counts"];
    assert_eq!(pack["sequences"].as_u64(), Some(rows));
    assert_eq!(
        rows * 128 + pack["dropped_tokens"].as_u64().expect("dropped"),
        tokens
    );
}

/// `pack` with `boundaries`: every row's `cu_seqlens` runs from 0 to `seq_len`, and
/// its interior cuts are exactly the positions right after an EOS (`tokenize` ends
/// every document with one), so attention can be masked per document; `segment_ids`
/// number the same pieces per token.
#[test]
fn packed_rows_say_where_each_document_is() {
    let out = tempfile::tempdir().expect("tmp");
    let tokenizer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("sample-data/tokenizer/tokenizer.json")).expect("tokenizer"),
    )
    .expect("json");
    let eos = tokenizer["added_tokens"]
        .as_array()
        .expect("added tokens")
        .iter()
        .find(|t| t["content"] == "<|endoftext|>")
        .and_then(|t| t["id"].as_u64())
        .expect("eos id") as u32;
    let run = |boundaries: &str| {
        let p = pipeline(
            out.path(),
            &format!("{boundaries}.yaml"),
            &format!(
                r#"
version: 1
name: packed-{boundaries}
source: {{ uri: sample-data/web/*.jsonl.gz }}
steps:
  - tokenize: {{ tokenizer: sample-data/tokenizer/tokenizer.json, eos: "<|endoftext|>" }}
  - pack: {{ seq_len: 128, boundaries: {boundaries} }}
sink:
  uri: ${{KILN_OUT}}/{boundaries}/
"#
            ),
        );
        kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
        let shards = read_shards(&out.path().join(boundaries));
        let first = shards.values().next().expect("a shard");
        arrow::compute::concat_batches(&first.schema(), shards.values()).expect("concat")
    };
    let cu = run("cu_seqlens");
    let ids = cu
        .column_by_name("input_ids")
        .expect("ids")
        .as_list::<i32>();
    let cuts = cu
        .column_by_name("cu_seqlens")
        .expect("cu")
        .as_list::<i32>();
    assert!(cu.num_rows() > 10);
    let mut pieces = 0;
    for r in 0..cu.num_rows() {
        let row = ids.value(r);
        let row = row.as_primitive::<arrow::datatypes::UInt32Type>().values();
        let c = cuts.value(r);
        let c: Vec<usize> = c
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .iter()
            .map(|&v| v as usize)
            .collect();
        let after_eos: Vec<usize> = (0..127).filter(|&p| row[p] == eos).map(|p| p + 1).collect();
        assert_eq!(c.first(), Some(&0), "row {r}");
        assert_eq!(c.last(), Some(&128), "row {r}");
        assert_eq!(&c[1..c.len() - 1], &after_eos[..], "row {r}");
        pieces += c.len() - 1;
    }
    assert!(pieces > cu.num_rows(), "rows hold several documents");

    let seg = run("segment_ids");
    assert_eq!(
        seg.column_by_name("input_ids"),
        cu.column_by_name("input_ids"),
        "the same packed tokens"
    );
    let segs = seg
        .column_by_name("segment_ids")
        .expect("seg")
        .as_list::<i32>();
    for r in 0..seg.num_rows() {
        let s = segs.value(r);
        let s = s.as_primitive::<arrow::datatypes::UInt32Type>().values();
        let c = cuts.value(r);
        let c = c.as_primitive::<arrow::datatypes::Int32Type>().values();
        for (piece, w) in c.windows(2).enumerate() {
            for t in w[0] as usize..w[1] as usize {
                assert_eq!(s[t] as usize, piece, "row {r} token {t}");
            }
        }
    }
}

/// `url.filter` on the sample crawl: a domain blocks its sub-domains, a banned word its
/// URLs, and every row in is either out or counted under the rule that dropped it.
#[test]
fn url_filter_drops_listed_domains_and_words_and_counts_them() {
    let out = tempfile::tempdir().expect("tmp");
    let list = out.path().join("lists/blocked");
    std::fs::create_dir_all(&list).expect("mkdir");
    std::fs::write(
        list.join("domains"),
        "# test\nexample.org\nshop.example.com\n",
    )
    .expect("domains");
    std::fs::write(out.path().join("words.txt"), "wiki\n").expect("words");
    let p = pipeline(
        out.path(),
        "urls.yaml",
        &format!(
            r#"
version: 1
name: urls
source: {{ uri: sample-data/web/*.jsonl.gz }}
steps:
  - url.filter: {{ lists: {{ blocked: {} }}, banned_words: {} }}
sink:
  uri: ${{KILN_OUT}}/urls/
"#,
            list.display(),
            out.path().join("words.txt").display()
        ),
    );
    let report = out.path().join("report.json");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            &p.to_string_lossy(),
            "--report",
            &report.to_string_lossy(),
        ],
    );
    let mut kept = 0u64;
    for b in read_shards(&out.path().join("urls")).values() {
        let urls = b.column_by_name("url").expect("url").as_string::<i32>();
        for u in urls.iter().flatten() {
            let host = u
                .split("://")
                .nth(1)
                .unwrap_or(u)
                .split('/')
                .next()
                .unwrap_or("");
            assert!(
                !(host == "example.org" || host.ends_with(".example.org")),
                "{u}: example.org and its sub-domains are blocked"
            );
            assert_ne!(host, "shop.example.com", "{u}");
            assert!(!u.to_lowercase().contains("wiki"), "{u}: `wiki` is banned");
            kept += 1;
        }
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let step = &r["steps"][0];
    let counts = &step["counts"];
    let dropped = counts["blocked.domain"].as_u64().unwrap_or(0)
        + counts["banned_word"].as_u64().unwrap_or(0);
    assert!(
        counts["blocked.domain"].as_u64().unwrap_or(0) > 0,
        "{counts}"
    );
    assert!(counts["banned_word"].as_u64().unwrap_or(0) > 0, "{counts}");
    assert_eq!(step["rows_out"].as_u64(), Some(kept));
    assert_eq!(step["rows_in"].as_u64(), Some(kept + dropped), "{step}");
}

#[test]
fn a_changed_tokenizer_file_is_another_pipeline() {
    let out = tempfile::tempdir().expect("tmp");
    let tok = out.path().join("tokenizer.json");
    std::fs::copy(repo().join("sample-data/tokenizer/tokenizer.json"), &tok).expect("copy");
    let p = pipeline(
        out.path(),
        "tok.yaml",
        &format!(
            r#"
version: 1
name: tok
source: {{ uri: sample-data/web/crawl-00000.jsonl.gz }}
steps:
  - tokenize: {{ tokenizer: {} }}
sink:
  uri: ${{KILN_OUT}}/tok/
"#,
            tok.display()
        ),
    );
    let p = p.to_string_lossy().into_owned();
    kiln_ok(out.path(), &["run", "-q", &p]);
    // The same tokenizer again: already complete.
    kiln_ok(out.path(), &["run", "-q", &p]);
    // The same vocabulary, but the file changed: the sink is not this pipeline's.
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tok).expect("read")).expect("json");
    json["added_tokens"][0]["special"] = serde_json::Value::Bool(false);
    std::fs::write(&tok, serde_json::to_vec(&json).expect("json")).expect("write");
    let o = kiln(out.path(), &["run", "-q", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("different pipeline"), "{}", stderr(&o));
}
