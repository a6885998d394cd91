//! The commands besides `run`, and `run`'s report, resume and overwrite behaviour.

use crate::util::*;

#[test]
fn schema_is_json_schema_of_the_file() {
    let out = tempfile::tempdir().expect("tmp");
    let o = kiln_ok(out.path(), &["schema"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for field in ["version", "name", "source", "steps", "sink", "run"] {
        assert!(v["properties"][field].is_object(), "schema has `{field}`");
    }
}

/// `kiln schema | head -1`: the reader closing the pipe is not a failure of kiln's, so
/// it exits 0 and prints no error (the write fails with EPIPE: Rust ignores SIGPIPE).
#[test]
fn a_closed_stdout_pipe_is_not_an_error() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("schema")
        .stdout(writer)
        .output()
        .expect("kiln runs");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
}

#[test]
fn steps_lists_every_step_with_an_example() {
    let out = tempfile::tempdir().expect("tmp");
    let text = stdout(&kiln_ok(out.path(), &["steps"]));
    for name in [
        "select",
        "drop",
        "rename",
        "cast",
        "filter",
        "derive",
        "limit",
        "sample",
        "text.decode",
        "html.extract",
        "text.normalize",
        "text.quality",
        "text.language",
        "text.stats",
        "text.pii",
        "url.filter",
        "tokenize",
        "pack",
        "split",
        "dedup.exact",
        "dedup.minhash",
    ] {
        assert!(
            text.contains(&format!("- {name}:")),
            "{name} has an example:\n{text}"
        );
    }
    let one = stdout(&kiln_ok(out.path(), &["steps", "sample"]));
    assert!(one.contains("fraction") && one.contains("seed"), "{one}");
    let bad = kiln(out.path(), &["steps", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn inspect_shows_schema_and_rows() {
    let out = tempfile::tempdir().expect("tmp");
    let text = stdout(&kiln_ok(
        out.path(),
        &["inspect", "sample-data/text/*.jsonl*", "-n", "2"],
    ));
    assert!(text.starts_with("3 objects"), "{text}");
    assert!(
        text.contains("n_links: Int64") && text.contains("| id"),
        "{text}"
    );
    let pq = stdout(&kiln_ok(
        out.path(),
        &["inspect", "sample-data/parquet/products.parquet", "-n", "3"],
    ));
    assert!(pq.contains("price: Float64"), "{pq}");
}

#[test]
fn plan_shows_schema_after_each_step_and_layout() {
    let out = tempfile::tempdir().expect("tmp");
    let text = stdout(&kiln_ok(out.path(), &["plan", "pipelines/web-text.yaml"]));
    assert!(text.contains("3 objects"), "{text}");
    assert!(
        text.contains("step 3    derive") && text.contains("split: Utf8"),
        "{text}"
    );
    assert!(
        text.contains("split=<value>/part-00000-00000-<value>.parquet"),
        "{text}"
    );
}

#[test]
fn plan_json_says_what_the_text_says() {
    let out = tempfile::tempdir().expect("tmp");
    let o = kiln_ok(
        out.path(),
        &[
            "plan",
            "pipelines/web-text.yaml",
            "--json",
            "--worker",
            "0/2",
        ],
    );
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(plan["pipeline"], "web-text");
    assert_eq!(plan["source"]["format"], "jsonl");
    assert_eq!(plan["source"]["objects"].as_array().map(Vec::len), Some(3));
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps, ["select", "filter", "derive", "cast"]);
    let derive = &plan["steps"][2];
    assert_eq!(derive["pass"], "none");
    assert!(
        derive["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .any(|c| c["name"] == "split" && c["type"] == "Utf8"),
        "{derive:#}"
    );
    assert_eq!(plan["workers"], 2);
    assert_eq!(plan["tasks"][0]["worker"], 0);
    assert_eq!(plan["sink"]["partition_by"][0], "split");
    assert_eq!(plan["pipeline_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn report_resume_noop_and_overwrite() {
    let out = tempfile::tempdir().expect("tmp");
    let report = out.path().join("report.json");
    let r = report.to_string_lossy().into_owned();
    let first = kiln_ok(
        out.path(),
        &["run", "pipelines/web-text.yaml", "--report", &r],
    );
    assert!(
        stderr(&first).contains("succeeded web-text"),
        "{}",
        stderr(&first)
    );
    assert!(
        stderr(&first).contains("busiest stage"),
        "{}",
        stderr(&first)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["rows_in"], 600);
    assert_eq!(v["steps"][1]["name"], "filter");
    assert_eq!(v["steps"][1]["rows_in"], 600);
    assert_eq!(v["steps"].as_array().map(|s| s.len()), Some(4));
    assert_eq!(v["rows_out"], v["steps"][3]["rows_out"]);
    assert!(v["stages"].as_array().is_some_and(|s| s.len() == 8));

    let again = kiln_ok(
        out.path(),
        &["run", "pipelines/web-text.yaml", "--report", &r],
    );
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(v2["status"], "already_complete");

    // A different pipeline into the same sink needs --overwrite.
    let other = [
        "run",
        "-q",
        "pipelines/web-text.yaml",
        "--set",
        "sink.max_rows=50",
    ];
    assert_eq!(kiln(out.path(), &other).status.code(), Some(2));
    let mut with = other.to_vec();
    with.push("--overwrite");
    kiln_ok(out.path(), &with);
    let shards = read_shards(&out.path().join("web-text"));
    assert!(shards.values().all(|b| b.num_rows() <= 50));
}

/// Two files that differ only in the order of `split`'s fractions cut different rows,
/// so the second is refused on the first's sink, saying what can differ unseen.
#[test]
fn a_pipeline_differing_only_in_the_order_of_a_mapping_is_another_pipeline() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    write_docs(&d.join("in/a.jsonl"), 0, 300);
    let yaml = |fractions: &str| {
        format!(
            "version: 1\nname: order\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - split: {{ key: id, fractions: {{ {fractions} }} }}\nsink:\n  uri: {}/out/\n  partition_by: [split]\n",
            d.display(),
            d.display()
        )
    };
    let a = pipeline(d, "a.yaml", &yaml("train: 0.5, validation: 0.3, test: 0.2"));
    let b = pipeline(d, "b.yaml", &yaml("train: 0.5, test: 0.2, validation: 0.3"));
    let rows = |split: &str| total_rows(&d.join("out").join(format!("split={split}")));
    kiln_ok(d, &["run", "-q", a.to_str().expect("utf-8")]);
    let test_a = rows("test");
    let o = kiln(d, &["run", "-q", b.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the order of a mapping"),
        "{}",
        stderr(&o)
    );
    kiln_ok(d, &["run", "-q", b.to_str().expect("utf-8"), "--overwrite"]);
    assert_ne!(
        test_a,
        rows("test"),
        "the order of the fractions moves rows"
    );
}

#[test]
fn validate_answers_zero_or_two() {
    let out = tempfile::tempdir().expect("tmp");
    let ok = kiln_ok(out.path(), &["validate", "pipelines/csv-events.yaml"]);
    assert!(stdout(&ok).contains("ok"), "{}", stdout(&ok));
    let bad = kiln(
        out.path(),
        &[
            "validate",
            "pipelines/csv-events.yaml",
            "--set",
            "steps.4.filter=nope > 1",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("step 5 `filter`"), "{}", stderr(&bad));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = tempfile::tempdir().expect("tmp");
    let o = kiln_ok(
        out.path(),
        &["--log-format", "json", "run", "pipelines/text-lines.yaml"],
    );
    let err = stderr(&o);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = events
        .iter()
        .find(|e| e["fields"]["message"] == "run succeeded")
        .expect("a final event");
    let report: serde_json::Value =
        serde_json::from_str(done["fields"]["report"].as_str().expect("report")).expect("json");
    assert_eq!(report["rows_in"], 120);
}

/// On a terminal (util-linux `script` gives the run one) each full pass has its own bar
/// with the input's size as its total, reaching it, and the write pass a bar of its own
/// after it: no frozen `0 B` bar, nothing past 100%. (The FineWeb example's exact dedup,
/// told to make its full pass instead of deciding in one.)
#[test]
fn progress_shows_each_full_pass_then_the_write_on_a_terminal() {
    let out = tempfile::tempdir().expect("tmp");
    let sink = out.path().join("out");
    let yaml = std::fs::read_to_string(repo().join("pipelines/fineweb.yaml"))
        .expect("fineweb.yaml")
        .replace(
            "dedup.exact: { column: text }",
            "dedup.exact: { column: text, one_pass: false }",
        );
    assert!(yaml.contains("one_pass: false"));
    let p = pipeline(out.path(), "fineweb-two-passes.yaml", &yaml);
    let cmd = format!(
        "{} run {} --overwrite --set sink.uri={}",
        env!("CARGO_BIN_EXE_kiln"),
        p.display(),
        sink.display()
    );
    let o = std::process::Command::new("script")
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("util-linux `script`");
    assert!(o.status.success(), "{}", stderr(&o));
    let screen = String::from_utf8_lossy(&o.stdout).replace('\r', "\n");
    let ansi = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("regex");
    let screen = ansi.replace_all(&screen, "");
    let bar = regex::Regex::new(
        r"(full pass dedup\.exact|write) \[[0-9:]+\] \S+ ([0-9.]+ \S+)/([0-9.]+ \S+)",
    )
    .expect("regex");
    let mut phases = Vec::new();
    for c in bar.captures_iter(&screen) {
        let (phase, done, total) = (c[1].to_string(), c[2].to_string(), c[3].to_string());
        assert_ne!(total, "0 B", "a bar without a total: {}", &c[0]);
        let amount = |s: &str| -> f64 {
            s.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0)
        };
        let unit = |s: &str| s.split(' ').nth(1).unwrap_or("").to_string();
        assert!(
            unit(&done) != unit(&total) || amount(&done) <= amount(&total),
            "past its total: {}",
            &c[0]
        );
        if phases.last().is_none_or(|(p, _, _)| *p != phase) {
            phases.push((phase, done, total));
        } else if let Some(last) = phases.last_mut() {
            last.1 = done;
        }
    }
    let order: Vec<&str> = phases.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(order.first(), Some(&"full pass dedup.exact"), "{screen}");
    assert_eq!(order.last(), Some(&"write"), "{screen}");
    let (_, done, total) = &phases[0];
    assert_eq!(done, total, "the full pass ends at its total");
}
