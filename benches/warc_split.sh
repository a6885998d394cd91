#!/usr/bin/env bash
# Job W (issue 24): one large .warc.gz. benches/make_warc.py writes the shared text corpus
# as a 1 GB web archive (HTML responses, one gzip member per record, as crawlers write),
# and kiln runs two jobs on it:
#   W-index  an index of the pages of status 200 (URL, id, date, type; W_warc_index.yaml):
#            reading is nearly all the work
#   W-pages  the same pages with their bodies as Parquet (zstd; W_warc_pages.yaml):
#            compressing the bodies is half the work, and reading whole already spreads
#            it over every thread
# each three ways with the same binary:
#   whole     source.split: false, one task: one thread inflates and parses it all
#   1x2       cut at its gzip members into 64 MiB slices, one process with 2 threads
#   2 workers the same slices, `--worker 0/2` and `--worker 1/2` at once, 1 thread each
# and prints the speed-up of cutting it. The rows are checked equal, whole and cut.
#
# Called by benches/run.sh (JOBS=W); env as there (DATA, PY, SHARED, KILN, REPS, RES).
# WARC_BYTES sets the archive's size (default 1 GB).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
IN=$DATA/warc
OUT=$DATA/out/W-warc
if [[ ! -f "$IN/manifest.json" ]]; then
  echo "== W: writing the corpus as one .warc.gz (a few minutes)" >&2
  mkdir -p "$IN"
  corpus=$DATA/text/jsonl; [[ -d $corpus ]] || corpus=$DATA/text/jsonl_gz
  python3 "$ROOT/benches/make_warc.py" "$corpus" "$IN/crawl.warc.gz" "${WARC_BYTES:-1000000000}"
fi
cat "$IN/crawl.warc.gz" > /dev/null  # warm the page cache
export KILN_BENCH_IN=$IN KILN_BENCH_OUT=$OUT
for job in index pages; do
  W=$ROOT/benches/W_warc_$job.yaml
  measure() {  # measure TOOL CMD...
    local tool=$1; shift
    echo "== W-$job / $tool" >&2
    "$PY" "$SHARED/bench_run.py" --job "W-$job" --tool "$tool" --input "$IN" --output "$OUT" \
      --manifest "$IN/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 -- "$@" > /dev/null
    rm -rf "$OUT"
  }
  measure "kiln (whole)" "$KILN" run -q "$W" --set source.split=false
  measure "kiln (members, 1x2 threads)" "$KILN" run -q "$W"
  measure "kiln (members, 2 workers)" bash -c \
    "\"$KILN\" run -q \"$W\" --worker 0/2 --set run.threads=1 & \"$KILN\" run -q \"$W\" --worker 1/2 --set run.threads=1; wait"
done

# The same rows in the same order either way: a digest of every row's id and body, read
# back shard by shard in name (task) order with pyarrow.
W=$ROOT/benches/W_warc_pages.yaml
digest() {
  "$KILN" run -q "$W" "$@" > /dev/null
  "$PY" - "$OUT" <<'PYEOF'
import glob, hashlib, os, sys
import pyarrow.parquet as pq
h, n = hashlib.sha256(), 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.parquet"), recursive=True)):
    t = pq.read_table(f, columns=["record_id", "body"])
    for rid, body in zip(t.column("record_id").to_pylist(), t.column("body").to_pylist()):
        h.update(rid.encode()); h.update(hashlib.sha256(body).digest()); n += 1
print(n, h.hexdigest())
PYEOF
  rm -rf "$OUT"
}
whole=$(digest --set source.split=false)
cut=$(digest)
[[ "$whole" == "$cut" ]] || { echo "W: the cut run's rows differ from the whole run's ($whole / $cut)" >&2; exit 1; }
echo "W: rows equal, whole and cut: $whole" >&2

"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["job"].startswith("W-"):
        rows.setdefault(r["job"], {})[r["tool"]] = r
for job, tools in rows.items():
    whole = tools.get("kiln (whole)")
    print(f"\nJob {job}, one 1 GB .warc.gz (rows equal whole and cut):")
    for tool, r in tools.items():
        extra = f"  speed-up {whole['wall_s'] / r['wall_s']:.2f}x vs whole" if whole and r is not whole else ""
        print(f"  {tool:30} wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s  RSS {r['max_rss_mb']:5} MB{extra}")
PYEOF
