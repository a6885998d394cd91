//! Unit tests of `dedup.exact` (`dedup_exact.rs`).

use super::*;
use arrow::array::{ArrayRef, AsArray, StringArray};

fn batch(texts: &[Option<&str>]) -> RecordBatch {
    let a: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    RecordBatch::try_from_iter(vec![("text", a)]).expect("batch")
}

fn texts(b: &RecordBatch) -> Vec<Option<String>> {
    let a = b.column(0).as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

/// Two tasks, observed in the "wrong" order (task 1 first) with tiny runs, so the
/// merge rounds and the position order both matter; with the duplicates in memory and
/// past a tiny `memory` (in the spill directory).
#[test]
fn first_copy_in_input_order_survives_whatever_the_observation_order() {
    first_copy_survives(serde_json::json!({"normalize": true, "run_bytes": "1 KiB"}));
    first_copy_survives(serde_json::json!({
        "normalize": true, "run_bytes": "1 KiB", "memory": "1 KiB"
    }));
}

fn first_copy_survives(opts: serde_json::Value) {
    let opts: DedupExactOptions = serde_json::from_value(opts).expect("options");
    let task0 = batch(&[Some("a b"), Some("c"), Some("A  B"), None, None, Some("d")]);
    let task1 = batch(&[Some("c"), Some("e"), Some("e"), Some("a b")]);
    let step = opts.bind(&task0.schema()).expect("binds");
    let mut many = Vec::new();
    for i in 0..300 {
        many.push(format!("filler {i}"));
    }
    let fill = batch(&many.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>());
    let x = batch(&[Some("x")]);
    let mut tasks = vec![(1usize, vec![&task1, &fill]), (0, vec![&task0, &fill])];
    for t in 2..(super::super::spill::FAN_IN + 20) {
        tasks.push((t, vec![&x]));
    }
    crate::steps::test_util::full_pass(step.as_ref(), &tasks);
    let mut cx0 = StepContext::for_task(0, 0);
    let out0 = step.apply(task0, &mut cx0).expect("task 0");
    assert_eq!(
        texts(&out0),
        [
            Some("a b".into()),
            Some("c".into()),
            None,
            None,
            Some("d".into())
        ]
    );
    let mut cx1 = StepContext::for_task(1, 0);
    let out1 = step.apply(task1, &mut cx1).expect("task 1");
    assert_eq!(texts(&out1), [Some("e".into())]);
    assert_eq!(cx0.counts["duplicates"] + cx1.counts["duplicates"], 4);
    // The filler of task 1 duplicates task 0's filler entirely.
    let mut cx1 = StepContext::for_task(1, 0);
    cx1.rows_before = 4;
    assert_eq!(step.apply(fill, &mut cx1).expect("fill").num_rows(), 0);
    // "x" in tasks 2.. : only task 2 keeps it.
    let mut cx = StepContext::for_task(3, 0);
    assert_eq!(
        step.apply(batch(&[Some("x")]), &mut cx)
            .expect("x")
            .num_rows(),
        0
    );
    let mut cx = StepContext::for_task(2, 0);
    assert_eq!(
        step.apply(batch(&[Some("x")]), &mut cx)
            .expect("x")
            .num_rows(),
        1
    );
}

/// Each task's rows through `step.apply`, batch by batch in order: the texts kept.
fn apply_task(step: &dyn Step, task: usize, batches: &[RecordBatch]) -> Vec<Option<String>> {
    let mut cx = StepContext::for_task(task, 0);
    let mut kept = Vec::new();
    for b in batches {
        let rows = b.num_rows() as u64;
        kept.extend(texts(&step.apply(b.clone(), &mut cx).expect("applies")));
        cx.rows_before += rows;
    }
    kept
}

/// Deciding in order gives the settled decisions: fresh; resumed with committed
/// tasks that are no prefix (observed first); and ended half way (what it kept is a
/// part settled ahead of the tasks left).
#[test]
fn deciding_in_order_equals_settling_after_a_full_pass() {
    let opts: DedupExactOptions = serde_json::from_value(serde_json::json!({
        "normalize": true, "run_bytes": "1 KiB"
    }))
    .expect("options");
    let mut next = crate::steps::test_util::xorshift(0x9E37_79B9_7F4A_7C15);
    // Eight tasks of three batches; values from a small pool, in two spellings, nulls.
    let tasks: Vec<Vec<RecordBatch>> = (0..8)
        .map(|_| {
            (0..3)
                .map(|_| {
                    let vals: Vec<Option<String>> = (0..40)
                        .map(|_| match next() % 150 {
                            0..=4 => None,
                            v if v % 2 == 0 => Some(format!("Value {}", v % 60)),
                            v => Some(format!("value  {}", v % 60)),
                        })
                        .collect();
                    batch(&vals.iter().map(|v| v.as_deref()).collect::<Vec<_>>())
                })
                .collect()
        })
        .collect();
    let schema = tasks[0][0].schema();
    let all: Vec<(usize, Vec<&RecordBatch>)> = tasks
        .iter()
        .enumerate()
        .map(|(t, b)| (t, b.iter().collect()))
        .collect();
    let settled = opts.bind(&schema).expect("binds");
    crate::steps::test_util::full_pass(settled.as_ref(), &all);
    let expected: Vec<_> = (0..8)
        .map(|t| apply_task(settled.as_ref(), t, &tasks[t]))
        .collect();
    assert!(expected.iter().map(Vec::len).sum::<usize>() < 8 * 3 * 40 / 2);

    fn in_order(step: &dyn Step) -> &dyn InOrder {
        match step.kind() {
            Kind::FullPass(p) => p.in_order().expect("decides in order"),
            _ => panic!("a full-pass step"),
        }
    }
    let decides = |step: &dyn Step, ts: &[usize]| {
        for &t in ts {
            let got = apply_task(step, t, &tasks[t]);
            assert_eq!(got, expected[t], "task {t}");
        }
    };
    // Across workers, settled in sections: the same decisions for any count.
    for sections in [1, 3, 16] {
        let sectioned = opts.bind(&schema).expect("binds");
        crate::steps::test_util::sectioned_pass(sectioned.as_ref(), &all, sections);
        for t in 0..8 {
            assert_eq!(
                apply_task(sectioned.as_ref(), t, &tasks[t]),
                expected[t],
                "task {t}, {sections} sections"
            );
        }
    }

    // Fresh: nothing known.
    let fresh = opts.bind(&schema).expect("binds");
    in_order(fresh.as_ref())
        .begin(Vec::new(), 1 << 30)
        .expect("begins");
    decides(fresh.as_ref(), &(0..8).collect::<Vec<_>>());
    assert!(!in_order(fresh.as_ref()).over_budget());

    // Resumed: tasks 0, 2, 3 and 6 committed; 1, 4, 5, 7 run in order.
    let resumed = opts.bind(&schema).expect("binds");
    let known: Vec<(usize, Vec<&RecordBatch>)> = [0, 2, 3, 6]
        .iter()
        .map(|&t| (t, all[t].1.clone()))
        .collect();
    let parts = crate::steps::test_util::observe_tasks(resumed.kind(), &known);
    in_order(resumed.as_ref())
        .begin(parts, 1 << 30)
        .expect("begins");
    decides(resumed.as_ref(), &[1, 4, 5, 7]);

    // Over a tiny budget after task 2: tasks 3.. settle with what it kept first.
    let ended = opts.bind(&schema).expect("binds");
    in_order(ended.as_ref())
        .begin(Vec::new(), 64)
        .expect("begins");
    decides(ended.as_ref(), &(0..3).collect::<Vec<_>>());
    assert!(in_order(ended.as_ref()).over_budget());
    let mut parts = vec![in_order(ended.as_ref()).end().expect("ends")];
    let rest: Vec<(usize, Vec<&RecordBatch>)> = all[3..].to_vec();
    parts.extend(crate::steps::test_util::observe_tasks(ended.kind(), &rest));
    let Kind::FullPass(p) = ended.kind() else {
        panic!("a full-pass step")
    };
    p.settle(
        parts,
        &mut KeyIndex::none(),
        crate::steps::test_util::BUDGET,
    )
    .expect("settles");
    decides(ended.as_ref(), &(3..8).collect::<Vec<_>>());
}
/// Against an earlier dataset's index, a later input keeps what one dedup of both
/// keeps of it (a value the earlier one held goes, first copy included), settled
/// whole or in sections; its index is the index of both, and deciding in one pass
/// writes the same index as settling.
#[test]
fn against_an_earlier_index_keeps_what_one_dedup_of_both_keeps() {
    let opts: DedupExactOptions = serde_json::from_value(serde_json::json!({
        "normalize": true, "run_bytes": "1 KiB"
    }))
    .expect("options");
    let mut next = crate::steps::test_util::xorshift(0x9E37_79B9_7F4A_7C15);
    let tasks: Vec<RecordBatch> = (0..8)
        .map(|_| {
            let vals: Vec<Option<String>> = (0..60)
                .map(|_| {
                    let x = next();
                    (!x.is_multiple_of(40)).then(|| format!("Value {}", x % 150))
                })
                .collect();
            batch(&vals.iter().map(|v| v.as_deref()).collect::<Vec<_>>())
        })
        .collect();
    let schema = tasks[0].schema();
    let numbered = |from: usize, to: usize| -> Vec<(usize, Vec<&RecordBatch>)> {
        (from..to).map(|t| (t - from, vec![&tasks[t]])).collect()
    };
    let kept = |step: &dyn Step, from: usize| -> Vec<Vec<Option<String>>> {
        tasks[from..]
            .iter()
            .enumerate()
            .map(|(t, b)| apply_task(step, t, std::slice::from_ref(b)))
            .collect()
    };
    let both = opts.bind(&schema).expect("binds");
    let index_of_both =
        crate::steps::test_util::full_pass_against(both.as_ref(), &numbered(0, 8), &[]);
    let expected: Vec<_> = kept(both.as_ref(), 0).split_off(3);
    let early = opts.bind(&schema).expect("binds");
    let earlier = crate::steps::test_util::full_pass_against(early.as_ref(), &numbered(0, 3), &[]);
    assert!(earlier.len() < index_of_both.len());

    let late = opts.bind(&schema).expect("binds");
    let index =
        crate::steps::test_util::full_pass_against(late.as_ref(), &numbered(3, 8), &earlier);
    assert_eq!(kept(late.as_ref(), 3), expected);
    assert_eq!(index, index_of_both);
    for sections in [1, 3, 16] {
        let late = opts.bind(&schema).expect("binds");
        let index = crate::steps::test_util::sectioned_pass_against(
            late.as_ref(),
            &numbered(3, 8),
            sections,
            &earlier,
        );
        assert_eq!(kept(late.as_ref(), 3), expected, "{sections} sections");
        assert_eq!(index, index_of_both, "{sections} sections");
    }

    // Deciding in one pass: what it kept at the end is the index.
    let once = opts.bind(&schema).expect("binds");
    let Kind::FullPass(p) = once.kind() else {
        panic!("a full-pass step")
    };
    let o = p.in_order().expect("decides in order");
    o.begin(Vec::new(), 1 << 30).expect("begins");
    kept(once.as_ref(), 0);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index");
    let mut keys = KeyIndex::open(&[], Some(&path), 0, super::super::keys::BUCKETS).expect("opens");
    o.write_index(vec![o.end().expect("ends")], &mut keys)
        .expect("indexes");
    let written = keys.finish().expect("finishes").expect("written");
    assert_eq!(written.keys, index_of_both.len() as u64);
    let bytes = std::fs::read(&path).expect("reads");
    let once_index: Vec<u128> = bytes
        .chunks(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("a key")))
        .collect();
    assert_eq!(once_index, index_of_both);
}
