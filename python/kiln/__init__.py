"""kiln from Python.

- ``@kiln.step`` and ``python -m kiln.step FILE.py:FUNCTION``: a pipeline step written in
  Python, run by the ``exec`` step (see ``kiln.step``).
- ``kiln.run``, ``kiln.plan``: run or plan a pipeline with the ``kiln`` binary;
  ``kiln.open``: the committed shards of a sink as a ``pyarrow.dataset.Dataset``;
  ``kiln.torch.Dataset``: a sink's shards for a PyTorch training loop, by rank, resumable
  mid-epoch.

``import kiln`` needs nothing but the standard library; ``pyarrow`` is imported where it
is used.
"""

import importlib

from ._driver import (
    KilnError,
    PipelineError,
    Plan,
    Report,
    RetryableError,
    RunFailed,
    TooManyBadRecords,
    binary,
    open,
    plan,
    run,
)

__all__ = [
    "KilnError",
    "PipelineError",
    "Plan",
    "Report",
    "RetryableError",
    "RunFailed",
    "TooManyBadRecords",
    "binary",
    "open",
    "plan",
    "run",
    "step",
    "torch",
]


def __getattr__(name):
    # Imported on first use, so that `python -m kiln.step` runs kiln/step.py once, as
    # __main__, and `import kiln` does not import pyarrow or torch.
    if name in ("step", "torch"):
        return importlib.import_module(f"kiln.{name}")
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
