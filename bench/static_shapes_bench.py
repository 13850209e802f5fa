"""Static shapes on the bench data: padding efficiency against the number of shapes.

Part of `make bench` (after run_bench.py). Pure computation on lengths: the
bench data's lengths are drawn by `gen_data.draw_chunk` (the same examples
run_bench materializes, at the same positions: 8 shards of contiguous
examples), and the batches each choice gives are formed with the job's own
rules (`stages.static_shapes.plan_batches` for --static_shapes, `bucket.simulate_batches`
for dynamic batches). Rows, at B=128:

  static K=16/32/64   --static_shapes --max_buckets K (at most K shapes, the
                      one short batch included)
  dynamic auto        --bucket_boundaries auto (T = each batch's longest)
  reference           the stock-TF reference's 22 hand-picked boundaries
                      (bench/reference_pipeline.py), T = each batch's longest
                      (as it runs) and padded to the boundary (static rule)

Shapes = distinct [B, T] of the batches (what a compiled training loop
compiles). Writes bench/results/static_shapes.json.

Usage:
  python bench/static_shapes_bench.py            # 200k (make bench)
  python bench/static_shapes_bench.py --quick    # 20k
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
import gen_data  # noqa: E402
import reference_pipeline  # noqa: E402

from pipeline.stages import static_shapes, tradeoff  # noqa: E402

BATCH_SIZE = reference_pipeline.BATCH_SIZE
STATIC_K = (16, 32, 64)


def bench_examples(n: int, seed: int = 0, shards: int = 8):
    """(positions [n, 2], lengths [n]) of the bench data set of `n` examples."""
    chunks = range((n + gen_data.CHUNK - 1) // gen_data.CHUNK)
    lengths = np.concatenate(
        [
            gen_data.draw_chunk(seed, c, min(gen_data.CHUNK, n - c * gen_data.CHUNK))[
                "lengths"
            ]
            for c in chunks
        ]
    )
    bounds = np.asarray([s * n // shards for s in range(shards + 1)])
    index = np.arange(n)
    shard = np.searchsorted(bounds, index, side="right") - 1
    return np.stack([shard, index - bounds[shard]], axis=1), lengths


def _static_row(name, positions, lengths, boundaries):
    row = tradeoff.static_summary(positions, lengths, boundaries, BATCH_SIZE)
    return {"choice": name, **row}


def _dynamic_row(name, positions, lengths, histogram, boundaries):
    row = tradeoff.dynamic_summary(
        positions, lengths, histogram, boundaries, BATCH_SIZE
    )
    return {"choice": name, **row}


def rows(n: int) -> list[dict]:
    """The benchmark's rows for the first `n` bench examples."""
    positions, lengths = bench_examples(n)
    values, counts = np.unique(lengths, return_counts=True)
    histogram = dict(zip(values.tolist(), counts.tolist(), strict=True))
    out = []
    for k in STATIC_K:
        plan = static_shapes.make_plan(
            histogram, "auto", BATCH_SIZE, max_buckets=k, static_shapes=True
        )
        out.append(_static_row(f"static K={k}", positions, lengths, plan.boundaries))
    out.append(_dynamic_row("dynamic auto", positions, lengths, histogram, "auto"))
    reference = tuple(reference_pipeline.BOUNDARIES)
    out.append(_dynamic_row("reference", positions, lengths, histogram, reference))
    out.append(_static_row("reference, to boundary", positions, lengths, reference))
    return out


def table(results: list[dict], n: int) -> str:
    lines = [
        f"Static shapes on the bench data: {n:,} examples, B={BATCH_SIZE} "
        "(shapes: distinct [B, T])",
        f"  {'choice':<24}{'efficiency':>11}{'shapes':>8}{'T values':>9}"
        f"{'short':>7}{'batches':>9}",
    ]
    for r in results:
        lines.append(
            f"  {r['choice']:<24}{r['efficiency']:>11.4f}{r['shapes']:>8}"
            f"{r['distinct_t']:>9}{r['short_batches']:>7}{r['batches']:>9,}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k examples, not 200k.")
    parser.add_argument("--num_examples", type=int, default=None)
    parser.add_argument(
        "--results", default=str(BENCH / "results" / "static_shapes.json")
    )
    args = parser.parse_args(argv)
    n = args.num_examples or (20_000 if args.quick else 200_000)
    results = rows(n)
    print(table(results, n))
    if args.results:
        os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
        with open(args.results, "w") as f:
            json.dump(
                {"num_examples": n, "batch_size": BATCH_SIZE, "rows": results},
                f,
                indent=2,
                sort_keys=True,
            )
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
