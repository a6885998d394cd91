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
        let mut out = Vec::new();
        s.merge_section(parts, &mut out).expect("merges");
        decided.push(Box::new(std::io::Cursor::new(out)));
    }
    s.settle_sections(decided).expect("settles");
}

/// Settles a full-pass step over `tasks` (see [`observe_tasks`]).
pub fn full_pass(step: &dyn super::Step, tasks: &[(usize, Vec<&RecordBatch>)]) {
    let super::Kind::FullPass(p) = step.kind() else {
        panic!("not a full-pass step");
    };
    p.settle(observe_tasks(step.kind(), tasks))
        .expect("settles");
}
