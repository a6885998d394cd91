#!/usr/bin/env python3
"""Job G (near-dedup) with datatrove's own MinHash pipeline (dedup/minhash.py), the four
stages of its documented example under LocalPipelineExecutor, 2 tasks / 2 workers where a
stage can split:
  stage 1: JsonlReader -> MinhashDedupSignature   (word 5-grams, 14 buckets x 8 hashes)
  stage 2: MinhashDedupBuckets                     (14 bucket tasks, 2 workers)
  stage 3: MinhashDedupCluster                     (1 task: union-find over the matches)
  stage 4: JsonlReader -> MinhashDedupFilter -> ParquetWriter
           (zstd, max_file_size=64 MiB, metadata expanded to top-level columns)
kiln's job G (benches/G_minhash.yaml) runs `dedup.minhash` with the same parameters.

TOKENIZER picks the word tokenizer: `spacy` (datatrove's default for English, what its
users get; needs the spacy package) or `split` (str.split on the simplified text, what
kiln does). Work files (signatures, buckets, clusters, logs) go to OUT/_work.
usage: G_minhash_datatrove.py IN_DIR OUT_DIR [spacy|split]"""
import os
import shutil
import sys

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer


class Split(WordTokenizer):
    """Whitespace words (the text is already simplified: lowercase, no punctuation)."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError


def adapter(self, doc) -> dict:
    d = {"id": doc.id, "text": doc.text}
    d.update(doc.metadata)
    return d


def main():
    inp, out = sys.argv[1], sys.argv[2]
    tokenizer = sys.argv[3] if len(sys.argv) > 3 else "spacy"
    language = "eng" if tokenizer == "spacy" else Split()
    work = os.path.join(out, "_work")
    shutil.rmtree(work, ignore_errors=True)
    cfg = MinhashConfig(
        hash_config=HashConfig(precision=64), n_grams=5, num_buckets=14, hashes_per_bucket=8
    )

    def reader():
        return JsonlReader(inp, glob_pattern="*.jsonl.gz", add_file_path=False)

    LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(f"{work}/sigs", config=cfg, language=language)],
        tasks=2, workers=2, logging_dir=f"{work}/logs1",
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
        tasks=cfg.num_buckets, workers=2, logging_dir=f"{work}/logs2",
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove_ids", config=cfg)],
        tasks=1, workers=1, logging_dir=f"{work}/logs3",
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            reader(),
            MinhashDedupFilter(f"{work}/remove_ids"),
            ParquetWriter(out, compression="zstd", max_file_size=64 * 2**20, adapter=adapter),
        ],
        tasks=2, workers=2, logging_dir=f"{work}/logs4",
    ).run()


if __name__ == "__main__":
    main()
