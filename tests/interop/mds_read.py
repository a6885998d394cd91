"""Reads a kiln MDS sink with MosaicML Streaming's own StreamingDataset and prints
every sample of each split asked for, in order, as JSON: {split: [sample, ...]} (numpy
arrays as lists). tests/mds.rs compares them with the Parquet run of the same pipeline.
(One process for every split: importing streaming and torch takes ~10 s.)

    python mds_read.py --local <sink> --split split=train --split split=validation
    python mds_read.py --remote s3://bucket/prefix --local <cache dir> --split ...

With --remote, the S3 endpoint comes from S3_ENDPOINT_URL (the tests' local server).
"""

import argparse
import json
import sys
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
from streaming import StreamingDataset  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--local", required=True)
ap.add_argument("--remote")
ap.add_argument("--split", action="append", required=True)
a = ap.parse_args()


def plain(v):
    if isinstance(v, np.ndarray):
        return {"array": str(v.dtype), "values": v.tolist()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    return v


out = {}
for split in a.split:
    ds = StreamingDataset(local=a.local, remote=a.remote, split=split, shuffle=False,
                          batch_size=1)
    out[split] = [{k: plain(v) for k, v in ds[i].items()} for i in range(len(ds))]
json.dump(out, sys.stdout)
