#!/usr/bin/env python3
"""Generates sample-data/warc/crawl-sample.warc.gz: a small web archive as a crawler writes
it (one gzip member per record), for pipelines/warc-pages.yaml and the docs.

    pip install warcio==1.8.1 && python3 sample-data/warc/generate.py

warcio is the web-archiving community's reference library. The archive holds a warcinfo
record, then for each of eight made-up pages a request and its response (HTML pages in
UTF-8, one in Latin-1, a 404, a redirect, a PNG), and a metadata record. The text is
made up here, so there is nothing to license; record ids and dates are fixed so the file
is the same on every run.
"""

import io
import os
import random
import uuid

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(7)
WORDS = ("river village bread market winter garden letter harbour mountain lantern "
         "teacher window morning evening kitchen library bridge forest station").split()


def paragraph(n):
    words = [rng.choice(WORDS) for _ in range(n)]
    return (" ".join(words).capitalize() + ".").replace(" .", ".")


def html(title, paragraphs):
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    nav = '<nav><a href="/">Home</a> | <a href="/about">About</a></nav>'
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body>{nav}<h1>{title}</h1>{body}<footer>© 2026 Example</footer></body></html>")


ids = iter(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(100))


def headers_for(w, record):
    record.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{next(ids)}>")
    record.rec_headers.replace_header("WARC-Date", "2026-12-01T12:00:00Z")
    return record


pages = []
for i, title in enumerate(["Winter market", "The old harbour", "Evening at the library",
                           "Mountain station"]):
    text = html(title, [paragraph(rng.randint(30, 60)) for _ in range(rng.randint(2, 4))])
    pages.append((f"http://example.com/{i}", "200 OK", "text/html; charset=utf-8", text.encode()))
pages.append(("http://example.org/caf%C3%A9", "200 OK", "text/html; charset=iso-8859-1",
              html("Le café", ["Un café au bord de la rivière, le matin."]).encode("latin-1")))
pages.append(("http://example.org/missing", "404 Not Found", "text/html", b"<html>Not found</html>"))
pages.append(("http://example.net/old", "301 Moved Permanently", None, b""))
pages.append(("http://example.com/logo.png", "200 OK", "image/png", bytes(range(256)) * 4))

path = os.path.join(HERE, "crawl-sample.warc.gz")
with open(path, "wb") as f:
    w = WARCWriter(f, gzip=True)
    w.write_record(headers_for(w, w.create_warcinfo_record(
        "crawl-sample.warc.gz", {"software": "sample-data/warc/generate.py", "format": "WARC File Format 1.1"})))
    for url, status, content_type, payload in pages:
        host = url.split("/")[2]
        req = StatusAndHeaders(f"GET /{url.split('/', 3)[-1]} HTTP/1.1", [("Host", host)], is_http_request=True)
        w.write_record(headers_for(w, w.create_warc_record(url, "request", http_headers=req)))
        headers = [("Content-Type", content_type)] if content_type else [("Location", url + "/new")]
        headers.append(("Server", "example"))
        http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        w.write_record(headers_for(w, w.create_warc_record(url, "response", payload=io.BytesIO(payload),
                                                            http_headers=http)))
    w.write_record(headers_for(w, w.create_warc_record(
        "http://example.com/0", "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"),
        warc_content_type="application/warc-fields")))
print(f"wrote {path} ({os.path.getsize(path)} bytes)")
