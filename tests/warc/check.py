"""WARC files written by warcio (the reference reader/writer of the web-archiving
community) and what warcio reads back from them, for tests/warc.rs.

    python tests/warc/check.py OUT_DIR

Writes OUT_DIR/in/crawl.warc.gz (one gzip member per record, as crawlers write),
OUT_DIR/in/plain.warc (uncompressed) and, when GNU Wget is installed, OUT_DIR/in/wget.warc.gz
(wget's own writer crawling a small site served on 127.0.0.1), then OUT_DIR/expected.jsonl: per record, in order,
what warcio reads (type, id, URI, date, Content-Type; for responses the HTTP status,
headers and payload as stored; for other records the whole block), bodies as sha256 and
length.
"""

import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

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


def wget_warc(path):
    """A WARC written by GNU Wget (`--warc-file`, one gzip member per record) of a small
    site served on 127.0.0.1 from a thread: a UTF-8 page linking to a Latin-1 page, a
    binary file and a page that is not there (404). None when wget is not installed."""
    wget = shutil.which("wget")
    if wget is None:
        print("wget not installed: no wget-written WARC", file=sys.stderr)
        return None
    site = tempfile.mkdtemp()
    pages = {
        "index.html": ('<html><head><meta charset="utf-8"><title>Ünïcode</title></head><body>'
                       '<a href="latin.html">latin</a> <a href="data.bin">data</a> '
                       '<a href="gone.html">gone</a><p>Hello from wget.</p></body></html>').encode(),
        "latin.html": "<html><body><p>Caf\u00e9 cr\u00e8me</p></body></html>".encode("latin-1"),
        "data.bin": bytes(range(256)) * 8,
    }
    for name, body in pages.items():
        with open(os.path.join(site, name), "wb") as f:
            f.write(body)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=site, **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        subprocess.run([wget, "--quiet", "--recursive", "--level=1", "--no-host-directories",
                        "--directory-prefix", tempfile.mkdtemp(), "--warc-file", path[:-len(".warc.gz")],
                        "--no-warc-keep-log", root], check=False, timeout=60)
    finally:
        server.shutdown()
    return path if os.path.exists(path) else None


files = ["crawl.warc.gz", "plain.warc"]
if wget_warc(os.path.join(out, "in", "wget.warc.gz")):
    files.append("wget.warc.gz")


def digest(b):
    return {"sha256": hashlib.sha256(b).hexdigest(), "len": len(b)}


with open(os.path.join(out, "expected.jsonl"), "w") as f:
    for name in files:
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
