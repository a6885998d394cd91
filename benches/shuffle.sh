#!/usr/bin/env bash
# Job H (issue 22): the global shuffle's cost. Job A of ../shared/bench (the 1 GB JSONL.gz
# corpus to Parquet zstd, benches/A_convert.yaml) plain and with
# `sink.shuffle: { seed: 42 }` (every row scattered into buckets through the sink, then each
# bucket ordered and written), the same binary, the same data, measured by the shared
# harness (bench_run.py: /usr/bin/time -v over the whole process tree, REPS runs, the last
# kept); then the shuffled job on 10x the input (the 16 files linked ten times) to show
# that peak memory follows `run.task_bytes` and `bucket_bytes`, not the input. Prints wall,
# CPU and peak RSS of each and the ratios shuffled/plain and 10x/1x.
#
# Goal (issue 22): shuffled <= 1.5x the plain wall; peak RSS flat at 10x the input.
#
# Called by benches/run.sh (JOBS=H); env as there (DATA, SHARED, KILN, REPS, RES, PY).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
PY=${PY:-python3}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
TEXT=$DATA/text
X10=$DATA/text-x10
OUT=$DATA/out/H-shuffle
[[ -f "$TEXT/manifest.json" && -f "$X10/manifest.json" ]] \
  || { echo "job H needs the text corpus and its 10x links (benches/run.sh JOBS=A makes them)" >&2; exit 1; }
cat "$TEXT"/jsonl_gz/*.jsonl.gz > /dev/null  # warm the page cache
measure() {  # measure TOOL INPUT MANIFEST REPS [KILN FLAGS...]
  local tool=$1 in=$2 man=$3 reps=$4; shift 4
  echo "== H-shuffle / $tool" >&2
  KILN_BENCH_IN=$in KILN_BENCH_OUT=$OUT "$PY" "$SHARED/bench_run.py" --job H-shuffle --tool "$tool" \
    --input "$in" --output "$OUT" --manifest "$man" --results "$RES" --reps "$reps" --timeout 3600 \
    -- "$KILN" run -q "$ROOT/benches/A_convert.yaml" "$@" > /dev/null
  rm -rf "$OUT"
}
measure "kiln plain" "$TEXT/jsonl_gz" "$TEXT/manifest.json" "$REPS"
measure "kiln shuffled" "$TEXT/jsonl_gz" "$TEXT/manifest.json" "$REPS" --set 'sink.shuffle={seed: 42}'
[[ "${H_10X:-1}" == 1 ]] && measure "kiln shuffled 10x" "$X10/jsonl_gz" "$X10/manifest.json" 1 --set 'sink.shuffle={seed: 42}'
"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"H-shuffle"' in l]
last = {r["tool"]: r for r in rows}
for t, r in last.items():
    print(f"H-shuffle {t:18s} wall {r.get('wall_s')} s  cpu {r.get('cpu_s')} s  rss {r.get('max_rss_mb')} MB")
p, s, x = (last.get(k) for k in ("kiln plain", "kiln shuffled", "kiln shuffled 10x"))
if p and s:
    print(f"H-shuffle shuffled/plain wall: {s['wall_s'] / p['wall_s']:.2f}x (goal <= 1.5x)")
if s and x:
    print(f"H-shuffle 10x/1x peak RSS: {x['max_rss_mb'] / s['max_rss_mb']:.2f}x (goal: flat)")
PYEOF
