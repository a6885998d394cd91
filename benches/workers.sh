#!/usr/bin/env bash
# Job M, dedup on many workers (issue 21's benchmark): jobs B (exact dedup + filter) and
# G (near-dedup) on the shared text corpus (16 .jsonl.gz objects, 1 GB of JSONL) run as
#   1w        one worker, 2 threads (exact dedup decides in the main pass: one read)
#   1w-2pass  one worker, 2 threads, `one_pass: false` (job B only: the two passes a
#             shared stage makes, so the difference to 2w is the sharing alone)
#   2w        two workers at once on the same machine, 1 thread each, one sink: each
#             stores its tasks' stage parts, waits for the other's, settles from all
# and, run inside scripts/with-stores.sh (`make bench` does), the same two on the local
# S3 server (moto on 127.0.0.1), corpus and sink both in a bucket:
#   1w-s3     one worker, 2 threads
#   2w-s3     two workers, 1 thread each: the stage parts, claims, run records and
#             section decisions are objects, every barrier check a LIST or GET
# moto is a Python server on the same 2 cores: its CPU serving the GETs and PUTs is
# taken from kiln's, so the S3 figures are an upper bound on what a real store costs.
# Every run goes through the shared harness (bench_run.py: /usr/bin/time -v over the
# process tree); the cases of a job alternate, REPS times. Each worker writes a
# --report; the table shows median wall, CPU and peak RSS, the ratio to 1w, and
# `shared_stages_s` (storing parts, waiting at the barrier, reading every part back) as
# a share of the wall time. The shards of 1w and 2w are checked byte-identical.
#
#   KILN=target/release/kiln bash benches/workers.sh     # `make bench` uses the dist binary
#
# Env: SHARED, DATA (default /tmp/kiln-bench-data), PY, KILN, REPS (default 3), RES;
# KILN_TEST_S3_ENDPOINT and KILN_TEST_PYTHON (set by scripts/with-stores.sh) add the
# S3 cases.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/kiln-bench-data}
PY=${PY:-/tmp/kiln-bench-venv/bin/python}
KILN=${KILN:-$ROOT/target/dist/kiln}
REPS=${REPS:-3}
RES=${RES:-$DATA/results/kiln-workers.jsonl}
TEXT=$DATA/text
OUT=$DATA/out/workers
REPORTS=$DATA/results/workers-reports
mkdir -p "$(dirname "$RES")" "$REPORTS"
: > "$RES"
rm -f "$REPORTS"/*.json
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
if [[ ! -f "$TEXT/manifest.json" ]]; then
  echo "== generating the text corpus (about 2 minutes)" >&2
  (cd "$SHARED" && "$PY" gen_data.py text --out "$TEXT" --size-mb 1024 --files 16)
fi
cat "$TEXT"/jsonl_gz/*.jsonl.gz > /dev/null
export KILN_BENCH_IN=$TEXT/jsonl_gz
BUCKET=kiln-bench-workers
S3_CASES=""
if [[ -n ${KILN_TEST_S3_ENDPOINT:-} ]]; then
  export AWS_ENDPOINT_URL=$KILN_TEST_S3_ENDPOINT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
         AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  S3_CASES="1w-s3 2w-s3"
  echo "== uploading the corpus to s3://$BUCKET/text/ on the local S3 server" >&2
  "$KILN_TEST_PYTHON" "$ROOT/benches/s3_objects.py" upload "$TEXT/jsonl_gz" "$BUCKET" text
fi
s3_shards() { "$KILN_TEST_PYTHON" "$ROOT/benches/s3_objects.py" md5 "$BUCKET" "$1"; }
s3_clear() { "$KILN_TEST_PYTHON" "$ROOT/benches/s3_objects.py" clear "$BUCKET" "$1"; }

# run_case JOB CASE REP: one run, through the harness, its reports kept.
run_case() {
  local job=$1 case=$2 rep=$3 yaml o cmd
  case $job in
    B) yaml=$ROOT/benches/B_textclean.yaml ;;
    G) yaml=$ROOT/benches/G_minhash.yaml ;;
  esac
  o=$OUT/$job-$case
  rm -rf "$o"
  local rpt=$REPORTS/$job-$case-$rep
  local s3set="--set source.uri=s3://$BUCKET/text/*.jsonl.gz --set sink.uri=s3://$BUCKET/$job-$case/"
  [[ $case == *-s3 ]] && s3_clear "$job-$case"
  case $case in
    1w) cmd="KILN_BENCH_OUT=$o $KILN run -q $yaml --set run.threads=2 --report $rpt-w0.json" ;;
    1w-2pass) cmd="KILN_BENCH_OUT=$o $KILN run -q $yaml --set run.threads=2 \
        --set steps.0.dedup.exact.one_pass=false --report $rpt-w0.json" ;;
    2w) cmd="for i in 0 1; do KILN_BENCH_OUT=$o $KILN run -q $yaml --set run.threads=1 \
        --worker \$i/2 --report $rpt-w\$i.json & pids=\"\$pids \$!\"; done; for p in \$pids; do wait \$p; done" ;;
    1w-s3) cmd="KILN_BENCH_OUT=unused $KILN run -q $yaml $s3set --set run.threads=2 --report $rpt-w0.json" ;;
    2w-s3) cmd="for i in 0 1; do KILN_BENCH_OUT=unused $KILN run -q $yaml $s3set --set run.threads=1 \
        --worker \$i/2 --report $rpt-w\$i.json & pids=\"\$pids \$!\"; done; for p in \$pids; do wait \$p; done" ;;
  esac
  echo "== $job / $case ($rep)" >&2
  "$PY" "$SHARED/bench_run.py" --job "$job" --tool "kiln $case" --input "$TEXT" --output "$o" \
    --manifest "$TEXT/manifest.json" --results "$RES" --reps 1 --timeout 1800 \
    -- bash -c "set -e; $cmd" > /dev/null
}

for job in B G; do
  cases="1w 2w"
  [[ $job == B ]] && cases="1w 1w-2pass 2w"
  cases="$cases $S3_CASES"
  for rep in $(seq "$REPS"); do
    for c in $cases; do run_case "$job" "$c" "$rep"; done
  done
  # The last repetition's outputs: 2 workers write the single run's bytes.
  if ! diff <(cd "$OUT/$job-1w" && find . -name '*.parquet' | sort | xargs md5sum) \
            <(cd "$OUT/$job-2w" && find . -name '*.parquet' | sort | xargs md5sum) > /dev/null; then
    echo "!! job $job: 2 workers wrote other shards than 1 worker" >&2
    exit 1
  fi
  echo "== job $job: 1 and 2 workers wrote identical shards" >&2
  if [[ -n $S3_CASES ]]; then
    # (Not byte-compared with the local runs: a shard's metadata names its input objects.)
    if ! diff <(s3_shards "$job-1w-s3" | sort -k2) <(s3_shards "$job-2w-s3" | sort -k2) >&2; then
      echo "!! job $job: 2 workers on the S3 server wrote other shards than 1 worker there" >&2
      exit 1
    fi
    echo "== job $job: 1 and 2 workers on the S3 server wrote identical shards" >&2
    s3_clear "$job-1w-s3"; s3_clear "$job-2w-s3"
  fi
  rm -rf "$OUT"/"$job"-*
done

"$PY" - "$RES" "$REPORTS" <<'PYEOF'
import glob, json, os, sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") == "ok":
        runs.setdefault((r["job"], r["tool"].split()[1]), []).append(r)
def shared_share(job, case):
    # Per repetition: the larger worker's shared_stages_s over its own wall time.
    shares = []
    for rep in sorted({p.rsplit("-", 2)[-2] for p in glob.glob(f"{sys.argv[2]}/{job}-{case}-*-w*.json")}):
        best = 0.0
        for p in glob.glob(f"{sys.argv[2]}/{job}-{case}-{rep}-w*.json"):
            r = json.load(open(p))
            best = max(best, r.get("shared_stages_s", 0.0) / max(r["elapsed_s"], 1e-9))
        shares.append(best)
    return median(shares) if shares else 0.0
print("| job | run | wall s | vs 1 worker | cpu s | max RSS MB | stage sharing, share of wall | runs |")
print("|---|---|---|---|---|---|---|---|")
for job in ["B", "G"]:
    base = runs.get((job, "1w"), [])
    for case in ["1w", "1w-2pass", "2w", "1w-s3", "2w-s3"]:
        rs = runs.get((job, case), [])
        if not rs:
            continue
        m = lambda k: median(r[k] for r in rs)
        ratio = median(x["wall_s"] / y["wall_s"] for x, y in zip(rs, base)) if base else float("nan")
        print(f"| {job} | {case} | {m('wall_s'):.2f} | {ratio:.2f}x | {m('cpu_s'):.1f} | "
              f"{m('max_rss_mb'):.0f} | {100 * shared_share(job, case):.1f}% | {len(rs)} |")
PYEOF
