#!/usr/bin/env python3
"""Checks kiln's job-C output against HF tokenizers: for 3,000 documents spread over the
corpus, kiln's `input_ids` must equal `Tokenizer.encode(text).ids` (what the `datasets`
peer writes: encode_batch with the defaults), id for id.

    python check_tokens.py IN_DIR KILN_OUT_DIR tokenizer.json
"""
import glob
import gzip
import json
import os
import sys

import pyarrow.dataset as ds
from tokenizers import Tokenizer

inp, out, tok_path = sys.argv[1:4]
tok = Tokenizer.from_file(tok_path)
texts = {}
for i, p in enumerate(sorted(glob.glob(os.path.join(inp, "*.jsonl.gz")))):
    with gzip.open(p, "rt", encoding="utf-8") as f:
        for j, line in enumerate(f):
            if j % 97 == i % 97:
                d = json.loads(line)
                texts[d["id"]] = d["text"]
table = ds.dataset(out, format="parquet").to_table(columns=["id", "input_ids"])
ids = table.column("id").to_pylist()
checked = 0
for k, doc_id in enumerate(ids):
    if doc_id in texts:
        want = tok.encode(texts[doc_id]).ids
        got = table.column("input_ids")[k].as_py()
        if got != want:
            sys.exit(f"token ids differ for document {doc_id}: kiln {got[:20]}... vs tokenizers {want[:20]}...")
        checked += 1
if checked < 1000:
    sys.exit(f"only {checked} documents checked")
print(f"token ids identical to HF tokenizers on {checked} documents ({table.num_rows} rows in the output)")
