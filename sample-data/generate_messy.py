#!/usr/bin/env python3
"""Generates the bad-input sample, deterministically (seed 11), standard library only.

    python3 sample-data/generate_messy.py

sample-data/messy/: click events as a raw bucket holds them, with the faults
pipelines/messy-events.yaml leaves out under `run.on_error: dead_letter`:

- events-00.jsonl (300 lines): a line cut off mid-record, a line that is not JSON, an
  `amount` that is text where the others are numbers (`"12,50"`, which `cast` to
  float64 refuses), a `user` id that is a string where the column is an integer, and a
  line of invalid UTF-8.
- events-01.jsonl.gz (300 lines): gzip cut short, as an interrupted upload leaves it;
  the lines before the cut are kept, the object is recorded.
- events-02.jsonl … events-20.jsonl (100 lines each): clean, so that one object in 21
  is bad (under the example's 5% `max_error_ratio`).

Everything is made up; nothing to license beyond this repository's own licence.
"""
import gzip
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "messy")
KINDS = ["view", "click", "add_to_cart", "purchase"]


def event(rng, i):
    return {
        "user": 1000 + rng.randrange(200),
        "kind": rng.choice(KINDS),
        "amount": str(round(rng.uniform(0, 300), 2)),
        "ts": f"2026-11-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00",
    }


def lines(rng, start, n):
    return [json.dumps(event(rng, i), separators=(",", ":")).encode() for i in range(start, start + n)]


def main():
    rng = random.Random(11)
    os.makedirs(OUT, exist_ok=True)
    a = lines(rng, 0, 300)
    a[40] = a[40][: len(a[40]) // 2]  # cut off mid-record
    a[90] = b"user=1042 kind=click amount=3.50"  # not JSON
    a[150] = a[150].replace(b'"amount":"', b'"amount":"12,50 (was ', 1)  # cast refuses it
    a[200] = a[200].replace(b'"user":', b'"user":"u-', 1).replace(b',"kind"', b'","kind"', 1)
    a[250] = a[250].replace(b'"kind":"', b'"kind":"\xff\xfe', 1)  # invalid UTF-8
    with open(os.path.join(OUT, "events-00.jsonl"), "wb") as f:
        f.write(b"\n".join(a) + b"\n")
    b = gzip.compress(b"\n".join(lines(rng, 300, 300)) + b"\n", mtime=0)
    with open(os.path.join(OUT, "events-01.jsonl.gz"), "wb") as f:
        f.write(b[: len(b) * 2 // 3])
    for k in range(2, 21):
        with open(os.path.join(OUT, f"events-{k:02d}.jsonl"), "wb") as f:
            f.write(b"\n".join(lines(rng, 600 + 100 * k, 100)) + b"\n")


if __name__ == "__main__":
    main()
