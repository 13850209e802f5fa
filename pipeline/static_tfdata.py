"""The tf.data engine's remainder batches in static mode (`--static_shapes`).

Place in the flow: bucket -> features -> write, at the end of the tfdata
engine's main pass. Each bucket's batch still being filled then holds its
remainder (fewer than B examples); `static_shapes.plan_batches` joins them,
bucket after bucket, and chunks them by B again. These functions do that on
the batches' contents as the engine keeps them (`_OpenBatch.contents()`:
`(runs [(rows [n, D], lengths)], lengths [B], context {name: (values, row
lengths)}, ids [B] | None)`) with views, no step copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Contents = tuple  # (runs, lengths, context, ids), see the module docstring


def join_contents(parts: Sequence[Contents]) -> Contents:
    """The examples of `parts`, one part after the other, as one contents."""
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return [], np.zeros(0, np.int64), {}, None
    runs = [run for part in parts for run in part[0]]
    lengths = np.concatenate([part[1] for part in parts])
    context = {
        name: tuple(
            np.concatenate([part[2][name][i] for part in parts]) for i in range(2)
        )
        for name in parts[0][2]
    }
    ids = None
    if parts[0][3] is not None:
        ids = np.concatenate([part[3] for part in parts])
    return runs, lengths, context, ids


def slice_contents(contents: Contents, start: int, stop: int) -> Contents:
    """Examples [start, stop) of `contents`."""
    runs, lengths, context, ids = contents
    out_runs, first = [], 0
    for rows, run_lengths in runs:
        a, b = max(start - first, 0), min(stop - first, len(run_lengths))
        if a < b:
            ends = np.concatenate([[0], np.cumsum(run_lengths)])
            out_runs.append((rows[ends[a] : ends[b]], run_lengths[a:b]))
        first += len(run_lengths)
    out_context = {}
    for name, (values, row_lengths) in context.items():
        ends = np.concatenate([[0], np.cumsum(row_lengths)])
        out_context[name] = (
            values[ends[start] : ends[stop]],
            row_lengths[start:stop],
        )
    out_ids = None if ids is None else ids[start:stop]
    return out_runs, lengths[start:stop], out_context, out_ids


def remainder_batches(parts: Sequence[Contents], batch_size: int) -> list[Contents]:
    """The remainder batches: `parts` (each bucket's remainder, buckets in
    order) joined and chunked by `batch_size` (only the last may be short)."""
    joined = join_contents(parts)
    n = len(joined[1])
    return [
        slice_contents(joined, start, min(start + batch_size, n))
        for start in range(0, n, batch_size)
    ]
