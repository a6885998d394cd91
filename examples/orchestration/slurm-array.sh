#!/usr/bin/env bash
# Slurm job array: 16 kiln workers, 0-based (--array=0-15): kiln takes
# SLURM_ARRAY_TASK_ID as its worker index. KILN_WORKERS pins the count, so a
# resubmitted index (sbatch --array=5 slurm-array.sh) is still worker 5 of 16.
#
#   sbatch examples/orchestration/slurm-array.sh
#SBATCH --job-name=kiln-web-text
#SBATCH --array=0-15
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@60
set -euo pipefail
export KILN_WORKERS=16
# Exit 75 means "retry me" (preempted, throttled): requeue this index.
kiln run pipelines/web-text.yaml \
    --set source.uri='s3://raw-crawl/2026-10/**/*.jsonl.gz' \
    --set sink.uri=s3://training/web-text/v1/ \
    --report "kiln-report-${SLURM_ARRAY_TASK_ID}.json" || {
    code=$?
    if [[ $code -eq 75 ]]; then scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi
    exit $code
}
