"""Run N kiln workers as Ray tasks.

    python examples/orchestration/kiln_on_ray.py PIPELINE --workers 4 [--kiln kiln]
        [--cpus-per-worker 1] [-- extra `kiln run` arguments, e.g. --set run.threads=4]

Each Ray task runs `kiln run PIPELINE --worker I/N` as a subprocess on whatever node Ray
places it. As under any scheduler, the sink (a local folder on one machine, a bucket on
a cluster) is the only shared state: the stored plan deals the tasks, dedup and fitted
steps run as stages through the sink (docs/workers.md), and the last worker to finish
writes the manifest. A worker whose kiln exits 75 ("run me again": it waited too long
at a stage, or was stopped by a signal) raises, so Ray retries the task and kiln resumes
from the sink; any other failure is reported with the end of kiln's stderr. Exits 0 when
every worker exited 0.

Connects to the cluster at RAY_ADDRESS when it is set, else starts a local Ray on
127.0.0.1 (tests/orchestration.rs runs it so, with two workers, against a single run).
Keep --cpus-per-worker such that all N workers can run at once, or let kiln's
take-over finish the stages of workers Ray has not started yet (after
`--take-over-after`, 30 s by default).
"""

import argparse
import os
import subprocess
import sys

import ray


class RunAgain(Exception):
    """kiln exited 75: the same command, run again, goes on from the sink."""


def kiln_worker(kiln, pipeline, index, count, extra):
    cmd = [kiln, "run", "-q", pipeline, "--worker", f"{index}/{count}", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode == 75:
        raise RunAgain(f"worker {index}/{count} exited 75: {done.stderr.strip()[-500:]}")
    return index, done.returncode, done.stderr[-2000:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--kiln", default="kiln", help="the kiln binary on every node")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--retries", type=int, default=3, help="runs again after exit 75")
    # Everything after `--` goes to `kiln run` as it is.
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
        )
    task = ray.remote(
        num_cpus=args.cpus_per_worker,
        max_retries=args.retries,
        retry_exceptions=[RunAgain],
    )(kiln_worker)
    pending = [
        task.remote(args.kiln, args.pipeline, i, args.workers, extra)
        for i in range(args.workers)
    ]
    failed = 0
    for ref in pending:
        try:
            index, code, stderr = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            failed += 1
            print(f"worker failed after {args.retries} retries: {e}", file=sys.stderr)
            continue
        if code != 0:
            failed += 1
            print(f"worker {index}/{args.workers} exited {code}:\n{stderr}", file=sys.stderr)
    ray.shutdown()
    print(f"{args.workers - failed} of {args.workers} kiln workers succeeded")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
