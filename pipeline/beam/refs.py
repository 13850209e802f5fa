"""Records by reference (Beam job): shuffle where they are, fetch the bytes there.

Place in the flow: read -> validate -> **(bytes dropped)** -> bucket -> **(bytes
fetched)** -> features. With `--shuffle_payload reference` the valid records
travel through the grouping steps as positions, lengths and extents
(`blocks.Block` without bytes): the first read (`tfrecord.read_file_located`)
noted each record's byte offset and size, so the worker computing a batch reads
each record back with one ranged read of its data and CRC (`tfrecord.read_at`:
a `pread` locally, a ranged read through `fileio.RemoteReader`'s cached blocks
on object stores), checks the CRC and applies the length policy again, so it
sees the very bytes validation saw. No file's length headers are walked again,
and a damaged file needs nothing special (its resync happened in the first
read; the extents point at the records it kept).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from pipeline.stages import fileio, tfrecord, validate


class RecordFetcher:
    """Reads records back by extent; one per worker (holds its open files)."""

    def __init__(self, files: Sequence[str], policy: validate.Policy):
        self._files, self._policy = tuple(files), policy
        self._open: dict[int, object] = {}
        self._lock = threading.Lock()  # threads of one worker share the fetcher

    def _file(self, file_index: int):
        with self._lock:
            f = self._open.get(file_index)
            if f is None:
                f = self._open[file_index] = tfrecord.open_file(self._files[file_index])
            return f

    def fetch(self, file_index: int, offset: int, size: int) -> bytes:
        """The validated bytes (length policy applied) of the record of
        `size` bytes at byte `offset` of input file `file_index`.

        Raises:
          RuntimeError: the record no longer matches its CRC (the input file
            changed while the job ran).
        """
        f = self._file(file_index)
        name = self._files[file_index]
        if fileio.is_remote(name):  # a seek and a read: one at a time
            with self._lock:
                data = tfrecord.read_at(f, offset, size, name)
        else:
            data = tfrecord.read_at(f, offset, size, name)
        return validate.apply_max_length(data, self._policy)

    def fill(self, members: Iterable[tuple]) -> list[tuple]:
        """`(position, length, payload)` -> `(position, length, bytes)`, in
        order: a payload that is an `(offset, size)` extent is read (reads
        sorted by file and offset), bytes are kept."""
        members = list(members)
        wanted = sorted((m[0][0], *m[2]) for m in members if isinstance(m[2], tuple))
        got = {(f, offset): self.fetch(f, offset, size) for f, offset, size in wanted}
        return [
            (m[0], m[1], got[(m[0][0], m[2][0])]) if isinstance(m[2], tuple) else m
            for m in members
        ]

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()
