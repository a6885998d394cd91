"""Steps that misbehave, for tests/exec.rs. Each reads its settings from the environment
(which the `exec` step's `env:` sets), so one file serves every test."""

import os
import signal
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

import kiln


def _ids(batch):
    return set(batch["n"].to_pylist()) if "n" in batch.schema.names else set()


def _bad(batch):
    """True if the batch holds a row whose `n` is in $BAD_N (comma-separated)."""
    bad = {int(x) for x in os.environ.get("BAD_N", "").split(",") if x}
    return bool(bad & _ids(batch))


def _once(name):
    """True the first time any child asks, across processes (a marker file)."""
    marker = os.path.join(os.environ["MARKERS"], name)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@kiln.step
def identity(batch):
    return batch


@kiln.step
def raises(batch):
    if _bad(batch):
        raise ValueError(f"row n in {os.environ['BAD_N']} is not allowed here")
    return batch


@kiln.step
def crashes(batch):
    """Kills its interpreter on a bad batch: once (MARKERS set) or every time."""
    if _bad(batch) and ("MARKERS" not in os.environ or _once("crashed")):
        os.kill(os.getpid(), signal.SIGSEGV)
    return batch


@kiln.step
def hangs(batch):
    """Sleeps forever on a bad batch: once (MARKERS set) or every time."""
    if _bad(batch) and ("MARKERS" not in os.environ or _once("hung")):
        while True:
            time.sleep(60)
    return batch


@kiln.step
def prints(batch):
    """Writes to its stdout three ways; none may reach kiln's stream."""
    print("a stray print from the step", batch.num_rows)
    sys.stdout.flush()
    os.write(1, b"KILN\x00 raw bytes on descriptor 1\n")
    return batch


@kiln.step
def slow(batch):
    time.sleep(float(os.environ.get("SLEEP", "0.05")))
    return batch


@kiln.step
def count_words(batch):
    """Adds `n_words` (Unicode whitespace split), for the schema checks."""
    words = pc.list_value_length(pc.utf8_split_whitespace(batch["text"]))
    return batch.append_column("n_words", pc.cast(words, pa.int64()))


@kiln.step
def wrong_schema(batch):
    """Drops a column on a bad batch only."""
    if _bad(batch):
        return batch.drop_columns(["text"])
    return batch


@kiln.step
def reads_missing(batch):
    return batch.append_column("x", batch["no_such_column"])
