"""Reads WebDataset tar shards with the `webdataset` package and prints every sample,
in order, as JSON: its key, the decoded text and integer members, and each binary or
image member's SHA-256. tests/webdataset.rs compares them with the Parquet run of the
same pipeline.

    python webdataset_read.py <shard.tar> [<shard.tar> ...]
"""

import hashlib
import json
import sys
import warnings

warnings.simplefilter("ignore")

import webdataset as wds  # noqa: E402

out = []
for s in wds.WebDataset(sys.argv[1:], shardshuffle=False).decode():
    sample = {}
    for k, v in s.items():
        if k in ("__url__", "__local_path__"):
            continue
        sample[k] = {"sha256": hashlib.sha256(v).hexdigest()} if isinstance(v, bytes) else v
    out.append(sample)
json.dump(out, sys.stdout)
