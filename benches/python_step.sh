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
# kiln's Python children), KILN, REPS (default 2), RES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
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
    --manifest "$TEXT/manifest.json" --results "$RES" --reps "$REPS" --timeout 1800 -- "$@" > /dev/null
  rm -rf "$OUT"
}
cd "$ROOT"   # the pipelines name benches/python-step/steps.py from here
export KILN_BENCH_IN=$TEXT/jsonl_gz KILN_BENCH_OUT=$OUT KILN_BENCH_THREADS=2
export KILN_PYTHON=$PY PYTHONPATH=$ROOT/python
measure A -- "$KILN" run -q "$ROOT/benches/A_convert.yaml"
for step in identity lower lower_rows; do
  KILN_BENCH_STEP=$step measure "$step" -- "$KILN" run -q "$ROOT/benches/python-step/P.yaml"
done
measure datatrove -- "$PY" "$ROOT/benches/peers/P_lower_datatrove.py" "$TEXT/jsonl_gz" "$OUT"

"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["tool"]] = r
a, dt = rows.get("A"), rows.get("datatrove")
print("| run | wall s | cpu s | max RSS MB | wall / job A | datatrove wall / this |")
print("|---|---|---|---|---|---|")
for tool, name in [("A", "kiln, job A (no Python)"), ("identity", "kiln, identity Python step"),
                   ("lower", "kiln, lower-case (pyarrow.compute)"),
                   ("lower_rows", "kiln, lower-case (str.lower per row)"),
                   ("datatrove", "datatrove, lower-case PipelineStep")]:
    r = rows.get(tool)
    if not r or "wall_s" not in r:
        continue
    vs_a = f"{r['wall_s'] / a['wall_s']:.2f}" if a and "wall_s" in a else ""
    vs_dt = f"{dt['wall_s'] / r['wall_s']:.1f}x" if dt and "wall_s" in dt else ""
    print(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['max_rss_mb']} | {vs_a} | {vs_dt} |")
PYEOF
