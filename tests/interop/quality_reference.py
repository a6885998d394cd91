#!/usr/bin/env python3
"""datatrove's decisions on documents, for text.quality's differential test.

    python quality_reference.py OUT.jsonl IN.jsonl[.gz] ... [--limit N]

For every document (one JSON object a line with `id` and `text`) writes
`{"id": ..., "gopher_repetition": reason|null, "gopher_quality": ..., "c4": ...,
"fineweb": ...}`: each datatrove filter with its default settings, run on the original
text independently of the others (null = kept). English word splitting is datatrove's
default, spaCy's blank English tokenizer, which works offline.
"""
import argparse
import gzip
import json

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

FILTERS = {
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb": FineWebQualityFilter,
}


def docs(paths, limit):
    n = 0
    for p in paths:
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rt", encoding="utf-8") as f:
            for line in f:
                if limit is not None and n >= limit:
                    return
                d = json.loads(line)
                n += 1
                yield d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args()
    filters = {name: cls() for name, cls in FILTERS.items()}
    with open(a.out, "w", encoding="utf-8") as out:
        for d in docs(a.inputs, a.limit):
            row = {"id": d["id"]}
            for name, f in filters.items():
                try:
                    r = f.filter(Document(text=d["text"], id=str(d["id"])))
                except ZeroDivisionError:
                    r = (False, "empty")
                row[name] = None if r is True else (r[1] if isinstance(r, tuple) else "dropped")
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
