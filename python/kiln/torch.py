"""A kiln sink for a PyTorch training loop: ``kiln.torch.Dataset``.

Each rank reads whole shards (``shards[rank::world_size]`` of the manifest's list, and
within a rank each DataLoader worker every ``num_workers``-th of those), row by row, in
order; ``state_dict()`` says where the rank is (shard and row), and a dataset given that
state by ``load_state_dict()`` goes on from the next row, so a job restarted mid-epoch
sees every row exactly once. With ``torch`` installed the class is a
``torch.utils.data.IterableDataset``; without it, a plain iterable (for tests and
non-torch loops).
"""

from ._driver import KilnError, _shards

try:  # pragma: no cover - depends on the environment
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # torch is optional
    _Base = object

    def _worker_info():
        return None


class Dataset(_Base):
    """The rows of ``sink``'s shards that belong to ``rank`` of ``world_size``.

    ``columns``: the columns to read (default all); ``batch_rows``: rows read from a shard
    at a time. Rows are dicts of Python values (``pyarrow``'s ``to_pylist``).
    """

    def __init__(self, sink, rank=0, world_size=1, *, columns=None, batch_rows=1024, filesystem=None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size}")
        self.fs, self.root, manifest, files = _shards(sink, filesystem)
        self.pipeline_hash = manifest.get("pipeline_hash")
        rows = [s["rows"] for s in manifest["shards"]]
        self.files = files[rank::world_size]
        self.rows = rows[rank::world_size]
        self.rank, self.world_size = rank, world_size
        self.columns, self.batch_rows = columns, batch_rows
        self.epoch = 0
        # Where the next row is: a shard of `self.files` and a row in it.
        self._shard, self._row = 0, 0

    def __len__(self):
        return sum(self.rows)

    def state_dict(self):
        """Where this rank is: restore it with ``load_state_dict`` to resume."""
        return {
            "pipeline_hash": self.pipeline_hash,
            "rank": self.rank,
            "world_size": self.world_size,
            "epoch": self.epoch,
            "shard": self._shard,
            "row": self._row,
        }

    def load_state_dict(self, state):
        if state.get("pipeline_hash") != self.pipeline_hash:
            raise KilnError(
                "this state was saved over another dataset (its pipeline hash differs): "
                "resuming would repeat or skip rows"
            )
        if (state.get("rank"), state.get("world_size")) != (self.rank, self.world_size):
            raise KilnError(
                f"this state is rank {state.get('rank')} of {state.get('world_size')}, "
                f"not {self.rank} of {self.world_size}"
            )
        self.epoch, self._shard, self._row = state["epoch"], state["shard"], state["row"]

    def set_epoch(self, epoch):
        """Starts ``epoch`` from its first row."""
        self.epoch, self._shard, self._row = epoch, 0, 0

    def __iter__(self):
        import pyarrow.parquet as pq

        info = _worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        for shard in range(self._shard, len(self.files)):
            if shard % workers != worker:
                continue
            skip = self._row if shard == self._shard else 0
            with self.fs.open_input_file(self.files[shard]) as f:
                reader = pq.ParquetFile(f)
                seen = 0
                for batch in reader.iter_batches(batch_size=self.batch_rows, columns=self.columns):
                    n = batch.num_rows
                    if seen + n <= skip:
                        seen += n
                        continue
                    start = max(skip - seen, 0)
                    for i, row in enumerate(batch.slice(start).to_pylist()):
                        self._shard, self._row = shard, seen + start + i + 1
                        yield row
                    seen += n
            self._shard, self._row = shard + 1, 0
        self.epoch += 1
        self._shard, self._row = 0, 0
