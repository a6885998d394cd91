#!/usr/bin/env python3
"""Job D: kiln's output against Polars' (peers/D_tabular_polars.py) on the same CSV.

    check_tabular.py KILN_SINK POLARS_OUT

Rows in the same order (kiln keeps input order across its shards); every column
Polars writes must be in kiln's output with the same values: z-scores within 1e-9,
one-hot and dictionary codes and strings exactly (event_time, a timestamp in kiln's
output and a string in Polars', compared as timestamps). Exits 1 on a difference.
"""
import glob
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

kiln = pa.concat_tables(pq.read_table(p) for p in sorted(glob.glob(f"{sys.argv[1]}/part-*.parquet")))
polars = pq.read_table(f"{sys.argv[2]}/data.parquet")
bad = []
if kiln.num_rows != polars.num_rows:
    bad.append(f"rows: kiln {kiln.num_rows}, polars {polars.num_rows}")
for name in polars.column_names:
    if name not in kiln.column_names:
        bad.append(f"column {name} missing in kiln's output")
        continue
    ka, pa_ = kiln[name], polars[name]
    text = pa.types.is_string(pa_.type) or pa.types.is_large_string(pa_.type) or pa.types.is_string_view(pa_.type)
    if pa.types.is_timestamp(ka.type) and text:
        # kiln infers `YYYY-mm-dd HH:MM:SS` as a timestamp, Polars keeps the string.
        pa_ = pc.strptime(pa_, format="%Y-%m-%d %H:%M:%S", unit=ka.type.unit)
    a = ka.to_numpy(zero_copy_only=False)
    b = pa_.to_numpy(zero_copy_only=False)
    if a.dtype.kind == "f":
        ok = np.allclose(a, b, rtol=1e-9, atol=1e-12)
    else:
        ok = np.array_equal(a.astype(str), b.astype(str))
    if not ok:
        bad.append(f"column {name} differs")
print(f"job D: kiln vs polars, {kiln.num_rows} rows, {len(polars.column_names)} columns: "
      + ("identical" if not bad else "; ".join(bad)))
sys.exit(1 if bad else 0)
