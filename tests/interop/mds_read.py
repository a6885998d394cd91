"""Reads a kiln MDS sink with MosaicML Streaming's own StreamingDataset and prints, as
JSON, every sample of each split asked for, in order (numpy arrays as lists): from
local disk, from a bucket, and the training-loop example's stopped-and-resumed epoch,
all in one process (importing streaming and torch takes ~10 s). tests/mds.rs compares
the samples with the Parquet run of the same pipeline.

    python mds_read.py --local <sink> --split split=train [--split ...]
        [--remote s3://bucket/prefix --cache <dir> --remote-split split=train]
        [--example split=train] [--also <another sink>]

With --remote, the S3 endpoint comes from S3_ENDPOINT_URL (the tests' local server).
"""

import argparse
import json
import os
import sys
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
from streaming import StreamingDataset  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--local", required=True)
ap.add_argument("--split", action="append", default=[])
ap.add_argument("--remote")
ap.add_argument("--cache")
ap.add_argument("--remote-split", action="append", default=[])
ap.add_argument("--example")
ap.add_argument("--also")
a = ap.parse_args()


def plain(v):
    if isinstance(v, np.ndarray):
        return {"array": str(v.dtype), "values": v.tolist()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    return v


def samples(**kw):
    ds = StreamingDataset(shuffle=False, batch_size=1, **kw)
    return [{k: plain(v) for k, v in ds[i].items()} for i in range(len(ds))]


out = {"local": {}, "remote": {}, "example": None, "also": None}
for split in a.split:
    out["local"][split] = samples(local=a.local, split=split)
for split in a.remote_split:
    out["remote"][split] = samples(local=a.cache, remote=a.remote, split=split)
if a.also:
    out["also"] = samples(local=a.also)
if a.example:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import mds_dataloader  # the training-loop example, run on the same sink

    out["example"] = mds_dataloader.restart(a.local, split=a.example)
json.dump(out, sys.stdout)
