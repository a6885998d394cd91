//! The orchestration examples parse, and name pipelines and flags that exist.

use crate::util::*;

fn example(name: &str) -> String {
    std::fs::read_to_string(repo().join("examples/orchestration").join(name)).expect(name)
}

/// The pipeline files the examples run exist under pipelines/.
fn pipelines_exist(text: &str) {
    let mut seen = 0;
    for word in text.split(|c: char| c.is_whitespace() || "\"',[]".contains(c)) {
        if let Some(i) = word.find("pipelines/") {
            let rel = &word[i..];
            if rel.ends_with(".yaml") {
                assert!(repo().join(rel).exists(), "{rel} does not exist");
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "names a pipeline");
}

#[test]
fn kubernetes_and_argo_manifests_are_yaml() {
    for name in ["kubernetes-indexed-job.yaml", "argo-workflow.yaml"] {
        let text = example(name);
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(doc["kind"].is_string(), "{name}: a Kubernetes object");
        pipelines_exist(&text);
    }
    let job: serde_json::Value =
        serde_saphyr::from_str(&example("kubernetes-indexed-job.yaml")).expect("yaml");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
    let workers = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "KILN_WORKERS")
        .expect("KILN_WORKERS");
    assert_eq!(
        workers["value"].as_str().expect("string"),
        job["spec"]["completions"].to_string(),
        "KILN_WORKERS equals completions"
    );
}

#[test]
fn aws_batch_job_definition_is_json() {
    let text = example("aws-batch-job.json");
    let def: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(def["containerProperties"]["command"][0], "run");
    pipelines_exist(&text);
}

#[test]
fn airflow_dag_and_slurm_script_parse() {
    let py = std::process::Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(repo().join("examples/orchestration/airflow_dag.py"))
        .output()
        .expect("python3");
    assert!(py.status.success(), "{}", stderr(&py));
    pipelines_exist(&example("airflow_dag.py"));
    let sh = std::process::Command::new("bash")
        .arg("-n")
        .arg(repo().join("examples/orchestration/slurm-array.sh"))
        .output()
        .expect("bash");
    assert!(sh.status.success(), "{}", stderr(&sh));
    pipelines_exist(&example("slurm-array.sh"));
}

/// The worker environment the Slurm example relies on resolves as documented: kiln run
/// under a resubmitted array index with KILN_WORKERS set.
#[test]
fn slurm_environment_of_the_example_resolves() {
    let out = tempfile::tempdir().expect("tmp");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .env("KILN_WORKERS", "16")
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "1")
        .args(["plan", "pipelines/web-text.yaml"])
        .output()
        .expect("kiln");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("worker    5/16"), "{}", stdout(&o));
}
