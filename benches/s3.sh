#!/usr/bin/env bash
# Part of `make bench`, run inside scripts/with-stores.sh (a moto server on 127.0.0.1):
# job A (JSONL.gz → Parquet zstd) with the corpus on local disk and in the local S3
# server, same kiln binary, same settings. Prints wall time, CPU and peak RSS of each
# and the S3/local wall-time ratio (target ≤ 1.25×).
#
# moto is a Python server on the same 2 cores: its CPU time serving ~0.5 GB of GETs and
# ~0.4 GB of multipart PUTs counts against kiln's wall time here, as a real store's
# latency would; the figure is an upper bound on S3 overhead, not a model of AWS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/tmp/kiln-bench-data}
TEXT=$DATA/text/jsonl_gz
KILN=$ROOT/target/release/kiln
OUT=$DATA/out/s3-bench
REPS=${REPS:-2}
: "${KILN_TEST_S3_ENDPOINT:?run through scripts/with-stores.sh}"
export AWS_ENDPOINT_URL=$KILN_TEST_S3_ENDPOINT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
BUCKET=kiln-bench

echo "== uploading $(du -shL "$TEXT" | cut -f1) of corpus to s3://$BUCKET/text/" >&2
"$KILN_TEST_PYTHON" - "$TEXT" "$BUCKET" <<'PYEOF'
import os, sys, boto3
src, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.create_bucket(Bucket=bucket)
for name in sorted(os.listdir(src)):
    s3.upload_file(os.path.join(src, name), bucket, f"text/{name}")
PYEOF

# CPU seconds the S3 server process has used so far.
SERVER_PID=$(pgrep -f "moto_server -H 127.0.0.1 -p ${KILN_TEST_S3_ENDPOINT##*:}" | head -1)
server_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SERVER_PID/stat"
}

measure() {  # measure LABEL SOURCE SINK → "label wall_s cpu_s rss_mb server_cpu_s"
  local label=$1 src=$2 sink=$3 line="" before after
  for _ in $(seq 1 "$REPS"); do
    before=$(server_cpu)
    line=$(/usr/bin/time -f "%e %U %S %M" "$KILN" run -q "$ROOT/benches/A_convert.yaml" --overwrite \
      --set "source.uri=$src" --set "sink.uri=$sink" 2>&1 >/dev/null | tail -1)
    after=$(server_cpu)
  done
  read -r wall user sys rss <<<"$line"
  echo "$label $wall $(awk "BEGIN{print $user + $sys}") $((rss / 1024)) $(awk "BEGIN{printf \"%.2f\", $after - $before}")"
}

export KILN_BENCH_IN=unused KILN_BENCH_OUT=unused
local_r=$(measure local "$TEXT/*.jsonl.gz" "$OUT/local")
s3_r=$(measure s3 "s3://$BUCKET/text/*.jsonl.gz" "s3://$BUCKET/out/")
s3l_r=$(measure s3-to-local "s3://$BUCKET/text/*.jsonl.gz" "$OUT/s3-local")
rm -rf "$OUT"
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
