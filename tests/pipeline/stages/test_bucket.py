"""Pure bucketing functions: boundaries, assignment, auto search, plans."""

import collections

import numpy as np
import pytest
from batch_ranks import ranked_keys

from pipeline.beam import bucket as beam_bucket
from pipeline.stages import bucket
from pipeline.stages.blocks import Block


def lognormal_hist(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(30), 1.0, n)), 1, 1000).astype(int)
    return lengths, collections.Counter(lengths.tolist())


def test_assign_bucket_upper_bounds_inclusive():
    bounds = (8, 16, 32)
    assert [
        bucket.assign_bucket(n, bounds) for n in (1, 8, 9, 16, 17, 32, 33, 999)
    ] == [0, 0, 1, 1, 2, 2, 3, 3]
    lengths = np.array([1, 8, 9, 16, 17, 32, 33, 999])
    assert bucket.assign_buckets(lengths, bounds).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    "text,expected", [("auto", "auto"), ("8,16,32", (8, 16, 32)), (" 4, 9 ", (4, 9))]
)
def test_parse_boundaries(text, expected):
    assert bucket.parse_boundaries(text) == expected


@pytest.mark.parametrize("text", ["", "8,8", "16,8", "0,4", "a,b"])
def test_parse_boundaries_rejects(text):
    with pytest.raises(ValueError, match="bucket_boundaries"):
        bucket.parse_boundaries(text)


def test_auto_boundaries_beat_single_bucket_on_lognormal():
    lengths, hist = lognormal_hist()
    bounds = bucket.auto_boundaries(hist, 128)
    auto = bucket.estimated_padding_efficiency(hist, bounds)
    single = bucket.estimated_padding_efficiency(hist, ())
    assert auto >= 0.98 > 0.2 > single
    # Short batches (at most one per bucket) stay a small share of all batches.
    per_bucket = collections.Counter(bucket.assign_buckets(lengths, bounds).tolist())
    batches = sum(-(-n // 128) for n in per_bucket.values())
    assert len(per_bucket) <= 0.1 * batches


@pytest.mark.parametrize("n", [2_400, 20_000])
def test_auto_boundaries_beat_the_reference_list_on_small_inputs(n):
    # A thin long tail must not be padded into one batch (it was, when every
    # bucket had to hold a full batch: 0.81 vs the fixed list's 0.88 at 2,400).
    _, hist = lognormal_hist(n, seed=3)
    reference = [8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160]
    auto = bucket.estimated_padding_efficiency(hist, bucket.auto_boundaries(hist, 64))
    assert auto > bucket.estimated_padding_efficiency(hist, reference)


def test_actual_batches_meet_the_estimate():
    lengths, hist = lognormal_hist(50_000, seed=1)
    plan = bucket.make_plan(hist, "auto", 128)
    ids = bucket.assign_buckets(lengths, plan.boundaries)
    real, padded = int(lengths.sum()), 0
    for b in np.unique(ids):
        for part in bucket.chunk(lengths[ids == b], 128):
            padded += len(part) * int(part.max())
    assert real / padded >= plan.estimated_efficiency - 1e-9
    assert real / padded >= 0.95  # 50k examples; >= 98 % at 200k (test above)


def test_small_or_flat_histograms_give_one_bucket():
    assert bucket.auto_boundaries({5: 10}, 16) == ()
    assert bucket.auto_boundaries({}, 16) == ()
    assert bucket.auto_boundaries({3: 10, 9: 10}, 16) == ()


def test_auto_boundaries_stop_at_max_buckets():
    # Bucket count (the memory of the open batches) must not grow with the data:
    # the penalized search alone finds more buckets the more examples there are.
    lengths, hist = lognormal_hist(2_000_000, seed=5)
    unbounded = bucket.auto_boundaries(hist, 128, max_buckets=None)
    assert len(unbounded) + 1 > bucket.AUTO_MAX_BUCKETS
    capped = bucket.auto_boundaries(hist, 128)
    assert len(capped) + 1 == bucket.AUTO_MAX_BUCKETS
    assert bucket.make_plan(hist, "auto", 128).boundaries == capped
    # The bounded optimum of the same cost: no other K-bucket split costs less.
    assert (
        capped
        == bucket.bounded_search(
            hist, [bucket.AUTO_MAX_BUCKETS], bucket.BUCKET_PENALTY * 128
        )[bucket.AUTO_MAX_BUCKETS]
    )
    assert bucket.estimated_padding_efficiency(hist, capped) >= 0.99
    # Below the cap nothing changes; a smaller cap binds the same way.
    small = {length: n for length, n in hist.items() if length <= 40}
    assert bucket.auto_boundaries(small, 128) == bucket.auto_boundaries(
        small, 128, max_buckets=None
    )
    assert len(bucket.auto_boundaries(hist, 128, max_buckets=7)) + 1 <= 7


def test_make_plan_explicit_and_subkeys():
    plan = bucket.make_plan({4: 10_000, 20: 3}, (8,), 16)
    assert plan.boundaries == (8,) and plan.num_buckets == 2
    assert plan.subkeys == (bucket.num_subkeys(10_000, 16), 1)
    assert plan.subkeys[0] > 1


def test_subkey_is_stable_and_spread():
    keys = [bucket.subkey((f, i), 4) for f in range(3) for i in range(400)]
    assert keys == [bucket.subkey((f, i), 4) for f in range(3) for i in range(400)]
    counts = collections.Counter(keys)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 200
    assert bucket.subkey((5, 5), 1) == 0


def test_default_num_shards():
    assert bucket.default_num_shards(0) == 1
    assert bucket.default_num_shards((256 << 20) + 1) == 2


def _subkey_in_python_ints(position, n):
    """`bucket.subkeys`' definition, in Python's unbounded ints."""
    x = ((position[0] & 0xFFFFFFFF) << 40) ^ (position[1] & 0xFFFFFFFFFF)
    x = (x * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return x % n


def test_subkeys_equal_their_definition_in_python_ints():
    """numpy's wrapping uint64 arithmetic gives the same sub-keys (so batches do
    not change with the implementation), bare-bytes positions (-1, crc32) and
    huge indices included."""
    rng = np.random.default_rng(3)
    positions = [(-1, 2**32 - 1), (2**31 - 1, 2**40 + 5), (0, 0), (7, 123456)]
    positions += [tuple(p) for p in rng.integers(0, 2**33, size=(200, 2)).tolist()]
    n = rng.integers(1, 50, len(positions))
    got = bucket.subkeys(np.asarray(positions), n).tolist()
    assert got == [
        _subkey_in_python_ints(p, int(k)) for p, k in zip(positions, n, strict=True)
    ]


def test_form_batches_spreads_buckets_over_subkeys():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from pipeline.beam import runner

    plan = bucket.BucketPlan(
        boundaries=(5,), batch_size=4, subkeys=(3, 1), estimated_efficiency=1.0
    )
    rng = np.random.default_rng(0)
    members = [
        ((f, i), int(rng.integers(1, 10)), b"%d-%d" % (f, i))
        for f in range(2)
        for i in range(60)
    ]

    def check(batches):
        seen, short, short_keys = [], collections.Counter(), []
        keys = set()
        for key, part in batches:
            b = key[0]
            assert key not in keys
            keys.add(key)
            assert {bucket.assign_bucket(m[1], plan.boundaries) for m in part} == {b}
            assert [m[0] for m in part] == sorted(m[0] for m in part)
            assert 1 <= len(part) <= 4
            short[b] += len(part) < 4
            if len(part) < 4:
                short_keys.append(key)
            seen.extend(m[0] for m in part)
        assert sorted(seen) == sorted(m[0] for m in members)
        for key in short_keys:  # the short batch is its bucket's last in key order
            assert key == max(k for k in keys if k[0] == key[0])
        assert max(short.values()) <= 1
        assert {k[2] for k in keys if k[0] == 0 and k[1] == 0} == {0, 1, 2}

    options = beam.options.pipeline_options.PipelineOptions()
    with TestPipeline(runner=runner.make_runner(options)) as p:
        plan_pc = p | "Plan" >> beam.Create([plan])
        batches = (
            p
            | "Blocks"
            >> beam.Create([Block.of(members[i : i + 7]) for i in range(0, 120, 7)])
            | "Form" >> beam_bucket.FormBatches(plan_pc)
        )
        assert_that(batches, check)


# Three buckets, spread over 2, 3 and 1 sub-keys, batches of 4.
THREE_BUCKETS = bucket.BucketPlan(
    boundaries=(3, 6), batch_size=4, subkeys=(2, 3, 1), estimated_efficiency=1.0
)


def _random_members(seed: int, per_file: int) -> list:
    """`(position, length, bytes)` of 3 files' records, lengths 1-9."""
    rng = np.random.default_rng(seed)
    return [
        ((f, i), int(rng.integers(1, 10)), b"%d-%d" % (f, i))
        for f in range(3)
        for i in range(per_file)
    ]


def test_batch_ranks_come_from_counts_alone():
    """`BatchRanks` (light blocks, before any grouping) names exactly the
    batches `FormBatches` forms, ranked in key order: shards can be chosen
    where batches are formed."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from pipeline.beam import runner

    plan = THREE_BUCKETS
    members = _random_members(seed=1, per_file=50)
    blocks = [Block.of(members[i : i + 9]) for i in range(0, len(members), 9)]

    options = beam.options.pipeline_options.PipelineOptions()
    with TestPipeline(runner=runner.make_runner(options)) as p:
        plan_pc = p | "Plan" >> beam.Create([plan])
        valid = p | "Blocks" >> beam.Create(blocks)
        formed = valid | "Form" >> beam_bucket.FormBatches(plan_pc)
        light = valid | "Light" >> beam.Map(lambda b: Block(b.positions, b.lengths))
        ranks = light | "Ranks" >> beam_bucket.BatchRanks(plan_pc)
        assert_that(ranked_keys(p, formed, ranks), _some_batches)


def _some_batches(got):
    (keys,) = got
    assert len(keys) >= 150 // 4, keys


def test_batch_keys_pool_remainders_per_bucket():
    keys = bucket.batch_keys({(0, 0): 9, (0, 1): 3, (1, 0): 4}, 4)
    assert keys == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 0, 0), (1, 0, 0, 0)]
    assert bucket.batch_keys({(0, 0): 3, (0, 1): 3}, 4) == [(0, 1, 0, 0), (0, 1, 0, 1)]


def test_placed_records_form_the_same_batches():
    """`PlaceRecords` (ranks from light blocks, records grouped by chunk, then
    by shard) gives, once each batch's pieces are joined, exactly the batches
    of `FormBatches` on the deduplicated blocks, each in the shard its rank
    names; duplicate ids become dead letters on the way (records by reference:
    the engines' catalog tests, tests/pipeline/test_driver_bad_inputs.py)."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.beam import runner, shards
    from pipeline.beam import validate as beam_validate
    from pipeline.stages import output

    plan = THREE_BUCKETS
    members = _random_members(seed=2, per_file=70)
    # Chunks of unequal sizes, not in position order; two later duplicates.
    cuts = [0, 5, 23, 24, 51, 90, 133, 170, 210]
    chunks = [members[a:b] for a, b in zip(cuts, cuts[1:], strict=False)][::-1]
    duplicates = {(1, 3): (b"x", (0, 2)), (2, 69): (b"y", (0, 7))}
    kept = [m for m in members if m[0] not in duplicates]
    num_shards = 3

    def check_placed(got):
        (placed, formed, ranks) = got
        assert {k for k, _ in formed} == set(ranks)
        by_shard = {}
        for shard, pieces in placed:
            by_shard.setdefault(shard, []).append(pieces)
        pieces_of = collections.Counter(
            key for _, pieces in placed for key, _ in pieces
        )
        assert max(pieces_of.values()) > 1  # batches across chunks were joined
        joined = {}
        for shard, pieces in by_shard.items():
            for key, batch in shards.joined_pieces(pieces):
                assert shard == output.shard_of(ranks[key], num_shards)
                joined[key] = batch
        assert joined == {key: list(batch) for key, batch in formed}

    options = beam.options.pipeline_options.PipelineOptions()
    with TestPipeline(runner=runner.make_runner(options)) as p:
        plan_pc = p | "Plan" >> beam.Create([plan])
        valid = p | "Blocks" >> beam.Create([Block.of(c) for c in chunks])
        dups = p | "Duplicates" >> beam.Create(sorted(duplicates.items()))
        light = valid | "Light" >> beam.Map(lambda b: Block(b.positions, b.lengths))
        deduped_light = light | "LightDeduped" >> beam.Map(
            beam_validate.without_duplicates, duplicates=beam.pvalue.AsDict(dups)
        )
        ranks = deduped_light | "Ranks" >> beam_bucket.BatchRanks(plan_pc)
        placed = valid | "Place" >> beam_bucket.PlaceRecords(
            light, plan_pc, ranks, num_shards, dups
        )
        formed = (
            p
            | "Kept"
            >> beam.Create([Block.of(kept[i : i + 9]) for i in range(0, len(kept), 9)])
            | "Form" >> beam_bucket.FormBatches(plan_pc)
        )
        got = (
            p
            | "Seed" >> beam.Create([None])
            | "Gather"
            >> beam.Map(
                lambda _, a, b, r: (a, b, r),
                a=beam.pvalue.AsList(placed["placed"]),
                b=beam.pvalue.AsList(formed),
                r=beam.pvalue.AsSingleton(ranks),
            )
        )
        assert_that(got, lambda out: check_placed(out[0]))
        errors = placed[beam_validate.ERRORS] | "ErrorPositions" >> beam.Map(
            lambda e: tuple(e.position)
        )
        assert_that(errors, equal_to(sorted(duplicates)), label="Errors")
