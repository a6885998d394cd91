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

/// `kiln ARGS` run from the repository root, with `KILN_OUT` pointing at `out`.
pub fn kiln(out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out)
        .env_remove("KILN_LOG")
        .args(args)
        .output()
        .expect("kiln runs")
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

/// Every `.parquet` file below `dir`: relative path and bytes, sorted by path.
pub fn shard_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".parquet"))
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
