"""Python trafilatura (the extractor of datatrove's FineWeb recipe) against kiln's
`html.extract` on the same pages, for tests/html.rs and docs/text.md.

    python tests/html/compare.py PAGES.warc.gz KILN_SHARDS_DIR [REPEAT] [--links]

Reads every HTML response of the WARC with warcio, extracts it with trafilatura as
datatrove calls it (favor_precision, no comments, no deduplication), and compares the
text with kiln's (the `url` and `text` columns of the Parquet shards): per page the F1
of the two texts' words (the bag of whitespace-separated tokens, as the ScrapingHub
article-extraction benchmark scores extractors), then the median and the 10th
percentile. Prints one JSON object; `python_s` is trafilatura's time for REPEAT passes
over the pages on one core (default 1). With `--links`, trafilatura keeps links
(`include_links`, the page's URL given), as kiln's `html.extract` does with `links: true`.
"""

import glob
import json
import statistics
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import trafilatura
from warcio.archiveiterator import ArchiveIterator

links = "--links" in sys.argv
args = [a for a in sys.argv[1:] if a != "--links"]
warc, shards = args[0], args[1]
repeat = int(args[2]) if len(args) > 2 else 1

pages = []
with open(warc, "rb") as f:
    for rec in ArchiveIterator(f):
        if rec.rec_type == "response":
            pages.append((rec.rec_headers.get_header("WARC-Target-URI"),
                          rec.content_stream().read().decode("utf-8", "replace")))

t = time.perf_counter()
for _ in range(repeat):
    python = {url: trafilatura.extract(html, favor_precision=True, include_comments=False,
                                       deduplicate=False, include_links=links,
                                       url=url if links else None) or ""
              for url, html in pages}
python_s = time.perf_counter() - t

kiln = {}
for path in sorted(glob.glob(f"{shards}/**/*.parquet", recursive=True)):
    t = pq.read_table(path, columns=["url", "text"]).to_pydict()
    kiln.update(zip(t["url"], t["text"]))


def f1(a, b):
    a, b = Counter(a.split()), Counter(b.split())
    if not a and not b:
        return 1.0
    common = sum((a & b).values())
    if common == 0:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


scores = {url: f1(kiln.get(url) or "", python[url]) for url, _ in pages}
ordered = sorted(scores.values())
print(json.dumps({
    "pages": len(pages),
    "median_f1": statistics.median(ordered),
    "p10_f1": statistics.quantiles(ordered, n=10)[0] if len(ordered) > 1 else ordered[0],
    "min_f1": ordered[0],
    "python_s": python_s,
    "python_chars": sum(len(t) for t in python.values()),
    "kiln_chars": sum(len(t or "") for t in kiln.values()),
    "per_page": scores,
}))
