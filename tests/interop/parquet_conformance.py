"""Every file of the vendored Apache parquet-testing suite read by kiln and by pyarrow.

    parquet_conformance.py KILN SUITE_DIR GAPS_TSV WORK_DIR

For each `*.parquet` (and encrypted) file under SUITE_DIR/data and SUITE_DIR/bad_data,
pyarrow reads it (`pyarrow.parquet.read_table`) and kiln runs a one-step pipeline that
copies it into a sink, which pyarrow then reads back. The rows are compared value by
value (as Python objects: a type kiln widens or a unit it converts compares equal when
the values are the same). Each file gets one verdict:

  MATCH         both read it, the same rows
  MISMATCH      both read it, different rows                         -> failure unless
                listed in GAPS_TSV with its cause (pyarrow wrong, checked elsewhere)
  GAP           pyarrow reads it, kiln refuses it with an error      -> failure unless
                listed in GAPS_TSV with its cause
  WRONG-ACCEPT  pyarrow refuses it, kiln reads it                    -> failure unless
                listed in GAPS_TSV with its cause
  BOTH-REFUSE   neither reads it (kiln with a clear error, no crash)

A crash (a panic, a signal) is a failure whatever the verdict. The table and the totals
are printed; the exit status is 1 on any failure.
"""

import math
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def rows(table):
    """The rows as Python values. Timestamps compare as microseconds since the epoch
    (pyarrow's datetime cannot hold years past 9999, and the two readers may choose
    different units)."""
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us"), safe=False).cast(pa.int64())
        try:
            columns[name] = column.to_pylist()
        except (OverflowError, ValueError):
            # A value Python cannot hold (a date inside a struct past year 9999): compare
            # the readers' own renderings.
            columns[name] = [str(chunk) for chunk in column.chunks]
    if not columns:
        return [{}] * table.num_rows
    names = list(columns)
    if any(isinstance(columns[n], list) and len(columns[n]) != table.num_rows for n in names):
        return [{n: columns[n] for n in names}]
    return [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]


def first_difference(want, got):
    if len(want) != len(got):
        return f"{len(want)} rows from pyarrow, {len(got)} from kiln"
    for i, (w, g) in enumerate(zip(want, got)):
        if not same(w, g):
            return f"row {i}: pyarrow {str(w)[:300]} / kiln {str(g)[:300]}"
    return None


def kiln_read(kiln, path, work, n):
    sink = os.path.join(work, f"out-{n}")
    pipeline = os.path.join(work, f"p-{n}.yaml")
    with open(pipeline, "w") as f:
        f.write(
            "version: 1\nname: parquet-testing\n"
            f"source:\n  uri: {os.path.abspath(path)}\n  format: parquet\n"
            f"sink:\n  uri: {sink}/\n  dataset_card: false\n"
        )
    r = subprocess.run(
        [kiln, "run", "-q", "--overwrite", pipeline],
        capture_output=True,
        text=True,
        env={**os.environ, "KILN_LOG": "error"},
    )
    crashed = r.returncode < 0 or "panicked" in r.stderr or r.returncode == 101
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["(no message)"])[-1], crashed
    shards = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(sink)
        for name in names
        if name.endswith(".parquet") and "_kiln" not in root
    )
    if not shards:
        return [], None, crashed
    table = pa.concat_tables([pq.read_table(s) for s in shards], promote_options="permissive")
    return rows(table), None, crashed


def main():
    kiln, suite, gaps_file, work = sys.argv[1:5]
    known = {}
    with open(gaps_file) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, verdict, cause = line.split("\t", 2)
            known[name] = (verdict, cause)
    files = sorted(
        os.path.join(root, name)
        for sub in ("data", "bad_data")
        for root, _, names in os.walk(os.path.join(suite, sub))
        for name in names
        if name.endswith(".parquet") or name.endswith(".parquet.encrypted")
    )
    totals = {}
    failures = []
    seen_known = set()
    for n, path in enumerate(files):
        rel = os.path.relpath(path, suite)
        try:
            # INT96 timestamps read as microseconds: nanoseconds overflow past 2262 and
            # pyarrow would wrap them silently (kiln reads them as microseconds too).
            want = rows(pq.read_table(path, coerce_int96_timestamp_unit="us"))
            want_error = None
        except Exception as e:  # pyarrow's verdict, whatever the error type
            want, want_error = None, f"{type(e).__name__}: {str(e)[:200]}"
        got, got_error, crashed = kiln_read(kiln, path, work, n)
        if want is not None and got is not None:
            diff = first_difference(want, got)
            verdict = "MISMATCH" if diff else "MATCH"
            detail = diff or f"{len(want)} rows"
        elif want is not None:
            verdict, detail = "GAP", got_error
        elif got is not None:
            verdict, detail = "WRONG-ACCEPT", f"pyarrow: {want_error}; kiln read {len(got)} rows"
        else:
            verdict, detail = "BOTH-REFUSE", f"kiln: {got_error}"
        totals[verdict] = totals.get(verdict, 0) + 1
        listed = known.get(rel)
        if listed:
            seen_known.add(rel)
        print(f"{verdict:12} {rel}: {detail}" + (f"  [known: {listed[1]}]" if listed else ""))
        if crashed:
            failures.append(f"{rel}: kiln crashed: {got_error}")
        if verdict == "MISMATCH" and not listed:
            failures.append(f"{rel}: {detail}")
        elif verdict in ("GAP", "WRONG-ACCEPT") and not listed:
            failures.append(f"{rel}: {verdict} not listed in {gaps_file}: {detail}")
        if listed and listed[0] != verdict:
            # A listed gap that kiln now reads is good news, but the list must say so.
            failures.append(f"{rel}: listed as {listed[0]} in {gaps_file}, now {verdict}")
    for rel, (verdict, _) in known.items():
        if rel not in seen_known:
            failures.append(f"{rel}: listed as {verdict} in {gaps_file} but not in the suite")
    print(f"\n{len(files)} files: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    if failures:
        print(f"\n{len(failures)} failures:")
        for f in failures:
            print(f"  {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
