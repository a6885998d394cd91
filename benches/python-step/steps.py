"""The Python steps of bench job P (benches/python_step.sh)."""

import pyarrow as pa
import pyarrow.compute as pc

import kiln


@kiln.step
def identity(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


@kiln.step
def lower(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Vectorised: pyarrow's utf8_lower over the column."""
    i = batch.schema.get_field_index("text")
    return batch.set_column(i, "text", pc.utf8_lower(batch["text"]))


@kiln.step
def lower_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Row by row with Python's str.lower, as the datatrove step does."""
    i = batch.schema.get_field_index("text")
    text = pa.array(
        [t.lower() if t is not None else None for t in batch["text"].to_pylist()], type=pa.string()
    )
    return batch.set_column(i, "text", text)
