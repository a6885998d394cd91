"""Synthetic documents for the near-dedup memory benchmark (benches/minhash_memory.sh).

Writes DOCS JSONL documents of six random 4-hex-digit words (two word 5-grams: as
cheap to hash as a document can be while still having a MinHash signature, so the run
measures the stage's state, not the hashing) into FILES files; a fraction DUP of the
documents repeat one of the 4,096 documents before them, so they collide in every band
with it. Deterministic for a seed.

    python benches/make_near_dups.py OUT_DIR DOCS [--files 8] [--dup 0.1] [--seed 1]
"""
import argparse
import os
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("docs", type=int)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--dup", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    recent = []
    per_file = -(-a.docs // a.files)
    written = 0
    for f in range(a.files):
        n = min(per_file, a.docs - written)
        with open(os.path.join(a.out, f"docs-{f:03}.jsonl"), "w") as out:
            lines = []
            for _ in range(n):
                if recent and rng.random() < a.dup:
                    text = recent[rng.randrange(len(recent))]
                else:
                    h = rng.randbytes(12).hex()
                    text = " ".join(h[i:i + 4] for i in range(0, 24, 4))
                    if len(recent) < 4096:
                        recent.append(text)
                    else:
                        recent[rng.randrange(4096)] = text
                lines.append('{"text":"%s"}\n' % text)
                if len(lines) == 65536:
                    out.write("".join(lines))
                    lines.clear()
            out.write("".join(lines))
        written += n


if __name__ == "__main__":
    main()
