"""Reads a kiln Megatron sink with megatron-core's own IndexedDataset and prints, as
JSON, every shard of the manifest: its element type, document indices and the token ids
of each document. tests/megatron.rs compares them with the Parquet run of the same
pipeline.

    python megatron_read.py <sink> [--example-seq-len 512] [--also s3://bucket/prefix]

Output: {"shards": [...], "example": ..., "also": [...]}. --also reads a second sink,
from S3 with megatron-core's object-storage reader (boto3; AWS_ENDPOINT_URL for a local
server); --example-seq-len runs the training-loop example
(examples/megatron_dataloader.py) on the first. All in one process: megatron-core and
torch take ~10 s to import.
"""

import json
import os
import sys
import tempfile
import warnings

warnings.simplefilter("ignore")  # megatron-core warns that Apex / Transformer Engine are absent

from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402
from megatron.core.datasets.object_storage_utils import ObjectStorageConfig  # noqa: E402

def read(sink):
    """Every shard of the sink's manifest, as megatron-core reads it."""
    config = None
    if sink.startswith("s3://"):
        import boto3

        bucket, _, prefix = sink[len("s3://"):].partition("/")
        key = f"{prefix}/_kiln/manifest.json"
        manifest = json.load(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"])
        config = ObjectStorageConfig(path_to_idx_cache=tempfile.mkdtemp(), bin_chunk_nbytes=1 << 20)
    else:
        with open(f"{sink}/_kiln/manifest.json") as f:
            manifest = json.load(f)
    out = []
    for shard in manifest["shards"]:
        prefix = f"{sink}/{shard['path'][: -len('.bin')]}"
        if config:  # S3: ranged reads, no memory map
            d = IndexedDataset(prefix, mmap=False, object_storage_config=config)
        else:
            d = IndexedDataset(prefix)
        out.append(
            {
                "path": shard["path"],
                "dtype": d.index.dtype.__name__,
                "sequences": len(d),
                "document_indices": d.document_indices.tolist(),
                "documents": [d[i].tolist() for i in range(len(d))],
            }
        )
    return out


args = sys.argv[1:]
sink = args.pop(0).rstrip("/")
opts = dict(zip(args[::2], args[1::2]))
result = {"shards": read(sink), "example": None, "also": None}
if "--also" in opts:
    result["also"] = read(opts["--also"].rstrip("/"))
if "--example-seq-len" in opts:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import megatron_dataloader  # the training-loop example, run on the same sink

    result["example"] = megatron_dataloader.epoch(sink, int(opts["--example-seq-len"]))
json.dump(result, sys.stdout)
