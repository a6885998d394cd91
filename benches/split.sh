#!/usr/bin/env bash
# Job F (issue 6): one large file. The shared text corpus, unzipped and concatenated into
# one 1 GB JSONL file, converted to Parquet (zstd) three ways with the same binary:
#   whole     source.split: false, one task: one core parses it all
#   1x2       cut into 64 MiB slices, one process with 2 threads
#   2 workers cut into 64 MiB slices, `--worker 0/2` and `--worker 1/2` at once, 1 thread each
# and prints the speed-up of splitting. Then the commit protocol's cost: the seconds the
# runs spent in it (sink checks, stored plan, commit records, manifest; from --report)
# against their wall time. (An A/B against a run without resume records cannot resolve
# 2% here: run-to-run noise on this machine class is ±10%.)
#
# Called by benches/run.sh (JOBS=F); env as there (DATA, PY, SHARED, KILN, REPS, RES).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
BIG=$DATA/big
OUT=$DATA/out/F-split
if [[ ! -f "$BIG/manifest.json" ]]; then
  echo "== F: concatenating the text corpus into one file" >&2
  mkdir -p "$BIG"
  zcat "$DATA"/text/jsonl_gz/*.jsonl.gz > "$BIG/corpus.jsonl"
  "$PY" - "$DATA/text/manifest.json" "$BIG/manifest.json" "$BIG/corpus.jsonl" <<'PYEOF'
import json, os, sys
m = json.load(open(sys.argv[1]))
m.update(files=1, per_file=[], bytes=os.path.getsize(sys.argv[3]))
json.dump(m, open(sys.argv[2], "w"), indent=1)
PYEOF
fi
cat "$BIG/corpus.jsonl" > /dev/null  # warm the page cache
export KILN_BENCH_IN=$BIG KILN_BENCH_OUT=$OUT
measure() {  # measure JOB INPUT_DIR TOOL CMD...
  local job=$1 in=$2 tool=$3; shift 3
  echo "== $job / $tool" >&2
  "$PY" "$SHARED/bench_run.py" --job "$job" --tool "$tool" --input "$in" --output "$OUT" \
    --manifest "$in/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 -- "$@" > /dev/null
  rm -rf "$OUT"
}
F=$ROOT/benches/F_split.yaml
measure F-split "$BIG" "kiln (whole)" "$KILN" run -q "$F" --set source.split=false
measure F-split "$BIG" "kiln (slices, 1x2 threads)" "$KILN" run -q "$F"
measure F-split "$BIG" "kiln (slices, 2 workers)" bash -c \
  "\"$KILN\" run -q \"$F\" --worker 0/2 --set run.threads=1 & \"$KILN\" run -q \"$F\" --worker 1/2 --set run.threads=1; wait"

# The same corpus as one gzip member of independent blocks (`pigz --independent`, 128 KiB
# blocks): read whole (ISA-L, one decoding thread) against cut at its flush points.
PIGZ=$DATA/pigz-i
if command -v pigz > /dev/null; then
  if [[ ! -f "$PIGZ/manifest.json" ]]; then
    mkdir -p "$PIGZ"
    pigz --independent -6 -c "$BIG/corpus.jsonl" > "$PIGZ/corpus.jsonl.gz"
    "$PY" - "$BIG/manifest.json" "$PIGZ/manifest.json" "$PIGZ/corpus.jsonl.gz" <<'PYEOF'
import json, os, sys
m = json.load(open(sys.argv[1]))
m.update(bytes=os.path.getsize(sys.argv[3]))
json.dump(m, open(sys.argv[2], "w"), indent=1)
PYEOF
  fi
  G=(--set "source.uri=$PIGZ/corpus.jsonl.gz")
  measure F-pigz "$PIGZ" "kiln (whole)" "$KILN" run -q "$F" "${G[@]}" --set source.split=false
  measure F-pigz "$PIGZ" "kiln (slices, 1x2 threads)" "$KILN" run -q "$F" "${G[@]}"
  measure F-pigz "$PIGZ" "kiln (slices, 2 workers)" bash -c \
    "\"$KILN\" run -q \"$F\" --set source.uri=$PIGZ/corpus.jsonl.gz --worker 0/2 --set run.threads=1 & \"$KILN\" run -q \"$F\" --set source.uri=$PIGZ/corpus.jsonl.gz --worker 1/2 --set run.threads=1; wait"
fi

# The commit protocol's own time, from each worker's report.
rm -rf "$OUT"; mkdir -p "$DATA/results"
"$KILN" run -q "$F" --report "$DATA/results/F-1x2.json" > /dev/null; rm -rf "$OUT"
"$KILN" run -q "$F" --worker 0/2 --set run.threads=1 --report "$DATA/results/F-w0.json" > /dev/null &
"$KILN" run -q "$F" --worker 1/2 --set run.threads=1 --report "$DATA/results/F-w1.json" > /dev/null
wait; rm -rf "$OUT"
"$PY" - "$RES" "$DATA"/results/F-1x2.json "$DATA"/results/F-w0.json "$DATA"/results/F-w1.json <<'PYEOF'
import json, sys
for job, title in [("F-split", "one 1 GB JSONL file"),
                   ("F-pigz", "the same as one pigz --independent member (492 MB)")]:
    rows = {}
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r["job"] == job:
            rows[r["tool"]] = r
    if not rows:
        continue
    whole = rows.get("kiln (whole)")
    print(f"\nJob {job}, {title} → Parquet:")
    for tool, r in rows.items():
        extra = f"  speed-up {whole['wall_s'] / r['wall_s']:.2f}x vs whole" if whole and r is not whole else ""
        print(f"  {tool:30} wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s  RSS {r['max_rss_mb']:5} MB{extra}")
for name in sys.argv[2:]:
    rep = json.load(open(name))
    p, e = rep["commit_protocol_s"], rep["elapsed_s"]
    print(f"  commit protocol, {name.rsplit('/', 1)[-1]:10} {p:6.3f} s of {e:6.2f} s wall "
          f"({100 * p / e:.2f}%; {rep['tasks_total']} tasks)")
PYEOF
