"""The tfdata engine in static mode (`--static_shapes`): its lengths pass and
its remainder batches.

Place in the flow: a first pass before **bucket** (`valid_examples`: the exact
valid examples, since static batches need them: at most one batch may be
short, and the Beam job plans from the same ones), then, at the end of the
main pass, the remainder batches (`remainder_batches`). Each bucket's batch
still being filled then holds its remainder (fewer than B examples);
`stages.static_shapes.plan_batches` joins them, bucket after bucket, and
chunks them by B again. These functions do that on the batches' contents as
the engine keeps them (`batches.OpenBatch.contents()`: `(runs [(rows [n, D],
lengths)], lengths [B], context {name: (values, row lengths)}, ids [B] |
None)`) with views, no step copied. `check_written` compares what the engine
wrote with the plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.stages import metadata, validate
from pipeline.stages.static_shapes import StaticBatches
from pipeline.tfdata.chunks import checked_chunks, drop_duplicates

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


def valid_examples(
    files, decoder, spec, policy, report
) -> tuple[np.ndarray, np.ndarray]:
    """Positions int64 [N, 2] and lengths [N] of the valid examples, validated
    and deduplicated as in the main pass (`report`: a `Progress` or None)."""
    first_ids = validate.FirstIdWins()
    positions, lengths = [], []
    for chunk, read_errors, nbytes, result in checked_chunks(
        files, decoder, spec, policy
    ):
        for position, length, _ in drop_duplicates(spec, result, files, first_ids)[0]:
            positions.append(position)
            lengths.append(length)
        if report:
            report.add(len(chunk) + len(read_errors), nbytes)
    if report:
        report.done()
    return np.asarray(positions, np.int64).reshape(-1, 2), np.asarray(lengths, np.int64)


def histogram(lengths: np.ndarray) -> dict[int, int]:
    """{length: count} of `valid_examples`' lengths."""
    values, counts = np.unique(lengths, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def check_written(planned: StaticBatches, totals: metadata.Totals) -> None:
    """Raises RuntimeError unless the batches written are those
    `static_shapes.plan_batches` planned (a bug, never a data fault)."""
    expected = (len(planned.batches), sum(len(b) for b in planned.batches))
    if expected != (totals.batches, totals.examples):
        raise RuntimeError(
            f"Static shapes: wrote {totals.examples} examples in {totals.batches} "
            f"batches, the plan has {expected[1]} in {expected[0]} (a bug, not a "
            "data fault)"
        )
