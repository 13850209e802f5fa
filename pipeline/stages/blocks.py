"""Valid records as blocks: what the Beam job's grouping steps move.

Place in the flow: validate -> **blocks** -> duplicate ids, histogram, batches
(`validate.DropDuplicateIds`, `bucket.FormBatches`) -> features. A `Block` holds
the valid records of one chunk (or a part of one) as arrays: positions, lengths
and either their bytes or where they are in their file (`extents`, from the
first read: `LocatedChunk`), to be read back there (`beam.refs`). Every
grouping step then moves one element per chunk and key instead of one per
record: Beam's cost per element (coders, the runner's buffers, and with worker
processes the data plane to and from the runner) was paid several times per
record and outweighed the records' own work. A light block (positions and
lengths only) is what the plan and the batches' ranks are computed from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class LocatedChunk:
    """Records of one file as its first read met them, with where they are:
    what `beam.read.ReadRecords` hands to validation, so records kept by
    reference need no second walk over the file's headers.

    Attributes:
      records: `(position, bytes)` pairs, as `tfrecord.read_file` yields them.
      offsets: int64 [n] byte offset of each record in its file
        (`tfrecord.read_file_located`).
    """

    records: list
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def extents(self, positions: Sequence[tuple[int, int]]) -> np.ndarray:
        """int64 [k, 2] `(offset, size)` of the records at `positions` (size:
        the bytes first read, before any truncation)."""
        at = {tuple(p): i for i, (p, _) in enumerate(self.records)}
        rows = [at[tuple(p)] for p in positions]
        sizes = [len(self.records[i][1]) for i in rows]
        return np.stack(
            [np.asarray(self.offsets, np.int64)[rows], np.asarray(sizes, np.int64)],
            axis=1,
        ).reshape(-1, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class Block:
    """Valid records, in any order.

    Attributes:
      positions: int64 [n, 2] `(file index, record index)` (or the bare-bytes
        positions of `beam.job.MaterializeSequenceFeatures`).
      lengths: int64 [n] validated lengths.
      data: [n] the records' bytes, or None: read back from `extents`.
      extents: int64 [n, 2] `(byte offset, size)` of each record in its file
        (`LocatedChunk`), or None.
    """

    positions: np.ndarray
    lengths: np.ndarray
    data: tuple | None = None
    extents: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def of(
        cls,
        members: Sequence[tuple],
        keep_bytes: bool = True,
        extents: np.ndarray | None = None,
    ) -> Block:
        """From `(position, length, bytes)` members (bytes dropped unless
        `keep_bytes`; `extents`, int64 [n, 2], then say where they are)."""
        positions = np.asarray([m[0] for m in members], np.int64).reshape(-1, 2)
        lengths = np.asarray([m[1] for m in members], np.int64)
        data = tuple(m[2] for m in members) if keep_bytes else None
        return cls(positions, lengths, data, None if data is not None else extents)

    @classmethod
    def concat(cls, blocks: Iterable[Block]) -> Block:
        blocks = list(blocks)
        positions = np.concatenate([b.positions for b in blocks]).reshape(-1, 2)
        lengths = np.concatenate([b.lengths for b in blocks]).astype(np.int64)
        data = extents = None
        if blocks and blocks[0].data is not None:
            data = tuple(d for b in blocks for d in b.data)
        elif blocks and blocks[0].extents is not None:
            extents = np.concatenate([b.extents for b in blocks]).reshape(-1, 2)
        return cls(positions, lengths, data, extents)

    def take(self, index: np.ndarray) -> Block:
        """The records `index` (ints or a boolean mask), in that order."""
        index = np.flatnonzero(index) if index.dtype == bool else index
        data = None if self.data is None else tuple(self.data[i] for i in index)
        extents = None if self.extents is None else self.extents[index]
        return Block(self.positions[index], self.lengths[index], data, extents)

    def sorted(self) -> Block:
        """By position (file, then record index); stable."""
        return self.take(np.lexsort((self.positions[:, 1], self.positions[:, 0])))

    def members(self) -> list[tuple]:
        """`(position, length, payload)` per record, as the features step and
        the dead letters take them: payload the record's bytes, or its
        `(offset, size)` in its file (`beam.refs.RecordFetcher.fill`)."""
        if self.data is not None:
            payload = self.data
        elif self.extents is not None:
            payload = [tuple(e) for e in self.extents.tolist()]
        else:
            payload = (None,) * len(self)
        return [
            ((f, r), length, d)
            for (f, r), length, d in zip(
                self.positions.tolist(), self.lengths.tolist(), payload, strict=True
            )
        ]


def by_key(keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """`(key, indices of the records with that key)` per distinct key, keys
    ascending, indices in their original order (how blocks are split by
    bucket or by id group before a shuffle)."""
    keys = np.asarray(keys, np.int64)
    if not len(keys):
        return []
    order = np.argsort(keys, kind="stable")
    present, starts = np.unique(keys[order], return_index=True)
    return list(zip(present.tolist(), np.split(order, starts[1:]), strict=True))


def histogram(block: Block) -> list[tuple[int, int]]:
    """`(length, count)` pairs of a block (to sum per length)."""
    lengths, counts = np.unique(block.lengths, return_counts=True)
    return list(zip(lengths.tolist(), counts.tolist(), strict=True))
