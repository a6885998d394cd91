//! `dedup.minhash` precision and recall on a generated corpus with planted near
//! duplicates of measured word 5-gram Jaccard similarity.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use arrow::array::AsArray;

use crate::util::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn word(mut n: usize) -> String {
    let mut w = String::new();
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

fn shingles(words: &[String]) -> HashSet<String> {
    words.windows(5).map(|g| g.join(" ")).collect()
}

fn jaccard(a: &[String], b: &[String]) -> f64 {
    let (sa, sb) = (shingles(a), shingles(b));
    sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
}

#[test]
fn planted_near_duplicates_are_found_and_unique_documents_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut rng = Rng(2026);
    let vocab: Vec<String> = (0..20_000).map(|i| word(i + 700)).collect();
    let n_base = 3000;
    let base: Vec<Vec<String>> = (0..n_base)
        .map(|_| {
            let len = 150 + rng.below(200);
            (0..len)
                .map(|_| vocab[rng.below(vocab.len())].clone())
                .collect()
        })
        .collect();
    // Near copies at target similarities; the measured Jaccard decides the bucket.
    let mut planted: Vec<(Vec<String>, f64)> = Vec::new();
    for (i, target) in [0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
        .iter()
        .flat_map(|t| std::iter::repeat_n(*t, 160))
        .enumerate()
    {
        let original = &base[(i * 7) % n_base];
        let s = (original.len() - 4) as f64;
        let k = ((s * (1.0 - target) / (5.0 * (1.0 + target))).round() as usize).max(1);
        let mut copy = original.clone();
        for _ in 0..k {
            let at = rng.below(copy.len());
            copy[at] = vocab[rng.below(vocab.len())].clone();
        }
        let j = jaccard(original, &copy);
        planted.push((copy, j));
    }
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut f = std::fs::File::create(input.join("docs.jsonl")).expect("create");
    for (i, words) in base.iter().enumerate() {
        writeln!(
            f,
            "{}",
            serde_json::json!({"id": format!("b{i}"), "text": words.join(" ")})
        )
        .expect("write");
    }
    for (i, (words, _)) in planted.iter().enumerate() {
        writeln!(
            f,
            "{}",
            serde_json::json!({"id": format!("p{i}"), "text": words.join(" ")})
        )
        .expect("write");
    }
    drop(f);
    let p = pipeline(
        dir.path(),
        "minhash.yaml",
        &format!(
            r#"
version: 1
name: minhash
source: {{ uri: {}/*.jsonl }}
steps:
  - dedup.minhash: {{}}
  - select: [id]
sink:
  uri: ${{KILN_OUT}}/out/
run:
  task_bytes: 512KiB
"#,
            input.display()
        ),
    );
    kiln_ok(dir.path(), &["run", "-q", &p.to_string_lossy()]);
    let mut kept = HashSet::new();
    for b in read_shards(&dir.path().join("out")).values() {
        let ids = b.column(0).as_string::<i32>();
        for i in 0..b.num_rows() {
            kept.insert(ids.value(i).to_string());
        }
    }
    let base_removed = (0..n_base)
        .filter(|i| !kept.contains(&format!("b{i}")))
        .count();
    let mut buckets: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut high = (0usize, 0usize);
    for (i, (_, j)) in planted.iter().enumerate() {
        let removed = !kept.contains(&format!("p{i}"));
        let bucket = match j {
            j if *j < 0.55 => "<0.55",
            j if *j < 0.65 => "0.6",
            j if *j < 0.75 => "0.7",
            j if *j < 0.85 => "0.8",
            j if *j < 0.95 => "0.9",
            _ => ">=0.95",
        };
        let e = buckets.entry(bucket).or_default();
        e.0 += 1;
        e.1 += usize::from(removed);
        if *j >= 0.85 {
            high.0 += 1;
            high.1 += usize::from(removed);
        }
    }
    for (b, (n, r)) in &buckets {
        eprintln!(
            "Jaccard {b}: {r}/{n} removed ({:.1}%)",
            100.0 * *r as f64 / *n as f64
        );
    }
    eprintln!(
        "Jaccard >= 0.85: {}/{} removed; unique documents removed: {base_removed}/{n_base}",
        high.1, high.0
    );
    assert!(
        high.0 >= 200,
        "enough planted pairs at J >= 0.85: {}",
        high.0
    );
    assert!(
        high.1 as f64 >= 0.95 * high.0 as f64,
        "recall at J >= 0.85: {}/{}",
        high.1,
        high.0
    );
    assert!(
        base_removed as f64 <= 0.01 * n_base as f64,
        "{base_removed} of {n_base} documents without a duplicate were removed"
    );
}
