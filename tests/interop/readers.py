"""The interop suite: kiln datasets read by the readers training code uses.

    python readers.py SPEC.json

SPEC lists datasets: {"datasets": [{"uri": "/abs/sink"}, {"uri": "s3://bucket/sink",
"endpoint": "http://127.0.0.1:PORT"}]}. For each, from local disk or the local S3
server, pyarrow.dataset (hive partitions), DuckDB (read_parquet with a glob and
hive_partitioning), Polars (scan_parquet) and Hugging Face datasets (load_dataset
"parquet" with data_files, streaming and not, with_format("numpy")) must each see
exactly the rows, splits, types and column statistics of kiln's manifest
(_kiln/manifest.json). On local disk the dataset card (README.md) is checked too:
its data_files must match the shards, its features the files' schema, and
load_dataset(<sink>) must find the splits by itself; a card broken on purpose must be
caught. Image columns must load as the Image feature and decode to the size the
pipeline cropped to; ImageFolder class ids as a ClassLabel whose names are the labels. The Parquet files must carry statistics, the page index,
dictionary pages for low-cardinality strings and the pipeline hash.

Tabular datasets (a sink with _kiln/stats.json, and one written with stats_from) get their
fitted statistics recomputed with numpy from the source CSV through the same chain of
transforms (mean/median/mode imputation, quantile clipping, log1p, z-scores, min-max,
quantile buckets, vocabularies), and their feature columns must load in `datasets` with
the right dtypes.

Prints {"checks": N, "by_reader": {...}, "failures": [...]} and exits 1 on a failure.
"""

import copy
import fnmatch
import json
import os
import re
import shutil
import sys
import tempfile

import datasets
import duckdb
import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

datasets.disable_progress_bars()
datasets.logging.set_verbosity(datasets.logging.CRITICAL)

KEY = SECRET = "kiln-test"
REGION = "us-east-1"


class Suite:
    def __init__(self):
        self.checks = 0
        self.by_reader = {}
        self.failures = []

    def eq(self, reader, what, got, want):
        self.checks += 1
        self.by_reader[reader] = self.by_reader.get(reader, 0) + 1
        if got != want:
            self.failures.append(f"{reader}: {what}: got {got!r}, want {want!r}")

    def true(self, reader, what, ok):
        self.eq(reader, what, bool(ok), True)


class Location:
    """A sink on local disk or on the S3 server, as each reader addresses it."""

    def __init__(self, spec):
        uri = spec["uri"].rstrip("/")
        self.uri = uri
        self.endpoint = spec.get("endpoint")
        if uri.startswith("s3://"):
            self.where = "s3"
            self.base = uri[len("s3://"):]
            host = self.endpoint.removeprefix("http://")
            self.pa = pafs.S3FileSystem(
                endpoint_override=host, scheme="http", access_key=KEY,
                secret_key=SECRET, region=REGION)
            self.fsspec_options = {
                "key": KEY, "secret": SECRET,
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
            }
            self.fs = fsspec.filesystem("s3", **self.fsspec_options)
            self.polars_options = {
                "aws_endpoint_url": self.endpoint, "aws_access_key_id": KEY,
                "aws_secret_access_key": SECRET, "aws_region": REGION,
                "aws_allow_http": "true",
            }
        else:
            self.where = "local"
            self.base = os.path.abspath(uri)
            self.pa = pafs.LocalFileSystem()
            self.fsspec_options = None
            self.fs = fsspec.filesystem("file")
            self.polars_options = None

    def url(self, rel):
        """What DuckDB, Polars and datasets take: a path, or an s3:// URL."""
        return f"s3://{self.base}/{rel}" if self.where == "s3" else f"{self.base}/{rel}"


def split_of(path, partition_by):
    """A shard's split from its folders (independently of the card and manifest)."""
    if "split" not in partition_by:
        return "train"
    return path.split("/")[partition_by.index("split")].removeprefix("split=")


def has_range(type_name):
    return bool(re.match(r"^(U?Int\d+|Float\d+|Boolean|Date\d+|Timestamp)", type_name))


def norm(v):
    """A min/max value as the manifest writes it: numbers, booleans, ISO text."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def expected(m):
    split_rows, split_tokens = {}, {}
    tok = (m.get("tokens") or {}).get("column")
    for s in m["shards"]:
        name = split_of(s["path"], m["partition_by"])
        split_rows[name] = split_rows.get(name, 0) + s["rows"]
        if tok:
            split_tokens[name] = split_tokens.get(name, 0) + s["columns"][tok]["values"]
    cols = {}
    for c in m["columns"]:
        cols[c["name"]] = {
            "nulls": c["nulls"],
            "min": c.get("min") if has_range(c["type"]) else None,
            "max": c.get("max") if has_range(c["type"]) else None,
            "values": c.get("values"),
        }
    return split_rows, split_tokens, cols, tok


# ---------------------------------------------------------------------------- readers


def stats_arrow(table, m):
    """Column statistics of a pyarrow table, as the manifest records them."""
    out = {}
    for c in m["columns"]:
        col = table.column(c["name"])
        t = col.type
        st = {"nulls": col.null_count, "min": None, "max": None, "values": None}
        if has_range(c["type"]) and col.null_count < len(col):
            mm = pc.min_max(col)
            st["min"], st["max"] = norm(mm["min"].as_py()), norm(mm["max"].as_py())
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
            st["values"] = pc.sum(pc.binary_length(col)).as_py() or 0
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            st["values"] = pc.sum(pc.list_value_length(col)).as_py() or 0
        out[c["name"]] = st
    return out


def read_pyarrow(loc, m, suite):
    r = f"pyarrow.dataset[{loc.where}]"
    partitioning = (ds.HivePartitioning.discover(infer_dictionary=True)
                    if m["partition_by"] else None)
    # The card (README.md) sits beside the shards: a whole-folder read leaves it out,
    # as it leaves out _kiln/ and _SUCCESS (docs/training.md).
    d = ds.dataset(loc.base, filesystem=loc.pa, format="parquet", partitioning=partitioning,
                   ignore_prefixes=[".", "_", "README"])
    table = d.to_table()
    rows, tokens, cols, tok = expected(m)
    suite.eq(r, "rows", table.num_rows, m["rows"])
    if "split" in m["partition_by"]:
        split = table.column("split")
        # Hive partitions as categoricals: dictionary-encoded, as pandas reads them.
        suite.true(r, "split is a dictionary (categorical) column",
                   pa.types.is_dictionary(split.type))
        got = {k: v for k, v in zip(*np.unique(split.to_pandas().astype(str), return_counts=True))}
        suite.eq(r, "rows per split", {k: int(v) for k, v in got.items()}, rows)
    suite.eq(r, "column statistics", stats_arrow(table, m), cols)
    if tok:
        suite.true(r, f"{tok} is list<uint32>",
                   table.schema.field(tok).type.value_type == pa.uint32())


def duck_type_ok(duck_type, arrow_type):
    want = {
        "Int8": "TINYINT", "Int16": "SMALLINT", "Int32": "INTEGER", "Int64": "BIGINT",
        "UInt8": "UTINYINT", "UInt16": "USMALLINT", "UInt32": "UINTEGER", "UInt64": "UBIGINT",
        "Float32": "FLOAT", "Float64": "DOUBLE", "Utf8": "VARCHAR", "Boolean": "BOOLEAN",
        "Binary": "BLOB", "Date32": "DATE",
    }
    if arrow_type.startswith("Struct("):
        return duck_type.startswith("STRUCT(")
    if arrow_type.startswith("Timestamp"):
        return duck_type.startswith("TIMESTAMP")
    if arrow_type.startswith("List("):
        inner = re.search(r"List\((?:non-null )?(\w+)", arrow_type).group(1)
        return duck_type == want.get(inner, "?") + "[]"
    return duck_type == want.get(arrow_type)


def read_duckdb(loc, m, suite):
    r = f"duckdb[{loc.where}]"
    con = duckdb.connect()
    if loc.where == "s3":
        # DuckDB's own S3 client (httpfs) is an extension it downloads; fsspec is not.
        con.register_filesystem(loc.fs)
    glob = loc.url("**/*.parquet")
    hive = "true" if m["partition_by"] else "false"
    src = f"read_parquet('{glob}', hive_partitioning = {hive})"
    rows, tokens, cols, tok = expected(m)
    suite.eq(r, "rows", con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0], m["rows"])
    if "split" in m["partition_by"]:
        got = dict(con.execute(f"SELECT split, count(*) FROM {src} GROUP BY ALL").fetchall())
        suite.eq(r, "rows per split", got, rows)
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})")
                 .fetchall())
    for c in m["columns"]:
        suite.true(r, f"type of {c['name']} ({types.get(c['name'])} for {c['type']})",
                   duck_type_ok(types.get(c["name"], "?"), c["type"]))
    got = {}
    for c in m["columns"]:
        q = f'"{c["name"]}"'
        parts = [f"count(*) - count({q})"]
        parts += [f"min({q})", f"max({q})"] if has_range(c["type"]) else ["NULL", "NULL"]
        if c["type"] in ("Utf8", "LargeUtf8", "Utf8View"):
            parts.append(f"sum(strlen({q}))")
        elif c["type"] in ("Binary", "LargeBinary"):
            parts.append(f"sum(octet_length({q}))")
        elif "List(" in c["type"]:
            parts.append(f"sum(len({q}))")
        else:
            parts.append("NULL")
        nulls, lo, hi, values = con.execute(f"SELECT {', '.join(parts)} FROM {src}").fetchone()
        got[c["name"]] = {"nulls": nulls, "min": norm(lo), "max": norm(hi),
                          "values": None if values is None else int(values)}
    suite.eq(r, "column statistics", got, cols)


def read_polars(loc, m, suite):
    r = f"polars[{loc.where}]"
    glob = loc.url("**/*.parquet")
    lf = pl.scan_parquet(glob, hive_partitioning=bool(m["partition_by"]),
                         storage_options=loc.polars_options)
    rows, tokens, cols, tok = expected(m)
    suite.eq(r, "rows", lf.select(pl.len()).collect().item(), m["rows"])
    if "split" in m["partition_by"]:
        got = dict(lf.group_by("split").agg(pl.len()).collect().iter_rows())
        suite.eq(r, "rows per split", got, rows)
    schema = lf.collect_schema()
    if tok:
        suite.eq(r, f"dtype of {tok}", schema[tok], pl.List(pl.UInt32))
    exprs = []
    for c in m["columns"]:
        col = pl.col(c["name"])
        dt = schema[c["name"]]
        exprs.append(col.null_count().alias(f"{c['name']}/nulls"))
        if has_range(c["type"]):
            exprs += [col.min().alias(f"{c['name']}/min"), col.max().alias(f"{c['name']}/max")]
        if dt == pl.String:
            exprs.append(col.str.len_bytes().sum().alias(f"{c['name']}/values"))
        elif isinstance(dt, pl.List):
            exprs.append(col.list.len().sum().alias(f"{c['name']}/values"))
    row = lf.select(exprs).collect().row(0, named=True)
    got = {c["name"]: {k: None for k in ("nulls", "min", "max", "values")} for c in m["columns"]}
    for k, v in row.items():
        name, what = k.rsplit("/", 1)
        got[name][what] = norm(v)
    suite.eq(r, "column statistics", got, cols)


def read_hf(loc, m, suite, cache):
    r = f"datasets[{loc.where}]"
    rows, tokens, cols, tok = expected(m)
    data_files = {s["name"]: loc.url(s["data_files"]) for s in m["splits"]}
    kw = {"storage_options": loc.fsspec_options} if loc.fsspec_options else {}
    dd = datasets.load_dataset("parquet", data_files=data_files, cache_dir=cache, **kw)
    suite.eq(r, "rows per split", {k: v.num_rows for k, v in dd.items()}, rows)
    first = next(iter(dd.values()))
    want_features = datasets.Features.from_arrow_schema(file_schema(loc, m))
    suite.eq(r, "features", first.features, want_features)
    for name, split in dd.items():
        # String statistics through the rows as Python values.
        for c in m["columns"]:
            if c["type"] == "Utf8":
                vals = split[c["name"]]
                got = (sum(v is None for v in vals),
                       sum(len(v.encode()) for v in vals if v is not None))
                want = sum_split(m, name, c["name"])
                suite.eq(r, f"{name}.{c['name']} nulls and bytes", got, want)
        if tok:
            suite.eq(r, f"{tok} feature", split.features[tok], datasets.List(datasets.Value("uint32")))
            arr = split.with_format("numpy")[0:len(split)][tok]
            n = sum(len(a) for a in arr) if arr.dtype == object else arr.size
            kind = (arr[0].dtype if arr.dtype == object else arr.dtype).kind if len(arr) else "u"
            suite.true(r, f"{name}.{tok} as numpy is integer (got {kind})", kind in "ui")
            suite.eq(r, f"{name}.{tok} tokens (numpy)", int(n), tokens[name])
    # Categoricals: class ids load as ClassLabel, whose names give back the labels.
    for col, f in first.features.items():
        if isinstance(f, datasets.ClassLabel) and "label" in first.features:
            for name, split in dd.items():
                suite.eq(r, f"{name}.{col} ClassLabel names give the label column",
                         f.int2str(list(split[col])), list(split["label"]))
    images = [name for name, f in first.features.items() if isinstance(f, datasets.Image)]
    crop = crop_size(m)
    for name, split in dd.items():
        for col in images:
            sizes = {img.size for img in split[col]}
            suite.eq(r, f"{name}.{col} decodes (Image feature) to the cropped size",
                     sizes, {crop} if crop else sizes)
    streamed = datasets.load_dataset("parquet", data_files=data_files, streaming=True, **kw)
    got_rows, got_tokens = {}, {}
    for name, split in streamed.items():
        got_rows[name] = 0
        got_tokens[name] = 0
        for row in split:
            got_rows[name] += 1
            if tok:
                got_tokens[name] += len(row[tok])
            for col in images:
                suite.true(r, f"streamed {name}.{col} is a decoded image",
                           hasattr(row[col], "size") and (not crop or row[col].size == crop))
    suite.eq(r, "rows per split (streaming)", got_rows, rows)
    if tok:
        suite.eq(r, "tokens per split (streaming)", got_tokens, tokens)


def crop_size(m):
    """The (width, height) an image.center_crop step of the pipeline produces, if any."""
    for step in m["pipeline"]["steps"]:
        opts = step.get("image.center_crop") if isinstance(step, dict) else None
        if opts:
            size = opts["size"]
            return (size, size) if isinstance(size, int) else tuple(size)
    return None


def sum_split(m, split, column):
    nulls = values = 0
    for s in m["shards"]:
        if split_of(s["path"], m["partition_by"]) == split:
            st = s["columns"][column]
            nulls += st["nulls"]
            values += st.get("values") or 0
    return (nulls, values)


def file_schema(loc, m):
    path = f"{loc.base}/{m['shards'][0]['path']}"
    with loc.pa.open_input_file(path) as f:
        return pq.read_schema(f)


# ------------------------------------------------------------------ files and the card


def check_files(loc, m, suite):
    """Every shard: rows as recorded, pipeline hash, statistics, page index,
    dictionary pages for low-cardinality strings, row groups within the limit."""
    r = f"parquet files[{loc.where}]"
    limit = m["pipeline"]["sink"]["row_group_rows"]
    for s in m["shards"]:
        with loc.pa.open_input_file(f"{loc.base}/{s['path']}") as f:
            pf = pq.ParquetFile(f)
            md = pf.metadata
            suite.eq(r, f"{s['path']} rows", md.num_rows, s["rows"])
            suite.eq(r, f"{s['path']} kiln.pipeline_hash",
                     md.metadata.get(b"kiln.pipeline_hash", b"").decode(), m["pipeline_hash"])
            table = pf.read()
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                suite.true(r, f"{s['path']} row group {g} rows <= {limit}", rg.num_rows <= limit)
                for i in range(rg.num_columns):
                    cc = rg.column(i)
                    where = f"{s['path']} rg {g} {cc.path_in_schema}"
                    suite.true(r, f"{where} has statistics", cc.is_stats_set)
                    suite.true(r, f"{where} has a column and offset index",
                               cc.has_column_index and cc.has_offset_index)
            for field in table.schema:
                if pa.types.is_string(field.type) and md.num_rows >= 64:
                    distinct = len(pc.unique(table.column(field.name)))
                    if distinct <= 64:
                        i = table.schema.get_field_index(field.name)
                        suite.true(r, f"{s['path']} {field.name} ({distinct} values) "
                                      "is dictionary-encoded",
                                   md.row_group(0).column(i).has_dictionary_page)


def card_problems(root, m):
    """What is wrong with the dataset card at root, judged against the files."""
    problems = []
    text = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    parts = text.split("---\n")
    if len(parts) < 3 or parts[0] != "":
        return ["README.md has no YAML header between --- lines"]
    header = yaml.safe_load(parts[1])
    files = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root) for f in fs if f.endswith(".parquet"))
    truth = {}
    for f in files:
        truth.setdefault(split_of(f, m["partition_by"]), []).append(f)
    configs = header.get("configs") or []
    if len(configs) != 1:
        return [f"expected one config, found {len(configs)}"]
    data_files = {d["split"]: d["path"] for d in configs[0]["data_files"]}
    if sorted(data_files) != sorted(truth):
        problems.append(f"splits {sorted(data_files)} != folders {sorted(truth)}")
    for split, pattern in data_files.items():
        matched = sorted(f for f in files if fnmatch.fnmatch(f, pattern))
        if matched != sorted(truth.get(split, [])):
            problems.append(f"data_files of {split} ({pattern}) match {matched}")
    info = header.get("dataset_info", {})
    schema = pq.read_schema(os.path.join(root, files[0]))
    want = datasets.Features.from_arrow_schema(schema)
    if datasets.Features._from_yaml_list(info.get("features", [])) != want:
        problems.append("dataset_info.features differ from the files' schema")
    counts = {s["name"]: s["num_examples"] for s in info.get("splits", [])}
    actual = {k: sum(pq.ParquetFile(os.path.join(root, f)).metadata.num_rows for f in v)
              for k, v in truth.items()}
    if counts != actual:
        problems.append(f"num_examples {counts} != rows {actual}")
    return problems


def check_card(loc, m, suite, cache):
    r = "dataset card"
    suite.eq(r, "problems", card_problems(loc.base, m), [])
    rows, tokens, cols, tok = expected(m)
    dd = datasets.load_dataset(loc.base, cache_dir=cache)
    suite.eq(r, "load_dataset(sink) splits and rows", {k: v.num_rows for k, v in dd.items()}, rows)
    suite.eq(r, "load_dataset(sink) features", next(iter(dd.values())).features,
             datasets.Features.from_arrow_schema(file_schema(loc, m)))
    # A card broken on purpose must be caught, by the check above and by datasets.
    for breakage in ("num_examples", "path", "feature"):
        with tempfile.TemporaryDirectory() as tmp:
            copy_root = os.path.join(tmp, "ds")
            shutil.copytree(loc.base, copy_root)
            card = os.path.join(copy_root, "README.md")
            text = open(card, encoding="utf-8").read()
            head, rest = text.split("---\n", 2)[1], text.split("---\n", 2)[2]
            h = yaml.safe_load(head)
            if breakage == "num_examples":
                h["dataset_info"]["splits"][0]["num_examples"] += 1
            elif breakage == "path":
                h["configs"][0]["data_files"][0]["path"] = "nowhere/part-*.parquet"
            else:
                h["dataset_info"]["features"] = h["dataset_info"]["features"][1:]
            with open(card, "w", encoding="utf-8") as f:
                f.write("---\n" + yaml.safe_dump(h, sort_keys=False) + "---\n" + rest)
            suite.true(r, f"a broken {breakage} is reported", card_problems(copy_root, m))
            try:
                datasets.load_dataset(copy_root, cache_dir=os.path.join(tmp, "cache"))
                failed = False
            except Exception:  # noqa: BLE001 - any refusal is what we want
                failed = True
            suite.true(r, f"load_dataset refuses a broken {breakage}", failed)


# Hugging Face's names for the split words it finds in file names.
HF_SPLIT = {"val": "validation", "valid": "validation", "dev": "validation",
            "training": "train", "testing": "test", "eval": "test", "evaluation": "test"}


def read_as_typed(loc, m, suite, cache):
    """A sink without a card, opened by its folder path as a user types it: each reader's
    own default way to read a folder of Parquet (docs/training.md, "Reading a sink")."""
    r = "folder as typed"
    base = loc.base
    rows, _, _, _ = expected(m)
    splits = "split" in m["partition_by"]
    suite.eq(r, "no README.md without dataset_card", os.path.exists(f"{base}/README.md"), False)
    suite.eq(r, "pyarrow.parquet.read_table(sink)", pq.read_table(base).num_rows, m["rows"])
    suite.eq(r, "pyarrow.dataset.dataset(sink)", ds.dataset(base, partitioning="hive")
             .to_table().num_rows, m["rows"])
    suite.eq(r, "pandas.read_parquet(sink)", len(pq.read_table(base).to_pandas()), m["rows"])
    duck = duckdb.sql(f"select count(*) from read_parquet('{base}')").fetchall()[0][0]
    suite.eq(r, "duckdb read_parquet('sink')", duck, m["rows"])
    duck = duckdb.sql(f"select count(*) from read_parquet('{base}/**/*.parquet')").fetchall()[0][0]
    suite.eq(r, "duckdb read_parquet('sink/**/*.parquet')", duck, m["rows"])
    suite.eq(r, "polars scan_parquet('sink/**/*.parquet')",
             pl.scan_parquet(f"{base}/**/*.parquet").select(pl.len()).collect().item(), m["rows"])
    # Polars' folder form refuses any non-empty file that is not Parquet anywhere below
    # it, and every kiln sink holds _kiln/*.json: the documented limit, held to here so
    # that the docs change when Polars does.
    try:
        pl.scan_parquet(base).select(pl.len()).collect()
        refused = ""
    except Exception as e:  # noqa: BLE001 - the message is what is checked
        refused = str(e)
    suite.true(r, "polars scan_parquet('sink') refuses _kiln/*.json (docs/training.md)",
               "different file extensions" in refused)
    if splits:
        dd = datasets.load_dataset(base, cache_dir=cache)
        want = {HF_SPLIT.get(k, k): v for k, v in rows.items()}
        suite.eq(r, "load_dataset(sink) finds the splits", {k: v.num_rows for k, v in dd.items()},
                 want)
    dd = datasets.load_dataset(base, data_files="**/*.parquet",
                               cache_dir=cache)
    suite.eq(r, "load_dataset(sink, data_files='**/*.parquet')", dd["train"].num_rows, m["rows"])


def rank(values, v):
    """Where a quantile estimate `v` sits in `values`: the fractions of them below it and at
    or below it (equal when `v` is not tied with any)."""
    s = np.sort(values)
    return (float(np.searchsorted(s, v, side="left")) / len(s),
            float(np.searchsorted(s, v, side="right")) / len(s))


def close(a, b):
    return abs(a - b) <= 1e-9 * max(abs(b), 1.0)


def read_csv(path):
    """As kiln reads CSV: an empty field is null, for strings too."""
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def tabular_reference(csv_path, stats):
    """pipelines/tabular-train.yaml's fitted statistics recomputed with numpy from the CSV,
    using kiln's fitted values only where a sketch decides (quantiles) -- and checking
    where those sit in the data instead."""
    t = read_csv(csv_path)
    col = lambda name: t[name].to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    steps = {e["step"]: e["columns"] for e in stats["steps"]}
    out = {}
    age, income, tenure = col("age"), col("income"), col("tenure_months")
    out["age mean"] = (steps["fill_null"]["age"]["value"], np.nanmean(age))
    age = np.where(np.isnan(age), np.nanmean(age), age)
    med_income = steps["fill_null"]["income"]["value"]
    med_tenure = steps["fill_null"]["tenure_months"]["value"]
    quantiles = [
        ("income median rank", rank(income[~np.isnan(income)], med_income), 0.5),
        ("tenure median rank", rank(tenure[~np.isnan(tenure)], med_tenure), 0.5),
    ]
    income = np.where(np.isnan(income), med_income, income)
    tenure = np.where(np.isnan(tenure), med_tenure, tenure)
    devices = pc.value_counts(t["device"]).to_pylist()
    mode = sorted(devices, key=lambda d: (-d["counts"], d["values"]))[0]["values"]
    out["device mode"] = (steps["fill_null"]["device"]["value"], mode)
    lo, hi = steps["clip"]["income"]["lower"], steps["clip"]["income"]["upper"]
    quantiles += [("income 1% rank", rank(income, lo), 0.01), ("income 99% rank", rank(income, hi), 0.99)]
    income = np.clip(income, lo, hi)
    for name, x in [("age", age), ("income", income), ("tenure_months", tenure)]:
        z = steps["standardize"][name]
        out[f"{name} z mean"] = (z["mean"], x.mean())
        out[f"{name} z std"] = (z["std"], x.std(ddof=0))
    calls = np.log1p(col("support_calls"))
    mm = steps["min_max"]["support_calls_log"]
    out["calls log min"] = (mm["min"], calls.min())
    out["calls log max"] = (mm["max"], calls.max())
    # With kiln's (checked) mean and std, so values tied in kiln's output tie here too.
    zt = (tenure - steps["standardize"]["tenure_months"]["mean"]) / steps["standardize"]["tenure_months"]["std"]
    for k, b in enumerate(steps["bucketize"]["tenure_months"]["boundaries"]):
        quantiles.append((f"tenure quartile boundary {k + 1} rank", rank(zt, b), (k + 1) / 4))
    plans = sorted(set(p if p is not None else "unknown" for p in t["plan"].to_pylist()))
    vocab = [("plan vocabulary", steps["one_hot"]["plan"]["values"], plans),
             ("device vocabulary", steps["one_hot"]["device"]["values"], sorted(set(t["device"].to_pylist())))]
    counts = sorted(((d["values"], d["counts"]) for d in pc.value_counts(t["country"]).to_pylist()
                     if d["values"] is not None and d["counts"] >= 5), key=lambda c: (-c[1], c[0]))
    vocab.append(("country vocabulary by frequency (min_count 5)",
                  list(zip(steps["ordinal"]["country"]["values"], steps["ordinal"]["country"]["counts"])),
                  [tuple(c) for c in counts]))
    return out, quantiles, vocab


def check_tabular(loc, m, suite, repo, cache):
    """Fitted statistics against numpy; the transform of a stats_from dataset against the
    training statistics; feature dtypes in `datasets`."""
    r = "tabular (numpy)"
    pipeline = m.get("pipeline", {})
    steps = [next(iter(s)) for s in pipeline.get("steps", [])]
    if "standardize" not in steps:
        return
    source = os.path.join(repo, pipeline["source"]["uri"])
    if loc.fs.exists(f"{loc.base}/_kiln/stats.json"):
        stats = json.loads(loc.fs.cat_file(f"{loc.base}/_kiln/stats.json"))
        exact, quantiles, vocab = tabular_reference(source, stats)
        for what, (got, want) in exact.items():
            ok = got == want if isinstance(want, str) else close(got, float(want))
            suite.true(r, f"{what}: kiln {got} vs numpy {want}", ok)
        for what, (below, upto), q in quantiles:
            suite.true(r, f"{what}: [{below:.4f}, {upto:.4f}] within 0.01 of {q}",
                       below - 0.01 <= q <= upto + 0.01)
        for what, got, want in vocab:
            suite.eq(r, what, [tuple(x) if isinstance(x, list) else x for x in got], want)
    else:
        stats_from = pipeline.get("stats_from")
        if not stats_from:
            return
        train = json.loads(open(os.path.join(stats_from, "_kiln/stats.json")).read())
        z = {e["step"]: e["columns"] for e in train["steps"]}
        t = read_csv(source)
        age = t["age"].to_numpy(zero_copy_only=False).astype(float)
        age = np.where(np.isnan(age), z["fill_null"]["age"]["value"], age)
        want = (age - z["standardize"]["age"]["mean"]) / z["standardize"]["age"]["std"]
        shards = sorted(p for p in os.listdir(loc.base) if p.endswith(".parquet"))
        got = pa.concat_tables(pq.read_table(os.path.join(loc.base, p)) for p in shards)["age"].to_numpy()
        suite.true(r, "valid age z-scored with the training mean and std", np.allclose(got, want, rtol=1e-12, atol=1e-12))
    dd = datasets.load_dataset("parquet", data_files=loc.url("*.parquet"), cache_dir=cache)["train"]
    f = dd.features
    for name, dtype in [("age", "float64"), ("plan_basic", "uint8"), ("device_mobile", "uint8"),
                        ("country", "uint32"), ("tenure_months_quartile", "int32"),
                        ("user_id_bucket", "uint32"), ("churned", "bool")]:
        suite.eq("datasets[tabular]", f"{name} dtype", f[name].dtype, dtype)
    x = dd.with_format("numpy")[:]
    suite.eq("datasets[tabular]", "one-hot plan columns sum to 1 per row",
             int(sum(x[c] for c in f if c.startswith("plan_")).min()), 1)


def main():
    spec = json.load(open(sys.argv[1]))
    suite = Suite()
    with tempfile.TemporaryDirectory() as cache:
        for entry in spec["datasets"]:
            loc = Location(entry)
            m = json.loads(loc.fs.cat_file(f"{loc.base}/_kiln/manifest.json"))
            before = len(suite.failures)
            check_files(loc, m, suite)
            read_pyarrow(loc, m, suite)
            read_duckdb(loc, m, suite)
            read_polars(loc, m, suite)
            read_hf(loc, m, suite, cache)
            if loc.where == "local" and entry.get("card", True):
                check_card(loc, m, suite, cache)
            if loc.where == "local" and not entry.get("card", True):
                read_as_typed(loc, m, suite, cache)
            if loc.where == "local":
                check_tabular(loc, m, suite, spec.get("repo", "."), cache)
            for f in suite.failures[before:]:
                print(f"FAIL {loc.uri}: {f}", file=sys.stderr)
    print(json.dumps({"checks": suite.checks, "by_reader": suite.by_reader,
                      "failures": suite.failures}))
    sys.exit(1 if suite.failures else 0)


if __name__ == "__main__":
    main()
