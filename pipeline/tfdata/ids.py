"""Duplicate ids of the tfdata engine in memory that does not grow with the data.

Place in the flow: first pass (`lengths`) -> **ids** -> the main pass's
drop duplicate ids (`chunks.drop_duplicates`).

First id wins (`validate.FirstIdWins`) needs, for each record, whether a
record with the same id came before it. Holding every id seen (a dict of
Python bytes and positions, ~200 B a record) grows with the input: ~400 MB at
2M records, ~20 GB at 100M. Instead the first pass logs each record's 64-bit
id fingerprint (`tf.fingerprint`, FarmHash Fingerprint64: 8 B), its id bytes
and its counted length to files (`IdLog`); at its end the fingerprints are
sorted and the repeated ones kept (`repeated`: a sorted array as long as the
input's duplicated ids, plus, rarely, fingerprints two different ids share).
Only a record whose fingerprint is repeated can be a duplicate, and for those
alone `FirstIdWins` compares the ids themselves (read back from the log in the
first pass, from the records in the main pass): a hash collision never drops
a record, and the record at the smallest position wins, as before.

Memory: 8 B a record while the fingerprints are sorted (0.8 GB at 100M), then
the repeated ones; on disk (a temporary directory) ~20 B a record plus the id
bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from pipeline.stages.validate import FirstIdWins

SCAN = 1 << 20  # fingerprints compared against `repeated` at a time


class IdBatch(NamedTuple):
    """A chunk's ids, without a Python object per id.

    Attributes:
      fingerprints: uint64 [N], `tf.fingerprint` of each id.
      sizes: int32 [N], bytes of each id.
      blob: The ids' bytes, one after the other.
    """

    fingerprints: np.ndarray
    sizes: np.ndarray
    blob: bytes


def summarize(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(fingerprints uint64 [N], sizes int32 [N], blob string []) of string ids
    [N], in TensorFlow: usable in a tf.data map (no Python per id)."""
    return _fingerprints(ids), tf.strings.length(ids), tf.strings.reduce_join(ids)


def _fingerprints(ids: tf.Tensor) -> tf.Tensor:
    return tf.bitcast(tf.fingerprint(ids), tf.uint64)


def fingerprints(ids: np.ndarray) -> np.ndarray:
    """uint64 [N]: the fingerprints `summarize` gives, of numpy ids (bytes);
    its other two ops (sizes, a join of every id) are not run."""
    if len(ids) == 0:
        return np.zeros(0, np.uint64)
    return _fingerprints(tf.constant(ids, tf.string)).numpy()


def id_batch(ids: np.ndarray) -> IdBatch:
    """The `IdBatch` of numpy ids (bytes), as the tf.data path computes it."""
    if len(ids) == 0:
        return IdBatch(np.zeros(0, np.uint64), np.zeros(0, np.int32), b"")
    fps, sizes, blob = summarize(tf.constant(ids, tf.string))
    return IdBatch(fps.numpy(), sizes.numpy(), blob.numpy())


def repeated_in(fps: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    """bool [N]: which of `fps` are in the sorted array `repeated`."""
    if len(repeated) == 0 or len(fps) == 0:
        return np.zeros(len(fps), bool)
    at = np.minimum(np.searchsorted(repeated, fps), len(repeated) - 1)
    return repeated[at] == fps


class IdLog:
    """The first pass's ids, one entry per record in reading order, on disk.

    `add` each chunk's ids with the length the histogram counted for each
    record (0: not counted; -1: fingerprint only, the record takes no part
    in the histogram's first-id-wins), then `finish` once.
    """

    def __init__(self, directory: str | None = None):
        self._dir = tempfile.mkdtemp(prefix="seqshards-ids-", dir=directory)
        self._files = {
            name: open(os.path.join(self._dir, name), "wb")
            for name in ("fingerprints", "ends", "counted", "ids")
        }
        self._end = 0
        self.records = 0

    def add(self, ids: IdBatch, counted: np.ndarray) -> None:
        """Logs a chunk: its `ids` and each record's counted length."""
        ends = self._end + np.cumsum(ids.sizes, dtype=np.int64)
        if len(ends):
            self._end = int(ends[-1])
        self._files["fingerprints"].write(ids.fingerprints.astype("<u8").tobytes())
        self._files["ends"].write(ends.astype("<i8").tobytes())
        self._files["counted"].write(np.asarray(counted, "<i4").tobytes())
        self._files["ids"].write(ids.blob)
        self.records += len(ends)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorts the fingerprints; compares the ids of the records sharing one.

        Returns:
          `(repeated, dropped)`: the sorted fingerprints met more than once
          (uint64), and the counted lengths (> 0) of the records whose id was
          met before at a smaller position: the histogram leaves them out.
          The log's files are removed.
        """
        try:
            for f in self._files.values():
                f.close()
            path = os.path.join(self._dir, "fingerprints")
            fps = np.fromfile(path, "<u8")
            fps.sort()  # in place: the only array as long as the input
            repeated = np.unique(fps[1:][fps[1:] == fps[:-1]])
            del fps
            return repeated, self._dropped(repeated)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _dropped(self, repeated: np.ndarray) -> np.ndarray:
        if len(repeated) == 0:
            return np.zeros(0, np.int64)
        read = {
            name: np.memmap(os.path.join(self._dir, name), dtype, mode="r")
            for name, dtype in (("fingerprints", "<u8"), ("ends", "<i8"),
                                ("counted", "<i4"))
        }  # fmt: skip
        suspects = np.concatenate([
            start + np.flatnonzero(repeated_in(read["fingerprints"][start:start + SCAN],
                                               repeated))
            for start in range(0, self.records, SCAN)
        ])  # fmt: skip
        first_ids, dropped = FirstIdWins(), []
        with open(os.path.join(self._dir, "ids"), "rb") as blob:
            for k in suspects.tolist():  # reading order
                counted = int(read["counted"][k])
                if counted < 0:
                    continue
                end = int(read["ends"][k])
                start = int(read["ends"][k - 1]) if k else 0
                ident = os.pread(blob.fileno(), end - start, start)
                if first_ids.first(ident, k) is not None and counted > 0:
                    dropped.append(counted)
        return np.asarray(dropped, np.int64)
