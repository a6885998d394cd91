#!/usr/bin/env python3
"""Builds benches/langid/sample.jsonl, the labelled sample the language-identification
crates are measured on (see docs/text.md):

* short real sentences: spaCy's example sentences for each language it ships them for
  (spacy.lang.<code>.examples, MIT licence), labelled with the ISO 639-1 code;
* long documents: the prose of sample-data/web (at most 60 per language) (five languages, made of real common
  words of each), labelled by sample-data/generate_web.py.

    python benches/langid/make_sample.py      # needs spaCy (the test venv has it)
"""
import gzip
import importlib
import json
import os
import pkgutil

import spacy.lang

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

rows = []
for m in sorted(pkgutil.iter_modules(spacy.lang.__path__), key=lambda m: m.name):
    if len(m.name) != 2 or m.name == "xx":
        continue
    try:
        ex = importlib.import_module(f"spacy.lang.{m.name}.examples")
    except Exception:
        continue
    for s in getattr(ex, "sentences", []):
        rows.append({"lang": m.name, "kind": "sentence", "text": s})
truth = {}
for line in open(os.path.join(ROOT, "sample-data/web/truth.jsonl"), encoding="utf-8"):
    t = json.loads(line)
    truth[t["id"]] = t
per_lang = {}
for part in sorted(os.listdir(os.path.join(ROOT, "sample-data/web"))):
    if not part.endswith(".jsonl.gz"):
        continue
    for line in gzip.open(os.path.join(ROOT, "sample-data/web", part), "rt", encoding="utf-8"):
        d = json.loads(line)
        per_lang[d["lang"]] = per_lang.get(d["lang"], 0) + 1
        if truth[d["id"]]["kind"] == "prose" and per_lang[d["lang"]] <= 60:
            rows.append({"lang": d["lang"], "kind": "document", "text": d["text"]})
with open(os.path.join(HERE, "sample.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(f"{len(rows)} labelled texts")
