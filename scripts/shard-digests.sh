#!/usr/bin/env bash
# Prints the sha256 of every shard the bench jobs A-D write on a small generated corpus
# (../shared/bench/gen_data.py: 64 MiB of JSONL.gz in 16 files, 32 MiB of CSV in 8,
# fixed seed), tasks of 8 MiB and shards cut at 4 MiB so that each job has several, one line
# per file, relative to the job's sink. Refactors that must not change output (issue 20)
# compare this before and after:
#
#   scripts/shard-digests.sh > /tmp/before; ...change...; scripts/shard-digests.sh | diff /tmp/before -
#
# Records under _kiln/ and _SUCCESS hold timestamps and are left out; every other file
# of the sink is compared. Runs with 2 threads and with 1 (the
# second set is checked equal to the first before it is printed).
#
# Env: KILN (the binary, default target/debug/kiln), PY (a python with numpy, default the
#      test venv), DATA (corpus folder, default /tmp/kiln-digest-data).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
KILN=${KILN:-$ROOT/target/debug/kiln}
PY=${PY:-$ROOT/.venv-test/bin/python}
DATA=${DATA:-/tmp/kiln-digest-data}
if [[ ! -f "$DATA/text/manifest.json" ]]; then
  (cd "$SHARED" && "$PY" gen_data.py text --out "$DATA/text" --size-mb 64 --files 16 >&2)
fi
if [[ ! -f "$DATA/csv/manifest.json" ]]; then
  (cd "$SHARED" && "$PY" gen_data.py csv --out "$DATA/csv" --size-mb 32 --files 8 >&2)
fi
csv_dir=$(dirname "$(find "$DATA/csv" -name '*.csv' | head -1)")
export KILN_BENCH_TOKENIZER=$SHARED/tokenizer.json

digest() {  # digest JOB INPUT THREADS
  local out=$DATA/out/$1-$3
  rm -rf "$out"
  KILN_BENCH_IN=$2 KILN_BENCH_OUT=$out KILN_BENCH_THREADS=$3 \
    "$KILN" run -q "$ROOT/benches/$1.yaml" --set sink.max_bytes=4MiB --set run.task_bytes=8MiB >&2
  (cd "$out" && find . -type f ! -path './_kiln/*' ! -name '_SUCCESS' | sort | xargs sha256sum |
    sed "s|  \./|  $1/|")
}

for job in A_convert:"$DATA/text/jsonl_gz" B_textclean:"$DATA/text/jsonl_gz" \
           C_tokenize:"$DATA/text/jsonl_gz" D_tabular:"$csv_dir"; do
  name=${job%%:*} in=${job#*:}
  two=$(digest "$name" "$in" 2)
  one=$(digest "$name" "$in" 1)
  if [[ "$one" != "$two" ]]; then
    echo "$name: output with 1 thread differs from 2 threads" >&2
    diff <(echo "$two") <(echo "$one") >&2 || true
    exit 1
  fi
  echo "$two"
done
