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

/// Ray, where many ML data jobs run: the example starts a local Ray on 127.0.0.1 and
/// runs two kiln workers as Ray tasks on a pipeline with a near-dedup stage and a fit;
/// the dataset is the single run's, byte for byte.
#[test]
fn kiln_workers_as_ray_tasks_make_the_single_run_dataset() {
    let Some(python) = test_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline(
        dir.path(),
        "ray.yaml",
        &format!(
            "version: 1\nname: ray\nsource:\n  uri: {}\nsteps:\n  - dedup.minhash: {{ column: note }}\n  - one_hot: {{ columns: [device] }}\nsink:\n  uri: ${{KILN_OUT}}/ds\n  max_rows: 200\nrun:\n  task_bytes: 8KiB\n",
            repo().join("sample-data/customers/train.csv").display()
        ),
    );
    let single = tempfile::tempdir().expect("tmp");
    kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
    let out = tempfile::tempdir().expect("tmp");
    let o = std::process::Command::new(python)
        .current_dir(repo())
        .env("KILN_OUT", out.path())
        .env_remove("RAY_ADDRESS")
        .args([
            "examples/orchestration/kiln_on_ray.py",
            &p.to_string_lossy(),
            "--workers",
            "2",
            "--kiln",
            env!("CARGO_BIN_EXE_kiln"),
            "--",
            "--set",
            "run.threads=1",
        ])
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("2 of 2 kiln workers succeeded"),
        "{}",
        stdout(&o)
    );
    let (a, b) = (single.path().join("ds"), out.path().join("ds"));
    assert!(shard_files(&a).len() > 1);
    assert!(shard_files(&a) == shard_files(&b), "the shards differ");
    assert!(b.join("_SUCCESS").exists());
}
