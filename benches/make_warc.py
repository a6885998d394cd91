#!/usr/bin/env python3
"""Writes one large .warc.gz for the WARC split benchmark (benches/warc_split.sh): the
shared bench corpus's documents as HTML pages, each an HTTP response record in a gzip
member of its own (as crawlers and Common Crawl write WARC), after a warcinfo record.
Deterministic: the same corpus gives the same bytes.

    python3 benches/make_warc.py CORPUS_DIR OUT.warc.gz [TARGET_BYTES]

CORPUS_DIR holds the corpus's *.jsonl or *.jsonl.gz (id, url, text). The documents are written in
order, round after round, until the file reaches TARGET_BYTES (default 1 GB). Beside it,
manifest.json says how many bytes and records it holds.
"""

import glob
import gzip
import html
import json
import os
import sys
import uuid
import zlib

corpus, out = sys.argv[1], sys.argv[2]
target = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000_000
files = sorted(glob.glob(os.path.join(corpus, "*.jsonl")) or glob.glob(os.path.join(corpus, "*.jsonl.gz")))
if not files:
    sys.exit(f"no *.jsonl or *.jsonl.gz in {corpus}")


def member(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    return c.compress(data) + c.flush()


def record(kind: str, uri: str, rid: str, content_type: str, block: bytes) -> bytes:
    head = (f"WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n"
            + (f"WARC-Target-URI: {uri}\r\n" if uri else "")
            + "WARC-Date: 2026-12-01T12:00:00Z\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(block)}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


written = 0
with open(out, "wb") as f:
    info = b"software: kiln benches/make_warc.py\r\nformat: WARC File Format 1.1\r\n"
    m = member(record("warcinfo", "", str(uuid.UUID(int=0)), "application/warc-fields", info))
    f.write(m)
    written += len(m)
    n, rnd = 0, 0
    while written < target:
        for path in files:
            for line in (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8"):
                doc = json.loads(line)
                paras = "".join(f"<p>{html.escape(p)}</p>" for p in doc["text"].split("\n\n"))
                page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{n}</title>"
                        f"</head><body><nav><a href=\"/\">Home</a></nav>{paras}"
                        "<footer>Example</footer></body></html>").encode()
                http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                        + f"Content-Length: {len(page)}\r\n\r\n".encode() + page)
                rid = str(uuid.UUID(int=n + 1))
                m = member(record("response", f"{doc['url']}?r={rnd}", rid,
                                  "application/http; msgtype=response", http))
                f.write(m)
                written += len(m)
                n += 1
                if written >= target:
                    break
            if written >= target:
                break
        rnd += 1
print(f"{out}: {n} responses, {written / 1e6:.0f} MB", file=sys.stderr)
# What ../shared/bench/bench_run.py needs to know of an input.
with open(os.path.join(os.path.dirname(os.path.abspath(out)), "manifest.json"), "w") as m:
    json.dump({"files": 1, "bytes": written, "docs": n}, m, indent=1)
