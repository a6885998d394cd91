#!/usr/bin/env bash
# Job X (issue 24): raw WARC → main-content text, kiln (text.decode + html.extract,
# benches/X_warc_extract.yaml) beside datatrove's WarcReader + Trafilatura extractor
# (benches/peers/X_warc_extract_datatrove.py), both on 2 cores, on the same four
# .warc.gz files (benches/make_warc.py: the shared corpus as HTML responses). Prints the
# wall and CPU of each and the ratio. Agreement of the two extractors is measured on
# real pages by tests/html.rs (docs/text.md).
#
# Called by benches/run.sh (JOBS=X); env as there (DATA, PY, SHARED, KILN, REPS, RES).
# X_BYTES sets each file's size (default 8 MB: datatrove extracts ~100 pages/s/core).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
IN=$DATA/warc-x
OUT=$DATA/out/X-warc-extract
if [[ ! -f "$IN/manifest.json" ]]; then
  echo "== X: writing four .warc.gz files" >&2
  mkdir -p "$IN/one"
  corpus=$DATA/text/jsonl; [[ -d $corpus ]] || corpus=$DATA/text/jsonl_gz
  python3 "$ROOT/benches/make_warc.py" "$corpus" "$IN/one/crawl.warc.gz" "${X_BYTES:-8000000}"
  for p in a b c d; do cp "$IN/one/crawl.warc.gz" "$IN/$p.warc.gz"; done
  "$PY" - "$IN/one/manifest.json" "$IN/manifest.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
json.dump({k: v * 4 for k, v in m.items()}, open(sys.argv[2], "w"), indent=1)
PYEOF
fi
export KILN_BENCH_IN=$IN KILN_BENCH_OUT=$OUT
measure() {  # measure TOOL CMD... (the last run's output stays in $OUT-TOOL)
  local tool=$1; shift
  echo "== X-warc-extract / $tool" >&2
  rm -rf "$OUT" "$OUT-$tool"
  "$PY" "$SHARED/bench_run.py" --job X-warc-extract --tool "$tool" --input "$IN" --output "$OUT" \
    --manifest "$IN/manifest.json" --results "$RES" --reps "$REPS" --timeout 1800 -- "$@" > /dev/null
  mv "$OUT" "$OUT-$tool"
}
measure "kiln" "$KILN" run -q "$ROOT/benches/X_warc_extract.yaml"
if [[ "${PEERS:-1}" == 1 ]]; then
  measure "datatrove" "$PY" "$ROOT/benches/peers/X_warc_extract_datatrove.py" "$IN" "$OUT" 4 2
  # The two extractions of the same pages, compared page by page (word F1, as
  # tests/html/compare.py scores kiln against Python trafilatura).
  "$PY" - "$OUT-kiln" "$OUT-datatrove" <<'PYEOF'
import collections, glob, gzip, json, statistics, sys
import pyarrow.parquet as pq
kiln = {}
for f in glob.glob(f"{sys.argv[1]}/*.parquet"):
    for r in pq.read_table(f, columns=["record_id", "text"]).to_pylist():
        kiln[r["record_id"]] = r["text"]
peer = {}
for f in glob.glob(f"{sys.argv[2]}/*.jsonl.gz"):
    for line in gzip.open(f, "rt"):
        r = json.loads(line)
        peer[r["id"]] = r["text"]
def f1(a, b):
    a, b = collections.Counter(a.split()), collections.Counter(b.split())
    common = sum((a & b).values())
    if common == 0:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)
both = sorted(set(kiln) & set(peer))
scores = sorted(f1(kiln[k], peer[k]) for k in both)
print(f"\nJob X agreement: {len(kiln)} distinct pages kept by kiln, {len(peer)} by datatrove, "
      f"{len(both)} by both; word F1 median {statistics.median(scores):.3f}, "
      f"10th percentile {scores[len(scores) // 10]:.3f}")
PYEOF
fi
"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["job"] == "X-warc-extract":
        rows[r["tool"]] = r
kiln = rows.get("kiln")
print("\nJob X, four .warc.gz → main-content text, 2 cores:")
for tool, r in rows.items():
    extra = f"  kiln is {r['wall_s'] / kiln['wall_s']:.1f}x faster" if kiln and r is not kiln else ""
    print(f"  {tool:12} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  RSS {r['max_rss_mb']:5} MB{extra}")
PYEOF
