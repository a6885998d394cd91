#!/usr/bin/env python3
"""Writes a web archive of real HTML pages found on this machine, for html.extract's
agreement with Python trafilatura beyond the Debian FAQ (benches/html_agreement.sh,
docs/text.md): documentation sites written by different generators, each page with its
navigation, sidebars and footers, as a crawler would have archived it.

    python benches/html_pages.py OUT.warc.gz [PER_SITE]

Sites (those present): the Rust book, the Rust reference, the Cargo book, rustc's book
(mdBook), the Rust standard library API (rustdoc) from the rustup toolchain; Node.js's
API documentation and npm's documentation; Valgrind's manual (DocBook); libxslt's API
reference (gtk-doc). PER_SITE pages of each (default 60), every k-th of the site's
pages in path order, so the same machine gives the same file. A page's URL is
https://docs.example/SITE/PATH, so scores can be told apart by site.
"""

import glob
import io
import os
import sys
import uuid

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

out = sys.argv[1]
per_site = int(sys.argv[2]) if len(sys.argv) > 2 else 60
rust = sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html")))
sites = {}
if rust:
    r = rust[0]
    for name, sub in [("rust-book", "book"), ("rust-reference", "reference"), ("cargo", "cargo"),
                      ("rustc-book", "rustc"), ("rust-std", "std")]:
        sites[name] = os.path.join(r, sub)
for name, d in [("nodejs", "/usr/share/doc/nodejs/api"), ("npm", "/usr/lib/node_modules/npm/docs"),
                ("valgrind", "/usr/share/doc/valgrind/html"), ("libxslt", "/usr/share/doc/libxslt1-dev")]:
    sites[name] = d

n = 0
with open(out, "wb") as f:
    w = WARCWriter(f, gzip=True)
    for site, root in sites.items():
        pages = sorted(p for p in glob.glob(os.path.join(root, "**", "*.html"), recursive=True)
                       if not os.path.islink(p) and os.path.getsize(p) > 3000)
        if not pages:
            continue
        step = max(1, len(pages) // per_site)
        chosen = pages[::step][:per_site]
        for path in chosen:
            body = open(path, "rb").read()
            url = f"https://docs.example/{site}/{os.path.relpath(path, root)}"
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            rec = w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
            rec.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=n + 1)}>")
            rec.rec_headers.replace_header("WARC-Date", "2026-12-01T12:00:00Z")
            w.write_record(rec)
            n += 1
        print(f"{site}: {len(chosen)} of {len(pages)} pages", file=sys.stderr)
print(f"{out}: {n} pages", file=sys.stderr)
