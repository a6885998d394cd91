"""Reads a kiln dataset straight from an S3 server with pyarrow, as a training job would.

    python read_s3.py http://127.0.0.1:PORT bucket/prefix

Prints {"rows": ..., "splits": [...], "columns": [...]} as JSON.
"""

import json
import sys

import pyarrow.dataset as ds
import pyarrow.fs as fs

endpoint, prefix = sys.argv[1], sys.argv[2]
s3 = fs.S3FileSystem(
    endpoint_override=endpoint.removeprefix("http://"),
    scheme="http",
    access_key="kiln-test",
    secret_key="kiln-test",
    region="us-east-1",
)
dataset = ds.dataset(prefix, filesystem=s3, format="parquet", partitioning="hive")
table = dataset.to_table()
splits = sorted(set(table.column("split").to_pylist()))
print(json.dumps({"rows": table.num_rows, "splits": splits, "columns": table.column_names}))
