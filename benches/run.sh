#!/usr/bin/env bash
# `make bench`: job A of ../shared/bench (JSONL.gz → Parquet zstd) with kiln beside the
# peers (Polars, pyarrow, DuckDB), on the same generated corpus, measured by the same
# harness (bench_run.py: /usr/bin/time -v over the whole process tree, 2 runs, last kept).
# Then the same kiln job on 10× the input (the 16 files linked 10 times) to show that
# peak memory does not grow with the input. Prints wall/CPU/RSS and kiln/peer ratios.
#
# Jobs B (text-clean: exact dedup + word/letter filter) and C (tokenize with the shared
# 32k BPE) run kiln beside datatrove/DuckDB and HF datasets; benches/check_tokens.py
# checks kiln's token ids against HF tokenizers (the ids `datasets` writes) on a sample.
#
# Finally (benches/s3.sh) the kiln job with the corpus in a local S3 server vs local disk.
#
# Job E (images: decode → resize → centre crop → JPEG, labels from folders) runs kiln
# beside a Pillow script using the same cores (benches/peers/E_images_pillow.py) on
# images benches/make_images.py generates.
#
# Job D (tabular: z-scores with full-pass statistics, one-hot, dictionary codes, null
# filling; CSV → Parquet) runs kiln beside Polars and DuckDB on the shared CSV corpus.
#
# Job F (one large file: split into slices vs read whole, and the commit protocol's
# cost) is benches/split.sh.
#
# Job S (one task on every core: 1 vs 2 threads on inputs that are one task, job A beside
# Polars at 1 and 2 threads, job C at 1 and 2) is benches/scaling.sh.
#
# Job P (a step in Python: job A with an identity `exec` step, and a lower-case step
# beside datatrove's PipelineStep) is benches/python_step.sh.
#
# Job G (near-dedup: `dedup.minhash` beside datatrove's four-stage MinHash pipeline, same
# parameters, and the overlap of the documents each removes) is benches/minhash.sh.
#
# Job M (dedup on many workers: jobs B and G on one worker vs two workers sharing their
# dedup stage through the sink, and what the sharing costs) is benches/workers.sh.
#
# Job W (one 1 GB .warc.gz: cut at its gzip members vs read whole) is benches/warc_split.sh.
#
# Job X (raw WARC → main-content text beside datatrove's WarcReader + Trafilatura) is
# benches/warc_extract.sh.
#
# Job T (tokenize + Megatron .bin/.idx beside Megatron-LM's tools/preprocess_data.py,
# token ids checked identical; MEGATRON_LM names a Megatron-LM checkout) is
# benches/megatron.sh.
#
# Job H (the global shuffle: job A plain and with sink.shuffle, and shuffled on 10x the
# input for peak memory) is benches/shuffle.sh.
#
# Job N (near-dedup memory against the document count: 3, 10 and 30 M synthetic
# documents, 42 to 420 M band records through the spill and merge; ~21 GB of disk and
# ~7 minutes, so not in the default JOBS) is benches/minhash_memory.sh.
#
# JOBS selects jobs (default "A B C D E F S P G M W X T H"; add N for job N); PEERS_C lists the job-C peers to run (default
# "datasets"; each takes ~2.5 minutes a run, so they run once).
#
# Env: SHARED (the shared bench folder), DATA (corpus, default /tmp/kiln-bench-data),
#      PY (the peers' venv python), REPS (runs per tool, default 2), PEERS (0 = kiln only),
#      S3 (0 = skip the S3 comparison).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
VENV=${VENV:-/tmp/kiln-bench-venv}
PY=${PY:-$VENV/bin/python}
REPS=${REPS:-2}
PEERS=${PEERS:-1}
KILN=${KILN:-$ROOT/target/dist/kiln}
RES=${RES:-$DATA/results/kiln-bench.jsonl}
OUT=$DATA/out
TEXT=$DATA/text
mkdir -p "$OUT" "$(dirname "$RES")"
: > "$RES"

command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
if [[ ! -x "$PY" ]]; then
  echo "== creating the peers' venv in $VENV (pinned: $SHARED/requirements-lock.txt)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
  "$VENV/bin/pip" install -q -r "$SHARED/requirements-lock.txt"
fi
if [[ ! -f "$TEXT/manifest.json" ]]; then
  echo "== generating the text corpus (about 2 minutes)" >&2
  (cd "$SHARED" && "$PY" gen_data.py text --out "$TEXT" --size-mb 1024 --files 16)
fi
# The 10× input: the same 16 files, linked ten times under new names.
X10=$DATA/text-x10
if [[ ! -f "$X10/manifest.json" ]]; then
  mkdir -p "$X10/jsonl_gz"
  for r in $(seq 0 9); do for f in "$TEXT"/jsonl_gz/*.jsonl.gz; do
    ln -sf "$f" "$X10/jsonl_gz/r$r-$(basename "$f")"; done; done
  "$PY" - "$TEXT/manifest.json" "$X10/manifest.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
for k, v in list(m.items()):
    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed",):
        m[k] = v * 10
json.dump(m, open(sys.argv[2], "w"), indent=1)
PYEOF
fi
cat "$TEXT"/jsonl_gz/*.jsonl.gz > /dev/null  # warm the page cache

kiln_run() {  # kiln_run TOOL INPUT_DIR MANIFEST [ZSTD_LEVEL] [KILN_FLAGS]
  local tool=$1 in=$2 man=$3 o="$OUT/A-convert-kiln"
  echo "== A-convert / $tool" >&2
  KILN_BENCH_LEVEL=${4:-3} KILN_BENCH_IN=$in KILN_BENCH_OUT=$o "$PY" "$SHARED/bench_run.py" --job A-convert --tool "$tool" \
    --input "$in" --output "$o" --manifest "$man" --results "$RES" --reps "$REPS" --timeout 900 \
    -- "$KILN" run -q "$ROOT/benches/A_convert.yaml" ${5:-} > /dev/null
  rm -rf "$o"
}

JOBS=${JOBS:-A B C D E F S P G M W X T H}
if [[ " $JOBS " == *" A "* ]]; then
kiln_run kiln "$TEXT/jsonl_gz" "$TEXT/manifest.json"
kiln_run "kiln (zstd-1)" "$TEXT/jsonl_gz" "$TEXT/manifest.json" 1
# The cost of on_error bookkeeping on clean data: records framed before they are decoded,
# so that a bad one could be left out alone (target: under 2% of the plain run).
kiln_run "kiln (dead_letter)" "$TEXT/jsonl_gz" "$TEXT/manifest.json" 3 "--set run.on_error=dead_letter"
if [[ "$PEERS" == 1 ]]; then
  for peer in polars pyarrow duckdb; do
    o="$OUT/A-convert-$peer"
    echo "== A-convert / $peer" >&2
    "$PY" "$SHARED/bench_run.py" --job A-convert --tool "$peer" --input "$TEXT/jsonl_gz" --output "$o" \
      --manifest "$TEXT/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 \
      -- "$PY" "$SHARED/peers/A_convert_$peer.py" "$TEXT/jsonl_gz" "$o" > /dev/null
    rm -rf "$o"
  done
fi
REPS=1 kiln_run "kiln (10x input)" "$X10/jsonl_gz" "$X10/manifest.json"
fi

peer_run() {  # peer_run JOB PEER REPS [extra args]
  local job=$1 peer=$2 reps=$3 o="$OUT/$1-$2"; shift 3
  echo "== $job / $peer" >&2
  "$PY" "$SHARED/bench_run.py" --job "$job" --tool "$peer" --input "$TEXT/jsonl_gz" --output "$o" \
    --manifest "$TEXT/manifest.json" --results "$RES" --reps "$reps" --timeout 900 \
    -- "$PY" "$SHARED/peers/${job%%-*}_${job#*-}_$peer.py" "$TEXT/jsonl_gz" "$o" "$@" > /dev/null
  rm -rf "$o"
}

if [[ " $JOBS " == *" B "* ]]; then
  o="$OUT/B-textclean-kiln"
  echo "== B-textclean / kiln" >&2
  KILN_BENCH_IN="$TEXT/jsonl_gz" KILN_BENCH_OUT=$o "$PY" "$SHARED/bench_run.py" --job B-textclean --tool kiln \
    --input "$TEXT/jsonl_gz" --output "$o" --manifest "$TEXT/manifest.json" --results "$RES" --reps "$REPS" \
    --timeout 900 -- "$KILN" run -q "$ROOT/benches/B_textclean.yaml" > /dev/null
  rm -rf "$o"
  if [[ "$PEERS" == 1 ]]; then
    peer_run B-textclean duckdb "$REPS"
    peer_run B-textclean datatrove "$REPS"
  fi
fi

if [[ " $JOBS " == *" C "* ]]; then
  o="$OUT/C-tokenize-kiln"
  echo "== C-tokenize / kiln" >&2
  KILN_BENCH_TOKENIZER="$SHARED/tokenizer.json" KILN_BENCH_IN="$TEXT/jsonl_gz" KILN_BENCH_OUT=$o \
    "$PY" "$SHARED/bench_run.py" --job C-tokenize --tool kiln --input "$TEXT/jsonl_gz" --output "$o" \
    --manifest "$TEXT/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 \
    -- "$KILN" run -q "$ROOT/benches/C_tokenize.yaml" > /dev/null
  # The ids must be those of HF tokenizers, which the `datasets` peer writes.
  KILN_BENCH_TOKENIZER="$SHARED/tokenizer.json" KILN_BENCH_IN="$TEXT/jsonl_gz" KILN_BENCH_OUT=$o \
    "$KILN" run -q "$ROOT/benches/C_tokenize.yaml" > /dev/null
  "$PY" "$ROOT/benches/check_tokens.py" "$TEXT/jsonl_gz" "$o" "$SHARED/tokenizer.json"
  rm -rf "$o"
  if [[ "$PEERS" == 1 ]]; then
    for peer in ${PEERS_C:-datasets}; do peer_run C-tokenize "$peer" 1 "$SHARED/tokenizer.json"; done
  fi
fi
if [[ " $JOBS " == *" D "* ]]; then
  CSV=$DATA/csv
  if [[ ! -f "$CSV/manifest.json" ]]; then
    echo "== generating the CSV corpus (about 20 seconds)" >&2
    (cd "$SHARED" && "$PY" gen_data.py csv --out "$CSV" --size-mb 500 --files 8)
  fi
  cat "$CSV"/*.csv > /dev/null  # warm the page cache
  o="$OUT/D-tabular-kiln"
  echo "== D-tabular / kiln" >&2
  KILN_BENCH_IN="$CSV" KILN_BENCH_OUT=$o "$PY" "$SHARED/bench_run.py" --job D-tabular --tool kiln \
    --input "$CSV" --output "$o" --manifest "$CSV/manifest.json" --results "$RES" --reps "$REPS" \
    --timeout 900 -- "$KILN" run -q "$ROOT/benches/D_tabular.yaml" > /dev/null
  # The same values as Polars writes, column by column (the peers' own agreement check).
  KILN_BENCH_IN="$CSV" KILN_BENCH_OUT=$o "$KILN" run -q "$ROOT/benches/D_tabular.yaml" > /dev/null
  if [[ "$PEERS" == 1 ]]; then
    p="$OUT/D-tabular-polars-check"
    "$PY" "$SHARED/peers/D_tabular_polars.py" "$CSV" "$p" > /dev/null
    "$PY" "$ROOT/benches/check_tabular.py" "$o" "$p"
    rm -rf "$p"
  fi
  rm -rf "$o"
  if [[ "$PEERS" == 1 ]]; then
    for peer in polars duckdb; do
      o="$OUT/D-tabular-$peer"
      echo "== D-tabular / $peer" >&2
      "$PY" "$SHARED/bench_run.py" --job D-tabular --tool "$peer" --input "$CSV" --output "$o" \
        --manifest "$CSV/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 \
        -- "$PY" "$SHARED/peers/D_tabular_$peer.py" "$CSV" "$o" > /dev/null
      rm -rf "$o"
    done
  fi
fi
if [[ " $JOBS " == *" E "* ]]; then
  # Job E (kiln's own; the shared set has no image job): 3000 photo-sized JPEGs in ten
  # class folders → decode, resize (shorter side 224), centre crop 224, JPEG q90, with
  # labels, to Parquet; beside the same job in Pillow with one process per core.
  IMG=$DATA/images
  "$PY" -c "import PIL" 2>/dev/null || "$VENV/bin/pip" install -q pillow==13.0.0
  [[ -f "$IMG/manifest.json" ]] || "$PY" "$ROOT/benches/make_images.py" "$IMG"
  cat "$IMG"/images/*/*.jpg > /dev/null  # warm the page cache
  o="$OUT/E-images-kiln"
  echo "== E-images / kiln" >&2
  KILN_BENCH_IN="$IMG/images" KILN_BENCH_OUT=$o "$PY" "$SHARED/bench_run.py" --job E-images --tool kiln \
    --input "$IMG/images" --output "$o" --manifest "$IMG/manifest.json" --results "$RES" --reps "$REPS" \
    --timeout 900 -- "$KILN" run -q "$ROOT/benches/E_images.yaml" > /dev/null
  rm -rf "$o"
  if [[ "$PEERS" == 1 ]]; then
    o="$OUT/E-images-pillow"
    echo "== E-images / pillow" >&2
    "$PY" "$SHARED/bench_run.py" --job E-images --tool pillow --input "$IMG/images" --output "$o" \
      --manifest "$IMG/manifest.json" --results "$RES" --reps "$REPS" --timeout 900 \
      -- "$PY" "$ROOT/benches/peers/E_images_pillow.py" "$IMG/images" "$o" > /dev/null
    rm -rf "$o"
  fi
fi
if [[ " $JOBS " == *" F "* ]]; then
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS RES=$RES bash "$ROOT/benches/split.sh"
fi
if [[ " $JOBS " == *" S "* ]]; then
  # Its own results file and table (ratios between thread counts, not between tools).
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS bash "$ROOT/benches/scaling.sh"
fi
if [[ " $JOBS " == *" P "* ]]; then
  # A step in Python: its own results file and table (kiln with and without the step,
  # beside datatrove's PipelineStep).
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS bash "$ROOT/benches/python_step.sh"
fi
if [[ " $JOBS " == *" G "* ]]; then
  # Near-dedup: its own results file, table and removed-set comparison.
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS PEERS=$PEERS bash "$ROOT/benches/minhash.sh"
fi
if [[ " $JOBS " == *" M "* ]]; then
  # Dedup on many workers: its own results file and table (ratios between runs of kiln),
  # on local disk and (S3=1, the default) on the local S3 server too.
  if [[ "${S3:-1}" == 1 ]]; then
    DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS "$ROOT/scripts/with-stores.sh" bash "$ROOT/benches/workers.sh"
  else
    DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS bash "$ROOT/benches/workers.sh"
  fi
fi
if [[ " $JOBS " == *" N "* ]]; then
  # Near-dedup memory: its own table (kiln alone; no peer runs at this size here).
  DATA=$DATA PY=$PY KILN=$KILN bash "$ROOT/benches/minhash_memory.sh"
fi
if [[ " $JOBS " == *" W "* ]]; then
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS RES=$RES bash "$ROOT/benches/warc_split.sh"
fi
if [[ " $JOBS " == *" T "* ]]; then
  DATA=$DATA SHARED=$SHARED KILN=$KILN REPS=$REPS RES=$RES bash "$ROOT/benches/megatron.sh"
fi
if [[ " $JOBS " == *" H "* ]]; then
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS RES=$RES bash "$ROOT/benches/shuffle.sh"
fi
if [[ " $JOBS " == *" X "* ]]; then
  DATA=$DATA PY=$PY SHARED=$SHARED KILN=$KILN REPS=$REPS RES=$RES PEERS=$PEERS bash "$ROOT/benches/warc_extract.sh"
fi
"$PY" "$ROOT/benches/compare.py" "$RES"
# The same job with the corpus in a local S3 server (moto) beside local disk.
if [[ "${S3:-1}" == 1 && " $JOBS " == *" A "* ]]; then
  echo; "$ROOT/scripts/with-stores.sh" bash "$ROOT/benches/s3.sh"
fi
