//! Test harness: run the `kiln` binary like a user, read shards back with the parquet crate.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::compute::concat_batches;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kiln ARGS` run from the repository root, with `KILN_OUT` pointing at `out`. Every
/// `kiln run` that finishes is checked by [`assert_rows_accounted`].
pub fn kiln(out: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(repo())
        .env("KILN_OUT", out)
        .env_remove("KILN_LOG");
    run_accounted(cmd, args)
}

/// Runs `cmd ARGS`; for a `run` without its own `--report`, adds one and checks the
/// accounting of the run from it.
pub fn run_accounted(mut cmd: Command, args: &[&str]) -> Output {
    let report = (args.first() == Some(&"run") && !args.contains(&"--report")).then(|| {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "kiln-report-check-{}-{}.json",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    });
    cmd.args(args);
    if let Some(r) = &report {
        cmd.arg("--report").arg(r);
    }
    let o = cmd.output().expect("kiln runs");
    if let Some(r) = report {
        if let Ok(text) = std::fs::read(&r)
            && matches!(o.status.code(), Some(0 | 3))
        {
            let v: serde_json::Value = serde_json::from_slice(&text).expect("report JSON");
            assert_rows_accounted(&v);
        }
        let _ = std::fs::remove_file(&r);
    }
    o
}

/// The accounting identity of a finished run's report: records read = rows the steps
/// took in + records the decoders left out; each step takes in what the one before it
/// passed on; what the last step passes on is what was written; and each step's rows
/// in = rows out + rows it dropped + rows it left out as bad. So records read equal rows
/// written plus rows filtered plus records left out (a step that regroups rows, `pack`,
/// counts the difference as filtered; `mix` may repeat rows, and so pass on more).
pub fn assert_rows_accounted(r: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    let step_rejected: u64 = steps.iter().map(|s| n(&s["rows_rejected"])).sum();
    let undecoded = n(&r["rows_rejected"]) - step_rejected;
    let mut passed = n(&r["rows_in"]) - undecoded;
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(
            n(&s["rows_in"]),
            passed,
            "step {} takes in what came before: {r:#}",
            i + 1
        );
        assert!(
            n(&s["rows_out"]) + n(&s["rows_rejected"]) <= n(&s["rows_in"])
                || s["name"] == "pack"
                || s["name"] == "mix",
            "step {} passes on and leaves out no more than it takes in: {r:#}",
            i + 1
        );
        passed = n(&s["rows_out"]);
    }
    assert_eq!(
        n(&r["rows_out"]),
        passed,
        "rows written are what the last step passed on: {r:#}"
    );
}

/// Like [`kiln`], asserting exit 0 and showing stderr otherwise.
pub fn kiln_ok(out: &Path, args: &[&str]) -> Output {
    let o = kiln(out, args);
    assert!(
        o.status.success(),
        "kiln {args:?} failed ({:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `kiln ARGS --worker W` for every `W` of `workers` at once (one thread each), each
/// asserted to exit 0.
pub fn kiln_ok_at_once(out: &Path, args: &[&str], workers: &[&str]) {
    let runs: Vec<_> = workers
        .iter()
        .map(|w| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend(["--worker".to_string(), w.to_string()]);
            let out = out.to_path_buf();
            std::thread::spawn(move || {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                kiln_ok(&out, &a);
            })
        })
        .collect();
    for r in runs {
        r.join().expect("a worker's run");
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every `.parquet` file below `dir`, relative path → all its rows in one batch.
pub fn read_shards(dir: &Path) -> BTreeMap<String, RecordBatch> {
    let mut out = BTreeMap::new();
    for path in files(dir) {
        let rel = path
            .strip_prefix(dir)
            .expect("below dir")
            .to_string_lossy()
            .into_owned();
        if !rel.ends_with(".parquet") {
            continue;
        }
        out.insert(rel, read_parquet(&path));
    }
    out
}

pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).expect("open shard");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a valid parquet file")
        .build()
        .expect("reader");
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    concat_batches(&schema, &batches).expect("concat")
}

/// Every shard file below `dir` (`.parquet`; a Megatron sink's `.bin` and `.idx`):
/// relative path and bytes, sorted by path.
pub fn shard_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|p| {
            let p = p.to_string_lossy();
            p.ends_with(".parquet")
                || (!p.contains("/_kiln/")
                    && (p.ends_with(".bin")
                        || p.ends_with(".idx")
                        || p.ends_with(".mds")
                        || p.ends_with(".tar")
                        || p.ends_with("/index.json")))
        })
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .expect("below dir")
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(&p).expect("read shard"))
        })
        .collect()
}

/// Total rows of all shards below `dir`.
pub fn total_rows(dir: &Path) -> usize {
    read_shards(dir).values().map(|b| b.num_rows()).sum()
}

/// Every file below `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The text of every file below a sink but its shards (records, manifest, card, dead
/// letters), and how many there are: what a test searches for a leaked secret.
pub fn non_shard_text(dir: &Path) -> (String, usize) {
    let mut text = String::new();
    let mut n = 0;
    for f in files(dir) {
        if f.extension().is_some_and(|e| e == "parquet") {
            continue;
        }
        n += 1;
        text.push_str(&String::from_utf8_lossy(&std::fs::read(&f).expect("read")));
    }
    (text, n)
}

/// Writes `n` synthetic JSONL documents (deterministic) to `path`, gzipped if it ends in `.gz`.
pub fn write_docs(path: &Path, start: usize, n: usize) {
    let mut text = String::new();
    for i in start..start + n {
        // Varied lengths and words so compression ratios are realistic.
        let words: Vec<String> = (0..(20 + (i * 7919) % 180))
            .map(|w| format!("w{}", (i * 31 + w * 17) % 997))
            .collect();
        let line = serde_json::json!({
            "id": format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
            "text": words.join(" "),
            "n": i,
            "lang": if i % 10 == 0 { "de" } else { "en" },
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let file = std::fs::File::create(path).expect("create");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        gz.write_all(text.as_bytes()).expect("write");
        gz.finish().expect("finish");
    } else {
        let mut f = file;
        f.write_all(text.as_bytes()).expect("write");
    }
}

/// Writes a pipeline file into `dir` and returns its path.
pub fn pipeline(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).expect("write pipeline");
    p
}

/// The Python of `make test`'s virtualenv (`KILN_TEST_PYTHON`: pyarrow, warcio, the
/// interop readers), or `None`, loudly, outside it (under CI its absence fails).
pub fn test_python() -> Option<String> {
    match std::env::var("KILN_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "KILN_TEST_PYTHON unset under CI"
            );
            eprintln!("\n!!!! SKIPPED: KILN_TEST_PYTHON unset (run through `make test`) !!!!\n");
            None
        }
    }
}

/// The Python of `.venv-train` (torch, megatron-core, mosaicml-streaming, webdataset:
/// the trainers' readers), or `None`, loudly, outside `make test` (under CI its absence
/// fails).
pub fn train_python() -> Option<String> {
    match std::env::var("KILN_TEST_TRAIN_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "KILN_TEST_TRAIN_PYTHON unset under CI"
            );
            eprintln!(
                "\n!!!! SKIPPED the trainers' readers: KILN_TEST_TRAIN_PYTHON unset (run through `make test`) !!!!\n"
            );
            None
        }
    }
}

/// The `_kiln/errors/*.jsonl` records of a sink, in task order.
pub fn dead_letters(sink: &Path) -> Vec<serde_json::Value> {
    files(&sink.join("_kiln/errors"))
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .expect("read errors")
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sends `sig` (`-STOP`, `-CONT`) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Waits, up to a minute, until `found` holds (`what` names it in the failure).
pub fn wait_until(what: &str, found: impl Fn() -> bool) {
    let waited = std::time::Instant::now();
    while !found() {
        assert!(waited.elapsed().as_secs() < 60, "{what} never appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `kiln run -q P` naming no worker (so it may join a run as a helper), with info logs.
pub fn unnamed_run(out: &Path, p: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(repo())
        .env("KILN_OUT", out)
        .env("KILN_LOG", "kiln=info")
        .args(["run", "-q", &p.to_string_lossy()]);
    c
}
