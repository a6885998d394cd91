"""A .warc.gz whose first record is larger than kiln's probe of a gzip object's first
MiB, and three indexes of it, for tests/warc.rs (source.warc.cdx):

    python cdx.py DIR

writes DIR/in/big.warc.gz (warcio: one gzip member per record; a 1.5 MB resource of
incompressible bytes first, then 80 HTML responses and their requests),
DIR/cdxj/big.cdxj (CDXJ as Common Crawl publishes it: SURT, timestamp, JSON with string
offsets and the file's path in the crawl), DIR/cdx/big.cdx.gz (classic CDX, gzip, with
its ` CDX` header) and DIR/idx/big.idx (`warcio index`'s JSON lines), and
DIR/offsets.json (every record's offset as warcio reads it).
"""

import gzip
import io
import json
import os
import random
import subprocess
import sys

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

out = sys.argv[1]
for d in ("in", "cdxj", "cdx", "idx"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
warc = os.path.join(out, "in", "big.warc.gz")
rng = random.Random(24)
words = "kiln reads every record of a web archive cut at the offsets an index gives".split()

with open(warc, "wb") as f:
    w = WARCWriter(f, gzip=True)
    blob = rng.randbytes(1_500_000)
    w.write_record(
        w.create_warc_record(
            "http://example.com/big.bin",
            "resource",
            payload=io.BytesIO(blob),
            warc_content_type="application/octet-stream",
        )
    )
    for n in range(80):
        url = f"http://example.com/page/{n}"
        body = "<html><body>" + "".join(
            f"<p>{' '.join(rng.choice(words) for _ in range(40))}</p>" for _ in range(30)
        ) + "</body></html>"
        http = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
        )
        w.write_record(
            w.create_warc_record(
                url, "response", payload=io.BytesIO(body.encode()), http_headers=http
            )
        )
        req = StatusAndHeaders("GET /page/%d HTTP/1.1" % n, [("Host", "example.com")], is_http_request=True)
        w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=req))

records = []
with open(warc, "rb") as f:
    it = ArchiveIterator(f)
    for r in it:
        uri = r.rec_headers.get_header("WARC-Target-URI")
        kind = r.rec_type
        r.content_stream().read()
        records.append((it.get_record_offset(), it.get_record_length(), uri, kind))
json.dump([o for o, *_ in records], open(os.path.join(out, "offsets.json"), "w"))

crawl_path = "crawl-data/CC-MAIN-2026-49/segments/1/warc/big.warc.gz"
with open(os.path.join(out, "cdxj", "big.cdxj"), "w") as f:
    for offset, length, uri, kind in records:
        if kind != "response":  # Common Crawl indexes the captures
            continue
        surt = "com,example)/" + uri.split("/", 3)[3]
        meta = {"url": uri, "mime": "text/html", "status": "200", "length": str(length),
                "offset": str(offset), "filename": crawl_path}
        f.write(f"{surt} 20261206000000 {json.dumps(meta)}\n")
with gzip.open(os.path.join(out, "cdx", "big.cdx.gz"), "wt") as f:
    f.write(" CDX N b a m s k r M S V g\n")
    for offset, length, uri, kind in records:
        f.write(f"{uri} 20261206000000 {uri} - - - - - {length} {offset} big.warc.gz\n")
subprocess.run(
    [sys.executable, "-m", "warcio.cli", "index", "-f", "offset,length,filename,warc-type",
     "-o", os.path.join(out, "idx", "big.idx"), warc],
    check=True,
)
