#!/usr/bin/env bash
# Job P, a step in Python (docs/python.md), on the shared text corpus (16 .jsonl.gz
# objects, 1 GB of JSONL), 2 threads, every run through the shared harness (bench_run.py:
# /usr/bin/time -v over the whole process tree, kiln's Python children included):
#   A           job A as it is (benches/A_convert.yaml): JSONL.gz -> Parquet zstd
#   identity    job A with an identity Python step (`exec`, 2 child processes): the cost of
#               sending every batch through Python and back
#   lower       the text lower-cased by a Python step with pyarrow.compute.utf8_lower
#   lower_rows  the same with Python's str.lower row by row (what the datatrove step does)
#   datatrove   JsonlReader -> a PipelineStep lower-casing each document -> ParquetWriter,
#               LocalPipelineExecutor tasks=2 workers=2 (benches/peers/P_lower_datatrove.py)
# Prints a table with the ratios.
#
#   KILN=target/release/kiln bash benches/python_step.sh     # `make bench` uses the dist binary
#
# Env: SHARED, DATA (default /tmp/kiln-bench-data), PY (a python with pyarrow and
# datatrove: the peers' venv benches/run.sh makes from the shared lock file; it also runs
# kiln's Python children), KILN, REPS (default 3), RES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-3}
RES=${RES:-$DATA/results/kiln-python-step.jsonl}
TEXT=$DATA/text
OUT=$DATA/out/python-step
mkdir -p "$(dirname "$RES")"
: > "$RES"
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
if [[ ! -f "$TEXT/manifest.json" ]]; then
  echo "== generating the text corpus (about 2 minutes)" >&2
  (cd "$SHARED" && "$PY" gen_data.py text --out "$TEXT" --size-mb 1024 --files 16)
fi
cat "$TEXT"/jsonl_gz/*.jsonl.gz > /dev/null

measure() {  # measure TOOL -- CMD...
  local tool=$1; shift 2
  echo "== P / $tool" >&2
  "$PY" "$SHARED/bench_run.py" --job P-python-step --tool "$tool" --input "$TEXT" --output "$OUT" \
    --manifest "$TEXT/manifest.json" --results "$RES" --reps 1 --timeout 1800 -- "$@" > /dev/null
  rm -rf "$OUT"
}
cd "$ROOT"   # the pipelines name benches/python-step/steps.py from here
export KILN_BENCH_IN=$TEXT/jsonl_gz KILN_BENCH_OUT=$OUT KILN_BENCH_THREADS=2
export KILN_PYTHON=$PY PYTHONPATH=$ROOT/python
# The rows alternate within each repetition (A, identity, lower, lower_rows, datatrove,
# then again), so that the machine's drift hits every row alike; the ratios below are
# medians of each repetition's own ratios.
for rep in $(seq "$REPS"); do
  measure A -- "$KILN" run -q "$ROOT/benches/A_convert.yaml"
  for step in identity lower lower_rows; do
    KILN_BENCH_STEP=$step measure "$step" -- "$KILN" run -q "$ROOT/benches/python-step/P.yaml"
  done
  measure datatrove -- "$PY" "$ROOT/benches/peers/P_lower_datatrove.py" "$TEXT/jsonl_gz" "$OUT"
done

"$PY" - "$RES" <<'PYEOF'
import json, sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") == "ok":
        runs.setdefault(r["tool"], []).append(r)
def ratio(num, den):  # the median of each repetition's num / den wall ratio
    pairs = list(zip(runs.get(num, []), runs.get(den, [])))
    return median(x["wall_s"] / y["wall_s"] for x, y in pairs) if pairs else None
print("| run | wall s | cpu s | max RSS MB | wall / job A | datatrove wall / this | runs |")
print("|---|---|---|---|---|---|---|")
for tool, name in [("A", "kiln, job A (no Python)"), ("identity", "kiln, identity Python step"),
                   ("lower", "kiln, lower-case (pyarrow.compute)"),
                   ("lower_rows", "kiln, lower-case (str.lower per row)"),
                   ("datatrove", "datatrove, lower-case PipelineStep")]:
    rs = runs.get(tool)
    if not rs:
        continue
    m = lambda k: median(r[k] for r in rs)
    vs_a, vs_dt = ratio(tool, "A"), ratio("datatrove", tool)
    print(f"| {name} | {m('wall_s'):.1f} | {m('cpu_s'):.1f} | {m('max_rss_mb'):.0f} | "
          f"{'' if vs_a is None else f'{vs_a:.2f}'} | {'' if vs_dt is None else f'{vs_dt:.1f}x'} | {len(rs)} |")
PYEOF
