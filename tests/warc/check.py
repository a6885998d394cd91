"""WARC files written by warcio (the reference reader/writer of the web-archiving
community) and what warcio reads back from them, for tests/warc.rs.

    python tests/warc/check.py OUT_DIR

Writes OUT_DIR/in/crawl.warc.gz (one gzip member per record, as crawlers write) and
OUT_DIR/in/plain.warc (uncompressed), then OUT_DIR/expected.jsonl: per record, in order,
what warcio reads (type, id, URI, date, Content-Type; for responses the HTTP status,
headers and payload as stored; for other records the whole block), bodies as sha256 and
length.
"""

import hashlib
import io
import json
import os
import sys

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

out = sys.argv[1]
os.makedirs(os.path.join(out, "in"), exist_ok=True)


def write(path, gzip):
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=gzip)
        w.write_record(w.create_warcinfo_record("crawl.warc.gz", {"software": "kiln test", "format": "WARC File Format 1.0"}))
        pages = [
            ("http://example.com/", "200 OK", [("Content-Type", "text/html; charset=utf-8")],
             "<html><head><title>Ünïcode</title></head><body><p>Hello, world.</p></body></html>".encode()),
            ("http://example.org/missing", "404 Not Found", [("Content-Type", "text/html"), ("Server", "x")],
             b"<html>not here</html>"),
            ("http://example.net/old", "301 Moved Permanently",
             [("Location", "http://example.net/new"), ("Content-Length", "0")], b""),
            ("https://example.com/logo.png", "200 OK", [("Content-Type", "image/png")],
             bytes(range(256)) * 40),
            ("http://example.com/cookies", "200 OK",
             [("Content-Type", "text/plain; charset=latin-1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
              ("X-Long", "v" * 3000)],
             "caf\u00e9\r\n\r\nline after blank lines".encode("latin-1")),
        ]
        for url, status, headers, payload in pages:
            req = StatusAndHeaders("GET / HTTP/1.1", [("Host", url.split("/")[2])], is_http_request=True)
            w.write_record(w.create_warc_record(url, "request", http_headers=req))
            http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http))
        w.write_record(w.create_warc_record("file:///notes.txt", "resource", payload=io.BytesIO(b"plain\r\n\r\ntext\n"),
                                            warc_content_type="text/plain"))
        w.write_record(w.create_warc_record("http://example.com/", "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"),
                                            warc_content_type="application/warc-fields"))


write(os.path.join(out, "in", "crawl.warc.gz"), True)
write(os.path.join(out, "in", "plain.warc"), False)


def digest(b):
    return {"sha256": hashlib.sha256(b).hexdigest(), "len": len(b)}


with open(os.path.join(out, "expected.jsonl"), "w") as f:
    for name in ["crawl.warc.gz", "plain.warc"]:
        path = os.path.join(out, "in", name)
        with open(path, "rb") as a, open(path, "rb") as b:
            blocks = ArchiveIterator(a, no_record_parse=True)
            parsed = ArchiveIterator(b)
            for whole, rec in zip(blocks, parsed):
                h = rec.rec_headers
                row = {
                    "file": name,
                    "warc_type": h.get_header("WARC-Type"),
                    "record_id": h.get_header("WARC-Record-ID"),
                    "url": h.get_header("WARC-Target-URI"),
                    "date": h.get_header("WARC-Date"),
                    "content_type": h.get_header("Content-Type"),
                }
                block = whole.raw_stream.read()
                payload = rec.raw_stream.read()
                if rec.rec_type == "response" and rec.http_headers is not None:
                    row["http_status"] = int(rec.http_headers.get_statuscode())
                    row["http_headers"] = [list(p) for p in rec.http_headers.headers]
                    row["body"] = digest(payload)
                else:
                    row["http_status"] = None
                    row["http_headers"] = None
                    row["body"] = digest(block)
                f.write(json.dumps(row) + "\n")
print("warcio: ok")
