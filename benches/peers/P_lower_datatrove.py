#!/usr/bin/env python3
"""Job P (a Python step): lower-case the text of the JSONL.gz corpus and write Parquet, with
datatrove: JsonlReader -> a PipelineStep that lower-cases each document's text ->
ParquetWriter (zstd, 64 MiB files, metadata as columns), LocalPipelineExecutor tasks=2
workers=2 (kiln's benchmark runs the same transform as an `exec` step, 2 threads and 2
child processes). Logs go to OUT/_work.
usage: P_lower_datatrove.py IN_DIR OUT_DIR"""
import os
import shutil
import sys

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import ParquetWriter


class Lower(PipelineStep):
    name = "lower"
    type = "custom"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            doc.text = doc.text.lower()
            yield doc


def adapter(self, doc) -> dict:
    d = {"id": doc.id, "text": doc.text}
    d.update(doc.metadata)
    return d


def main():
    inp, out = sys.argv[1], sys.argv[2]
    work = os.path.join(out, "_work")
    shutil.rmtree(work, ignore_errors=True)
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(inp, glob_pattern="*.jsonl.gz", add_file_path=False),
            Lower(),
            ParquetWriter(out, compression="zstd", max_file_size=64 * 2**20, adapter=adapter),
        ],
        tasks=2,
        workers=2,
        logging_dir=f"{work}/logs",
    ).run()


if __name__ == "__main__":
    main()
