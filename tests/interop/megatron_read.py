"""Reads a kiln Megatron sink with megatron-core's own IndexedDataset and prints, as
JSON, every shard of the manifest: its element type, document indices and the token ids
of each document. tests/megatron.rs compares them with the Parquet run of the same
pipeline.

    python megatron_read.py <sink>
"""

import json
import sys
import warnings

warnings.simplefilter("ignore")  # megatron-core warns that Apex / Transformer Engine are absent

from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402

sink = sys.argv[1].rstrip("/")
with open(f"{sink}/_kiln/manifest.json") as f:
    manifest = json.load(f)
out = []
for shard in manifest["shards"]:
    prefix = f"{sink}/{shard['path'][: -len('.bin')]}"
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
