"""An epoch of a kiln WebDataset sink (sink.format: webdataset) through a PyTorch
DataLoader: images decoded to float tensors and class ids, batched by `webdataset`,
shards split over DataLoader workers.

    python examples/webdataset_dataloader.py out/images-webdataset --split train --workers 2

Needs webdataset and torch. `make test` runs it in .venv-train.
"""

import argparse
import fnmatch
import json
import os
import time
import warnings

warnings.simplefilter("ignore")

import torch  # noqa: E402
import webdataset as wds  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sink")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    with open(os.path.join(a.sink, "_kiln", "manifest.json")) as f:
        manifest = json.load(f)
    split = next(s for s in manifest["splits"] if s["name"] == a.split)
    urls = [os.path.join(a.sink, s["path"]) for s in manifest["shards"]
            if fnmatch.fnmatch(s["path"], split["data_files"])]
    ds = (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                       workersplitter=wds.split_by_worker)
        .decode("torchrgb")                      # image.jpg → float tensor [3, H, W]
        .to_tuple("image.jpg", "label_id.cls")
        .batched(a.batch_size, partial=True)
    )
    start = time.perf_counter()
    samples, labels, shape = 0, [], None
    for images, ids in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=a.workers):
        # A training step would run here on images ([batch, 3, 224, 224]) and ids.
        samples += images.shape[0]
        labels += [int(i) for i in ids]
        shape = list(images.shape)
    seconds = time.perf_counter() - start
    result = {
        "split": a.split,
        "shards": len(urls),
        "samples": samples,
        "manifest_rows": split["rows"],
        "label_counts": {str(k): labels.count(k) for k in sorted(set(labels))},
        "last_batch_shape": shape,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(result) if a.json else result)
    if samples != split["rows"]:
        raise SystemExit(f"read {samples} samples but the manifest says {split['rows']}")


if __name__ == "__main__":
    main()
