#!/usr/bin/env python3
"""Generates kiln's small sample inputs, deterministically (seed 42).

    python3 sample-data/generate.py            # JSONL, JSONL.gz, CSV, text
    python3 sample-data/generate.py --parquet  # also the Parquet sample (needs pyarrow)

The outputs are committed; this script documents exactly how they were made. Every
document is synthetic (made-up words from a fixed vocabulary), so there is nothing to
license beyond this repository's own licence.
"""
import argparse
import csv
import gzip
import io
import json
import os
import random
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "data model train kiln shard parquet arrow stream batch token corpus filter clean pipeline "
    "river mountain lantern harbor meadow copper violet ember quartz orchard falcon willow canyon "
    "café naïve Zürich résumé façade"
).split()


def sentence(rng):
    n = rng.randint(6, 18)
    words = [rng.choice(WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", ".", "?", "!"])


def document(rng, i):
    kind = rng.random()
    if kind < 0.08:  # boilerplate junk: short
        text = rng.choice(["Home | About | Contact", "Click here to subscribe!", "404 Not Found", "© 2026 All rights reserved"])
    else:
        paras = []
        for _ in range(rng.randint(1, 4)):
            paras.append(" ".join(sentence(rng) for _ in range(rng.randint(2, 6))))
        text = "\n\n".join(paras)
    lang = "en" if rng.random() < 0.9 else rng.choice(["de", "fr", "es"])
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "url": f"https://example.{rng.choice(['com', 'org', 'net'])}/{rng.choice(WORDS[:40])}/{i}",
        "text": text,
        "lang": lang,
        "timestamp": f"2026-10-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "score": round(rng.random(), 4),
        "n_links": rng.randint(0, 40),
    }


def write_text(rng):
    d = os.path.join(HERE, "text")
    os.makedirs(d, exist_ok=True)
    docs = [document(rng, i) for i in range(600)]
    lines = [json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs]
    with open(os.path.join(d, "crawl-00000.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(lines[:250])
    with open(os.path.join(d, "crawl-00001.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(lines[250:400])
    # gzip with mtime 0 so the bytes do not depend on when this ran
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write("".join(lines[400:]).encode("utf-8"))
    with open(os.path.join(d, "crawl-00002.jsonl.gz"), "wb") as f:
        f.write(buf.getvalue())


def write_csv(rng):
    d = os.path.join(HERE, "tabular")
    os.makedirs(d, exist_ok=True)
    countries = ["DE", "FR", "US", "JP", "BR", "IN", None]
    row_id = 0
    for part in range(2):
        with open(os.path.join(d, f"events-{part}.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["event_id", "user_id", "age", "country", "device", "amount", "comment", "event_time", "is_active"])
            for _ in range(500):
                row_id += 1
                age = "" if rng.random() < 0.05 else rng.randint(16, 90)
                comment = "" if rng.random() < 0.3 else rng.choice(
                    ['great, fast', 'said "hello"', "two\nlines", "plain", "naïve café"])
                w.writerow([
                    row_id, rng.randint(1, 200), age, rng.choice(countries) or "",
                    rng.choice(["mobile", "desktop", "tablet"]), round(rng.uniform(0, 500), 2), comment,
                    f"2026-0{rng.randint(1, 9)}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:00:00",
                    rng.choice(["true", "false"]),
                ])


def write_notes(rng):
    d = os.path.join(HERE, "notes")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "field-notes.txt"), "w", encoding="utf-8") as f:
        for i in range(120):
            f.write("" if i % 10 == 9 else sentence(rng))
            f.write("\n")


def write_parquet(rng):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = os.path.join(HERE, "parquet")
    os.makedirs(d, exist_ok=True)
    n = 2000
    table = pa.table({
        "product_id": pa.array(range(1, n + 1), pa.int64()),
        "name": [f"{rng.choice(WORDS[40:]).capitalize()} {rng.choice(WORDS[40:])}" for _ in range(n)],
        "category": [rng.choice(["tools", "garden", "books", "toys", None]) for _ in range(n)],
        "price": [round(rng.uniform(1, 300), 2) for _ in range(n)],
        "in_stock": [rng.random() < 0.8 for _ in range(n)],
        "description": [" ".join(sentence(rng) for _ in range(3)) for _ in range(n)],
    })
    pq.write_table(table, os.path.join(d, "products.parquet"), row_group_size=500, compression="zstd")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parquet", action="store_true", help="also write the Parquet sample (needs pyarrow)")
    args = ap.parse_args()
    rng = random.Random(42)
    write_text(rng)
    write_csv(rng)
    write_notes(rng)
    if args.parquet:
        write_parquet(random.Random(43))


if __name__ == "__main__":
    main()
