//! WARC input read as warcio reads it: files that warcio wrote (one gzip member per
//! record, and uncompressed) and one GNU Wget wrote crawling a site on 127.0.0.1, every
//! record type, HTTP responses with repeated and long
//! headers, binary and non-UTF-8 payloads, blocks holding blank lines
//! (tests/warc/check.py).

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use serde_json::Value;
use sha2::Digest;

use crate::util::*;

/// The WARC files tests/warc/check.py writes with warcio, and its reading of them
/// (`expected.jsonl`); None outside `make test`.
fn warcio_files() -> Option<tempfile::TempDir> {
    let py = test_python()?;
    let dir = tempfile::tempdir().expect("tmp");
    let o = std::process::Command::new(&py)
        .arg(repo().join("tests/warc/check.py"))
        .arg(dir.path())
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}", stderr(&o));
    Some(dir)
}

#[test]
fn warc_records_read_as_warcio_reads_them() {
    let Some(dir) = warcio_files() else { return };
    let expected: Vec<Value> = std::fs::read_to_string(dir.path().join("expected.jsonl"))
        .expect("expected.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let written_by = |name: &str| expected.iter().filter(|e| e["file"] == name).count();
    for name in ["crawl.warc.gz", "plain.warc"] {
        assert_eq!(
            written_by(name),
            13,
            "{name}: warcinfo, 5 requests and responses, resource, metadata"
        );
    }
    // GNU Wget's own writer, where wget is installed (it is on the machines CI runs on):
    // warcinfo, 5 requests and responses (a 404 and robots.txt among them), 2 metadata;
    // a retried request under load adds records, so at least those.
    if std::env::var_os("CI").is_some() || dir.path().join("in/wget.warc.gz").exists() {
        let n = written_by("wget.warc.gz");
        assert!(n >= 13, "wget's records: {n}");
    }

    // Read whole, and with the .warc.gz cut into slices of 4 KiB at its members.
    for task_bytes in ["1GiB", "4KiB"] {
        let got = read_as_rows(dir.path(), task_bytes);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            let mut e = e.clone();
            e.as_object_mut().expect("object").remove("file");
            assert_eq!(
                g, &e,
                "kiln and warcio differ on a record of {} (task_bytes {task_bytes})",
                e["url"]
            );
        }
    }
}

/// Every record of the WARC files in `dir/in`, as tests/warc/check.py writes warcio's.
fn read_as_rows(dir: &std::path::Path, task_bytes: &str) -> Vec<Value> {
    let (plan, rows) = read_with(dir, task_bytes, None);
    assert!(plan.contains("format    Warc"), "{plan}");
    if task_bytes == "4KiB" {
        assert!(
            plan.contains("slices of objects larger than run.task_bytes"),
            "{plan}"
        );
    }
    rows
}

/// [`read_as_rows`] with `source.warc.cdx` (when given): the plan's text, and the rows.
fn read_with(dir: &std::path::Path, task_bytes: &str, cdx: Option<&str>) -> (String, Vec<Value>) {
    let cdx = cdx.map_or(String::new(), |c| format!("    cdx: {c}\n"));
    let p = pipeline(
        dir,
        "warc.yaml",
        &format!(
            "version: 1\nname: warc\nsource:\n  uri: {}/in/*\n  warc:\n    record_types: [warcinfo, \
             request, response, resource, metadata, revisit, conversion, continuation]\n{cdx}sink:\n  \
             uri: ${{KILN_OUT}}/warc\nrun:\n  task_bytes: {task_bytes}\n",
            dir.display()
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(out.path(), &["plan", &p.to_string_lossy()]));
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);

    let shards = read_shards(&out.path().join("warc"));
    let mut got = Vec::new();
    for b in shards.values() {
        let s = |name: &str| {
            b.column_by_name(name)
                .expect(name)
                .as_string::<i32>()
                .clone()
        };
        let (kind, id, url, date, ct, headers) = (
            s("warc_type"),
            s("record_id"),
            s("url"),
            s("date"),
            s("content_type"),
            s("http_headers"),
        );
        let status = b
            .column_by_name("http_status")
            .expect("http_status")
            .as_primitive::<Int32Type>()
            .clone();
        let body = b
            .column_by_name("body")
            .expect("body")
            .as_binary::<i32>()
            .clone();
        let opt = |a: &arrow::array::StringArray, i: usize| {
            (!a.is_null(i)).then(|| Value::String(a.value(i).to_string()))
        };
        for i in 0..b.num_rows() {
            let headers = (!headers.is_null(i))
                .then(|| serde_json::from_str::<Value>(headers.value(i)).expect("headers JSON"));
            got.push(serde_json::json!({
                "warc_type": kind.value(i),
                "record_id": opt(&id, i),
                "url": opt(&url, i),
                "date": opt(&date, i),
                "content_type": opt(&ct, i),
                "http_status": (!status.is_null(i)).then(|| status.value(i)),
                "http_headers": headers,
                "body": {
                    "sha256": format!("{:x}", sha2::Sha256::digest(body.value(i))),
                    "len": body.value(i).len(),
                },
            }));
        }
    }
    (plan, got)
}

#[test]
fn a_warc_gz_is_cut_at_the_offsets_of_its_cdx_index() {
    // A first record of 1.5 MB: kiln's probe of the first MiB sees one member, so only
    // an index lets the file be cut.
    let Some(py) = test_python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let o = std::process::Command::new(&py)
        .arg(repo().join("tests/warc/cdx.py"))
        .arg(dir.path())
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let offsets: Vec<u64> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("offsets.json")).expect("offsets"),
    )
    .expect("json");
    assert_eq!(offsets.len(), 161);

    let (plan, whole) = read_with(dir.path(), "16KiB", None);
    assert!(
        plan.contains("tasks     1 ") && plan.contains("source.warc.cdx"),
        "{plan}"
    );
    assert_eq!(whole.len(), 161);
    // Common Crawl's CDXJ (responses only, the file named by its path in the crawl),
    // classic CDX gzipped, warcio's index.
    for index in ["cdxj/big.cdxj", "cdx/*.cdx.gz", "idx/"] {
        let cdx = dir.path().join(index);
        let (plan, rows) = read_with(dir.path(), "16KiB", Some(&cdx.to_string_lossy()));
        assert_eq!(rows, whole, "{index}: the rows read whole");

        let p = dir.path().join("warc.yaml");
        let json = stdout(&kiln_ok(
            dir.path(),
            &["plan", "--json", &p.to_string_lossy()],
        ));
        let json: Value = serde_json::from_str(&json).expect("plan JSON");
        let starts: Vec<u64> = json["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["range"][0].as_u64().expect("a slice"))
            .collect();
        assert!(starts.len() >= 8, "{index}: {plan}");
        assert_eq!(starts[1], offsets[1], "{index}: cut after the large record");
        assert!(
            starts.iter().all(|s| offsets.contains(s)),
            "{index}: every slice starts at a record: {starts:?}"
        );
    }

    // An index of another file of the same name is refused when it runs past the end.
    std::fs::write(
        dir.path().join("wrong.cdxj"),
        "k 1 {\"offset\": \"99999999\", \"filename\": \"big.warc.gz\"}\n",
    )
    .expect("write");
    let p = pipeline(
        dir.path(),
        "wrong.yaml",
        &format!(
            "version: 1\nname: w\nsource:\n  uri: {0}/in/*\n  warc:\n    cdx: {0}/wrong.cdxj\n\
             sink:\n  uri: ${{KILN_OUT}}/w\nrun:\n  task_bytes: 16KiB\n",
            dir.path().display()
        ),
    );
    let o = kiln(dir.path(), &["plan", &p.to_string_lossy()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("wrong.cdxj") && e.contains("99999999") && e.contains("big.warc.gz"),
        "{e}"
    );
}

#[test]
fn by_default_only_records_holding_a_document_are_read() {
    let Some(dir) = warcio_files() else { return };
    let p = pipeline(
        dir.path(),
        "warc.yaml",
        &format!(
            "version: 1\nname: warc\nsource:\n  uri: {}/in/crawl.warc.gz\nsink:\n  uri: ${{KILN_OUT}}/warc\n",
            dir.path().display()
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
    let shards = read_shards(&out.path().join("warc"));
    let types: Vec<String> = shards
        .values()
        .flat_map(|b| {
            b.column_by_name("warc_type")
                .expect("warc_type")
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    // The five responses and the resource; not warcinfo, the requests or metadata.
    assert_eq!(
        types,
        [
            "response", "response", "response", "response", "response", "resource"
        ]
    );
    let bad = pipeline(
        dir.path(),
        "typo.yaml",
        &format!(
            "version: 1\nname: typo\nsource:\n  uri: {}/in/crawl.warc.gz\n  warc: {{ record_types: [responses] }}\nsink:\n  uri: ${{KILN_OUT}}/typo\n",
            dir.path().display()
        ),
    );
    let o = kiln(out.path(), &["validate", &bad.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`responses` is not a WARC record type"),
        "{}",
        stderr(&o)
    );
}

/// `text.decode` on WARC responses: a page labelled UTF-8 holding a Latin-1 byte is a bad
/// row (left out and counted under skip) or read with U+FFFD under `malformed: replace`;
/// an unlabelled Shift_JIS page is detected; a `<meta>` charset is read.
#[test]
fn text_decode_reads_each_page_in_its_charset() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    let japanese =
        "東京は日本の首都です。日本語の文章は、ひらがなとカタカナと漢字で書かれています。";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(japanese);
    let pages: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "http://a.example.com/",
            "text/html; charset=utf-8",
            b"<p>caf\xe9</p>".to_vec(),
        ),
        ("http://b.example.jp/", "text/html", sjis.into_owned()),
        (
            "http://c.example.fr/",
            "text/html",
            b"<meta charset=iso-8859-1><p>d\xe9j\xe0 vu</p>".to_vec(),
        ),
    ];
    let mut warc = Vec::new();
    for (url, ct, body) in &pages {
        let mut http = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        http.extend_from_slice(body);
        warc.extend(
            format!(
                "WARC/1.1\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nContent-Type: \
                 application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
                http.len()
            )
            .into_bytes(),
        );
        warc.extend(http);
        warc.extend(b"\r\n\r\n");
    }
    std::fs::write(dir.path().join("in/pages.warc"), warc).expect("write");
    let run = |malformed: &str| {
        let p = pipeline(
            dir.path(),
            &format!("{malformed}.yaml"),
            &format!(
                "version: 1\nname: decode\nsource:\n  uri: {}/in/pages.warc\nsteps:\n  - text.decode: \
                 {{ content_type: http_content_type, url: url, malformed: {malformed} }}\n  - select: \
                 [url, charset, text]\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  on_error: skip\n  \
                 max_error_ratio: 1\n",
                dir.path().display()
            ),
        );
        let out = tempfile::tempdir().expect("tmp");
        kiln_ok(out.path(), &["run", "-q", &p.to_string_lossy()]);
        let shards = read_shards(&out.path().join("ds"));
        let mut rows = Vec::new();
        for b in shards.values() {
            let s = |n: &str| b.column_by_name(n).expect(n).as_string::<i32>().clone();
            let (url, charset, text) = (s("url"), s("charset"), s("text"));
            for i in 0..b.num_rows() {
                rows.push((
                    url.value(i).to_string(),
                    charset.value(i).to_string(),
                    text.value(i).to_string(),
                ));
            }
        }
        rows
    };
    let row = |u: &str, c: &str, t: &str| (u.to_string(), c.to_string(), t.to_string());
    assert_eq!(
        run("reject"),
        [
            row("http://b.example.jp/", "Shift_JIS", japanese),
            row(
                "http://c.example.fr/",
                "windows-1252",
                "<meta charset=iso-8859-1><p>déjà vu</p>"
            ),
        ]
    );
    assert_eq!(
        run("replace"),
        [
            row("http://a.example.com/", "UTF-8", "<p>caf\u{fffd}</p>"),
            row("http://b.example.jp/", "Shift_JIS", japanese),
            row(
                "http://c.example.fr/",
                "windows-1252",
                "<meta charset=iso-8859-1><p>déjà vu</p>"
            ),
        ]
    );
}
