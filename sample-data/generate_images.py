"""Makes sample-data/images/: a small ImageFolder set (3 classes × 12 images) of drawn
shapes on noisy gradients, in JPEG, PNG and WebP, of varied sizes and aspect ratios.

    python sample-data/generate_images.py      # needs Pillow; deterministic (seeded)

The images are generated, so there is nothing to license; they are committed so that
`make run` and the tests need no Python.
"""

import os
import random

from PIL import Image, ImageDraw, ImageFilter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
CLASSES = ["circle", "square", "triangle"]
PER_CLASS = 12


def draw(kind, w, h, rng):
    top = tuple(rng.randrange(40, 220) for _ in range(3))
    bottom = tuple(rng.randrange(40, 220) for _ in range(3))
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        t = y / max(h - 1, 1)
        row = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom))
        for x in range(w):
            n = rng.randrange(-12, 13)
            px[x, y] = tuple(min(255, max(0, c + n)) for c in row)
    d = ImageDraw.Draw(img)
    size = rng.uniform(0.35, 0.7) * min(w, h)
    cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
    color = tuple(rng.randrange(256) for _ in range(3))
    box = [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]
    if kind == "circle":
        d.ellipse(box, fill=color)
    elif kind == "square":
        d.rectangle(box, fill=color)
    else:
        d.polygon([(cx, cy - size / 2), (cx - size / 2, cy + size / 2),
                   (cx + size / 2, cy + size / 2)], fill=color)
    return img.filter(ImageFilter.SMOOTH)


def main():
    rng = random.Random(20261126)
    for kind in CLASSES:
        os.makedirs(os.path.join(OUT, kind), exist_ok=True)
        for i in range(PER_CLASS):
            w, h = rng.randrange(96, 320), rng.randrange(96, 320)
            img = draw(kind, w, h, rng)
            ext = ["jpg"] * 8 + ["png"] * 3 + ["webp"]
            fmt = ext[i % len(ext)]
            path = os.path.join(OUT, kind, f"{kind}-{i:03d}.{fmt}")
            if fmt == "jpg":
                img.save(path, quality=85)
            elif fmt == "png":
                img.save(path, optimize=True)
            else:
                img.save(path, lossless=False, quality=80)


if __name__ == "__main__":
    main()
