//! Incremental dedup (`against:`, docs/text.md "Incremental dedup"): crawl 2 deduplicated
//! against crawl 1 keeps exactly the rows of crawl 2 that one dedup of crawls 1 and 2
//! together keeps, reading crawl 1's key index (`_kiln/index/`), not its shards; and
//! crawl 3 against crawl 2 alone is deduplicated against both earlier crawls, because
//! crawl 2's index covers crawl 1's. On one worker (deciding in one pass, or settling)
//! and on several (sections).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::util::*;

/// Six JSONL objects of 250 documents: copies (in two spellings that `normalize`
/// folds), near copies (one word changed of 60) and nulls, of 300 documents of random
/// words, so
/// every object holds copies of documents of the objects before it. Object `f` is
/// written to `crawlC/part-f.jsonl` for crawl `C = f / 2 + 1`, and to `uptoD/part-f.jsonl`
/// for every `D ≥ C` (crawls 1 to D together).
fn corpus(dir: &Path) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for f in 0..6 {
        let mut text = String::new();
        for r in 0..250 {
            let pick = next() % 300;
            // Words of letters (near dedup folds digits to `0`).
            let mut y = pick.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut words: Vec<String> = (0..60)
                .map(|_| {
                    y ^= y << 13;
                    y ^= y >> 7;
                    y ^= y << 17;
                    word(y % 20_000)
                })
                .collect();
            let value = match next() % 9 {
                0 => serde_json::Value::Null,
                1 => words.join(" ").to_uppercase().into(),
                2 | 3 => {
                    words[(next() % 60) as usize] = word(20_000 + next() % 50);
                    words.join(" ").into()
                }
                _ => words.join(" ").into(),
            };
            let row = serde_json::json!({"id": f * 1000 + r, "text": value});
            text.push_str(&format!("{row}\n"));
        }
        let crawl = f / 2 + 1;
        let subs =
            std::iter::once(format!("crawl{crawl}")).chain((crawl..=3).map(|d| format!("upto{d}")));
        for sub in subs {
            std::fs::create_dir_all(dir.join(&sub)).expect("mkdir");
            let mut out =
                std::fs::File::create(dir.join(format!("{sub}/part-{f}.jsonl"))).expect("create");
            out.write_all(text.as_bytes()).expect("write");
        }
    }
}

/// A word of letters for `n`.
fn word(mut n: u64) -> String {
    let mut w = String::new();
    loop {
        w.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// A pipeline named `name` over `input` (a folder of the corpus) into
/// `$KILN_OUT/name`, with `steps` (in which `AGAINST` becomes `against`).
fn yaml(dir: &Path, name: &str, input: &str, steps: &str, against: &[&str]) -> PathBuf {
    let against: Vec<String> = against
        .iter()
        .map(|a| format!("\"${{KILN_OUT}}/{a}\""))
        .collect();
    let steps = steps.replace("AGAINST", &format!("[{}]", against.join(", ")));
    pipeline(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "version: 1\nname: {name}\nsource:\n  uri: {}/{input}/*.jsonl\n  format: jsonl\nsteps:\n{steps}sink:\n  uri: ${{KILN_OUT}}/{name}\n  max_rows: 200\nrun:\n  task_bytes: 40KiB\n  threads: 2\n",
            dir.display()
        ),
    )
}

/// Runs `p` into `out` on `workers` workers at once (1: a plain run).
fn run(out: &Path, p: &Path, workers: usize) {
    if workers == 1 {
        kiln_ok(out, &["run", "-q", &p.to_string_lossy()]);
        return;
    }
    let children: Vec<_> = (0..workers)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_kiln"))
                .current_dir(repo())
                .env("KILN_OUT", out)
                .args(["run", "-q", &p.to_string_lossy()])
                .args(["--worker", &format!("{i}/{workers}")])
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "worker {i}: {}", stderr(&o));
    }
}

/// The ids the dataset at `sink` holds, sorted; only those in `lo..hi` of them.
fn ids(sink: &Path, lo: i64, hi: i64) -> Vec<i64> {
    let mut out: Vec<i64> = read_shards(sink)
        .values()
        .flat_map(|b| {
            let a = b
                .column_by_name("id")
                .expect("an id column")
                .as_primitive::<Int64Type>()
                .clone();
            (0..a.len()).map(move |i| a.value(i)).collect::<Vec<_>>()
        })
        .filter(|id| (lo..hi).contains(id))
        .collect();
    out.sort_unstable();
    out
}

/// The key index files of `sink`, relative to it.
fn index_files(sink: &Path) -> Vec<String> {
    files(&sink.join("_kiln/index"))
        .iter()
        .map(|f| {
            f.strip_prefix(sink)
                .expect("below the sink")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `steps` over the crawls one after another, each against the one before (crawl 2 on
/// `workers[1]` workers, and so on), keeps of each crawl what one run over it and the
/// crawls before it keeps. (Not what one run over all three keeps: a later document
/// can join two earlier near-duplicate clusters, which an earlier dataset, published
/// already, does not undo.)
fn crawls_equal_one_run(
    steps: &str,
    workers: [usize; 3],
) -> (tempfile::TempDir, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tmp");
    corpus(data.path());
    let out = tempfile::tempdir().expect("tmp");
    let mut before: Option<String> = None;
    for c in 1..=3usize {
        let upto = format!("upto{c}");
        let whole = yaml(
            data.path(),
            &upto,
            &upto,
            &steps.replace(", against: AGAINST", ""),
            &[],
        );
        run(out.path(), &whole, 1);
        let name = format!("crawl{c}");
        let against: Vec<&str> = before.iter().map(String::as_str).collect();
        let p = yaml(data.path(), &name, &name, steps, &against);
        let plan = stdout(&kiln_ok(out.path(), &["plan", &p.to_string_lossy()]));
        assert!(plan.contains("stores its key index in"), "{plan}");
        assert_eq!(
            plan.contains(&format!("against {}", out.path().join("crawl1").display())),
            c == 2,
            "{plan}"
        );
        run(out.path(), &p, workers[c - 1]);
        let lo = (c as i64 - 1) * 2000;
        let got = ids(&out.path().join(&name), lo, lo + 2000);
        let expected = ids(&out.path().join(&upto), lo, lo + 2000);
        assert!(!expected.is_empty());
        assert_eq!(
            got,
            expected,
            "crawl {c} on {} worker(s) against {against:?}: {} rows kept, one run of crawls 1..={c} keeps {}",
            workers[c - 1],
            got.len(),
            expected.len()
        );
        let index = index_files(&out.path().join(&name));
        assert!(!index.is_empty(), "crawl {c} stored no key index");
        assert!(
            index
                .iter()
                .all(|f| f.contains("/keys-") && f.ends_with(".bin")),
            "{index:?}"
        );
        // One file for all 256 buckets from one worker; one per section from several.
        let whole_files = index
            .iter()
            .filter(|f| f.ends_with("keys-000-256.bin"))
            .count();
        if workers[c - 1] == 1 {
            assert_eq!(whole_files, index.len(), "{index:?}");
        } else {
            assert_eq!(whole_files, 0, "{index:?}");
        }
        before = Some(name);
    }
    // Dedup against earlier crawls removed rows a crawl alone would have kept.
    let alone = yaml(
        data.path(),
        "alone",
        "crawl3",
        &steps.replace(", against: AGAINST", ""),
        &[],
    );
    run(out.path(), &alone, 1);
    assert!(
        ids(&out.path().join("crawl3"), 0, 9000).len()
            < ids(&out.path().join("alone"), 0, 9000).len()
    );
    (data, out)
}

#[test]
fn exact_dedup_against_earlier_crawls_keeps_what_one_run_keeps() {
    // Crawl 1 decides in one pass (its index from what it kept); crawl 2 settles after
    // a full pass; crawl 3 on three workers settles in sections.
    let _ = crawls_equal_one_run(
        "  - dedup.exact: { column: text, normalize: true, against: AGAINST }\n",
        [1, 1, 3],
    );
}

#[test]
fn near_dedup_after_exact_dedup_against_earlier_crawls_keeps_what_one_run_keeps() {
    // Near copies of crawl 1 are what the near dedup against it removes from crawl 2
    // beyond the exact copies.
    let (data, out) = crawls_equal_one_run(
        "  - dedup.exact: { column: text, normalize: true, against: AGAINST }\n  - dedup.minhash: { column: text, against: AGAINST }\n",
        [2, 1, 1],
    );
    let exact_only = yaml(
        data.path(),
        "exact-only",
        "crawl2",
        "  - dedup.exact: { column: text, normalize: true, against: AGAINST }\n  - dedup.minhash: { column: text }\n",
        &["crawl1"],
    );
    run(out.path(), &exact_only, 1);
    assert!(
        ids(&out.path().join("crawl2"), 0, 9000).len()
            < ids(&out.path().join("exact-only"), 0, 9000).len()
    );
}

/// A dataset with no index for the step (another option, `index: false`, or not a
/// finished kiln dataset) is refused before any input is read, saying why.
#[test]
fn against_a_dataset_without_the_index_is_refused_saying_why() {
    let data = tempfile::tempdir().expect("tmp");
    corpus(data.path());
    let out = tempfile::tempdir().expect("tmp");
    let raw = yaml(
        data.path(),
        "raw",
        "crawl1",
        "  - dedup.exact: { column: text }\n",
        &[],
    );
    run(out.path(), &raw, 1);
    let none = yaml(
        data.path(),
        "none",
        "crawl1",
        "  - dedup.exact: { column: text, index: false }\n",
        &[],
    );
    run(out.path(), &none, 1);
    assert!(index_files(&out.path().join("none")).is_empty());

    let refused = |name: &str, steps: &str, against: &[&str], says: &str| {
        let p = yaml(data.path(), name, "crawl2", steps, against);
        let o = kiln(out.path(), &["run", "-q", &p.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{name}: {}", stderr(&o));
        assert!(
            !out.path().join(name).join("_kiln/tasks").exists(),
            "{name}: nothing is written"
        );
    };
    refused(
        "normalized",
        "  - dedup.exact: { column: text, normalize: true, against: AGAINST }\n",
        &["raw"],
        "holds no index for this step with these options",
    );
    refused(
        "unindexed",
        "  - dedup.exact: { column: text, against: AGAINST }\n",
        &["none"],
        "`index: false`",
    );
    refused(
        "unfinished",
        "  - dedup.exact: { column: text, against: AGAINST }\n",
        &["nothing-here"],
        "is not a finished kiln dataset",
    );
    refused(
        "itself",
        "  - dedup.exact: { column: text, against: AGAINST }\n",
        &["itself"],
        "own sink",
    );
}

/// A one-pass run killed after its last task committed but before it stored its key
/// index (or its manifest): the rerun has no task to do, reads the input for the
/// index, and stores the same bytes.
#[test]
fn a_rerun_with_every_task_committed_stores_a_missing_index() {
    let data = tempfile::tempdir().expect("tmp");
    corpus(data.path());
    let out = tempfile::tempdir().expect("tmp");
    let p = yaml(
        data.path(),
        "once",
        "crawl1",
        "  - dedup.exact: { column: text, normalize: true }\n",
        &[],
    );
    run(out.path(), &p, 1);
    let sink = out.path().join("once");
    let index = index_files(&sink);
    assert_eq!(index.len(), 1, "{index:?}");
    let bytes = std::fs::read(sink.join(&index[0])).expect("the index");
    let shards = shard_files(&sink);
    for gone in ["_kiln/index", "_kiln/manifest.json", "_SUCCESS"] {
        let at = sink.join(gone);
        if at.is_dir() {
            std::fs::remove_dir_all(at).expect("rm");
        } else {
            std::fs::remove_file(at).expect("rm");
        }
    }
    run(out.path(), &p, 1);
    assert_eq!(index_files(&sink), index);
    assert!(std::fs::read(sink.join(&index[0])).expect("the index") == bytes);
    assert!(shard_files(&sink) == shards);
    assert!(sink.join("_kiln/manifest.json").exists());
}
