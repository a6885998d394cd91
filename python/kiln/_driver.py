"""Driving kiln from Python: the ``kiln`` binary run as a subprocess, its exit codes as
exceptions, its ``--report`` as a dict, and a sink's committed shards as a dataset."""

import builtins
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile


class KilnError(Exception):
    """kiln exited with an error. ``exit_code`` is kiln's exit code, ``report`` the run's
    report when kiln wrote one, ``log`` what kiln printed on stderr (when captured)."""

    exit_code = 1

    def __init__(self, message, *, exit_code=None, report=None, log=""):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.report = report
        self.log = log


class RunFailed(KilnError):
    """Exit 1: the run failed (a step failed, a store refused, a bug)."""

    exit_code = 1


class PipelineError(KilnError):
    """Exit 2: the pipeline or the command line is wrong; nothing was written."""

    exit_code = 2


class TooManyBadRecords(KilnError):
    """Exit 3: the run finished, but left out more bad input than ``max_error_ratio``
    allows. The dataset was written; ``report`` has the counts."""

    exit_code = 3


class RetryableError(KilnError):
    """Exit 75: a retryable failure (network, throttling, stopped by a signal); running
    the same pipeline again resumes the work."""

    exit_code = 75


_BY_CODE = {1: RunFailed, 2: PipelineError, 3: TooManyBadRecords, 75: RetryableError}


class Report(dict):
    """kiln's ``--report`` JSON: a dict whose keys are also attributes
    (``report.rows_out``, ``report["steps"]``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Plan(dict):
    """What ``kiln plan --json`` says: ``pipeline_hash``, ``source`` (objects, format,
    columns), ``steps`` (each step's name, pass and output columns), ``tasks``, ``sink``;
    keys are also attributes. ``text`` (and ``print(plan)``) is what ``kiln plan``
    prints."""

    def __init__(self, data, text):
        super().__init__(data)
        self._text = text

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def text(self):
        if callable(self._text):
            self._text = self._text()
        return self._text

    def __str__(self):
        return self.text

    def __repr__(self):
        return self.text

    def _repr_pretty_(self, p, cycle):
        p.text(self.text)


def binary():
    """The kiln binary: ``$KILN_BIN``, the one the wheel installed beside this package, or
    ``kiln`` on ``PATH``."""
    env = os.environ.get("KILN_BIN")
    if env:
        return env
    here = os.path.join(sysconfig.get_path("scripts"), "kiln")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("kiln")
    if found:
        return found
    raise KilnError(
        "no kiln binary: install the kiln wheel (pip install kiln-*.whl), put `kiln` on PATH "
        "or set KILN_BIN"
    )


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _options(set, worker):
    args = []
    for key, value in (set or {}).items():
        args += ["--set", f"{key}={_value(value)}"]
    if worker is not None:
        if not isinstance(worker, str):
            index, count = worker
            worker = f"{index}/{count}"
        args += ["--worker", worker]
    return args


def _kiln(args, *, quiet, env, cwd):
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update({k: str(v) for k, v in env.items()})
    return subprocess.run(
        [binary(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        env=full_env,
        cwd=cwd,
    )


def _raise(what, done, report=None):
    log = done.stderr or ""
    cls = _BY_CODE.get(done.returncode, KilnError)
    tail = log.strip().splitlines()[-20:]
    message = f"{what} exited {done.returncode}"
    if tail:
        message += ":\n" + "\n".join(tail)
    raise cls(message, exit_code=done.returncode, report=report, log=log)


def run(pipeline, *, set=None, worker=None, overwrite=False, quiet=True, env=None, cwd=None):
    """Runs ``pipeline`` (a path) with the kiln binary and returns its report.

    ``set``: fields of the pipeline file to override, ``{"run.threads": 4}`` (kiln's
    ``--set``); ``worker``: ``(index, count)`` or ``"index/count"``; ``quiet``: capture
    kiln's log (given back on the exception) instead of showing it. An exit code other
    than 0 raises the ``KilnError`` subclass of its kind, with the report attached when
    kiln wrote one.
    """
    with tempfile.TemporaryDirectory(prefix="kiln-report-") as tmp:
        path = os.path.join(tmp, "report.json")
        args = ["run", os.fspath(pipeline), "--report", path, *_options(set, worker)]
        if overwrite:
            args.append("--overwrite")
        if quiet:
            args.append("-q")
        done = _kiln(args, quiet=quiet, env=env, cwd=cwd)
        report = None
        if os.path.exists(path):
            with builtins.open(path) as f:
                report = Report(json.load(f))
    if done.returncode != 0:
        _raise(f"kiln run {pipeline}", done, report)
    return report


def plan(pipeline, *, set=None, worker=None, env=None, cwd=None):
    """What ``kiln plan`` says of ``pipeline``, as a ``Plan`` (a dict of ``kiln plan
    --json``; its ``text`` is the human-readable plan, made when first asked for)."""
    args = ["plan", os.fspath(pipeline), *_options(set, worker)]
    done = _kiln([*args, "--json"], quiet=True, env=env, cwd=cwd)
    if done.returncode != 0:
        _raise(f"kiln plan {pipeline}", done)

    def text():
        shown = _kiln(args, quiet=True, env=env, cwd=cwd)
        if shown.returncode != 0:
            _raise(f"kiln plan {pipeline}", shown)
        return shown.stdout

    return Plan(json.loads(done.stdout), text)


def _filesystem(sink, filesystem):
    import pyarrow.fs as pafs

    sink = os.fspath(sink)
    if filesystem is not None:
        root = sink.split("://", 1)[1] if "://" in sink else sink
        return filesystem, root.rstrip("/")
    if "://" in sink:
        fs, root = pafs.FileSystem.from_uri(sink)
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(sink).rstrip("/")


def manifest(sink, *, filesystem=None):
    """The manifest of a finished sink (``_kiln/manifest.json``) as a dict."""
    fs, root = _filesystem(sink, filesystem)
    path = f"{root}/_kiln/manifest.json"
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise KilnError(
            f"{sink} has no manifest: its run has not finished (`kiln status {sink}` tells "
            "what is left; a multi-worker run ends with `kiln finalize`)"
        ) from None


def _shards(sink, filesystem):
    fs, root = _filesystem(sink, filesystem)
    m = manifest(sink, filesystem=filesystem)
    return fs, root, m, [f"{root}/{s['path']}" for s in m["shards"]]


def open(sink, *, filesystem=None):
    """The committed shards of ``sink`` as a ``pyarrow.dataset.Dataset``.

    The shards are those the manifest lists, in its order (not a glob: files of an
    unfinished or abandoned attempt are never read); hive partitions (``split=train/``)
    become columns. ``sink``: a directory or a URI (``s3://bucket/prefix``), or a path in
    ``filesystem`` (a ``pyarrow.fs.FileSystem``, e.g. an ``S3FileSystem`` with an
    endpoint).
    """
    import pyarrow.dataset as ds

    fs, root, m, files = _shards(sink, filesystem)
    if m.get("partition_by"):
        return ds.dataset(
            files,
            format="parquet",
            filesystem=fs,
            partitioning="hive",
            partition_base_dir=root,
        )
    return ds.dataset(files, format="parquet", filesystem=fs)
