#!/usr/bin/env bash
# html.extract against Python trafilatura on real pages beyond the Debian FAQ: the
# documentation sites found on this machine (benches/html_pages.py: mdBook, rustdoc,
# Node.js, npm, DocBook, gtk-doc), extracted by both of kiln's engines and by
# trafilatura as datatrove calls it. Prints, per site and over all pages, the word F1
# (median, 10th percentile, lowest; tests/html/compare.py scores it), how many pages the
# kiln engine handed to the trafilatura engine, and each extractor's CPU time on one
# thread (kiln's whole pipeline: WARC reading, charset, extraction, Parquet).
#
#   PY=.venv-test/bin/python KILN=target/release/kiln benches/html_agreement.sh [PER_SITE]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv-test/bin/python}
KILN=${KILN:-$ROOT/target/release/kiln}
WORK=${WORK:-/tmp/kiln-html-agreement}
mkdir -p "$WORK"
"$PY" "$ROOT/benches/html_pages.py" "$WORK/docs.warc.gz" "${1:-60}"
for engine in kiln trafilatura; do
  cat > "$WORK/$engine.yaml" <<EOF
version: 1
name: html-agreement-$engine
source:
  uri: $WORK/docs.warc.gz
steps:
  - text.decode: { column: body, content_type: http_content_type, url: url }
  - html.extract: { column: text, keep_empty: true, engine: $engine }
  - select: [url, text]
sink:
  uri: $WORK/out-$engine
run:
  threads: 1
EOF
  rm -rf "$WORK/out-$engine"
  /usr/bin/time -f "%U %S" -o "$WORK/time-$engine" "$KILN" run --report "$WORK/report-$engine.json" \
    -q "$WORK/$engine.yaml"
  "$PY" "$ROOT/tests/html/compare.py" "$WORK/docs.warc.gz" "$WORK/out-$engine" > "$WORK/cmp-$engine.json"
done
"$PY" - "$WORK" <<'PYEOF'
import collections, json, statistics, sys
work = sys.argv[1]
def cpu(engine):
    user, sys_ = open(f"{work}/time-{engine}").read().split()
    return float(user) + float(sys_)
def fallback(engine):
    for step in json.load(open(f"{work}/report-{engine}.json"))["steps"]:
        if step.get("counts", {}).get("fallback") is not None:
            return step["counts"]["fallback"]
    return 0
rows = {}
for engine in ("kiln", "trafilatura"):
    d = json.load(open(f"{work}/cmp-{engine}.json"))
    by = collections.defaultdict(list)
    for url, s in d["per_page"].items():
        by[url.split("/")[3]].append(s)
    by["all"] = list(d["per_page"].values())
    rows[engine] = (by, d["python_s"])
print("word F1 against Python trafilatura (median / 10th percentile / lowest):")
print(f"{'site':16} {'pages':>5}  {'kiln engine':>20}  {'trafilatura engine':>20}")
for site in rows["kiln"][0]:
    cells = []
    for engine in ("kiln", "trafilatura"):
        v = sorted(rows[engine][0][site])
        cells.append(f"{statistics.median(v):.3f} / {v[len(v) // 10]:.3f} / {v[0]:.3f}")
    print(f"{site:16} {len(v):5}  {cells[0]:>20}  {cells[1]:>20}")
n = len(rows["kiln"][0]["all"])
print(f"\nkiln engine: {fallback('kiln')} of {n} pages handed to the trafilatura engine")
py = rows["kiln"][1]
print(f"one thread, CPU s: kiln engine {cpu('kiln'):.1f}, trafilatura engine {cpu('trafilatura'):.1f}, "
      f"Python trafilatura {py:.1f} (extraction only)")
PYEOF
