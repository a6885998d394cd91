//! Unit tests of `dedup.minhash` (`dedup_minhash.rs`).

use super::*;
use arrow::array::{ArrayRef, StringArray};

#[test]
fn text_is_simplified_into_words() {
    let (mut text, mut words) = (String::new(), Vec::new());
    simplify("  Hello, World! 42 times ", &mut text, &mut words);
    assert_eq!(text, "hello world 00 times");
    let got: Vec<&str> = words.iter().map(|&(a, b)| &text[a..b]).collect();
    assert_eq!(got, ["hello", "world", "00", "times"]);
    // The ASCII shortcut agrees with the Unicode rules it stands for, on every ASCII
    // character and beside non-ASCII ones.
    let unicode = |t: &str| {
        let mut out = Vec::new();
        let mut word = String::new();
        for c in t.chars() {
            if c.is_whitespace() || is_punctuation(c) {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            } else if c.is_numeric() {
                word.push('0');
            } else {
                word.extend(c.to_lowercase());
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
        out.join(" ")
    };
    let ascii: String = (0u8..128).map(char::from).collect();
    for t in [
        ascii.as_str(),
        "Ünïcödé ÀB٣٤ 12x\u{a0}nbsp\u{2014}dash «quoted» ΣΑΣ İstanbul\u{0b}vt",
        "a\tb\nc\rd\u{0c}e\u{1f}f\u{7f}g",
    ] {
        simplify(t, &mut text, &mut words);
        assert_eq!(text, unicode(t), "{t:?}");
    }
}

#[test]
fn near_copies_cluster_and_the_first_survives() {
    let word = |mut n: usize| {
        let mut w = String::new();
        loop {
            w.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                return w;
            }
        }
    };
    let base: Vec<String> = (0..300).map(|i| word((i * 7919) % 1000)).collect();
    let text = base.join(" ");
    let mut near = base.clone();
    near[150] = "changed".into();
    let other: Vec<String> = (0..300).map(|i| word(5000 + i)).collect();
    let texts = vec![other.join(" "), near.join(" "), text.clone(), text];
    let batch = RecordBatch::try_from_iter(vec![(
        "text",
        Arc::new(StringArray::from(texts)) as ArrayRef,
    )])
    .expect("batch");
    let opts: MinhashOptions = serde_json::from_value(serde_json::json!({})).expect("options");
    let step = opts.bind(&batch.schema()).expect("binds");
    crate::steps::test_util::full_pass(step.as_ref(), &[(0, vec![&batch])]);
    let mut cx = StepContext::for_task(0, 0);
    let out = step.apply(batch, &mut cx).expect("apply");
    assert_eq!(
        out.num_rows(),
        2,
        "the unrelated doc and the first of the three"
    );
    assert_eq!(cx.counts["near_duplicates"], 2);
}
/// Six tasks of 25 documents, near copies of 30 bases spread over them.
fn near_copy_tasks() -> Vec<RecordBatch> {
    let mut next = crate::steps::test_util::xorshift(0x2545_F491_4F6C_DD1D);
    let bases: Vec<Vec<String>> = (0..30)
        .map(|_| (0..120).map(|_| format!("w{}", next() % 5000)).collect())
        .collect();
    (0..6)
        .map(|_| {
            let texts: Vec<String> = (0..25)
                .map(|_| {
                    let mut doc = bases[(next() % 30) as usize].clone();
                    for _ in 0..(next() % 30) {
                        let at = (next() % 120) as usize;
                        doc[at] = format!("x{}", next() % 100);
                    }
                    doc.join(" ")
                })
                .collect();
            RecordBatch::try_from_iter(vec![(
                "text",
                Arc::new(StringArray::from(texts)) as ArrayRef,
            )])
            .expect("batch")
        })
        .collect()
}

/// Settled in sections, as workers sharing the stage do, the clusters (and so the
/// survivors) are those of one settle: near copies spread over tasks, colliding in
/// different bands, chained through documents in between.
#[test]
fn sections_settle_as_one_worker_does() {
    let tasks = near_copy_tasks();
    let all: Vec<(usize, Vec<&RecordBatch>)> = tasks
        .iter()
        .enumerate()
        .map(|(t, b)| (t, vec![b]))
        .collect();
    let opts: MinhashOptions = serde_json::from_value(serde_json::json!({})).expect("options");
    let kept = |step: &dyn Step| -> Vec<usize> {
        tasks
            .iter()
            .enumerate()
            .map(|(t, b)| {
                let mut cx = StepContext::for_task(t, 0);
                step.apply(b.clone(), &mut cx).expect("apply").num_rows()
            })
            .collect()
    };
    let one = opts.bind(&tasks[0].schema()).expect("binds");
    crate::steps::test_util::full_pass(one.as_ref(), &all);
    let expected = kept(one.as_ref());
    let total: usize = expected.iter().sum();
    assert!(
        total > 25 && total < 140,
        "some but not all are near copies: {total}"
    );
    for sections in [1, 2, 5, 14, 40] {
        let shared = opts.bind(&tasks[0].schema()).expect("binds");
        crate::steps::test_util::sectioned_pass(shared.as_ref(), &all, sections);
        assert_eq!(kept(shared.as_ref()), expected, "{sections} sections");
    }
    // Past a tiny `memory` the clusters are found on disk and the drop lists read from
    // a file: the same documents go, whole and in sections.
    let small: MinhashOptions =
        serde_json::from_value(serde_json::json!({"memory": "1 KiB"})).expect("options");
    for sections in [0, 1, 5] {
        let step = small.bind(&tasks[0].schema()).expect("binds");
        if sections == 0 {
            crate::steps::test_util::full_pass(step.as_ref(), &all);
        } else {
            crate::steps::test_util::sectioned_pass(step.as_ref(), &all, sections);
        }
        assert_eq!(
            kept(step.as_ref()),
            expected,
            "small memory, {sections} sections"
        );
    }
}
/// The texts each task keeps.
fn kept_texts(step: &dyn Step, tasks: &[RecordBatch], first: usize) -> Vec<Vec<String>> {
    use arrow::array::AsArray;
    tasks
        .iter()
        .enumerate()
        .map(|(t, b)| {
            let mut cx = StepContext::for_task(first + t, 0);
            let out = step.apply(b.clone(), &mut cx).expect("apply");
            let a = out.column(0).as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_string()).collect()
        })
        .collect()
}

/// Against an earlier dataset's index, a later input keeps what one settle of both
/// keeps of it (a cluster reaching an earlier document loses all its documents
/// here), whole or in sections; its index is the index of both.
#[test]
fn against_an_earlier_index_keeps_what_one_settle_of_both_keeps() {
    let tasks = near_copy_tasks();
    let numbered = |ts: &[RecordBatch]| -> Vec<(usize, Vec<RecordBatch>)> {
        ts.iter()
            .enumerate()
            .map(|(t, b)| (t, vec![b.clone()]))
            .collect()
    };
    fn refs(ts: &[(usize, Vec<RecordBatch>)]) -> Vec<(usize, Vec<&RecordBatch>)> {
        ts.iter().map(|(t, b)| (*t, b.iter().collect())).collect()
    }
    let opts: MinhashOptions = serde_json::from_value(serde_json::json!({})).expect("options");
    let schema = tasks[0].schema();
    let both = opts.bind(&schema).expect("binds");
    let all = numbered(&tasks);
    let index_of_both = crate::steps::test_util::full_pass_against(both.as_ref(), &refs(&all), &[]);
    let expected = kept_texts(both.as_ref(), &tasks[2..], 2);

    let early = opts.bind(&schema).expect("binds");
    let earlier = crate::steps::test_util::full_pass_against(early.as_ref(), &refs(&all[..2]), &[]);
    let late_tasks = numbered(&tasks[2..]);
    let late = opts.bind(&schema).expect("binds");
    let index =
        crate::steps::test_util::full_pass_against(late.as_ref(), &refs(&late_tasks), &earlier);
    assert_eq!(kept_texts(late.as_ref(), &tasks[2..], 0), expected);
    assert_eq!(index, index_of_both);
    let by_itself = opts.bind(&schema).expect("binds");
    crate::steps::test_util::full_pass(by_itself.as_ref(), &refs(&late_tasks));
    let alone: usize = kept_texts(by_itself.as_ref(), &tasks[2..], 0)
        .iter()
        .map(Vec::len)
        .sum();
    let kept: usize = expected.iter().map(Vec::len).sum();
    assert!(
        kept < alone,
        "the earlier dataset removes some: {kept} of {alone}"
    );
    for sections in [1, 4, 16] {
        let late = opts.bind(&schema).expect("binds");
        let index = crate::steps::test_util::sectioned_pass_against(
            late.as_ref(),
            &refs(&late_tasks),
            sections,
            &earlier,
        );
        assert_eq!(
            kept_texts(late.as_ref(), &tasks[2..], 0),
            expected,
            "{sections}"
        );
        assert_eq!(index, index_of_both, "{sections} sections");
    }
}
