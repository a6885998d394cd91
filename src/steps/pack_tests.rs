//! Tests of `pack` (`pack.rs`).

use super::*;

fn tokens(docs: &[&[u32]]) -> RecordBatch {
    let list = ListArray::from_iter_primitive::<UInt32Type, _, _>(
        docs.iter()
            .map(|d| Some(d.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
    );
    RecordBatch::try_from_iter(vec![("tokens", Arc::new(list) as ArrayRef)]).expect("batch")
}

fn rows(b: &RecordBatch) -> Vec<Vec<u32>> {
    let l = b.column(0).as_list::<i32>();
    (0..l.len())
        .map(|i| l.value(i).as_primitive::<UInt32Type>().values().to_vec())
        .collect()
}

#[test]
fn packs_across_batches_and_pads_or_drops_the_tail() {
    let opts: PackOptions =
        serde_json::from_value(serde_json::json!({"seq_len": 4, "separator": 0})).expect("options");
    let step = opts.bind(&tokens(&[]).schema()).expect("binds");
    let mut cx = StepContext::default();
    let a = step.apply(tokens(&[&[1, 2, 3], &[4]]), &mut cx).expect("a");
    assert_eq!(rows(&a), vec![vec![1, 2, 3, 0]]);
    let b = step.apply(tokens(&[&[5, 6, 7, 8, 9]]), &mut cx).expect("b");
    assert_eq!(rows(&b), vec![vec![4, 0, 5, 6], vec![7, 8, 9, 0]]);
    let c = step.apply(tokens(&[&[10]]), &mut cx).expect("c");
    assert_eq!(c.num_rows(), 0);
    assert!(step.finish(&mut cx).expect("finish").is_none());
    assert_eq!(cx.counts["dropped_tokens"], 2);
    assert_eq!(cx.counts["sequences"], 3);

    let opts: PackOptions =
        serde_json::from_value(serde_json::json!({"seq_len": 4, "remainder": "pad", "pad_id": 99}))
            .expect("options");
    let step = opts.bind(&tokens(&[]).schema()).expect("binds");
    let mut cx = StepContext::default();
    step.apply(tokens(&[&[1, 2, 3, 4, 5]]), &mut cx).expect("a");
    let tail = step.finish(&mut cx).expect("finish").expect("a padded row");
    assert_eq!(rows(&tail), vec![vec![5, 99, 99, 99]]);
    assert_eq!(cx.counts["padded_tokens"], 3);
}

fn lists<T: arrow::datatypes::ArrowPrimitiveType>(
    b: &RecordBatch,
    name: &str,
) -> Vec<Vec<T::Native>> {
    let l = b.column_by_name(name).expect(name).as_list::<i32>();
    (0..l.len())
        .map(|i| l.value(i).as_primitive::<T>().values().to_vec())
        .collect()
}

#[test]
fn rows_say_where_each_document_is() {
    let bind = |boundaries: &str| {
        let opts: PackOptions = serde_json::from_value(serde_json::json!({
            "seq_len": 4, "separator": 0, "remainder": "pad", "pad_id": 9,
            "boundaries": boundaries
        }))
        .expect("options");
        opts.bind(&tokens(&[]).schema()).expect("binds")
    };
    // Documents 1 2 3 | 4 | 5 6 7 8 9, each followed by 0:
    //   row 0: 1 2 3 0 | row 1: 4 0 5 6 | row 2: 7 8 9 0 | tail: 10 0 + padding.
    let run = |step: &Arc<dyn Step>| {
        let mut cx = StepContext::default();
        let mut out = vec![
            step.apply(tokens(&[&[1, 2, 3], &[4]]), &mut cx).expect("a"),
            step.apply(tokens(&[&[5, 6, 7, 8, 9]]), &mut cx).expect("b"),
            step.apply(tokens(&[&[10]]), &mut cx).expect("c"),
        ];
        out.extend(step.finish(&mut cx).expect("finish"));
        let schema = out[0].schema();
        arrow::compute::concat_batches(&schema, &out).expect("concat")
    };
    let cu = run(&bind("cu_seqlens"));
    assert_eq!(
        rows(&cu),
        vec![
            vec![1, 2, 3, 0],
            vec![4, 0, 5, 6],
            vec![7, 8, 9, 0],
            vec![10, 0, 9, 9]
        ]
    );
    assert_eq!(
        lists::<arrow::datatypes::Int32Type>(&cu, "cu_seqlens"),
        vec![vec![0, 4], vec![0, 2, 4], vec![0, 4], vec![0, 2, 4]],
        "a document cut at a row's end continues as the next row's first piece"
    );
    let seg = run(&bind("segment_ids"));
    assert_eq!(
        lists::<UInt32Type>(&seg, "segment_ids"),
        vec![
            vec![0, 0, 0, 0],
            vec![0, 0, 1, 1],
            vec![0, 0, 0, 0],
            vec![0, 0, 1, 1]
        ]
    );
    // A document starting exactly at a row's start opens no empty piece:
    //   1 2 3 0 | 4 5 6 0 | 7 0 8 0.
    let step = bind("cu_seqlens");
    let mut cx = StepContext::default();
    let b = step
        .apply(tokens(&[&[1, 2, 3], &[4, 5, 6], &[7], &[8]]), &mut cx)
        .expect("apply");
    assert_eq!(
        lists::<arrow::datatypes::Int32Type>(&b, "cu_seqlens"),
        vec![vec![0, 4], vec![0, 4], vec![0, 2, 4]]
    );
    // Without `boundaries` the output is the packed column alone.
    let plain = bind("none");
    assert_eq!(plain.output_schema().fields().len(), 1);
}

#[test]
fn refuses_a_text_column() {
    let texts: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a"]));
    let batch = RecordBatch::try_from_iter(vec![("tokens", texts)]).expect("batch");
    let opts: PackOptions =
        serde_json::from_value(serde_json::json!({"seq_len": 4})).expect("options");
    let err = opts.bind(&batch.schema()).expect_err("not tokens");
    assert!(err.contains("put `tokenize` before `pack`"), "{err}");
}

#[test]
fn best_fit_places_the_longest_chunks_first_into_the_fullest_row_that_holds_them() {
    let chunks: Vec<Vec<u32>> = [5usize, 3, 6, 2, 8, 1]
        .iter()
        .map(|&n| vec![0; n])
        .collect();
    // 8 fills a row; 6 and 5 open two; 3 goes with 5 (room 3, not 6's room 2); 2
    // with 6; 1 opens a fourth.
    assert_eq!(
        best_fit(&chunks, 8),
        vec![vec![4], vec![2, 3], vec![0, 1], vec![5]]
    );
}

#[test]
fn best_fit_keeps_every_document_whole_and_every_token_once() {
    let opts: PackOptions = serde_json::from_value(serde_json::json!({
        "seq_len": 8, "strategy": "best_fit", "window": 3, "boundaries": "cu_seqlens",
        "separator": 0, "pad_id": 99,
    }))
    .expect("options");
    let docs: Vec<Vec<u32>> = (1..=9u32)
        .map(|d| (0..(d * 5 % 11 + 1)).map(|t| d * 100 + t).collect())
        .collect();
    let doc_refs: Vec<&[u32]> = docs.iter().map(Vec::as_slice).collect();
    let step = opts.bind(&tokens(&[]).schema()).expect("binds");
    let mut cx = StepContext::default();
    let mut out = Vec::new();
    let mut cuts = Vec::new();
    // Three batches; a window of 24 tokens fills in the first two, not the third.
    for part in doc_refs.chunks(3) {
        let b = step.apply(tokens(part), &mut cx).expect("packs");
        out.extend(rows(&b));
        cuts.extend(lists::<arrow::datatypes::Int32Type>(&b, "cu_seqlens"));
    }
    let tail = step
        .finish(&mut cx)
        .expect("finishes")
        .expect("a last window");
    out.extend(rows(&tail));
    cuts.extend(lists::<arrow::datatypes::Int32Type>(&tail, "cu_seqlens"));
    assert!(out.iter().all(|r| r.len() == 8));
    // Each row's pieces: documents (with their separator) or chunks of a long one,
    // then the padding.
    let mut pieces: Vec<Vec<u32>> = Vec::new();
    for (row, cut) in out.iter().zip(&cuts) {
        for w in cut.windows(2) {
            let piece = row[w[0] as usize..w[1] as usize].to_vec();
            if piece.iter().all(|&t| t == 99) {
                continue;
            }
            pieces.push(piece);
        }
    }
    let mut want: Vec<Vec<u32>> = Vec::new();
    for d in &docs {
        let mut with_sep = d.clone();
        with_sep.push(0);
        want.extend(with_sep.chunks(8).map(<[u32]>::to_vec));
    }
    pieces.sort();
    want.sort();
    assert_eq!(
        pieces, want,
        "every document's chunks, each once, none cut further"
    );
    let c = &cx.counts;
    let tokens: u64 = docs.iter().map(|d| d.len() as u64 + 1).sum();
    assert_eq!(c["capacity_tokens"], out.len() as u64 * 8);
    assert_eq!(c["padded_tokens"] + tokens, c["capacity_tokens"]);
    assert_eq!(
        c["split_documents"],
        docs.iter().filter(|d| d.len() + 1 > 8).count() as u64
    );
}

#[test]
fn the_loss_mask_is_zero_on_padding_alone() {
    // best_fit: documents of 3, 2 and 6 tokens (separator 0 after each) into rows of 5.
    let opts: PackOptions = serde_json::from_value(serde_json::json!({
        "seq_len": 5, "separator": 0, "pad_id": 9, "strategy": "best_fit",
        "boundaries": "segment_ids", "loss_mask": true
    }))
    .expect("options");
    let step = opts.bind(&tokens(&[]).schema()).expect("binds");
    let mut cx = StepContext::default();
    let mut out = vec![
        step.apply(
            tokens(&[&[1, 2, 3], &[4, 5], &[6, 7, 8, 9, 10, 11]]),
            &mut cx,
        )
        .expect("applies"),
    ];
    out.extend(step.finish(&mut cx).expect("finish"));
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for b in &out {
        ids.extend(lists::<UInt32Type>(b, "input_ids"));
        mask.extend(lists::<arrow::datatypes::UInt8Type>(b, "loss_mask"));
    }
    assert_eq!(ids.len(), mask.len());
    let mut padded = 0;
    for (row, m) in ids.iter().zip(&mask) {
        assert_eq!(m.len(), 5);
        // Padding sits at a row's end: the mask is ones, then zeros over it.
        let real = m.iter().take_while(|&&v| v == 1).count();
        assert!(m[real..].iter().all(|&v| v == 0), "{m:?}");
        assert!(row[real..].iter().all(|&t| t == 9), "{row:?} {m:?}");
        padded += 5 - real;
    }
    assert_eq!(padded as u64, cx.counts["padded_tokens"]);
    // concat with a padded tail: zeros over the tail's padding only.
    let opts: PackOptions = serde_json::from_value(serde_json::json!({
        "seq_len": 4, "remainder": "pad", "pad_id": 0, "loss_mask": true
    }))
    .expect("options");
    let step = opts.bind(&tokens(&[]).schema()).expect("binds");
    let mut cx = StepContext::default();
    let full = step
        .apply(tokens(&[&[1, 2, 3, 4, 5, 0]]), &mut cx)
        .expect("a");
    assert_eq!(
        lists::<arrow::datatypes::UInt8Type>(&full, "loss_mask"),
        vec![vec![1, 1, 1, 1]]
    );
    let tail = step.finish(&mut cx).expect("finish").expect("a padded row");
    // A real token 0 keeps its 1; only the padding is masked.
    assert_eq!(rows(&tail), vec![vec![5, 0, 0, 0]]);
    assert_eq!(
        lists::<arrow::datatypes::UInt8Type>(&tail, "loss_mask"),
        vec![vec![1, 1, 0, 0]]
    );
}
