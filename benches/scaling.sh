#!/usr/bin/env bash
# One task on every core: kiln at 1 and 2 threads (and Polars at 1 and 2 threads on job
# A) on inputs that are ONE task, so the only parallelism is inside it:
#   one-jsonl   the shared text corpus unzipped into one 1 GB .jsonl object, read whole
#               (run.task_bytes above its size: one task, no slices)
#   one-gz      the 16 .jsonl.gz files concatenated into one 481 MB multi-member
#               .jsonl.gz object (gzip cannot be cut: one task)
#   four        4 of the .jsonl.gz objects, 115 MiB, in one task
#   one-csv     the shared generator's tabular CSV (512 MiB) as one .csv object, read
#               whole (decoded on the task's thread; its encoding runs in jobs)
#   one-text    the 1 GB .jsonl object read as text (one row per line), read whole
# and, for reference, the full corpus (16 objects, 2 tasks) at 1 and 2 threads, job A
# beside Polars at POLARS_MAX_THREADS=1 and 2, and job C (tokenize) at 1 and 2 threads.
# Every run goes through the shared harness (bench_run.py: /usr/bin/time -v over the
# process tree), one run per call; each case's 1- and 2-thread runs alternate, REPS
# times, so that the machine's drift hits both alike. Prints one table: median times,
# and the speed-up as the median of each repetition's 1-thread / 2-thread ratio.
#
#   KILN=target/release/kiln bash benches/scaling.sh     # `make bench` uses the dist binary
#
# Env: SHARED, DATA (default /tmp/kiln-bench-data), PY (a python with numpy, polars and
# pyarrow; benches/run.sh's venv has them), KILN, REPS (default 3), RES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-3}
RES=${RES:-$DATA/results/kiln-scaling.jsonl}
TEXT=$DATA/text
OUT=$DATA/out/scaling
mkdir -p "$(dirname "$RES")"
: > "$RES"
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
if [[ ! -f "$TEXT/manifest.json" ]]; then
  echo "== generating the text corpus (about 2 minutes)" >&2
  (cd "$SHARED" && "$PY" gen_data.py text --out "$TEXT" --size-mb 1024 --files 16)
fi

# manifest SRC_MANIFEST DST FILE...: the corpus manifest with the bytes and documents of
# the given files (documents by counting lines of the uncompressed data).
manifest() {
  "$PY" - "$@" <<'PYEOF'
import gzip, json, os, sys
src, dst, files = sys.argv[1], sys.argv[2], sys.argv[3:]
m = json.load(open(src))
docs = 0
size = 0
for f in files:
    opener = gzip.open if f.endswith(".gz") else open
    with opener(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            docs += chunk.count(b"\n")
            size += len(chunk)
m.update(files=len(files), per_file=[], bytes=size, docs=docs)
json.dump(m, open(dst, "w"), indent=1)
PYEOF
}
ONE_JSONL=$DATA/big           # shared with benches/split.sh
if [[ ! -f "$ONE_JSONL/manifest.json" ]]; then
  mkdir -p "$ONE_JSONL"
  zcat "$TEXT"/jsonl_gz/*.jsonl.gz > "$ONE_JSONL/corpus.jsonl"
  manifest "$TEXT/manifest.json" "$ONE_JSONL/manifest.json" "$ONE_JSONL/corpus.jsonl"
fi
ONE_GZ=$DATA/one-gz
if [[ ! -f "$ONE_GZ/manifest.json" ]]; then
  mkdir -p "$ONE_GZ"
  cat "$TEXT"/jsonl_gz/*.jsonl.gz > "$ONE_GZ/corpus.jsonl.gz"
  manifest "$TEXT/manifest.json" "$ONE_GZ/manifest.json" "$ONE_GZ/corpus.jsonl.gz"
fi
FOUR=$DATA/four
if [[ ! -f "$FOUR/manifest.json" ]]; then
  mkdir -p "$FOUR"
  for f in $(ls "$TEXT"/jsonl_gz/*.jsonl.gz | head -4); do ln -sf "$f" "$FOUR/"; done
  manifest "$TEXT/manifest.json" "$FOUR/manifest.json" "$FOUR"/*.jsonl.gz
fi
ONE_CSV=$DATA/one-csv
if [[ ! -f "$ONE_CSV/manifest.json" ]]; then
  echo "== generating the tabular corpus" >&2
  (cd "$SHARED" && "$PY" gen_data.py csv --out "$DATA/tabular" --size-mb 512 --files 8)
  mkdir -p "$ONE_CSV"
  first=1
  for f in "$DATA"/tabular/part-*.csv; do  # one header, then every file's rows
    if [[ $first == 1 ]]; then cat "$f"; first=0; else tail -n +2 "$f"; fi
  done > "$ONE_CSV/table.csv"
  manifest "$DATA/tabular/manifest.json" "$ONE_CSV/manifest.json" "$ONE_CSV/table.csv"
fi
cat "$ONE_JSONL/corpus.jsonl" "$ONE_GZ/corpus.jsonl.gz" "$TEXT"/jsonl_gz/*.jsonl.gz \
  "$ONE_CSV/table.csv" > /dev/null

measure() {  # measure JOB TOOL INPUT_DIR -- CMD...
  local job=$1 tool=$2 in=$3; shift 4
  echo "== $job / $tool" >&2
  "$PY" "$SHARED/bench_run.py" --job "$job" --tool "$tool" --input "$in" --output "$OUT" \
    --manifest "$in/manifest.json" --results "$RES" --reps 1 --timeout 900 -- "$@" > /dev/null
  rm -rf "$OUT"
}
export KILN_BENCH_OUT=$OUT
A=$ROOT/benches/scaling.yaml
case_run() {  # case_run CASE THREADS: one run of one case
  local t=$2
  case $1 in
    one-jsonl) KILN_BENCH_URI="$ONE_JSONL/corpus.jsonl" measure one-jsonl "kiln $t" "$ONE_JSONL" -- \
      "$KILN" run -q "$A" --set run.threads=$t --set run.task_bytes=4GiB ;;
    one-gz) KILN_BENCH_URI="$ONE_GZ/corpus.jsonl.gz" measure one-gz "kiln $t" "$ONE_GZ" -- \
      "$KILN" run -q "$A" --set run.threads=$t ;;
    four) KILN_BENCH_URI="$FOUR/*.jsonl.gz" measure four "kiln $t" "$FOUR" -- \
      "$KILN" run -q "$A" --set run.threads=$t --set run.task_bytes=1GiB ;;
    one-csv) KILN_BENCH_URI="$ONE_CSV/table.csv" measure one-csv "kiln $t" "$ONE_CSV" -- \
      "$KILN" run -q "$A" --set run.threads=$t --set run.task_bytes=4GiB --set source.format=csv ;;
    one-text) KILN_BENCH_URI="$ONE_JSONL/corpus.jsonl" measure one-text "kiln $t" "$ONE_JSONL" -- \
      "$KILN" run -q "$A" --set run.threads=$t --set run.task_bytes=4GiB --set source.format=text ;;
    A-kiln) KILN_BENCH_URI="$TEXT/jsonl_gz/*.jsonl.gz" measure A-convert "kiln $t" "$TEXT" -- \
      "$KILN" run -q "$A" --set run.threads=$t ;;
    A-polars) POLARS_MAX_THREADS=$t measure A-convert "polars $t" "$TEXT" -- \
      "$PY" "$SHARED/peers/A_convert_polars.py" "$TEXT/jsonl_gz" "$OUT" ;;
    C-kiln) KILN_BENCH_IN="$TEXT/jsonl_gz" KILN_BENCH_TOKENIZER="$SHARED/tokenizer.json" \
      KILN_BENCH_THREADS=$t measure C-tokenize "kiln $t" "$TEXT" -- \
      "$KILN" run -q "$ROOT/benches/C_tokenize.yaml" ;;
  esac
}
for case in one-jsonl one-gz four one-csv one-text A-kiln A-polars C-kiln; do
  for rep in $(seq "$REPS"); do
    case_run "$case" 1
    case_run "$case" 2
  done
done

"$PY" - "$RES" <<'PYEOF'
import json, sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") == "ok":
        runs.setdefault((r["job"], r["tool"]), []).append(r)
print("| input | tool | wall s, 1 thread | wall s, 2 threads | speed-up (median of pairs) | cpu s, 1 / 2 | max RSS MB, 1 / 2 | pairs |")
print("|---|---|---|---|---|---|---|---|")
for job in ["one-jsonl", "one-gz", "four", "one-csv", "one-text", "A-convert", "C-tokenize"]:
    for tool in ["kiln", "polars"]:
        a, b = runs.get((job, f"{tool} 1"), []), runs.get((job, f"{tool} 2"), [])
        n = min(len(a), len(b))
        if n == 0:
            continue
        m = lambda rs, k: median(r[k] for r in rs)
        speedup = median(x["wall_s"] / y["wall_s"] for x, y in zip(a, b))
        print(f"| {job} | {tool} | {m(a, 'wall_s'):.2f} | {m(b, 'wall_s'):.2f} | {speedup:.2f}x | "
              f"{m(a, 'cpu_s'):.1f} / {m(b, 'cpu_s'):.1f} | "
              f"{m(a, 'max_rss_mb'):.0f} / {m(b, 'max_rss_mb'):.0f} | {n} |")
PYEOF
