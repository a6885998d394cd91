"""The child side of kiln's ``exec`` step, for a Python function.

Write the step::

    import kiln, pyarrow as pa, pyarrow.compute as pc

    @kiln.step
    def clean(batch: pa.RecordBatch) -> pa.RecordBatch:
        i = batch.schema.get_field_index("text")
        return batch.set_column(i, "text", pc.utf8_lower(batch["text"]))

and run it from the pipeline::

    - exec: { command: [python3, -m, kiln.step, steps.py:clean] }

``python -m kiln.step TARGET`` imports ``TARGET`` (``path/to/file.py:function`` or
``package.module:function``) and serves batches until kiln closes its stdin: each batch
kiln sends is passed to the function, and what it returns (a ``pyarrow.RecordBatch`` or
``pyarrow.Table``, any number of rows) goes back. An exception fails that batch only:
its traceback goes back to kiln, which ends the run or, under ``on_error: skip |
dead_letter``, leaves the batch out and records the traceback.

The batches travel on the process's stdin and stdout; before the function is imported,
both are moved to private descriptors, and ``print()`` (and anything else written to
descriptor 1) goes to stderr, which kiln forwards to its log. So a stray print cannot
corrupt the stream.
"""

import importlib
import importlib.util
import os
import struct
import sys
import traceback
import types

MAGIC = b"KILN"
_HEADER = struct.Struct("<4scQ")
_BATCH = b"B"
_ERROR = b"E"
_SHARED = b"M"
_HELLO = b"H"
_U64 = struct.Struct("<Q")


class _Shared:
    """The two in-memory files kiln offers (``KILN_EXEC_SHM=3,4``): requests are read
    from the first without copying, answers written into the second, and only their
    lengths go through the pipes."""

    def __init__(self, requests_fd, answers_fd):
        self.requests_fd, self.answers_fd = requests_fd, answers_fd
        self.requests, self.requests_size = None, 0
        self.answers, self.answers_size = None, 0

    @classmethod
    def offered(cls):
        fds = os.environ.get("KILN_EXEC_SHM", "")
        try:
            a, b = (int(x) for x in fds.split(","))
            os.fstat(a)
            os.fstat(b)
        except (ValueError, OSError):
            return None
        return cls(a, b)

    def request(self, n, pa):
        """The request of ``n`` bytes, as a pyarrow buffer over the shared memory."""
        if n > self.requests_size:
            import mmap

            size = os.fstat(self.requests_fd).st_size
            # A mapping still referenced by an earlier batch stays valid until it goes.
            self.requests = mmap.mmap(self.requests_fd, size, prot=mmap.PROT_READ)
            self.requests_size = size
        return pa.py_buffer(self.requests).slice(0, n)

    def answer(self, batch, pa):
        """Writes ``batch`` as an IPC stream into the answers' file; returns its length."""
        n = _ipc_size(batch, pa)
        if n > self.answers_size:
            size = max(n, 2 * self.answers_size, 1 << 20)
            os.ftruncate(self.answers_fd, size)
            self.answers = pa.memory_map(f"/proc/self/fd/{self.answers_fd}", "r+")
            self.answers_size = size
        self.answers.seek(0)
        with pa.ipc.new_stream(self.answers, batch.schema) as w:
            w.write_batch(batch)
        return n


def step(fn):
    """Marks ``fn`` as a kiln step (a function of one ``pyarrow.RecordBatch``).

    The function must be a pure function of its batch: kiln may send batches to several
    processes, in any order, and sends a batch again after a crash or on resume.
    """
    if not callable(fn):
        raise TypeError(f"@kiln.step decorates a function, not {type(fn).__name__}")
    fn.__kiln_step__ = True
    return fn


class _Module(types.ModuleType):
    """``kiln.step`` is this module and also the decorator: ``@kiln.step``."""

    def __call__(self, fn):
        return step(fn)


sys.modules[__name__].__class__ = _Module


def check(fn, batch):
    """Checks what kiln relies on, for a step's own tests: ``fn`` gives the same answer
    twice for ``batch``, and the same columns for a batch of none of its rows (the
    schema kiln learns at bind time). Returns the answer; raises ``AssertionError``."""
    import pyarrow as pa

    first = _as_batch(fn(batch), pa)
    second = _as_batch(fn(batch), pa)
    if not first.equals(second):
        raise AssertionError(
            "the step gave two different answers for one batch: it is not a pure function "
            "of its batch, so a resumed or retried run would not reproduce its output"
        )
    empty = _as_batch(fn(batch.slice(0, 0)), pa)
    if not empty.schema.remove_metadata().equals(first.schema.remove_metadata()):
        raise AssertionError(
            f"the step returns other columns for a batch of no rows ({empty.schema}) than "
            f"for this batch ({first.schema}); declare `schema:` and return those columns "
            "for every batch"
        )
    return first


def load(target):
    """The function ``target`` names: ``file.py:function`` or ``module:function``."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise SystemExit(
            f"kiln.step: give the function as FILE.py:FUNCTION or MODULE:FUNCTION, not {target!r}"
        )
    if where.endswith(".py") or os.sep in where:
        path = os.path.abspath(where)
        module_name = "kiln_step_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"kiln.step: cannot import {where!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, os.path.dirname(path))
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise SystemExit(f"kiln.step: {where!r} has no function {name!r}")
    return fn


def _read_exact(f, n):
    """``n`` bytes from ``f``; None at a clean end of input, an error in the middle."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            if got == 0:
                return None
            raise EOFError(f"kiln closed the stream in the middle of a frame ({got} of {n} bytes)")
        got += k
    return buf


def _write_frame(out, tag, payload):
    out.write(_HEADER.pack(MAGIC, tag, len(payload)))
    out.write(payload)
    out.flush()


def _as_batch(result, pa):
    if isinstance(result, pa.RecordBatch):
        return result
    if isinstance(result, pa.Table):
        batches = result.combine_chunks().to_batches()
        if batches:
            return batches[0]
        return pa.RecordBatch.from_arrays(
            [pa.array([], type=f.type) for f in result.schema], schema=result.schema
        )
    raise TypeError(
        f"a kiln step returns a pyarrow.RecordBatch or pyarrow.Table, not {type(result).__name__}"
    )


def _ipc_size(batch, pa):
    """The bytes of ``batch`` as an IPC stream, measured without copying anything."""
    mock = pa.MockOutputStream()
    with pa.ipc.new_stream(mock, batch.schema) as w:
        w.write_batch(batch)
    return mock.size()


def _encode(batch, pa):
    """``batch`` as an IPC stream in one buffer of exactly its size, written once (a
    growing output stream copies it again at every doubling)."""
    buf = pa.allocate_buffer(_ipc_size(batch, pa))
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buf), batch.schema) as w:
        w.write_batch(batch)
    return buf


def serve(fn, inp, out, shared=None):
    """Answers every batch frame on ``inp`` with ``fn``'s result on ``out``. Says hello
    first (with ``shared``, the files kiln offered: that it uses them) and answers
    shared requests through them."""
    import pyarrow as pa

    # Ready (the function is imported): kiln times the first batch from here, and uses
    # the shared files if they were offered.
    _write_frame(out, _HELLO, b"shm" if shared is not None else b"ready")
    while True:
        head = _read_exact(inp, _HEADER.size)
        if head is None:
            return
        magic, tag, n = _HEADER.unpack(head)
        if magic != MAGIC or tag not in (_BATCH, _SHARED):
            raise SystemExit(f"kiln.step: not a kiln frame on stdin: {bytes(head)!r}")
        payload = _read_exact(inp, n) if n else bytearray()
        if payload is None:
            raise EOFError("kiln closed the stream before a frame's payload")
        in_shared = tag == _SHARED
        if in_shared and shared is None:
            raise SystemExit("kiln.step: a shared request, but no shared files were offered")
        try:
            if in_shared:
                request = shared.request(_U64.unpack(payload)[0], pa)
            else:
                request = pa.py_buffer(payload)
            reader = pa.ipc.open_stream(request)
            batches = list(reader)
            if len(batches) == 1:
                batch = batches[0]
            elif batches:
                batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
            else:
                batch = _as_batch(reader.schema.empty_table(), pa)
            result = _as_batch(fn(batch), pa)
            if in_shared:
                answer = _U64.pack(shared.answer(result, pa))
            else:
                answer = _encode(result, pa)
            # The request's memory is reused for the next one: nothing may keep it.
            del batch, batches, reader, request, result
        except Exception:
            _write_frame(out, _ERROR, traceback.format_exc().encode("utf-8", "replace"))
            continue
        _write_frame(out, _SHARED if in_shared else _BATCH, answer)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        print("usage: python -m kiln.step FILE.py:FUNCTION | MODULE:FUNCTION", file=sys.stderr)
        return 2
    # The stream gets private descriptors; descriptor 1 becomes stderr (so print() and C
    # code writing to stdout cannot corrupt it) and descriptor 0 reads nothing.
    inp = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)
    fn = load(argv[0])
    try:
        serve(fn, inp, out, _Shared.offered())
    except BrokenPipeError:
        # kiln is gone.
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
