#!/usr/bin/env bash
# Near-dedup memory against the number of documents (issue 21: "state spills; RAM stays
# bounded whatever the document count"). `dedup.minhash` (14 bands x 8 rows) on
# synthetic six-word documents (benches/make_near_dups.py: DUP of them repeat an earlier
# one), one worker, 2 threads, at each size in SIZES, and at the middle size with DUP_HIGH
# duplicates. Each document gives 14 band records of 28 bytes, sorted in runs on local
# disk (TMPDIR) and merged; the union-find of the documents that collide and the drop
# lists stay in memory up to the step's `memory` (MEMORY), past it they go to disk too.
# Prints per run: documents, band records, `memory`, wall, peak RSS, peak spill on disk
# (du of the run's TMPDIR, sampled every second), rows kept.
#
#   KILN=target/release/kiln bash benches/minhash_memory.sh
#
# Env: DATA (default /tmp/kiln-bench-data), PY (python3), KILN, SIZES (default
# "3000000 10000000 30000000": 30 M documents are 420 M band records, ~12 GB of spill),
# DUP (default 0.1), DUP_HIGH (default 0.4; 0 skips that run), MEMORY (the step's
# `memory`, default 512MiB as with the default run.memory_limit; several, e.g.
# "512MiB 32MiB", run every size at each), BANDS (default 14), INDEX (the step's `index`,
# default true: the key index, 16 bytes a band record, goes into the sink), ZSTD=1
# (compress the generated input with the zstd command: 200 M documents are 7.8 GB as
# JSONL). The largest shown (docs/text.md): SIZES="20000000 200000000" BANDS=2 INDEX=false
# ZSTD=1 DUP_HIGH=0, 400 M band records at 200 M documents, ~16 GB of disk at the peak.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-python3}
KILN=${KILN:-$ROOT/target/dist/kiln}
SIZES=${SIZES:-3000000 10000000 30000000}
DUP=${DUP:-0.1}
DUP_HIGH=${DUP_HIGH:-0.4}
MEMORY=${MEMORY:-512MiB}
BANDS=${BANDS:-14}
INDEX=${INDEX:-true}
ZSTD=${ZSTD:-0}
WORK=$DATA/minhash-memory
mkdir -p "$WORK"
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null

# one DOCS DUP MEMORY: generate (once), run, print a table row, delete the output.
one() {
  local docs=$1 dup=$2 mem=$3 in=$WORK/in-$1-$2 out=$WORK/out tmp=$WORK/tmp peak=0 line pid
  [[ -f $in/done ]] || {
    rm -rf "$in"; "$PY" "$ROOT/benches/make_near_dups.py" "$in" "$docs" --dup "$dup" --files 8
    [[ $ZSTD == 0 ]] || zstd -q -1 -T0 --rm "$in"/*.jsonl
    touch "$in/done"
  }
  rm -rf "$out" "$tmp"; mkdir -p "$tmp"
  cat "$in"/*.jsonl* > /dev/null
  TMPDIR=$tmp KILN_BENCH_MEMORY=$mem KILN_BENCH_BANDS=$BANDS KILN_BENCH_INDEX=$INDEX KILN_BENCH_IN=$in KILN_BENCH_OUT=$out /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
    "$KILN" run -q "$ROOT/benches/minhash_memory.yaml" --report "$WORK/report.json" & pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # du fails when a run is deleted under it: that sample is skipped, not the bench.
    local now; now=$(du -sb "$tmp" 2>/dev/null | cut -f1 || true); (( ${now:-0} > peak )) && peak=$now; sleep 1
  done
  wait "$pid"
  read -r wall user sys rss < "$WORK/time"
  local kept; kept=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['rows_out'])" "$WORK/report.json")
  printf '| %s | %.0f %% | %s M | %s | %.1f | %.0f | %.0f | %.1f | %s |\n' "$((docs / 1000000)) M" \
    "$(awk "BEGIN{print $dup * 100}")" "$((docs * BANDS / 1000000))" "$mem" "$wall" \
    "$(awk "BEGIN{print $user + $sys}")" "$((rss / 1024))" "$(awk "BEGIN{print $peak / 1e9}")" "$kept"
  rm -rf "$out" "$tmp"
}

echo "| documents | repeated | band records | memory | wall s | CPU s | peak RSS MB | peak spill GB | rows kept |"
echo "|---|---|---|---|---|---|---|---|---|"
set -- $SIZES
mid=$(echo "$SIZES" | tr ' ' '\n' | sed -n "$(( ($# + 1) / 2 ))p")
# Each input is generated once and run at every MEMORY, then deleted.
runs=()
for n in "$@"; do runs+=("$n $DUP"); done
[[ $DUP_HIGH == 0 ]] || runs+=("$mid $DUP_HIGH")
for r in "${runs[@]}"; do
  read -r docs dup <<< "$r"
  for mem in $MEMORY; do one "$docs" "$dup" "$mem"; done
  rm -rf "$WORK/in-$docs-$dup"
done
