"""Reads a kiln Megatron sink with megatron-core's own IndexedDataset and prints, as
JSON, every shard of the manifest: its element type, document indices and the token ids
of each document. tests/megatron.rs compares them with the Parquet run of the same
pipeline.

    python megatron_read.py <sink>
    python megatron_read.py s3://bucket/prefix      # megatron-core's S3 reader (boto3;
                                                    # AWS_ENDPOINT_URL for a local server)
"""

import json
import sys
import tempfile
import warnings

warnings.simplefilter("ignore")  # megatron-core warns that Apex / Transformer Engine are absent

from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402
from megatron.core.datasets.object_storage_utils import ObjectStorageConfig  # noqa: E402

sink = sys.argv[1].rstrip("/")
config = None
if sink.startswith("s3://"):
    import boto3

    bucket, _, prefix = sink[len("s3://"):].partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/_kiln/manifest.json")["Body"]
    manifest = json.load(body)
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
json.dump(out, sys.stdout)
