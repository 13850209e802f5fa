"""The Beam job in static mode (`--static_shapes`): `FormStaticBatches`, and
what its metadata step needs (`metadata_side_inputs`).

Place in the flow: validate -> **bucket** (this, instead of
`bucket.FormBatches`) -> features. Forms exactly the batches of
`stages.static_shapes.plan_batches`, in the same order, without gathering a
bucket on one worker:

  1. Each valid record's rank in its bucket (position order) is the number of
     the bucket's records before it: counts per (bucket, file, span of
     `RANK_SPAN` records) are summed (a small side input), and each group of
     one (bucket, file, span), sorted, adds its offset.
  2. Ranks below the bucket's last multiple of B name the record's batch
     (rank // B): one grouping per batch, at most B members.
  3. The rest (fewer than B per bucket) go to one group (at most K * (B - 1)
     records, no bytes) that chunks them, bucket after bucket, or drops them
     (`drop_remainder`: output `DROPPED`, a `blocks.Block`).

Batch keys `(0, file, record, T)` (the position of the record completing the
batch) and `(1, k, 0, T)` (the k-th remainder batch) sort like the tfdata
engine's writing order; their last item is the batch's T
(`features.ComputeFeatures(length_in_key=True)`).

The metadata step (`job.build`) takes the shapes written, counted per (B, T),
and the dropped examples, listed in DIR/dropped/remainder.jsonl here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from pipeline.stages import blocks, bucket, static_shapes
from pipeline.stages.blocks import Block

RANK_SPAN = 1 << 16  # records of one file per rank group
FULL = "full"
REMAINDER = "remainder"
DROPPED = "dropped"
KEYS = "keys"  # the full batches' keys, known before their records are grouped


class FormStaticBatches(beam.PTransform):
    """`blocks.Block`s of valid records -> (batch_key, [members sorted]), members
    `(position, length, bytes | None)`; output `DROPPED` (Blocks) with
    `drop_remainder`, and `"ranks"`: a singleton `{batch_key: rank}` of every
    batch, known before the full batches are grouped (the full batches' keys
    come from the ranking step, the remainder batches' from the counts), so
    batches go straight to their shard (`shards.WriteShards(ranks=...)`).

    Args:
      plan: A singleton PCollection of `bucket.BucketPlan` (with `lengths`).
      drop_remainder: Drop the remainders instead of batching them.
    """

    def __init__(self, plan, *, drop_remainder: bool = False):
        super().__init__()
        self._plan, self._drop = plan, drop_remainder

    def expand(self, valid):
        plan = beam.pvalue.AsSingleton(self._plan)
        offsets = (
            valid
            | "CountSpans" >> beam.FlatMap(_span_counts, plan=plan)
            | "SumSpans" >> beam.CombinePerKey(sum)
            | "AllSpans" >> beam.combiners.ToList()
            | "Offsets" >> beam.Map(_offsets)
        )
        ranked = (
            valid
            | "KeyBySpan" >> beam.FlatMap(_by_span, plan=plan)
            | "GroupSpans" >> beam.GroupByKey()
            | "Rank"
            >> beam.ParDo(
                _RankDoFn(), plan=plan, offsets=beam.pvalue.AsSingleton(offsets)
            ).with_outputs(REMAINDER, KEYS, main=FULL)
        )
        ranks = (
            ranked[KEYS]
            | "AllFullKeys" >> beam.combiners.ToList()
            | "Ranks"
            >> beam.Map(
                _ranks,
                plan=plan,
                offsets=beam.pvalue.AsSingleton(offsets),
                drop=self._drop,
            )
        )
        full = (
            ranked[FULL]
            | "GroupBatches" >> beam.GroupByKey()
            | "BucketBatches" >> beam.Map(_bucket_batch, plan=plan)
        )
        rest = (
            ranked[REMAINDER]
            | "OneRemainderGroup" >> beam.Map(lambda item: (0, item))
            | "GroupRemainders" >> beam.GroupByKey()
            | "RemainderBatches"
            >> beam.FlatMap(
                _remainder_batches, plan=plan, drop=self._drop
            ).with_outputs(DROPPED, main="batches")
        )
        batches = (full, rest.batches) | "AllBatches" >> beam.Flatten()
        return {"batches": batches, DROPPED: rest[DROPPED], "ranks": ranks}


def _span_keys(block: Block, plan) -> np.ndarray:
    """(bucket, file, span) of each record, as rows of an int64 [n, 3] array."""
    buckets = bucket.assign_buckets(block.lengths, plan.boundaries)
    return np.stack(
        [buckets, block.positions[:, 0], block.positions[:, 1] // RANK_SPAN], axis=1
    )


def _span_counts(block: Block, plan):
    keys, counts = np.unique(_span_keys(block, plan), axis=0, return_counts=True)
    for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
        yield tuple(key), n


def _offsets(counts) -> dict:
    """{(bucket, file, span): records of the bucket before it}, and {bucket:
    its records} under the key (bucket,)."""
    out, totals = {}, {}
    for key, n in sorted(counts):
        b = key[0]
        out[key] = totals.get(b, 0)
        totals[b] = totals.get(b, 0) + n
    out.update({(b,): n for b, n in totals.items()})
    return out


def _by_span(block: Block, plan):
    keys = _span_keys(block, plan)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    for k, part in blocks.by_key(inverse.reshape(-1)):
        yield tuple(unique[k].tolist()), block.take(part)


@beam.typehints.with_output_types(tuple[Any, Any])  # (key, Block) to GroupBatches
class _RankDoFn(beam.DoFn):
    """((bucket, file, span), [Block]) -> ((bucket, batch index), Block) for
    records of full batches; (bucket, Block) of the rest to `REMAINDER`."""

    def process(self, item, plan, offsets):
        key, parts = item
        b = key[0]
        block = Block.concat(parts).sorted()
        ranks = offsets[key] + np.arange(len(block))
        full = offsets[(b,)] - offsets[(b,)] % plan.batch_size
        in_full = ranks < full
        for j, part in blocks.by_key(ranks[in_full] // plan.batch_size):
            yield (b, j), block.take(np.flatnonzero(in_full)[part])
        last = in_full & (ranks % plan.batch_size == plan.batch_size - 1)
        for f, r in block.positions[last].tolist():  # each completes a batch
            yield beam.pvalue.TaggedOutput(KEYS, (0, f, r, plan.lengths[b]))
        if not in_full.all():
            yield beam.pvalue.TaggedOutput(REMAINDER, (b, block.take(~in_full)))


def remainder_keys(totals: dict, plan) -> list[tuple]:
    """The keys `_remainder_batches` gives the remainder batches, from the
    records per bucket (`totals`): bucket after bucket, B at a time, T that
    of the bucket of each batch's last (longest) example."""
    buckets = np.asarray(sorted(b for b, n in totals.items() if n % plan.batch_size))
    rests = np.asarray([totals[b] % plan.batch_size for b in buckets.tolist()])
    ends = np.cumsum(rests)
    total = int(ends[-1]) if len(ends) else 0
    keys = []
    for k, start in enumerate(range(0, total, plan.batch_size)):
        last = min(start + plan.batch_size, total) - 1  # the batch's last example
        b = int(buckets[np.searchsorted(ends, last, side="right")])
        keys.append((1, k, 0, int(plan.lengths[b])))
    return keys


def _ranks(full_keys, plan, offsets, drop: bool) -> dict:
    totals = {key[0]: n for key, n in offsets.items() if len(key) == 1}
    keys = list(full_keys) + ([] if drop else remainder_keys(totals, plan))
    return {key: rank for rank, key in enumerate(sorted(keys))}


def _bucket_batch(item, plan):
    (b, _), parts = item
    members = Block.concat(parts).sorted().members()
    f, r = members[-1][0]
    return (0, f, r, plan.lengths[b]), members


def _remainder_batches(item, plan, drop: bool):
    _, parts = item
    by_bucket: dict = {}
    for b, block in parts:
        by_bucket.setdefault(b, []).append(block)
    rests = {b: Block.concat(by_bucket[b]).sorted() for b in sorted(by_bucket)}
    rest = Block.concat(rests.values())  # bucket after bucket, in position order
    if drop:
        yield beam.pvalue.TaggedOutput(DROPPED, rest)
        return
    # The keys the ranks were computed with (`remainder_keys`, from the counts).
    keys = remainder_keys({b: len(block) for b, block in rests.items()}, plan)
    chunks = bucket.chunk(rest.members(), plan.batch_size)
    yield from zip(keys, chunks, strict=True)


def metadata_side_inputs(
    out, shard_infos, *, directory: str, files: Sequence[str]
) -> dict:
    """`shapes` ((B, T), batches) and `dropped` ({count, files}) of a
    static-shape run, side inputs of the metadata step; `out` is
    `MaterializeSequenceFeatures`' output (with "dropped"), `shard_infos`
    the shards written (`shards.WriteShards`, with their shapes)."""

    def write_dropped(block):
        written = static_shapes.write_dropped(
            directory, block.positions, block.lengths, files
        )
        return {"count": len(block), "files": written}

    shapes = (
        shard_infos
        | "Shapes" >> beam.FlatMap(lambda info: info[3])
        | "CountShapes" >> beam.CombinePerKey(sum)
    )
    dropped = out["dropped"] | "WriteDropped" >> beam.Map(write_dropped)
    return {
        "shapes": beam.pvalue.AsList(shapes),
        "dropped": beam.pvalue.AsList(dropped),
    }
