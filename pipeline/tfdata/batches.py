"""Batches of the tfdata engine, filled in place: `OpenBatch`, `Blocks`, `fill`.

Place in the flow: **bucket** -> features -> write of the tfdata engine. The
main thread gives each example its batch and rows in a block, with no data
copied (`BatchAssigner`); a features thread copies a chunk's steps there
(`fill`); the writer writes each record from views of the blocks.
"""

from __future__ import annotations

import numpy as np

from pipeline.stages import bucket, features

BLOCK_BYTES = 1 << 18  # the unit of memory for examples waiting for a batch


def take_rows(values: np.ndarray, row_lengths: np.ndarray, rows: np.ndarray):
    """Rows `rows` of a ragged (values, row_lengths) pair, as the same pair."""
    starts = np.cumsum(row_lengths) - row_lengths
    index = features.ragged_index(starts, row_lengths, rows)
    return np.take(values, index, axis=0), row_lengths[rows]  # 10x `values[index]`


class OpenBatch:
    """A bucket's batch being filled. Examples join it in reading order and get
    rows of blocks (`Blocks`), one example after the other; a features thread
    then copies the chunk's steps there (`fill`), the only copy of a step in
    this process. The record is written from views of those rows plus shared
    zeros for the padding (`batch_format.padded_blocks`, `output.RecordWriter`)."""

    def __init__(self, size: int, length: int | None = None):
        self.size, self.n = size, 0
        self.length = length  # T under --static_shapes, else None (the longest)
        # (block, first row, rows, lengths) of each run of examples
        self.parts: list[tuple[np.ndarray, int, int, np.ndarray]] = []
        self._block: np.ndarray | None = None  # the block being filled
        self._used = 0  # its rows given out
        self._taken: list[np.ndarray] = []  # the blocks it holds, each once
        self._context: dict[str, tuple[list, list]] = {}  # values, row lengths
        self._ids: list = []

    def room(self) -> int:
        return self.size - self.n

    def add(
        self,
        lengths: np.ndarray,
        context: dict,
        ids,
        blocks: Blocks,
        rows: int | None = None,
    ) -> list:
        """Gives rows to examples with these lengths, context {name: (values,
        row_lengths)} and ids (or None), taking blocks as needed. Returns where
        their steps go, in order: [(block, first row, rows)].

        `rows`: sum(lengths), if the caller has it (`BatchAssigner`: one
        cumulative sum a chunk, not one a call)."""
        total = int(lengths.sum()) if rows is None else rows
        if self._block is None:  # a new batch: the block its first example takes
            self._block, self._used = blocks.get(int(lengths[0])), 0
            self._taken.append(self._block)
        if total <= len(self._block) - self._used:
            # As a rule they fit in the block being filled: one run.
            fills = [(self._block, self._used, total)]
            self.parts.append((self._block, self._used, total, lengths))
            self._used += total
        else:
            fills = self._spread(lengths, blocks)
        for name, (values, row_lengths) in context.items():
            columns = self._context.get(name)
            if columns is None:
                columns = self._context[name] = ([], [])
            columns[0].append(values)
            columns[1].append(row_lengths)
        if ids is not None:
            self._ids.append(ids)
        self.n += len(lengths)
        return fills

    def _spread(self, lengths: np.ndarray, blocks: Blocks) -> list:
        """`add`'s rows when the examples need more blocks: the rest of the
        block being filled, then new ones, an example never split."""
        fills = []
        ends = np.cumsum(lengths)
        i = 0
        while i < len(lengths):
            done = int(ends[i - 1]) if i else 0
            room = 0 if self._block is None else len(self._block) - self._used
            j = int(np.searchsorted(ends, done + room, side="right"))
            if j == i:  # the next example needs a new block
                self._block, self._used = blocks.get(int(lengths[i])), 0
                self._taken.append(self._block)
                continue
            rows = int(ends[j - 1]) - done
            self.parts.append((self._block, self._used, rows, lengths[i:j]))
            fills.append((self._block, self._used, rows))
            self._used += rows
            i = j
        return fills

    def blocks(self) -> list[np.ndarray]:
        """The blocks holding the batch's steps (each once)."""
        return list(self._taken)

    def contents(self) -> tuple:
        """(runs [(rows, lengths)]: the examples' steps, one after the other,
        lengths [B], context {name: (values, row lengths)}, ids [B] or None),
        once every example is filled."""
        runs = [
            (block[first : first + rows], lengths)
            for block, first, rows, lengths in self.parts
        ]
        lengths = np.concatenate([part[3] for part in self.parts])
        context = {
            name: (np.concatenate(values), np.concatenate(row_lengths))
            for name, (values, row_lengths) in self._context.items()
        }
        ids = np.concatenate(self._ids) if self._ids else None
        return runs, lengths, context, ids


class Blocks:
    """Blocks of rows [R, D] (`BLOCK_BYTES`) where batches being filled keep their
    examples' steps, reused once a batch is written: memory follows what
    waits (plus at most a block per batch), and steps are copied into pages
    already in memory (a fresh array faults in a zeroed page every 4 KiB,
    which costs more than the copy). An example longer than R rows gets a
    block of its own, not reused. Thread-safe (list append and pop)."""

    def __init__(self, depth: int):
        self.depth = depth
        self.rows = max(1, BLOCK_BYTES // (4 * depth))
        self._free: list[np.ndarray] = []

    def get(self, rows: int) -> np.ndarray:
        if rows > self.rows:
            return np.empty((rows, self.depth), np.float32)
        try:
            return self._free.pop()
        except IndexError:
            return np.empty((self.rows, self.depth), np.float32)

    def put(self, block: np.ndarray) -> None:
        if len(block) == self.rows:
            self._free.append(block)


def fill(
    rows: np.ndarray,
    lengths: np.ndarray,
    order: np.ndarray,
    fills: list,
    starts: np.ndarray | None = None,
):
    """Copies a chunk's flat rows (`rows`, example after example, `lengths`)
    to its batches' blocks: the examples in `order` (by bucket) are contiguous
    runs of rows, one per fill [(block, first row, rows)], in that order. One
    gather per fill, straight into the block (no array of the sorted rows).
    `starts`: each example's first row in `rows` when `rows` holds more
    (a worker's rows of every valid record, duplicates dropped after)."""
    if starts is None:
        starts = np.cumsum(lengths) - lengths
    index = features.ragged_index(starts, lengths, order)
    at = 0
    for block, first, count in fills:
        # mode="clip": the indices are valid; "raise" would buffer `out`.
        np.take(
            rows, index[at : at + count], axis=0, out=block[first : first + count],
            mode="clip",
        )  # fmt: skip
        at += count


def by_bucket(lengths: np.ndarray, boundaries):
    """(order, [(bucket, start, stop)]): `order` sorts the examples by bucket,
    reading order kept within one; bucket `bucket` holds order[start:stop]."""
    ids = bucket.assign_buckets(lengths, boundaries)
    order = np.argsort(ids, kind="stable")
    bids, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    spans = [
        (bid, start, start + count)
        for bid, start, count in zip(
            bids.tolist(), starts.tolist(), counts.tolist(), strict=True
        )
    ]
    return order, spans


class BatchAssigner:
    """Gives a chunk's examples their batch and rows in its blocks, in reading
    order (the main thread's only per-chunk work with the data). Each bucket
    has one batch being filled; a full one is handed back to be written.
    `lengths` (`BucketPlan.lengths`, `--static_shapes`): T of each bucket's
    batches; empty: each batch's longest example."""

    def __init__(self, batch_size: int, boundaries, blocks: Blocks, lengths=()):
        self._batch_size, self._boundaries = batch_size, boundaries
        self._blocks, self._lengths = blocks, tuple(lengths)
        self._open: dict[int, OpenBatch] = {}  # bucket -> its batch being filled

    def assign(self, lengths: np.ndarray, decoded, rows: np.ndarray) -> tuple:
        """Gives the examples `rows` of `decoded` (lengths `lengths`) their rows.

        Returns:
          `(order, fills, full)`: the examples by bucket, fills [(block, first
          row, rows)] for `fill`, and the batches the chunk completes, in the
          order of the example completing them (as if examples joined one by
          one).
        """
        order, spans = by_bucket(lengths, self._boundaries)
        lengths = lengths[order]
        taken = rows[order]
        # Example i (sorted): ends[i + 1] - ends[i] steps; its context values
        # v[at[i] : at[i + 1]] (Python ints: sliced once a batch a chunk).
        ends = [0, *np.cumsum(lengths).tolist()]
        context = []
        for name, (values, row_lengths) in decoded.context.items():
            v, rl = take_rows(values, row_lengths, taken)
            context.append((name, v, rl, [0, *np.cumsum(rl).tolist()]))
        ids = None if decoded.ids is None else decoded.ids[taken]
        fills, full = [], []
        for bid, start, stop in spans:
            while start < stop:
                batch = self._open.get(bid)
                if batch is None:
                    length = self._lengths[bid] if self._lengths else None
                    batch = self._open[bid] = OpenBatch(self._batch_size, length)
                end = min(stop, start + batch.room())
                fills += batch.add(
                    lengths[start:end],
                    {
                        n: (v[at[start] : at[end]], rl[start:end])
                        for n, v, rl, at in context
                    },
                    None if ids is None else ids[start:end],
                    self._blocks,
                    ends[end] - ends[start],
                )
                if not batch.room():
                    full.append((end - 1, batch))
                    del self._open[bid]
                start = end
        full.sort(key=lambda f: order[f[0]])
        return order, fills, [batch for _, batch in full]

    def remainders(self) -> list[OpenBatch]:
        """Each bucket's short last batch, bucket by bucket (then none is open)."""
        batches = [self._open[bid] for bid in sorted(self._open)]
        self._open.clear()
        return batches
