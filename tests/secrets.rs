//! Credentials never reach anything kiln writes or prints. Regressions of the conformance
//! probes: a `storage.endpoint` holding `user:password@` (expanded from `${VAR}`, or given
//! with `--set`) was written in clear into `_kiln/plan.json`, the manifest, the dataset
//! card, the report and error messages; a secret used where SQL expects an identifier came
//! back lowercased in the error, past the redaction. (The S3 suite's
//! `credentials_and_secret_expansions_never_reach_an_output` covers the AWS variables.)

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

const USER: &str = "CanaryEndpointUser41";
const PASSWORD: &str = "canary-endpoint-Pw-8817";
const SQL_SECRET: &str = "FakeDbPasswordCanary";

fn kiln_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(repo()).env_remove("KILN_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_accounted(cmd, args)
}

fn pipeline_file(dir: &Path, name: &str, source: &str, sink: &str, extra: &str) -> String {
    let p = pipeline(
        dir,
        name,
        &format!(
            "version: 1\nname: {name}\nsource:\n  uri: {source}\n  format: jsonl\n\
             steps:\n  - filter: length(text) > 0\nsink:\n  uri: {sink}\n\
             storage:\n  endpoint: ${{KILN_CANARY_ENDPOINT}}\n  allow_http: true\n  \
             retry: {{ max_retries: 0 }}\n{extra}"
        ),
    );
    p.to_string_lossy().into_owned()
}

#[test]
fn url_credentials_and_case_folded_secrets_never_reach_an_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_docs(&tmp.path().join("in/docs.jsonl"), 0, 40);
    let endpoint = format!("http://{USER}:{PASSWORD}@127.0.0.1:1");
    let env = [
        ("KILN_CANARY_ENDPOINT", endpoint.as_str()),
        ("KILN_CANARY_DB_PASSWORD", SQL_SECRET),
        ("KILN_LOG", "debug"),
    ];
    let source = tmp.path().join("in/*.jsonl").to_string_lossy().into_owned();
    let sink = tmp.path().join("out/").to_string_lossy().into_owned();
    let local = pipeline_file(tmp.path(), "local.yaml", &source, &sink, "");
    let report = tmp.path().join("report.json");
    let report_arg = report.to_string_lossy().into_owned();

    let mut seen = String::new();
    let mut record = |o: &Output| {
        seen.push_str(&stdout(o));
        seen.push_str(&stderr(o));
    };
    let run = kiln_with(&env, &["run", &local, "--report", &report_arg]);
    assert!(run.status.success(), "{}", stderr(&run));
    record(&run);
    for args in [
        vec!["plan", local.as_str()],
        vec!["validate", local.as_str()],
        vec!["status", sink.as_str()],
        vec!["--log-format", "json", "run", local.as_str()],
    ] {
        record(&kiln_with(&env, &args));
    }
    // Given on the command line instead of through a variable.
    let set = format!("storage.endpoint={endpoint}");
    record(&kiln_with(&env, &["plan", &local, "--set", &set]));
    // A run that fails on the endpoint itself (nothing listens on port 1).
    let remote = pipeline_file(
        tmp.path(),
        "remote.yaml",
        "s3://kiln-canary/in/*.jsonl",
        &tmp.path().join("out2/").to_string_lossy(),
        "",
    );
    let failed = kiln_with(&env, &["run", &remote]);
    assert!(!failed.status.success(), "{}", stderr(&failed));
    record(&failed);
    // SQL lowercases an unquoted identifier before it names it in the error.
    let sql = pipeline(
        tmp.path(),
        "sql.yaml",
        &format!(
            "version: 1\nname: sql\nsource:\n  uri: {source}\n\
             steps:\n  - filter: ${{KILN_CANARY_DB_PASSWORD}} > 1\nsink:\n  uri: {sink}x/\n"
        ),
    );
    let sql = sql.to_string_lossy().into_owned();
    let refused = kiln_with(&env, &["validate", &sql]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).to_lowercase().contains("no field named"),
        "the identifier error itself is still shown: {}",
        stderr(&refused)
    );
    record(&refused);

    seen.push_str(&std::fs::read_to_string(&report).expect("report"));
    let (text, sink_files) = non_shard_text(&tmp.path().join("out"));
    seen.push_str(&text);
    assert!(sink_files >= 4, "manifest, plan, task record, card");
    assert!(
        seen.contains("http://***:***@127.0.0.1:1"),
        "the endpoint is shown with its credentials redacted"
    );
    let folded = seen.to_lowercase();
    for canary in [USER, PASSWORD, SQL_SECRET] {
        assert!(
            !folded.contains(&canary.to_lowercase()),
            "{canary} leaked (in any case):\n{seen}"
        );
    }
}
