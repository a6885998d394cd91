"""kiln driven from Python, as tests/exec.rs runs it: kiln.run / kiln.plan with their
exceptions, kiln.open and kiln.torch.Dataset on a sink two workers wrote, and
kiln.step.check.

    python tests/exec/driver.py TMPDIR      (KILN_BIN, KILN_PYTHON and PYTHONPATH set)
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc

import kiln

tmp = sys.argv[1]
os.environ["KILN_OUT"] = os.path.join(tmp, "out")

# Input: 4 objects of 500 documents, small tasks, so that two workers share the work.
os.makedirs(os.path.join(tmp, "in"), exist_ok=True)
for o in range(4):
    with open(os.path.join(tmp, "in", f"part-{o}.jsonl"), "w") as f:
        for i in range(o * 500, (o + 1) * 500):
            words = " ".join(f"Word{(i * 7 + w) % 101}" for w in range(5 + i % 40))
            f.write(json.dumps({"n": i, "text": words}) + "\n")

step = os.path.join(os.getcwd(), "examples", "python-step", "steps.py")
pipeline = os.path.join(tmp, "words.yaml")
with open(pipeline, "w") as f:
    f.write(
        f"""version: 1
name: words
source:
  uri: {tmp}/in/*.jsonl
steps:
  - exec:
      command: ["${{KILN_PYTHON}}", -m, kiln.step, {step}:clean]
  - derive:
      split: "CASE WHEN n % 5 = 0 THEN 'val' ELSE 'train' END"
sink:
  uri: ${{KILN_OUT}}/words/
  partition_by: [split]
  max_rows: 300
run:
  task_bytes: 40KB
"""
    )

# plan, then two workers; the last to finish writes the manifest.
planned = kiln.plan(pipeline)
assert [s["name"] for s in planned.steps] == ["exec", "derive"], planned.steps
assert [c["name"] for c in planned.steps[0]["columns"]] == ["n", "text", "n_chars"], planned.steps
assert planned.steps[0]["columns"][2]["type"] == "Int32"
assert planned.source["format"] == "jsonl" and len(planned.source["objects"]) == 4
tasks = len(planned.tasks)
assert tasks >= 4, planned.tasks
assert {t["worker"] for t in kiln.plan(pipeline, worker=(1, 2)).tasks} == {0, 1}
assert "exec → n: Int64, text: Utf8, n_chars: Int32" in planned.text, planned.text
reports = [kiln.run(pipeline, worker=(w, 2), set={"run.threads": 1}) for w in range(2)]
assert sum(r.rows_out for r in reports) == 2000, reports
assert all(isinstance(r["steps"], list) for r in reports)

sink = os.path.join(tmp, "out", "words")
ds = kiln.open(sink)
table = ds.to_table()
assert table.num_rows == 2000, table.num_rows
assert sorted(table["n"].to_pylist()) == list(range(2000))
assert set(table["split"].to_pylist()) == {"train", "val"}
val = ds.to_table(filter=pc.field("split") == "val")
assert sorted(val["n"].to_pylist()) == list(range(0, 2000, 5))
assert pc.all(pc.equal(table["text"], pc.utf8_lower(table["text"]))).as_py()
assert table["text"].to_pylist() != [] and "Word" not in "".join(table["text"].to_pylist())

# A dataset of several shards, read by two ranks: disjoint, complete, resumable.
import kiln.torch as kt  # noqa: E402

manifest = kiln._driver.manifest(sink)
assert len(manifest["shards"]) >= 4, manifest["shards"]
ranks = [kt.Dataset(sink, r, 2, columns=["n"]) for r in range(2)]
seen = [[row["n"] for row in d] for d in ranks]
assert sorted(seen[0] + seen[1]) == list(range(2000))
assert not set(seen[0]) & set(seen[1])
assert [len(d) for d in ranks] == [len(s) for s in seen]

d = kt.Dataset(sink, 1, 2, columns=["n"])
it = iter(d)
first = [next(it)["n"] for _ in range(len(seen[1]) // 2 + 3)]
state = json.loads(json.dumps(d.state_dict()))
resumed = kt.Dataset(sink, 1, 2, columns=["n"])
resumed.load_state_dict(state)
rest = [row["n"] for row in resumed]
assert first + rest == seen[1], (len(first), len(rest), len(seen[1]))
assert resumed.epoch == 1 and resumed.state_dict()["shard"] == 0
try:
    kt.Dataset(sink, 0, 2).load_state_dict(state)
    raise SystemExit("a state of rank 1 must not load into rank 0")
except kiln.KilnError:
    pass

# Exit codes as exceptions.
bad = os.path.join(tmp, "bad.yaml")
with open(bad, "w") as f:
    f.write("version: 1\nname: bad\nsource: { uri: nowhere/*.jsonl }\nsteps:\n  - nope: {}\n")
try:
    kiln.run(bad)
    raise SystemExit("a wrong pipeline must raise")
except kiln.PipelineError as e:
    assert e.exit_code == 2 and "nope" in str(e), e

# kiln.step.check
from kiln.step import check, load  # noqa: E402

clean = load(f"{step}:clean")
batch = pa.RecordBatch.from_pydict({"n": [1, 2], "text": ["Hello World", "ÀB"]})
out = check(clean, batch)
assert out["text"].to_pylist() == ["hello world", "àb"] and out["n_chars"].to_pylist() == [11, 2]
counter = iter(range(1000))
try:
    check(lambda b: b.append_column("k", pa.array([next(counter)] * b.num_rows)), batch)
    raise SystemExit("an impure step must be caught")
except AssertionError as e:
    assert "not a pure function" in str(e)
print("driver: ok")
