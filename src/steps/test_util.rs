//! Helpers for the steps' unit tests: running observers and settling full passes
//! without the runtime.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// A small batch: id int64, text utf8 (one null), score float64.
pub fn batch() -> RecordBatch {
    let id: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
    let text: ArrayRef = Arc::new(StringArray::from(vec![
        Some("a"),
        Some("hello"),
        None,
        Some("héllo wörld"),
    ]));
    let score: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5, 3.5]));
    RecordBatch::try_from_iter(vec![("id", id), ("text", text), ("score", score)])
        .expect("valid batch")
}

pub fn schema() -> SchemaRef {
    batch().schema()
}

/// Observes each task's batches (in the order given, which need not be task order)
/// and returns the parts in task order, as the runtime hands them to `settle`.
pub fn observe_tasks(
    kind: super::Kind<'_>,
    tasks: &[(usize, Vec<&RecordBatch>)],
) -> Vec<super::Part> {
    let mut parts = std::collections::BTreeMap::new();
    for (task, batches) in tasks {
        let mut o = kind
            .observer(*task)
            .expect("a full-pass or fit step")
            .expect("observer");
        let mut rows = 0;
        for b in batches {
            o.observe(b, rows).expect("observes");
            rows += b.num_rows() as u64;
        }
        parts.insert(*task, o.finish().expect("finishes"));
    }
    parts.into_values().collect()
}

/// `batches` observed as one task (task 0), its part; errors are returned.
pub fn observe_tasks_fallible(
    kind: super::Kind<'_>,
    batches: &[RecordBatch],
) -> Result<Vec<super::Part>, super::StepError> {
    let mut o = kind.observer(0).ok_or("a map step")??;
    let mut rows = 0;
    for b in batches {
        o.observe(b, rows)?;
        rows += b.num_rows() as u64;
    }
    Ok(vec![o.finish()?])
}

/// Settles a full-pass step over `tasks` as workers sharing a stage do: each task's
/// part written in `sections` sections, each section merged from every task's
/// slice of it, the step settled from the sections' decisions.
pub fn sectioned_pass(
    step: &dyn super::Step,
    tasks: &[(usize, Vec<&RecordBatch>)],
    sections: usize,
) {
    sectioned_pass_against(step, tasks, sections, &[]);
}

/// A local file of `keys` (sorted) in buckets `lo..hi`, under `dir`.
fn keys_in(dir: &std::path::Path, keys: &[u128], lo: usize, hi: usize) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join(format!("old-{lo}-{hi}"));
    let mut f = std::fs::File::create(&path).expect("creates");
    for k in keys {
        if (lo..hi).contains(&super::keys::bucket(*k)) {
            f.write_all(&k.to_le_bytes()).expect("writes");
        }
    }
    path
}

fn read_keys(path: &std::path::Path) -> Vec<u128> {
    std::fs::read(path)
        .expect("reads")
        .chunks(super::keys::KEY)
        .map(|c| u128::from_le_bytes(c.try_into().expect("a key")))
        .collect()
}

/// As [`sectioned_pass`], against an earlier dataset whose key index is `earlier`
/// (sorted): returns this run's index, each section's buckets in order.
pub fn sectioned_pass_against(
    step: &dyn super::Step,
    tasks: &[(usize, Vec<&RecordBatch>)],
    sections: usize,
    earlier: &[u128],
) -> Vec<u128> {
    let dir = tempfile::tempdir().expect("a directory");
    let mut index = Vec::new();
    let super::Kind::FullPass(p) = step.kind() else {
        panic!("not a full-pass step");
    };
    let s = p.sectioned().expect("sectioned");
    let written: Vec<(Vec<u8>, Vec<u64>)> = observe_tasks(step.kind(), tasks)
        .into_iter()
        .map(|part| {
            let mut bytes = Vec::new();
            let ends = s
                .write_sections(part, sections, &mut bytes)
                .expect("writes");
            assert_eq!(ends.len(), sections);
            assert_eq!(ends.last().copied(), Some(bytes.len() as u64));
            (bytes, ends)
        })
        .collect();
    let mut decided: Vec<Box<dyn std::io::Read + Send>> = Vec::new();
    for k in 0..sections {
        let parts = written
            .iter()
            .map(|(bytes, ends)| {
                let start = if k == 0 { 0 } else { ends[k - 1] as usize };
                p.read_part(&mut &bytes[start..ends[k] as usize])
                    .expect("reads")
            })
            .collect();
        let (lo, hi) = super::keys::section_buckets(k, sections);
        let new = dir.path().join(format!("new-{k}"));
        let mut keys = super::keys::KeyIndex::open(
            &[keys_in(dir.path(), earlier, lo, hi)],
            Some(&new),
            lo,
            hi,
        )
        .expect("opens");
        let mut out = Vec::new();
        s.merge_section(parts, &mut keys, BUDGET, &mut out)
            .expect("merges");
        keys.finish().expect("finishes");
        index.extend(read_keys(&new));
        decided.push(Box::new(std::io::Cursor::new(out)));
    }
    s.settle_sections(decided, BUDGET).expect("settles");
    index
}

/// As [`full_pass`], against an earlier dataset whose key index is `earlier` (sorted):
/// returns this run's index.
pub fn full_pass_against(
    step: &dyn super::Step,
    tasks: &[(usize, Vec<&RecordBatch>)],
    earlier: &[u128],
) -> Vec<u128> {
    let super::Kind::FullPass(p) = step.kind() else {
        panic!("not a full-pass step");
    };
    let dir = tempfile::tempdir().expect("a directory");
    let all = super::keys::BUCKETS;
    let new = dir.path().join("new");
    let mut keys =
        super::keys::KeyIndex::open(&[keys_in(dir.path(), earlier, 0, all)], Some(&new), 0, all)
            .expect("opens");
    p.settle(observe_tasks(step.kind(), tasks), &mut keys, BUDGET)
        .expect("settles");
    keys.finish().expect("finishes");
    read_keys(&new)
}

/// Settles a full-pass step over `tasks` (see [`observe_tasks`]).
pub fn full_pass(step: &dyn super::Step, tasks: &[(usize, Vec<&RecordBatch>)]) {
    let super::Kind::FullPass(p) = step.kind() else {
        panic!("not a full-pass step");
    };
    p.settle(
        observe_tasks(step.kind(), tasks),
        &mut super::keys::KeyIndex::none(),
        BUDGET,
    )
    .expect("settles");
}

/// The memory a step's decisions take in these tests: the default run's (a quarter of
/// 2 GiB).
pub const BUDGET: u64 = 512 << 20;

/// A xorshift64 generator from `seed` (not 0): the tests' deterministic "random" input.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
