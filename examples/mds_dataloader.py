"""An epoch of a kiln MDS dataset (sink.format: mds) through MosaicML Streaming's
StreamingDataLoader, interrupted part way and resumed from the loader's saved state, as
a training job restarted from a checkpoint would; checks that the two halves together
are the uninterrupted epoch, sample for sample.

    python examples/mds_dataloader.py out/pretrain-mds --split split=train
    python examples/mds_dataloader.py s3://bucket/pretrain-mds --cache /tmp/mds   # S3_ENDPOINT_URL for a non-AWS server

Needs mosaicml-streaming (and torch). `make test` runs it in .venv-train.
"""

import argparse
import json
import tempfile
import warnings

warnings.simplefilter("ignore")

import torch  # noqa: E402
from streaming import StreamingDataLoader, StreamingDataset  # noqa: E402
from streaming.base.util import clean_stale_shared_memory  # noqa: E402


def collate(samples):
    """Token ids of a batch, right-padded, with their lengths and ids."""
    seqs = [torch.from_numpy(s["tokens"].astype("int64")) for s in samples]
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros((len(seqs), int(lengths.max())), dtype=torch.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return {"input_ids": out, "lengths": lengths, "id": [s["id"] for s in samples]}


def loader(a, local):
    remote = a.sink if "://" in a.sink else None
    ds = StreamingDataset(local=local if remote else a.sink, remote=remote, split=a.split,
                          shuffle=True, shuffle_seed=a.seed, batch_size=a.batch_size)
    return StreamingDataLoader(ds, batch_size=a.batch_size, collate_fn=collate, num_workers=0)


def restart(sink, split="split=train", batch_size=8, seed=17, stop_after=5, cache=None):
    """An epoch, and the same epoch stopped after `stop_after` batches and resumed from
    the loader's state; what each saw (the test of the format imports this)."""
    a = argparse.Namespace(sink=sink, split=split, batch_size=batch_size, seed=seed,
                           stop_after=stop_after)
    cache = cache or tempfile.mkdtemp()

    clean_stale_shared_memory()
    whole = [i for b in loader(a, cache) for i in b["id"]]

    clean_stale_shared_memory()
    first = loader(a, cache)
    seen, tokens = [], 0
    state = None
    for n, b in enumerate(first):
        seen += b["id"]
        tokens += int(b["lengths"].sum())
        if n + 1 == a.stop_after:
            state = first.state_dict()  # what a checkpoint stores
            break
    del first
    clean_stale_shared_memory()
    resumed = loader(a, cache)
    resumed.load_state_dict(state)
    rest = []
    for b in resumed:
        rest += b["id"]
        tokens += int(b["lengths"].sum())
    return {
        "samples": len(whole),
        "before_restart": len(seen),
        "after_restart": len(rest),
        "resumed_equals_uninterrupted": seen + rest == whole,
        "tokens": tokens,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sink", help="a kiln MDS sink folder or s3:// prefix")
    ap.add_argument("--split", default="split=train")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--stop-after", type=int, default=5, help="batches before the restart")
    ap.add_argument("--cache", help="local cache for a remote sink")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = restart(a.sink, a.split, a.batch_size, a.seed, a.stop_after, a.cache)
    print(json.dumps(result) if a.json else result)
    if not result["resumed_equals_uninterrupted"]:
        raise SystemExit("the resumed epoch is not the uninterrupted one")


if __name__ == "__main__":
    main()
