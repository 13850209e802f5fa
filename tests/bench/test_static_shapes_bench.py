"""bench/static_shapes_bench.py: shapes against padding on the bench lengths."""

import json

from bench_modules import load

static_bench = load("static_shapes_bench")


def test_rows_on_bench_lengths_bound_the_shapes(tmp_path):
    results = tmp_path / "static_shapes.json"
    assert (
        static_bench.main(["--num_examples", "20000", "--results", str(results)]) == 0
    )
    rows = {r["choice"]: r for r in json.loads(results.read_text())["rows"]}
    for k in static_bench.STATIC_K:
        row = rows[f"static K={k}"]
        assert row["shapes"] <= k and row["short_batches"] <= 1
    effs = [rows[f"static K={k}"]["efficiency"] for k in static_bench.STATIC_K]
    assert effs == sorted(effs)
    reference = rows["reference, to boundary"]
    assert (
        reference["distinct_t"] <= len(static_bench.reference_pipeline.BOUNDARIES) + 1
    )
    assert rows["dynamic auto"]["short_batches"] > 1  # one per bucket
    assert rows["dynamic auto"]["efficiency"] > rows["static K=64"]["efficiency"]
