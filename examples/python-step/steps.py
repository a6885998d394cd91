"""A custom kiln step in Python: lower-case the text and count its characters.

Run by examples/python-step/pipeline.yaml through the `exec` step:

    - exec: { command: [python3, -m, kiln.step, examples/python-step/steps.py:clean] }

The same transform in kiln's SQL is `derive: { text: "lower(text)", n_chars:
"length(text)" }`; the test suite checks that both give the same rows.
"""

import pyarrow as pa
import pyarrow.compute as pc

import kiln


@kiln.step
def clean(batch: pa.RecordBatch) -> pa.RecordBatch:
    text = pc.utf8_lower(batch["text"])
    i = batch.schema.get_field_index("text")
    batch = batch.set_column(i, "text", text)
    return batch.append_column("n_chars", pc.cast(pc.utf8_length(text), pa.int32()))
