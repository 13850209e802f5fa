"""Beam wrapper of bucketing: `FormBatches`, valid blocks -> keyed batches.

Place in the flow: validate -> **bucket** -> features. Boundaries, plans and
the length -> bucket map are `pipeline.stages.bucket`'s.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from pipeline.stages import blocks
from pipeline.stages.blocks import Block
from pipeline.stages.bucket import assign_buckets, batch_keys, chunk, subkeys

REMAINDER = "remainder"


def batch_keys_of(members_sorted, bucket: int, phase: int, sub: int, batch_size: int):
    """Chunks sorted members; yields ((bucket, phase, sub, i), chunk)."""
    for i, part in enumerate(chunk(members_sorted, batch_size)):
        yield (bucket, phase, sub, i), part


class FormBatches(beam.PTransform):
    """`blocks.Block`s of valid records -> (batch_key, [members sorted by
    position]), members `(position, length, bytes | None)`.

    Keys `(bucket, sub)` spread each bucket over `plan.subkeys[bucket]` sub-keys
    (no hot key; a record's sub-key comes from its position, `subkeys`); each
    group yields its full batches (key `(bucket, 0, sub, i)`) and sends its
    remainder (< B) to a per-bucket regroup that yields key `(bucket, 1, 0, i)`
    batches: only a bucket's last batch can be short. Blocks, split by key,
    are what is shuffled (one element per block and key, not per record).
    """

    def __init__(self, plan):
        super().__init__()
        self._plan = plan  # a singleton PCollection of BucketPlan

    def expand(self, valid):
        plan = beam.pvalue.AsSingleton(self._plan)
        grouped = (
            valid
            | "KeyBySubBucket" >> beam.FlatMap(_by_sub_bucket, plan=plan)
            | "GroupSubBuckets" >> beam.GroupByKey()
        )
        full = grouped | "ChunkSubBuckets" >> beam.ParDo(
            _ChunkDoFn(), plan=plan
        ).with_outputs(REMAINDER, main="full")
        rest = (
            full[REMAINDER]
            | "GroupRemainders" >> beam.GroupByKey()
            | "ChunkRemainders" >> beam.FlatMap(_chunk_remainder, plan=plan)
        )
        return (full.full, rest) | "AllBatches" >> beam.Flatten()


class BatchRanks(beam.PTransform):
    """Light blocks (positions and lengths of the records `FormBatches` gets)
    -> a singleton `{batch_key: rank}` of every batch it forms: counts per
    `(bucket, sub)` decide the keys (`stages.bucket.batch_keys`), so the
    shard of each batch is known where batches are formed, and the records
    move once more only, to their shard (`shards.WriteShards(ranks=...)`)."""

    def __init__(self, plan):
        super().__init__()
        self._plan = plan

    def expand(self, light):
        plan = beam.pvalue.AsSingleton(self._plan)
        return (
            light
            | "CountSubBuckets" >> beam.FlatMap(_sub_bucket_counts, plan=plan)
            | "SumSubBuckets" >> beam.CombinePerKey(sum)
            | "AllSubBuckets" >> beam.combiners.ToList()
            | "Ranks" >> beam.Map(_ranks, plan=plan)
        )


def _sub_bucket_keys(block, plan) -> tuple[np.ndarray, int]:
    """int64 [n] `bucket * width + sub` of each record, and `width`."""
    buckets = assign_buckets(block.lengths, plan.boundaries)
    width = max(plan.subkeys)
    keys = buckets * width + subkeys(
        block.positions, np.asarray(plan.subkeys, np.int64)[buckets]
    )
    return keys, width


def _sub_bucket_counts(block, plan):
    keys, width = _sub_bucket_keys(block, plan)
    present, counts = np.unique(keys, return_counts=True)
    for key, n in zip(present.tolist(), counts.tolist(), strict=True):
        yield (key // width, key % width), n


def _ranks(counts, plan) -> dict:
    keys = batch_keys(dict(counts), plan.batch_size)
    return {key: rank for rank, key in enumerate(keys)}


def _by_sub_bucket(block, plan):
    """A block -> ((bucket, sub), its records of that key) per key present."""
    keys, width = _sub_bucket_keys(block, plan)
    for key, part in blocks.by_key(keys):
        yield (key // width, key % width), block.take(part)


class _ChunkDoFn(beam.DoFn):
    def process(self, item, plan):
        (b, sub), parts = item
        block = Block.concat(parts).sorted()
        full = len(block) - len(block) % plan.batch_size
        members = block.take(np.arange(full)).members()
        yield from batch_keys_of(members, b, 0, sub, plan.batch_size)
        if full < len(block):
            rest = block.take(np.arange(full, len(block)))
            yield beam.pvalue.TaggedOutput(REMAINDER, (b, rest))


def _chunk_remainder(item, plan):
    b, parts = item
    members = Block.concat(parts).sorted().members()
    yield from batch_keys_of(members, b, 1, 0, plan.batch_size)
