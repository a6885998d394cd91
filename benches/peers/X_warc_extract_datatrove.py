"""Job X's datatrove side: the FineWeb recipe's first steps, as datatrove runs them —
WarcReader over every .warc.gz of IN, Trafilatura (favour_precision, as FineWeb) on each
HTML response, JsonlWriter to OUT — with TASKS tasks on WORKERS processes.

    python X_warc_extract_datatrove.py IN OUT TASKS WORKERS
"""

import sys

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter


def main() -> None:
    src, out, tasks, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    LocalPipelineExecutor(
        pipeline=[
            WarcReader(src, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True),
            JsonlWriter(out),
        ],
        tasks=tasks,
        workers=workers,
        logging_dir=f"{out}/logs",
    ).run()


# datatrove's pool starts its workers through a fork server, which imports this file
# again in each: without the guard every worker would start a pool of its own.
if __name__ == "__main__":
    main()
