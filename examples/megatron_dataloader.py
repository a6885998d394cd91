"""One epoch of a kiln Megatron dataset (sink.format: megatron) through a PyTorch
DataLoader: the documents of every shard, read with megatron-core's own IndexedDataset,
concatenated and cut into fixed-length training sequences the way Megatron's GPTDataset
packs them (without its shuffling), with tokens/s.

    python examples/megatron_dataloader.py out/pretrain-megatron --seq-len 512

Needs megatron-core (and the torch it needs). `make test` runs it in .venv-train.
"""

import argparse
import json
import time
import warnings

warnings.simplefilter("ignore")  # megatron-core warns that Apex / Transformer Engine are absent

import numpy as np  # noqa: E402
import torch  # noqa: E402
from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402


class PackedDocuments(Dataset):
    """Every document of the shards back to back, cut into `seq_len + 1` token windows
    (inputs and next-token labels overlap by one, as GPTDataset's samples do); the tail
    shorter than a window is left out and counted."""

    def __init__(self, prefixes, seq_len):
        self.datasets = [IndexedDataset(p) for p in prefixes]
        self.seq_len = seq_len
        # (dataset, document) of each document, and where each starts in the stream.
        self.docs = [(d, i) for d, ds in enumerate(self.datasets) for i in range(len(ds))]
        lengths = np.array(
            [self.datasets[d].sequence_lengths[i] for d, i in self.docs], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])
        self.tokens = int(self.starts[-1])

    def __len__(self):
        return max(0, (self.tokens - 1) // self.seq_len)

    def __getitem__(self, k):
        lo, hi = k * self.seq_len, (k + 1) * self.seq_len + 1
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        parts, at = [], lo
        while at < hi:
            d, i = self.docs[first]
            doc_lo = int(self.starts[first])
            take = self.datasets[d].get(i, offset=at - doc_lo,
                                        length=min(hi, int(self.starts[first + 1])) - at)
            parts.append(take)
            at += len(take)
            first += 1
        seq = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        return seq[:-1], seq[1:]


def epoch(sink, seq_len=512, batch_size=8, workers=0):
    """One epoch; what it saw (the test of the format imports this)."""
    with open(f"{sink}/_kiln/manifest.json") as f:
        manifest = json.load(f)
    prefixes = [f"{sink}/{s['path'][:-len('.bin')]}" for s in manifest["shards"]]
    ds = PackedDocuments(prefixes, seq_len)
    start = time.perf_counter()
    batches = tokens = 0
    shape = None
    for inputs, labels in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        # A training step would run here: model(inputs), loss against labels.
        assert torch.equal(inputs[:, 1:], labels[:, :-1])
        batches += 1
        tokens += inputs.numel()
        shape = list(inputs.shape)
    seconds = time.perf_counter() - start
    return {
        "documents": len(ds.docs),
        "dataset_tokens": ds.tokens,
        "manifest_tokens": manifest["tokens"]["tokens"],
        "sequences": len(ds),
        "batches": batches,
        "tokens": tokens,
        "tail_tokens": ds.tokens - len(ds) * seq_len,
        "last_batch_shape": shape,
        "seconds": round(seconds, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sink")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = epoch(a.sink, a.seq_len, a.batch_size, a.workers)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{result['documents']} documents, {result['dataset_tokens']} tokens → "
              f"{result['sequences']} sequences of {a.seq_len} in {result['batches']} batches, "
              f"{result['tokens'] / max(result['seconds'], 1e-9):.0f} tokens/s")


if __name__ == "__main__":
    main()
