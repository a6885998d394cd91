"""One epoch of a kiln dataset through a PyTorch DataLoader, with tokens/s.

    python examples/torch_dataloader.py out/pretrain-packed            # after `make run PIPELINE=pipelines/pretrain-packed.yaml`
    python examples/torch_dataloader.py out/fineweb --split train --batch-size 16 --workers 2
    python examples/torch_dataloader.py out/pretrain-packed --stop-after 10 --state pos.json   # stop mid-epoch
    python examples/torch_dataloader.py out/pretrain-packed --resume pos.json                   # and go on
    python examples/torch_dataloader.py out/pretrain-packed --workers 2 --check-resume 10      # both, checked

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
- Mid-epoch resume: a DataLoader batch comes from one worker, so the position is the rows
  each (rank, worker) stream has handed out; saved with a checkpoint (`--state`), it lets
  a restarted job skip exactly those rows (whole row groups by their footer counts, then
  rows) and go on with the rest of the same epoch (`--resume`). `--check-resume N` stops
  after N batches, resumes, and checks every worker's stream against an uninterrupted
  epoch.
"""

import argparse
import fnmatch
import hashlib
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
    """Token sequences of a kiln split, one int64 array per row, each with the DataLoader
    worker that read it. `skip`: rows each worker already handed out (a saved position)."""

    def __init__(self, files, column, skip=None):
        self.files = files
        self.column = column
        self.skip = skip or {}

    def my_files(self):
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        files = self.files[rank::world]
        info = get_worker_info()
        if info is not None:
            files = files[info.id::info.num_workers]
        return files

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        skip = int(self.skip.get(str(worker), 0))
        for path in self.my_files():
            pf = pq.ParquetFile(path)
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if skip >= n:  # handed out before the restart: not even read
                    skip -= n
                    continue
                col = pf.read_row_group(g, columns=[self.column]).column(0)
                for chunk in col.chunks:
                    offsets = chunk.offsets.to_numpy()
                    values = chunk.values.to_numpy().astype(np.int64)
                    for i in range(len(chunk)):
                        if skip:
                            skip -= 1
                            continue
                        seq = values[offsets[i]:offsets[i + 1]]
                        yield worker, (torch.from_numpy(seq) if torch else seq)


def collate(items, pad_id=0):
    """Equal lengths (packed sequences) stack; ragged ones are right-padded. Returns the
    batch, each row's length (its real tokens) and the worker that read it."""
    worker = items[0][0]
    seqs = [s for _, s in items]
    lengths = [len(s) for s in seqs]
    longest = max(lengths)
    if torch is not None:
        if all(n == longest for n in lengths):
            return torch.stack(seqs), torch.tensor(lengths), worker
        out = torch.full((len(seqs), longest), pad_id, dtype=torch.int64)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = s
        return out, torch.tensor(lengths), worker
    out = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array(lengths), worker


def batches(dataset, batch_size, workers):
    if torch is not None:
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                              collate_fn=collate)
        return
    batch = []
    for item in dataset:
        batch.append(item)
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
    ap.add_argument("--stop-after", type=int, help="stop after this many batches")
    ap.add_argument("--state", help="where --stop-after saves the position (JSON)")
    ap.add_argument("--resume", help="a saved position: go on from there")
    ap.add_argument("--check-resume", type=int, metavar="N",
                    help="stop after N batches, resume, and check against an uninterrupted epoch")
    args = ap.parse_args()

    manifest = load_manifest(args.sink)
    tokens = manifest.get("tokens")
    if not tokens:
        sys.exit(f"{args.sink} has no token column (a list of integers); run a pipeline "
                 "with a `tokenize` step")
    files = split_files(args.sink, manifest, args.split)
    want = next(s for s in manifest["splits"] if s["name"] == args.split)
    position = {"rank": int(os.environ.get("RANK", 0)),
                "world": int(os.environ.get("WORLD_SIZE", 1)),
                "workers": args.workers, "rows": {}}

    def epoch(pos, stop_after=None, hashers=None):
        """Batches from `pos` on (updated as they come); stops after `stop_after`."""
        dataset = KilnTokens(files, tokens["column"], skip=dict(pos["rows"]))
        n = {"batches": 0, "rows": 0, "tokens": 0, "shape": None}
        for batch, lengths, worker in batches(dataset, args.batch_size, args.workers):
            # A training step would run here on `batch` ([batch, seq_len] int64).
            n["batches"] += 1
            n["rows"] += batch.shape[0]
            n["tokens"] += int(lengths.sum())
            n["shape"] = tuple(batch.shape)
            key = str(worker)
            pos["rows"][key] = pos["rows"].get(key, 0) + batch.shape[0]
            if hashers is not None:
                h = hashers.setdefault(key, hashlib.sha256())
                for row, length in zip(batch, lengths):
                    h.update(np.asarray(row[: int(length)], dtype=np.int64).tobytes())
            if stop_after is not None and n["batches"] == stop_after:
                break
        return n

    if args.check_resume:
        whole_h, parts_h = {}, {}
        whole = epoch(dict(position, rows={}), hashers=whole_h)
        pos = dict(position, rows={})
        first = epoch(pos, stop_after=args.check_resume, hashers=parts_h)
        saved = json.loads(json.dumps(pos))  # what a checkpoint holds
        rest = epoch(json.loads(json.dumps(saved)), hashers=parts_h)
        same = {k: h.hexdigest() for k, h in whole_h.items()} == \
            {k: h.hexdigest() for k, h in parts_h.items()}
        result = {"rows": whole["rows"], "tokens": whole["tokens"],
                  "before_restart": first["rows"], "after_restart": rest["rows"],
                  "position": saved["rows"],
                  "resumed_equals_uninterrupted": same and
                  first["rows"] + rest["rows"] == whole["rows"],
                  "workers": args.workers, "torch": torch.__version__ if torch else None}
        print(json.dumps(result) if args.json else result)
        if not result["resumed_equals_uninterrupted"]:
            sys.exit("the resumed epoch is not the uninterrupted one")
        return

    if args.resume:
        with open(args.resume, encoding="utf-8") as f:
            position = json.load(f)
        if (position["rank"], position["world"], position["workers"]) != \
                (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), args.workers):
            sys.exit(f"{args.resume} was saved by rank {position['rank']} of {position['world']} "
                     f"with {position['workers']} workers: resume the same way")
    start = time.perf_counter()
    n = epoch(position, stop_after=args.stop_after)
    elapsed = time.perf_counter() - start
    if args.state:
        with open(args.state, "w", encoding="utf-8") as f:
            json.dump(position, f)
    n_rows, n_tokens = n["rows"], n["tokens"]
    result = {
        "split": args.split,
        "files": len(files),
        "batches": n["batches"],
        "rows": n_rows,
        "tokens": n_tokens,
        "manifest_rows": want["rows"],
        "manifest_tokens": want.get("tokens"),
        "seconds": round(elapsed, 3),
        "tokens_per_second": round(n_tokens / elapsed) if elapsed > 0 else None,
        "last_batch_shape": n["shape"],
        "torch": torch.__version__ if torch else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        shards = f"{len(files)} shard" + ("" if len(files) == 1 else "s")
        print(f"{args.split}: {n_rows} rows in {n['batches']} batches from {shards}, "
              f"{n_tokens} tokens in {elapsed:.2f}s = {result['tokens_per_second']} tokens/s "
              f"({'torch ' + torch.__version__ if torch else 'no torch: plain loop'})")
    whole_epoch = args.stop_after is None and args.resume is None
    if whole_epoch and (n_rows, n_tokens) != (want["rows"], want.get("tokens")):
        sys.exit(f"read {n_rows} rows and {n_tokens} tokens but the manifest says "
                 f"{want['rows']} and {want.get('tokens')}")

if __name__ == "__main__":
    main()
