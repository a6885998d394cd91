"""The image job with Pillow, as a Python pipeline would do it on the same cores:
decode → resize (shorter side 224, bilinear, antialiased) → centre crop 224 → JPEG q90,
with labels from the class folders, written as Parquet in the layout kiln writes
(path, label, label_id, image {bytes, path}). A multiprocessing pool of one process per
core does the images; the parent writes the Parquet file.

    python E_images_pillow.py IN_DIR OUT_DIR
"""
import io
import os
import sys
from multiprocessing import Pool

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SIDE, CROP, QUALITY = 224, 224, 90


def process(path):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            size = (SIDE, int(h * SIDE / w))
        else:
            size = (int(w * SIDE / h), SIDE)
        im = im.resize(size, Image.BILINEAR)
        w, h = im.size
        left, top = round((w - CROP) / 2), round((h - CROP) / 2)
        im = im.crop((left, top, left + CROP, top + CROP))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=QUALITY)
    return path, buf.getvalue()


def main():
    src, out = sys.argv[1], sys.argv[2]
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".jpg"))
    classes = sorted({os.path.basename(os.path.dirname(p)) for p in paths})
    ids = {c: i for i, c in enumerate(classes)}
    os.makedirs(out, exist_ok=True)
    schema = pa.schema([
        ("path", pa.string()), ("label", pa.string()), ("label_id", pa.int32()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ])
    writer = pq.ParquetWriter(os.path.join(out, "part-0.parquet"), schema, compression="zstd")
    batch = []

    def flush():
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch.clear()

    with Pool(os.cpu_count()) as pool:
        for path, data in pool.imap(process, paths, chunksize=16):
            label = os.path.basename(os.path.dirname(path))
            batch.append({"path": path, "label": label, "label_id": ids[label],
                          "image": {"bytes": data, "path": path}})
            if len(batch) == 256:
                flush()
    flush()
    writer.close()


if __name__ == "__main__":
    main()
