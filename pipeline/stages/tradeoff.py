"""Shapes against padding: what `--max_buckets K` and `--static_shapes` cost.

Place in the flow: beside **bucket** (`stages.static_shapes`, `stages.bucket`),
for `seqshards stats` (its table and the stats.png panel) and the benchmark
(bench/static_shapes_bench.py). Pure numpy: for each K, the padding efficiency
and number of distinct [B, T] of the batches each mode would form, computed
with the rules the engines follow (`static_shapes.plan_batches` for static,
`bucket.simulate_batches` for dynamic batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.stages import bucket, static_shapes

# The K values `seqshards stats` and the benchmark compare (None: what auto picks
# without --max_buckets, at most `bucket.AUTO_MAX_BUCKETS` buckets).
TRADEOFF_K = (4, 8, 16, 32, 64, None)


def tradeoff(
    positions: Sequence[tuple[int, int]] | np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    ks: Sequence[int | None] = TRADEOFF_K,
) -> list[dict]:
    """Padding efficiency and number of shapes (distinct [B, T]) for each K,
    static and dynamic, with the batches each engine would form.

    Static: `--static_shapes --max_buckets K` (at most K shapes, the short
    batch included: `buckets_for_shapes`); dynamic: `--max_buckets K` (K
    buckets, each with its own short batch); None: the auto boundaries (at most
    `bucket.AUTO_MAX_BUCKETS` buckets).

    Returns one dict per K: `{k, static: {...}, dynamic: {...}}`, each side with
    `efficiency`, `shapes` (distinct [B, T]), `short_batches`, `batches` and
    `boundaries`.
    """
    lengths = np.asarray(lengths, np.int64)
    values, counts = np.unique(lengths, return_counts=True)
    histogram = dict(zip(values.tolist(), counts.tolist(), strict=True))
    bounded = [k for k in ks if k is not None]
    static_k = {
        k: static_shapes.buckets_for_shapes(k, histogram, batch_size, False)
        for k in bounded
    }
    static_b = static_shapes.bounded_boundaries_all(
        histogram, batch_size, sorted(set(static_k.values())), static=True
    )
    dynamic_b = static_shapes.bounded_boundaries_all(
        histogram, batch_size, bounded, static=False
    )
    auto = bucket.auto_boundaries(histogram, batch_size)
    rows = []
    for k in ks:
        s_bounds = auto if k is None else static_b[static_k[k]]
        d_bounds = auto if k is None else dynamic_b[k]
        rows.append(
            {
                "k": k,
                "static": static_summary(positions, lengths, s_bounds, batch_size),
                "dynamic": dynamic_summary(
                    positions, lengths, histogram, d_bounds, batch_size
                ),
            }
        )
    return rows


def _summary(shapes: Mapping, efficiency: float, boundaries, batch_size: int) -> dict:
    return {
        "efficiency": efficiency,
        "shapes": len(shapes),
        "distinct_t": len({t for _, t in shapes}),
        "short_batches": sum(n for (b, _), n in shapes.items() if b < batch_size),
        "batches": sum(shapes.values()),
        "boundaries": list(boundaries),
    }


def static_summary(positions, lengths, boundaries, batch_size: int) -> dict:
    """`efficiency`, `shapes` (distinct [B, T]), `distinct_t`, `short_batches`,
    `batches` and `boundaries` of static mode's batches (`plan_batches`)."""
    planned = static_shapes.plan_batches(positions, lengths, boundaries, batch_size)
    s = planned.summary(lengths, batch_size)
    return _summary(s["shapes"], s["efficiency"], boundaries, batch_size)


def dynamic_summary(positions, lengths, histogram, boundaries, batch_size: int) -> dict:
    """`static_summary`'s fields for dynamic batches (`bucket.simulate_batches`;
    `boundaries`: "auto" or a list)."""
    plan = bucket.make_plan(histogram, boundaries, batch_size)
    simulated = bucket.simulate_batches(positions, lengths, plan)
    shapes: dict = {}
    for b in simulated:
        for shape, n in b.shapes:
            shapes[shape] = shapes.get(shape, 0) + n
    real = sum(b.real_steps for b in simulated)
    efficiency = bucket.padding_efficiency(real, sum(b.padded_steps for b in simulated))
    return _summary(shapes, efficiency, plan.boundaries, batch_size)


def format_tradeoff(rows: Sequence[Mapping], batch_size: int) -> list[str]:
    """The `seqshards stats` table of `tradeoff` rows."""
    lines = [
        f"Shapes against padding at B={batch_size} (--max_buckets K; shapes: "
        "distinct [B, T]; static: --static_shapes, T = the bucket's, at most one "
        "short batch)",
        f"  {'K':>9}  {'static eff':>10}{'shapes':>8}{'short':>7}"
        f"  {'dynamic eff':>11}{'shapes':>8}{'short':>7}",
    ]
    for row in rows:
        s, d = row["static"], row["dynamic"]
        k = "auto" if row["k"] is None else str(row["k"])
        lines.append(
            f"  {k:>9}  {s['efficiency']:>10.4f}{s['shapes']:>8,}{s['short_batches']:>7,}"
            f"  {d['efficiency']:>11.4f}{d['shapes']:>8,}{d['short_batches']:>7,}"
        )
    return lines
