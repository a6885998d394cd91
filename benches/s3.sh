#!/usr/bin/env bash
# Part of `make bench`, run inside scripts/with-stores.sh (a moto server on 127.0.0.1):
# job A (JSONL.gz → Parquet zstd) with the corpus on local disk and in the local S3
# server, same kiln binary, same settings. Prints wall time, CPU and peak RSS of each
# and the S3/local wall-time ratio (target ≤ 1.25×). Then the S3 → local run through the
# tests' fault proxy (examples/fault_proxy.rs) with no faults and with 1 GET in 20
# answered 503 SlowDown: the throughput under a 5% throttling rate relative to none,
# on the 16-object corpus and on the same documents as 320 objects (so the throttling
# is a steady rate, ~16 of ~320 GETs, not one lucky request).
#
# moto is a Python server on the same 2 cores: its CPU time serving ~0.5 GB of GETs and
# ~0.4 GB of multipart PUTs counts against kiln's wall time here, as a real store's
# latency would; the figure is an upper bound on S3 overhead, not a model of AWS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/tmp/kiln-bench-data}
TEXT=$DATA/text/jsonl_gz
KILN=${KILN:-$ROOT/target/dist/kiln}
OUT=$DATA/out/s3-bench
REPS=${REPS:-2}
: "${KILN_TEST_S3_ENDPOINT:?run through scripts/with-stores.sh}"
export AWS_ENDPOINT_URL=$KILN_TEST_S3_ENDPOINT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
BUCKET=kiln-bench

echo "== uploading $(du -shL "$TEXT" | cut -f1) of corpus to s3://$BUCKET/text/" >&2
"$KILN_TEST_PYTHON" "$ROOT/benches/s3_objects.py" upload "$TEXT" "$BUCKET" text

# CPU seconds the S3 server process has used so far.
SERVER_PID=$(pgrep -f "moto_server -H 127.0.0.1 -p ${KILN_TEST_S3_ENDPOINT##*:}" | head -1)
server_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SERVER_PID/stat"
}

measure() {  # measure LABEL SOURCE SINK [ENDPOINT] → "label wall_s cpu_s rss_mb server_cpu_s"
  local label=$1 src=$2 sink=$3 endpoint=${4:-$AWS_ENDPOINT_URL} line="" before after
  for _ in $(seq 1 "$REPS"); do
    before=$(server_cpu)
    line=$(AWS_ENDPOINT_URL=$endpoint /usr/bin/time -f "%e %U %S %M" "$KILN" run -q "$ROOT/benches/A_convert.yaml" --overwrite \
      --set "source.uri=$src" --set "sink.uri=$sink" --report "$OUT-report.json" 2>&1 >/dev/null | tail -1)
    after=$(server_cpu)
  done
  read -r wall user sys rss <<<"$line"
  echo "$label $wall $(awk "BEGIN{print $user + $sys}") $((rss / 1024)) $(awk "BEGIN{printf \"%.2f\", $after - $before}")"
}

export KILN_BENCH_IN=unused KILN_BENCH_OUT=unused
local_r=$(measure local "$TEXT/*.jsonl.gz" "$OUT/local")
s3_r=$(measure s3 "s3://$BUCKET/text/*.jsonl.gz" "s3://$BUCKET/out/")
s3l_r=$(measure s3-to-local "s3://$BUCKET/text/*.jsonl.gz" "$OUT/s3-local")

# Through the fault proxy: none, then the 1st, 21st, 41st... GET answered 503 SlowDown.
PROXY=$ROOT/target/release/examples/fault_proxy
[[ -x $PROXY ]] || (cd "$ROOT" && cargo build --locked --release --example fault_proxy -q)
via_proxy() {  # via_proxy LABEL EVERY [SOURCE] → the measure line, and the report's storage counts
  local fifo ep pid src=${3:-s3://$BUCKET/text/*.jsonl.gz}
  fifo=$(mktemp -u); mkfifo "$fifo"
  "$PROXY" "$AWS_ENDPOINT_URL" "$2" < "$fifo" > "$fifo.out" & pid=$!
  exec 9>"$fifo"
  for _ in $(seq 50); do [[ -s $fifo.out ]] && break; sleep 0.1; done
  ep=$(head -1 "$fifo.out")
  measure "$1" "$src" "$OUT/$1" "$ep"
  "$KILN_TEST_PYTHON" -c "import json,sys; s=json.load(open(sys.argv[1]))['storage']; print('  ', sys.argv[2], 'storage:', json.dumps(s))" "$OUT-report.json" "$1" >&2
  exec 9>&-; wait "$pid" || true; rm -f "$fifo" "$fifo.out"
}
p0_r=$(via_proxy proxy 0)
p5_r=$(via_proxy proxy-503 20)
# The same documents as 320 objects of ~1.5 MB (each file cut in 20 by lines).
MANY=$DATA/text-many
if [[ ! -f $MANY/done ]]; then
  echo "== cutting the corpus into 320 objects in $MANY" >&2
  rm -rf "$MANY"; mkdir -p "$MANY"
  for f in "$TEXT"/*.jsonl.gz; do
    zcat "$f" | split -l 1040 -d -a 2 --additional-suffix=.jsonl --filter='gzip -1 > $FILE.gz' - "$MANY/$(basename "$f" .jsonl.gz)-"
  done
  touch "$MANY/done"
fi
"$KILN_TEST_PYTHON" "$ROOT/benches/s3_objects.py" upload "$MANY" "$BUCKET" many
pm0_r=$(via_proxy proxy-many 0 "s3://$BUCKET/many/*.jsonl.gz")
pm5_r=$(via_proxy proxy-many-503 20 "s3://$BUCKET/many/*.jsonl.gz")
rm -rf "$OUT" "$OUT-report.json"
echo
echo "| job A (kiln, zstd-3) | wall s | kiln cpu s | max RSS MB | S3 server cpu s | wall / local |"
echo "|---|---|---|---|---|---|"
lw=$(echo "$local_r" | cut -d' ' -f2)
for r in "$local_r" "$s3l_r" "$s3_r"; do
  read -r label wall cpu rss server <<<"$r"
  case $label in
    local) name="local disk → local disk" ;;
    s3-to-local) name="S3 (moto) → local disk" ;;
    s3) name="S3 (moto) → S3 (moto)" ;;
  esac
  echo "| $name | $wall | $cpu | $rss | $server | $(awk "BEGIN{printf \"%.2f\", $wall / $lw}") |"
done
echo
echo "| job A, S3 (moto) → local disk, through the fault proxy | wall s | kiln cpu s | max RSS MB | throughput vs no faults |"
echo "|---|---|---|---|---|"
for pair in "$p0_r|$p5_r" "$pm0_r|$pm5_r"; do
  base=${pair%%|*}; pw=$(echo "$base" | cut -d' ' -f2)
  for r in "$base" "${pair#*|}"; do
    read -r label wall cpu rss server <<<"$r"
    case $label in
      proxy) name="16 objects, no faults" ;;
      proxy-503) name="16 objects, the 1st, 21st, 41st... GET answered 503 SlowDown" ;;
      proxy-many) name="320 objects, no faults" ;;
      proxy-many-503) name="320 objects, the 1st, 21st, 41st... GET answered 503 SlowDown" ;;
    esac
    echo "| $name | $wall | $cpu | $rss | $(awk "BEGIN{printf \"%.2f\", $pw / $wall}") |"
  done
done
