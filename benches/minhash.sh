#!/usr/bin/env bash
# Job G, near-dedup (issue 21's benchmark): kiln's `dedup.minhash` (benches/G_minhash.yaml)
# beside datatrove's own four-stage MinHash pipeline (benches/peers/G_minhash_datatrove.py)
# with the same parameters (word 5-grams, 14 bands x 8 rows), 2 cores each, on the shared
# text corpus (16 .jsonl.gz objects, 1 GB of JSONL), every run through the shared harness
# (bench_run.py: /usr/bin/time -v over the whole process tree). datatrove's word
# tokenizer is str.split on the simplified text (what kiln does; TOKENIZERS="split spacy"
# adds a run with its default English tokenizer, spaCy, what its users get: its first
# stage alone ran over 17 minutes here, so it is not in the default). Then
# benches/compare_dedup.py prints the documents each removed and the overlap.
#
#   KILN=target/release/kiln bash benches/minhash.sh     # `make bench` uses the dist binary
#
# Env: SHARED, DATA (default /tmp/kiln-bench-data), PY (the peers' venv python, with
# datatrove; spaCy is installed into it when asked for), KILN, REPS (kiln's runs,
# default 2; datatrove runs once per tokenizer, about 4 minutes with split), PEERS
# (0 = kiln only), TOKENIZERS, RES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
PEERS=${PEERS:-1}
TOKENIZERS=${TOKENIZERS:-split}
RES=${RES:-$DATA/results/kiln-minhash.jsonl}
TEXT=$DATA/text
OUT=$DATA/out/minhash
mkdir -p "$(dirname "$RES")" "$OUT"
: > "$RES"
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
if [[ ! -f "$TEXT/manifest.json" ]]; then
  echo "== generating the text corpus (about 2 minutes)" >&2
  (cd "$SHARED" && "$PY" gen_data.py text --out "$TEXT" --size-mb 1024 --files 16)
fi
if [[ "$PEERS" == 1 && " $TOKENIZERS " == *" spacy "* ]]; then
  "$PY" -c "import spacy" 2>/dev/null || "$PY" -m pip install -q "spacy==3.8.7"
fi
cat "$TEXT"/jsonl_gz/*.jsonl.gz > /dev/null

measure() {  # measure TOOL REPS OUT -- CMD...
  local tool=$1 reps=$2 o=$3; shift 4
  echo "== G / $tool" >&2
  rm -rf "$o"
  "$PY" "$SHARED/bench_run.py" --job G-minhash --tool "$tool" --input "$TEXT" --output "$o" \
    --manifest "$TEXT/manifest.json" --results "$RES" --reps "$reps" --timeout 3600 -- "$@" > /dev/null
}
KILN_BENCH_IN=$TEXT/jsonl_gz KILN_BENCH_OUT=$OUT/kiln KILN_BENCH_THREADS=2 \
  measure kiln "$REPS" "$OUT/kiln" -- "$KILN" run -q "$ROOT/benches/G_minhash.yaml"
for tok in $([[ "$PEERS" == 1 ]] && echo "$TOKENIZERS"); do
  measure "datatrove ($tok)" 1 "$OUT/datatrove-$tok" -- \
    "$PY" "$ROOT/benches/peers/G_minhash_datatrove.py" "$TEXT/jsonl_gz" "$OUT/datatrove-$tok" "$tok"
done

"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["tool"]] = r
k = rows.get("kiln")
print("| run | wall s | cpu s | peak RSS of the process tree MB | rows out | wall / kiln |")
print("|---|---|---|---|---|---|")
for tool in ["kiln", "datatrove (split)", "datatrove (spacy)"]:
    r = rows.get(tool)
    if not r or "wall_s" not in r:
        continue
    vs = f"{r['wall_s'] / k['wall_s']:.1f}x" if k and "wall_s" in k else ""
    print(f"| {tool} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['tree_rss_mb']} | {r['out_rows']} | {vs} |")
PYEOF
for tok in $([[ "$PEERS" == 1 ]] && echo "$TOKENIZERS"); do
  echo "-- removed documents: kiln against datatrove ($tok)"
  "$PY" "$ROOT/benches/compare_dedup.py" "$TEXT/jsonl_gz" "$OUT/kiln" "$OUT/datatrove-$tok" "datatrove ($tok)"
done
rm -rf "$OUT"
