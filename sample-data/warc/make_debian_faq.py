#!/usr/bin/env python3
"""Writes sample-data/warc/debian-faq.warc.gz: the Debian FAQ's HTML pages (Debian's
`debian-faq` package, real pages written by DocBook with navigation headers and footers)
as a web archive, one HTTP response per page in a gzip member of its own, as a crawler
writes it. pipelines/fineweb-from-warc.yaml and tests/html.rs read it.

    apt-get download debian-faq          # or pass the .deb's path
    pip install warcio==1.8.1 && python3 sample-data/warc/make_debian_faq.py [debian-faq_*.deb]

The pages are served as `text/html` without a charset (their <meta> says UTF-8), with
fixed record ids and dates, so the file is the same on every run from the same package
(debian-faq 11.1 made the shipped one). The FAQ's licence is in debian-faq.COPYRIGHT.
"""

import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

HERE = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp()
deb = sys.argv[1] if len(sys.argv) > 1 else None
if deb is None:
    subprocess.run(["apt-get", "download", "debian-faq"], cwd=work, check=True)
    deb = glob.glob(os.path.join(work, "debian-faq_*.deb"))[0]
subprocess.run(["dpkg-deb", "-x", deb, os.path.join(work, "x")], check=True)
faq = os.path.join(work, "x", "usr", "share", "doc", "debian", "FAQ")
shutil.copy(os.path.join(work, "x", "usr", "share", "doc", "debian-faq", "copyright"),
            os.path.join(HERE, "debian-faq.COPYRIGHT"))

pages = sorted(p for p in glob.glob(os.path.join(faq, "*.en.html")) if not os.path.islink(p))
with open(os.path.join(HERE, "debian-faq.warc.gz"), "wb") as f:
    w = WARCWriter(f, gzip=True)
    for i, path in enumerate(pages):
        url = "https://www.debian.org/doc/manuals/debian-faq/" + os.path.basename(path)
        body = open(path, "rb").read()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                           ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
        rec = w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
        rec.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=i + 1)}>")
        rec.rec_headers.replace_header("WARC-Date", "2026-12-01T12:00:00Z")
        w.write_record(rec)
print(f"{len(pages)} pages", file=sys.stderr)
