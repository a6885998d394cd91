"""Generates the image benchmark corpus: N photo-sized JPEGs in class folders.

    python benches/make_images.py OUT_DIR [--n 3000] [--classes 10]

Each image is 640x480, 800x600 or 500x375 (landscape or portrait): a smooth random
colour field, a few filled shapes and sensor-like noise, saved as JPEG quality 90, so
decoding costs what a photo costs. Deterministic (seeded). Writes OUT_DIR/images/<class>/
and OUT_DIR/manifest.json ({"bytes", "docs"}) for ../shared/bench/bench_run.py.
Needs numpy and Pillow.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw

SIZES = [(640, 480), (800, 600), (500, 375)]


def image(rng, w, h):
    # A smooth field: a coarse random grid upsampled bicubically.
    coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=color)
    a = np.asarray(img, dtype=np.int16)
    a = a + rng.normal(0, 6, size=a.shape).astype(np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(20261126)
    total = 0
    for i in range(a.n):
        w, h = SIZES[i % len(SIZES)]
        if rng.random() < 0.3:
            w, h = h, w
        folder = os.path.join(a.out, "images", f"class{i % a.classes:02d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"img{i:06d}.jpg")
        image(rng, w, h).save(path, quality=90)
        total += os.path.getsize(path)
    json.dump({"bytes": total, "docs": a.n}, open(os.path.join(a.out, "manifest.json"), "w"))
    print(f"{a.n} images, {total / 1e6:.1f} MB in {a.out}/images")


if __name__ == "__main__":
    main()
