//! `text.quality` against datatrove: each family's keep/drop decisions on the sample
//! web corpus agree with datatrove's filter of the same name (default settings) on at
//! least 99% of documents. datatrove and spaCy come from PyPI (tests/requirements.txt)
//! in the test virtualenv; spaCy's blank English tokenizer needs no download.

use std::collections::BTreeMap;
use std::process::Command;

use arrow::array::{Array, AsArray};

use crate::util::*;

const FAMILIES: [&str; 4] = ["gopher_repetition", "gopher_quality", "c4", "fineweb"];

/// id → reason (None: kept), for one family, as kiln decides.
fn kiln_reasons(dir: &std::path::Path, family: &str) -> BTreeMap<String, Option<String>> {
    kiln_reasons_of(dir, family, "sample-data/web/*.jsonl.gz")
}

fn kiln_reasons_of(
    dir: &std::path::Path,
    family: &str,
    source: &str,
) -> BTreeMap<String, Option<String>> {
    let p = pipeline(
        dir,
        &format!("{family}.yaml"),
        &format!(
            r#"
version: 1
name: quality-{family}
source: {{ uri: "{source}" }}
steps:
  - select: [id, text]
  - text.quality: {{ families: [{family}], keep_reasons: true }}
  - select: [id, quality_reason]
sink:
  uri: ${{KILN_OUT}}/{family}/
"#
        ),
    );
    kiln_ok(dir, &["run", "-q", &p.to_string_lossy()]);
    let mut out = BTreeMap::new();
    for b in read_shards(&dir.join(family)).values() {
        let ids = b.column(0).as_string::<i32>();
        let reasons = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            let r = reasons.is_valid(i).then(|| {
                let r = reasons.value(i);
                r.strip_prefix(&format!("{family}."))
                    .unwrap_or(r)
                    .to_string()
            });
            out.insert(ids.value(i).to_string(), r);
        }
    }
    out
}

/// The Python of `make test`'s virtualenv, or `None` (loudly) outside it.
fn python() -> Option<String> {
    let python = std::env::var("KILN_TEST_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "KILN_TEST_PYTHON unset under CI"
        );
        eprintln!("\n!!!! SKIPPED: KILN_TEST_PYTHON unset (run through `make test`) !!!!\n");
    }
    python
}

/// datatrove's decisions on the documents of `inputs`, one JSON object each.
fn datatrove(
    python: &str,
    dir: &std::path::Path,
    inputs: &[std::path::PathBuf],
) -> Vec<serde_json::Value> {
    let reference = dir.join("reference.jsonl");
    let status = Command::new(python)
        .arg(repo().join("tests/interop/quality_reference.py"))
        .arg(&reference)
        .args(inputs)
        .status()
        .expect("python runs");
    assert!(status.success(), "quality_reference.py failed");
    std::fs::read_to_string(&reference)
        .expect("reference")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn each_family_agrees_with_datatrove_on_99_percent_of_documents() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let reference = datatrove(
        &python,
        dir.path(),
        &[
            repo().join("sample-data/web/crawl-00000.jsonl.gz"),
            repo().join("sample-data/web/crawl-00001.jsonl.gz"),
        ],
    );
    assert_eq!(reference.len(), 2400);
    for family in FAMILIES {
        let got = kiln_reasons(dir.path(), family);
        agrees(family, &reference, &got, 25);
    }
}

/// Asserts kiln and datatrove take the same keep/drop decision on ≥ 99% of documents
/// and that datatrove drops at least `min_drops` (the corpus exercises the family).
fn agrees(
    family: &str,
    reference: &[serde_json::Value],
    got: &BTreeMap<String, Option<String>>,
    min_drops: usize,
) {
    {
        assert_eq!(
            got.len(),
            reference.len(),
            "{family}: every row kept with a reason"
        );
        let (mut agree, mut same_reason, mut dropped) = (0usize, 0usize, 0usize);
        let mut differ = Vec::new();
        for r in reference {
            let id = r["id"].as_str().expect("id");
            let want = r[family].as_str().map(str::to_string);
            let have = got.get(id).cloned().flatten();
            dropped += usize::from(want.is_some());
            if want.is_some() == have.is_some() {
                agree += 1;
            } else {
                differ.push(format!("{id}: datatrove {want:?}, kiln {have:?}"));
            }
            same_reason += usize::from(want == have);
        }
        let n = reference.len() as f64;
        eprintln!(
            "{family}: decisions agree on {agree}/{} ({:.2}%), reasons on {:.2}%, datatrove drops {dropped}",
            reference.len(),
            100.0 * agree as f64 / n,
            100.0 * same_reason as f64 / n
        );
        assert!(
            agree as f64 >= 0.99 * n,
            "{family}: only {agree} of {} decisions agree; first differences:\n{}",
            reference.len(),
            differ
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            dropped >= min_drops,
            "{family}: the corpus must exercise the family ({dropped} drops)"
        );
    }
}

/// Real text from the Debian packages of this machine: licences, copyright files,
/// READMEs, Debian changelogs (found by this test: e-mail addresses in `<...>`, the
/// `and/or` exception). Nothing is downloaded; `/usr/share/doc/*/copyright` is kept
/// even where the rest of the documentation is not installed.
fn debian_corpus(out: &std::path::Path) -> usize {
    use std::io::Read;
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for (dir, keep) in [
        ("/usr/share/common-licenses", None),
        ("/usr/share/doc", Some(())),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            if keep.is_none() {
                paths.push(e);
                continue;
            }
            let Ok(files) = std::fs::read_dir(&e) else {
                continue;
            };
            let mut files: Vec<_> = files.flatten().map(|f| f.path()).collect();
            files.sort();
            paths.extend(files.into_iter().filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name == "copyright"
                    || name.starts_with("README")
                    || name.ends_with(".txt")
                    || name == "changelog.Debian.gz"
            }));
        }
    }
    let mut jsonl = String::new();
    let mut n = 0;
    for p in paths {
        let Ok(raw) = std::fs::read(&p) else { continue };
        let raw = if p.extension().is_some_and(|e| e == "gz") {
            let mut s = Vec::new();
            if flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut s)
                .is_err()
            {
                continue;
            }
            s
        } else {
            raw
        };
        let Ok(text) = String::from_utf8(raw) else {
            continue;
        };
        if text.len() < 50 {
            continue;
        }
        let text: String = text.chars().take(30_000).collect();
        let doc = serde_json::json!({ "id": p.display().to_string(), "text": text });
        jsonl.push_str(&doc.to_string());
        jsonl.push('\n');
        n += 1;
    }
    std::fs::write(out, jsonl).expect("write corpus");
    n
}

#[test]
fn each_family_agrees_with_datatrove_on_real_text_from_debian_packages() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let corpus = dir.path().join("debian.jsonl");
    let n = debian_corpus(&corpus);
    assert!(n >= 200, "only {n} documents under /usr/share/doc");
    let reference = datatrove(&python, dir.path(), std::slice::from_ref(&corpus));
    assert_eq!(reference.len(), n);
    for family in FAMILIES {
        let got = kiln_reasons_of(dir.path(), family, &corpus.display().to_string());
        agrees(family, &reference, &got, 3);
    }
}
