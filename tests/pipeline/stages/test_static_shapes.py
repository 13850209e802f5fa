"""stages/static_shapes.py: the bounded programme, the plan, the static batches."""

import itertools

import numpy as np
import pytest
from bench_modules import load
from pipeline_data import lognormal_examples

from pipeline.stages import bucket, config, static_shapes


def _brute_force(histogram, max_k, charge):
    """Cheapest boundaries over every split of the distinct lengths."""
    lengths = sorted(histogram)
    best = (np.inf, None)
    for k in range(1, max_k + 1):
        for cuts in itertools.combinations(range(1, len(lengths)), k - 1):
            groups = np.split(np.asarray(lengths), list(cuts))
            cost = sum(
                (sum(histogram[v] for v in g) + charge) * g.max() for g in groups
            )
            if cost < best[0] - 1e-9:
                best = (cost, tuple(int(g.max()) for g in groups[:-1]))
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_k", [1, 2, 3, 5])
def test_bounded_static_boundaries_are_the_cheapest_split(seed, max_k):
    rng = np.random.default_rng(seed)
    values = np.unique(rng.integers(1, 60, 9))
    histogram = {int(v): int(rng.integers(1, 40)) for v in values}
    got = static_shapes.bounded_boundaries(histogram, 16, max_k, static=True)
    cost, expected = _brute_force(histogram, max_k, 0.0)
    assert len(got) + 1 <= max_k
    lengths, counts = bucket.sorted_histogram(histogram)
    ts = static_shapes.bucket_lengths(got, int(lengths.max()))
    got_cost = sum(
        c * ts[bucket.assign_bucket(int(v), got)]
        for v, c in zip(lengths, counts, strict=True)
    )
    assert got_cost == pytest.approx(cost)
    assert got == expected


def test_bounded_dynamic_boundaries_charge_each_bucket_and_keep_auto():
    rng = np.random.default_rng(3)
    lengths = np.clip(np.rint(rng.lognormal(np.log(30), 1.0, 5000)), 1, 400)
    values, counts = np.unique(lengths.astype(int), return_counts=True)
    histogram = dict(zip(values.tolist(), counts.tolist(), strict=True))
    auto = bucket.auto_boundaries(histogram, 64)
    # K not binding: exactly the auto boundaries.
    big = static_shapes.bounded_boundaries(histogram, 64, len(auto) + 1, static=False)
    assert big == auto
    small = static_shapes.bounded_boundaries(histogram, 64, 6, static=False)
    assert len(small) + 1 <= 6
    small_histogram = dict(list(histogram.items())[:8])
    cost, expected = _brute_force(small_histogram, 3, bucket.BUCKET_PENALTY * 64)
    got = static_shapes.bounded_boundaries(small_histogram, 64, 3, static=False)
    if len(bucket.auto_boundaries(small_histogram, 64)) + 1 > 3:
        assert got == expected


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_plan_batches_full_batches_one_short_at_most_and_t_per_bucket(seed, drop):
    positions, lengths = lognormal_examples(seed)
    b_size = 32
    histogram = dict(zip(*np.unique(lengths, return_counts=True), strict=True))
    bounds = static_shapes.bounded_boundaries(histogram, b_size, 6, static=True)
    ts = static_shapes.bucket_lengths(bounds, int(lengths.max()))
    planned = static_shapes.plan_batches(
        positions, lengths, bounds, b_size, drop_remainder=drop
    )
    members = np.concatenate([*planned.batches, planned.dropped])
    assert sorted(members.tolist()) == list(range(len(lengths)))  # each once
    sizes = [len(m) for m in planned.batches]
    assert sum(s < b_size for s in sizes) <= (0 if drop else 1)
    assert all(s == b_size for s in sizes[:-1])
    buckets = bucket.assign_buckets(lengths, bounds)
    for batch, t in zip(planned.batches, planned.lengths, strict=True):
        assert t in ts and t >= lengths[batch].max()
        assert t == ts[buckets[batch].max()]
    per_bucket = np.bincount(buckets)
    if drop:
        assert len(planned.dropped) == int((per_bucket % b_size).sum())
    summary = planned.summary(lengths, b_size)
    assert len({t for _, t in summary["shapes"]}) <= len(bounds) + 1
    # Bucket batches first, in the order of the example completing them.
    full = [m for m in planned.batches if len(m) == b_size][
        : int((per_bucket // b_size).sum())
    ]
    last = [tuple(positions[m[-1]]) for m in full]
    assert last == sorted(last)


def test_buckets_for_shapes_leaves_room_for_the_short_batch():
    histogram = {5: 10, 9: 7}  # 17 examples
    assert static_shapes.buckets_for_shapes(8, histogram, 4, False) == 7
    assert static_shapes.buckets_for_shapes(8, histogram, 4, True) == 8
    assert static_shapes.buckets_for_shapes(8, {5: 8}, 4, False) == 8
    assert static_shapes.buckets_for_shapes(1, histogram, 4, False) == 1


def test_make_plan_without_the_options_is_the_bucket_plan():
    positions, lengths = lognormal_examples(7)
    histogram = dict(zip(*np.unique(lengths, return_counts=True), strict=True))
    for boundaries in ("auto", (8, 16, 40)):
        plan = static_shapes.make_plan(histogram, boundaries, 32)
        assert plan == bucket.make_plan(histogram, boundaries, 32)
        assert plan.lengths == ()
    static = static_shapes.make_plan(
        histogram, "auto", 32, max_buckets=5, static_shapes=True
    )
    assert len(static.boundaries) + 1 <= 5
    assert static.lengths == (*static.boundaries, int(lengths.max()))
    bounded = static_shapes.make_plan(histogram, "auto", 32, max_buckets=3)
    assert len(bounded.boundaries) + 1 <= 3 and bounded.lengths == ()


def test_max_buckets_is_checked():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_buckets"):
            config.check_max_buckets(bad)
    config.check_max_buckets(None)


@pytest.mark.slow
def test_bench_data_k32_static_meets_the_issue_target():
    """Issue 22's done-when on the 200k bench lengths: B=128, K=32 static."""
    positions, lengths = load("static_shapes_bench").bench_examples(200_000)
    values, counts = np.unique(lengths, return_counts=True)
    histogram = dict(zip(values.tolist(), counts.tolist(), strict=True))
    plan = static_shapes.make_plan(
        histogram, "auto", 128, max_buckets=32, static_shapes=True
    )
    summary = static_shapes.plan_batches(
        positions, lengths, plan.boundaries, 128
    ).summary(lengths, 128)
    assert len(summary["shapes"]) <= 32
    assert summary["short_batches"] <= 1
    assert summary["efficiency"] >= 0.93
    # Within ~1 % of the best 32 static shapes can do (T = bucket max, no batching).
    best = static_shapes.bounded_boundaries(histogram, 128, 32, static=True)
    ts = np.asarray(static_shapes.bucket_lengths(best, int(values.max())))
    ideal = (values * counts).sum() / (counts * ts[np.searchsorted(best, values)]).sum()
    assert summary["efficiency"] >= ideal - 0.01
