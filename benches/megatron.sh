#!/usr/bin/env bash
# Job T (issue 22): tokenize + write Megatron-LM's indexed dataset (.bin + .idx), kiln
# (benches/T_megatron.yaml: tokenize with EOS, sink.format: megatron) beside Megatron-LM's
# own tools/preprocess_data.py (--append-eod, HuggingFaceTokenizer, --workers 2), both on
# 2 cores, on the same input: the first T_FILES files of the shared text corpus
# concatenated into one .jsonl (preprocess_data.py reads its input as plain text; kiln
# cuts the file into byte-range tasks), tokenized with the shared 32k BPE. Then
# benches/check_megatron.py checks the two outputs hold the same documents and token ids,
# byte for byte. Prints the wall and CPU of each and the ratio.
#
# preprocess_data.py is not on PyPI (the megatron-core wheel has the dataset code, not
# the tools): set MEGATRON_LM to a checkout of github.com/NVIDIA/Megatron-LM at the tag
# of the megatron-core in tests/requirements-train.txt (core_v0.16.1); without it only
# kiln runs. The peer runs in a venv layered on .venv-train (torch, megatron-core,
# transformers) with the one module its training package imports besides (pydantic).
#
# Called by benches/run.sh (JOBS=T); env as there (DATA, SHARED, KILN, REPS, RES).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-2}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
N=${T_FILES:-4}
IN=$DATA/megatron-in-$N
OUT=$DATA/out/T-megatron
TOK=$DATA/megatron-tokenizer
PY=$ROOT/.venv-train/bin/python
[[ -x $PY ]] || { echo "job T needs .venv-train (scripts/with-stores.sh --install)" >&2; exit 1; }
if [[ ! -f "$IN/manifest.json" ]]; then
  echo "== T: the first $N files of the text corpus as one .jsonl" >&2
  mkdir -p "$IN"
  ls "$DATA"/text/jsonl/*.jsonl | sort | head -n "$N" | xargs cat > "$IN/all.jsonl"
  "$PY" "$SHARED/make_subset.py" "$DATA/text" "$DATA/text-sub$N" "$N" > /dev/null
  cp "$DATA/text-sub$N/manifest.json" "$IN/manifest.json"
fi
# The shared tokenizer as a folder transformers' AutoTokenizer loads (Megatron's
# HuggingFaceTokenizer), EOS = <|endoftext|> as kiln's tokenize step is told.
mkdir -p "$TOK"
cp "$SHARED/tokenizer.json" "$TOK/tokenizer.json"
echo '{"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}' > "$TOK/tokenizer_config.json"
export KILN_BENCH_IN=$IN KILN_BENCH_OUT=$OUT KILN_BENCH_TOKENIZER=$TOK/tokenizer.json
measure() {  # measure TOOL CMD...
  local tool=$1; shift
  echo "== T-megatron / $tool" >&2
  rm -rf "$OUT" "$OUT-$tool"; mkdir -p "$OUT"
  python3 "$SHARED/bench_run.py" --job T-megatron --tool "$tool" --input "$IN" --output "$OUT" \
    --manifest "$IN/manifest.json" --results "$RES" --reps "$REPS" --timeout 3600 -- "$@" > /dev/null
  mv "$OUT" "$OUT-$tool"
}
measure kiln "$KILN" run -q "$ROOT/benches/T_megatron.yaml"
if [[ -n "${MEGATRON_LM:-}" ]]; then
  VENV=$DATA/megatron-venv
  if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$PY" -c 'import site; print(site.getsitepackages()[0])' > "$VENV/lib/python3.11/site-packages/train.pth"
    "$VENV/bin/pip" install -q pydantic
  fi
  # (bench_run.py clears the output folder before each run; preprocess_data.py does not
  # create it.)
  measure megatron sh -c 'mkdir -p "$1" && exec env PYTHONPATH="$2" "$3" "$2/tools/preprocess_data.py" \
    --input "$4" --output-prefix "$1/tokens" --tokenizer-type HuggingFaceTokenizer \
    --tokenizer-model "$5" --append-eod --workers 2 --log-interval 100000' \
    megatron "$OUT" "$MEGATRON_LM" "$VENV/bin/python" "$IN/all.jsonl" "$TOK"
  "$PY" "$ROOT/benches/check_megatron.py" "$OUT-kiln" "$OUT-megatron/tokens_text_document"
else
  echo "!!!! MEGATRON_LM unset: Megatron-LM's preprocess_data.py not run (see the top of this script) !!!!" >&2
fi
"$PY" - "$RES" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"T-megatron"' in l]
last = {r["tool"]: r for r in rows}
for t, r in last.items():
    print(f"T-megatron {t:9s} wall {r.get('wall_s')} s  cpu {r.get('cpu_s')} s  rss {r.get('max_rss_mb')} MB")
if "kiln" in last and "megatron" in last:
    print(f"T-megatron ratio megatron/kiln wall: {last['megatron']['wall_s'] / last['kiln']['wall_s']:.1f}x")
PYEOF
