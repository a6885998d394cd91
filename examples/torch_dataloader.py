"""One epoch of a kiln dataset through a PyTorch DataLoader, with tokens/s.

    python examples/torch_dataloader.py out/pretrain-packed            # after `make run PIPELINE=pipelines/pretrain-packed.yaml`
    python examples/torch_dataloader.py out/fineweb --split train --batch-size 16 --workers 2

Needs pyarrow and numpy; PyTorch is optional (`pip install torch`): without it the same
iterable dataset runs in a plain loop, so the example still shows what a loader sees.
The interop suite in `make test` runs it that way.

What it shows:
- The manifest (`_kiln/manifest.json`) names the splits, their shard globs and the token
  column; nothing is hard-coded.
- Shards are dealt round-robin to distributed ranks (RANK / WORLD_SIZE, as torchrun sets
  them) and then to DataLoader workers, so every shard is read exactly once per epoch.
- Each shard is read one row group at a time (kiln keeps row groups small enough for
  this, `sink.row_group_rows` / `row_group_bytes`), so memory stays flat.
- Token lists are `list<uint32>` in Parquet: one flat uint32 buffer plus offsets, turned
  into int64 tensors without a Python loop; packed sequences of equal length stack into
  a [batch, seq_len] tensor, ragged ones are padded.
"""

import argparse
import fnmatch
import json
import os
import sys
import time

import numpy as np
import pyarrow.parquet as pq

try:
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
except ImportError:  # the example still runs, without torch
    torch = None
    IterableDataset = object

    def get_worker_info():
        return None


def load_manifest(root):
    with open(os.path.join(root, "_kiln", "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def split_files(root, manifest, split):
    """The shards of one split, by the split's data_files glob, in manifest order."""
    by_name = {s["name"]: s for s in manifest["splits"]}
    if split not in by_name:
        sys.exit(f"{root} has no split {split!r}; it has {sorted(by_name)}")
    pattern = by_name[split]["data_files"]
    return [os.path.join(root, s["path"]) for s in manifest["shards"]
            if fnmatch.fnmatch(s["path"], pattern)]


class KilnTokens(IterableDataset):
    """Token sequences of a kiln split, one int64 array per row."""

    def __init__(self, files, column):
        self.files = files
        self.column = column

    def my_files(self):
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        files = self.files[rank::world]
        info = get_worker_info()
        if info is not None:
            files = files[info.id::info.num_workers]
        return files

    def __iter__(self):
        for path in self.my_files():
            pf = pq.ParquetFile(path)
            for g in range(pf.num_row_groups):
                col = pf.read_row_group(g, columns=[self.column]).column(0)
                for chunk in col.chunks:
                    offsets = chunk.offsets.to_numpy()
                    values = chunk.values.to_numpy().astype(np.int64)
                    for i in range(len(chunk)):
                        seq = values[offsets[i]:offsets[i + 1]]
                        yield torch.from_numpy(seq) if torch else seq


def collate(seqs, pad_id=0):
    """Equal lengths (packed sequences) stack; ragged ones are right-padded. Returns the
    batch and each row's length (its real tokens)."""
    lengths = [len(s) for s in seqs]
    longest = max(lengths)
    if torch is not None:
        if all(n == longest for n in lengths):
            return torch.stack(seqs), torch.tensor(lengths)
        out = torch.full((len(seqs), longest), pad_id, dtype=torch.int64)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = s
        return out, torch.tensor(lengths)
    out = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array(lengths)


def batches(dataset, batch_size, workers):
    if torch is not None:
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                              collate_fn=collate)
        return
    batch = []
    for seq in dataset:
        batch.append(seq)
        if len(batch) == batch_size:
            yield collate(batch)
            batch = []
    if batch:
        yield collate(batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sink", help="a kiln dataset folder (its _kiln/manifest.json is read)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    manifest = load_manifest(args.sink)
    tokens = manifest.get("tokens")
    if not tokens:
        sys.exit(f"{args.sink} has no token column (a list of integers); run a pipeline "
                 "with a `tokenize` step")
    files = split_files(args.sink, manifest, args.split)
    dataset = KilnTokens(files, tokens["column"])

    start = time.perf_counter()
    n_batches = n_rows = n_tokens = 0
    shape = None
    for batch, lengths in batches(dataset, args.batch_size, args.workers):
        # A training step would run here on `batch` ([batch, seq_len] int64).
        n_batches += 1
        n_rows += batch.shape[0]
        n_tokens += int(lengths.sum())
        shape = tuple(batch.shape)
    elapsed = time.perf_counter() - start

    want = next(s for s in manifest["splits"] if s["name"] == args.split)
    result = {
        "split": args.split,
        "files": len(files),
        "batches": n_batches,
        "rows": n_rows,
        "tokens": n_tokens,
        "manifest_rows": want["rows"],
        "manifest_tokens": want.get("tokens"),
        "seconds": round(elapsed, 3),
        "tokens_per_second": round(n_tokens / elapsed) if elapsed > 0 else None,
        "last_batch_shape": shape,
        "torch": torch.__version__ if torch else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        shards = f"{len(files)} shard" + ("" if len(files) == 1 else "s")
        print(f"{args.split}: {n_rows} rows in {n_batches} batches from {shards}, "
              f"{n_tokens} tokens in {elapsed:.2f}s = {result['tokens_per_second']} tokens/s "
              f"({'torch ' + torch.__version__ if torch else 'no torch: plain loop'})")
    if (n_rows, n_tokens) != (want["rows"], want.get("tokens")):
        sys.exit(f"read {n_rows} rows and {n_tokens} tokens but the manifest says "
                 f"{want['rows']} and {want.get('tokens')}")


if __name__ == "__main__":
    main()
