#!/usr/bin/env python3
"""Prints kiln beside its peers from bench_run.py's results (JSON lines), with ratios."""
import json
import sys

rows, failed = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") != "ok":
        # A run that failed has no figures: said below the table, not compared.
        failed[(r["job"], r["tool"])] = r
        continue
    rows[(r["job"], r["tool"])] = r  # the latest record per (job, tool) wins

def fmt(v, nd=2):
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)

print("| job | tool | wall s | cpu s | max RSS MB | in MB/s | out rows | out MB | kiln/peer wall | kiln/peer RSS | kiln speed-up |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (job, tool), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[1]["wall_s"])):
    k = rows.get((job, "kiln"))
    ratio_w = ratio_m = speed = ""
    if k and tool != "kiln" and not tool.startswith("kiln"):
        ratio_w = f"{k['wall_s'] / r['wall_s']:.2f}"
        ratio_m = f"{k['max_rss_mb'] / r['max_rss_mb']:.2f}"
        speed = f"{r['wall_s'] / k['wall_s']:.1f}x"
    print(f"| {job} | {tool} | {fmt(r['wall_s'])} | {fmt(r['cpu_s'])} | {r['max_rss_mb']} | {fmt(r['in_mb_s'], 1)} "
          f"| {r['out_rows']} | {fmt(r['out_mb'], 1)} | {ratio_w} | {ratio_m} | {speed} |")
k1, k10 = rows.get(("A-convert", "kiln")), rows.get(("A-convert", "kiln (10x input)"))
if k1 and k10:
    print(f"\nkiln peak RSS on 10x the input: {k10['max_rss_mb']} MB vs {k1['max_rss_mb']} MB "
          f"({k10['max_rss_mb'] / k1['max_rss_mb']:.2f}x); wall {k10['wall_s'] / k1['wall_s']:.1f}x")
for (job, tool), r in sorted(failed.items()):
    if (job, tool) not in rows:
        last = (r.get("error") or "").strip().splitlines()[-1:] or [""]
        print(f"\n!! {job} / {tool}: {r.get('status')} ({last[0][:200]})")
