#!/usr/bin/env python3
"""The documents two near-dedup runs removed, side by side. Job G (benches/minhash.sh)
runs kiln's `dedup.minhash` and datatrove's MinHash pipeline on the same corpus; this
reads the ids of the input (JSONL.gz) and of each output (Parquet) and prints how many
each removed and how the two removed sets overlap: by document, and by text (a cluster
of copies loses all but one whichever copy each tool keeps, so the multisets of removed
texts are compared too). For the documents only one of them removed it says how many
have fewer words than one shingle, and, for those among the first SAMPLE_DOCS documents
(default 20,000), their highest word 5-gram Jaccard similarity with an earlier document,
with the text simplified as kiln simplifies it (lowercase, ASCII punctuation splits
words, each digit folded to 0) and as datatrove does (punctuation deleted, each number
folded to 0) when datatrove is importable.
usage: compare_dedup.py IN_DIR KILN_OUT PEER_OUT [PEER_NAME]"""
import glob
import gzip
import json
import os
import re
import string
import sys
from collections import Counter

import pyarrow.dataset as ds

N = 5
_SPLIT = re.compile("[" + re.escape(string.punctuation) + r"\s\x00-\x1f\x7f]+")


def kiln_words(text):
    return [w for w in _SPLIT.split(re.sub(r"\d", "0", text.lower())) if w]


def datatrove_words():
    try:
        from datatrove.utils.text import TextNormConfig, simplify_text
    except ImportError:
        return None
    cfg = TextNormConfig()
    return lambda text: simplify_text(text, cfg).split()


def shingles(words):
    return {" ".join(words[i:i + N]) for i in range(len(words) - N + 1)}


def input_docs(folder):
    ids, texts = [], {}
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                ids.append(d["id"])
                texts[d["id"]] = d["text"]
    return ids, texts


def output_ids(folder):
    files = [p for p in glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True)
             if "/_" not in p[len(folder):]]
    return set(ds.dataset(files, format="parquet").to_table(columns=["id"])["id"].to_pylist())


def best_jaccard(sample, ids, texts, words):
    """Each sampled document's highest Jaccard similarity with an earlier document that
    shares a shingle with it (`ids` holds every document up to the last sampled one)."""
    order = {i: k for k, i in enumerate(ids)}
    sets = {i: shingles(words(texts[i])) for i in ids}
    index = {}
    for i in ids:
        for s in sets[i]:
            index.setdefault(s, []).append(i)
    out = []
    for i in sample:
        mine = sets[i]
        cands = {j for s in mine for j in index[s] if order[j] < order[i]}
        out.append(max((len(mine & sets[j]) / len(mine | sets[j]) for j in cands), default=0.0))
    return sorted(out)


def main():
    inp, kiln_out, peer_out = sys.argv[1:4]
    peer = sys.argv[4] if len(sys.argv) > 4 else "datatrove"
    ids, texts = input_docs(inp)
    everything = set(ids)
    removed = {"kiln": everything - output_ids(kiln_out), peer: everything - output_ids(peer_out)}
    both = removed["kiln"] & removed[peer]
    either = removed["kiln"] | removed[peer]
    print(f"documents in: {len(ids)}")
    print(f"removed by kiln: {len(removed['kiln'])}; by {peer}: {len(removed[peer])}; "
          f"the same documents by both: {len(both)} ({len(both) / max(1, len(either)):.1%} "
          "of the union)")
    by_text = {k: Counter(texts[i] for i in v) for k, v in removed.items()}
    same = sum((by_text["kiln"] & by_text[peer]).values())
    print(f"the same texts removed by both (as multisets, whichever copy each kept): {same} "
          f"({same / max(1, len(removed['kiln']), len(removed[peer])):.1%} of the larger)")
    simplifiers = [("kiln's", kiln_words)]
    dt = datatrove_words()
    if dt is not None:
        simplifiers.append(("datatrove's", dt))
    order = {i: k for k, i in enumerate(ids)}
    for name, other in [("kiln", peer), (peer, "kiln")]:
        only = sorted(removed[name] - removed[other], key=order.get)
        if not only:
            print(f"only {name} removed: none")
            continue
        short = [i for i in only if len(kiln_words(texts[i])) < N]
        print(f"only {name} removed {len(only)}: {len(short)} of fewer than {N} words "
              f"(one shingle of all its words in kiln; no signature in datatrove)")
        limit = int(os.environ.get("SAMPLE_DOCS", "20000"))
        short_set = set(short)
        sample = [i for i in only if i not in short_set and order[i] < limit]
        for label, words in simplifiers if sample else []:
            sims = best_jaccard(sample, ids[:limit], texts, words)
            print(f"  the others among the first {limit} documents ({len(sample)}), best 5-gram "
                  f"Jaccard with an earlier "
                  f"document, {label} simplification: min {sims[0]:.2f}, median "
                  f"{sims[len(sims) // 2]:.2f}, max {sims[-1]:.2f}")


if __name__ == "__main__":
    main()
