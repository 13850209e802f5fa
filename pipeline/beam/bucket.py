"""Beam wrappers of bucketing: valid blocks -> batches.

Place in the flow: validate -> **bucket** -> features. `FormBatches` groups
the records by sub-bucket and forms keyed batches (the transform's own
output); the job instead places every record straight into its batch and
shard (`PlaceRecords`), from ranks computed on light blocks: the records are
grouped once (with their ranks, by chunk) before the shard step, not twice.
Boundaries, plans and the length -> bucket map are `pipeline.stages.bucket`'s.
"""

from __future__ import annotations

import collections

import apache_beam as beam
import numpy as np

from pipeline.beam.shards import shard_of_batch
from pipeline.beam.validate import ERRORS, DuplicateDropper, without_duplicates
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


class PlaceRecords(beam.PTransform):
    """Valid blocks, one per validated chunk, duplicate ids not yet dropped ->
    `(shard, [(batch_key, members)])`: pieces of the batches `FormBatches`
    forms (a batch may come in several pieces: `shards.WriteShards` joins
    them), a chunk's for one shard in one element (Beam's cost is per
    element); and `ERRORS` (`duplicate_id` dead letters).

    Each record's rank in its `(bucket, sub)` key, in position order, is
    computed from the light blocks (keys and positions only: `_key_positions`,
    `_ranks_in_group`) and joined with its chunk's records by chunk (its
    smallest position, `chunk_id`): a record of rank r < the key's full
    batches is in batch `(bucket, 0, sub, r // B)`, placed in that batch's
    shard at once; the key's last records (its remainder) are pooled per
    bucket as in `FormBatches`. So the records are grouped twice (with their
    ranks, then by shard), where forming batches first takes three groupings
    (wait for the plan, by sub-bucket, by shard), each moving every record.

    Args:
      light: The chunks' light blocks (`validate.LIGHT`).
      plan: Singleton `BucketPlan`.
      ranks: Singleton `{batch_key: rank}` (`BatchRanks`).
      num_shards: N.
      duplicates: `validate.FindDuplicateIds`' output, or None (no id feature).
      files, policy: As `validate.DropDuplicateIds`'.
    """

    def __init__(
        self, light, plan, ranks, num_shards, duplicates=None, files=(), policy=None
    ):
        super().__init__()
        self._light, self._plan, self._ranks = light, plan, ranks
        self._n, self._duplicates = num_shards, duplicates
        self._files, self._policy = tuple(files), policy

    def expand(self, valid):
        plan = beam.pvalue.AsSingleton(self._plan)
        ranks = beam.pvalue.AsSingleton(self._ranks)
        n = self._n
        dups = {}
        if self._duplicates is not None:
            dups = {"duplicates": beam.pvalue.AsDict(self._duplicates)}
        in_key = (
            self._light
            | "KeyPositions" >> beam.FlatMap(_key_positions, plan=plan, **dups)
            | "GroupKeyPositions" >> beam.GroupByKey()
            | "RanksInKey" >> beam.FlatMap(_ranks_in_group)
        )
        by_chunk = valid | "ByChunk" >> beam.Map(lambda block: (chunk_id(block), block))
        placed = (
            {_RECORDS: by_chunk, _RANKS: in_key}
            | "WithRanks" >> beam.CoGroupByKey()
            | "Place"
            >> beam.ParDo(
                _PlaceDoFn(n, self._files, self._policy), plan=plan, ranks=ranks,
                **dups,
            ).with_outputs(ERRORS, REMAINDER, main="placed")
        )  # fmt: skip
        rest = (
            placed[REMAINDER]
            | "GroupRemainders" >> beam.GroupByKey()
            | "ChunkRemainders" >> beam.FlatMap(_chunk_remainder, plan=plan)
            | "RemaindersToShard"
            >> beam.Map(
                lambda batch, ranks: (shard_of_batch(batch[0], ranks, n), [batch]),
                ranks=ranks,
            )
        )
        return {
            "placed": (placed.placed, rest) | "AllPlaced" >> beam.Flatten(),
            ERRORS: placed[ERRORS],
        }


_RECORDS, _RANKS = "records", "ranks"


def chunk_id(block) -> tuple[int, int]:
    """The smallest position of a chunk's block, before duplicate ids are
    dropped: what joins the chunk's records with their ranks (each record is
    in one chunk, so no two chunks share it)."""
    p = np.asarray(block.positions, np.int64).reshape(-1, 2)
    first = np.lexsort((p[:, 1], p[:, 0]))[0]
    return int(p[first, 0]), int(p[first, 1])


# Groups the light blocks' keys are spread over to rank records in their key
# (by key % RANK_GROUPS): a chunk sends one element per group, not one per key
# (Beam's cost is per element), and a group holds 1/RANK_GROUPS of the
# positions (24 bytes a record).
RANK_GROUPS = 16


def _key_positions(light, plan, duplicates=None):
    """A chunk's light block -> `(group, (chunk id, keys [k], positions [k,
    2]))` per rank group present: each record's `_sub_bucket_keys` key and
    position, in the block's order, duplicates dropped (as `_PlaceDoFn` drops
    them)."""
    chunk_of = chunk_id(light)
    if duplicates:
        light = without_duplicates(light, duplicates)
    keys, _ = _sub_bucket_keys(light, plan)
    for group, index in blocks.by_key(keys % RANK_GROUPS):
        yield group, (chunk_of, keys[index], light.positions[index])


def _ranks_in_group(item):
    """`(group, [(chunk id, keys, positions)])` -> `(chunk id, (keys, ranks,
    totals))` per chunk: each record's rank among its key's records in
    position order (positions are unique) and its key's total, aligned with
    the chunk's keys (in the chunk's order)."""
    _, parts = item
    parts = list(parts)
    keys = np.concatenate([k for _, k, _ in parts])
    positions = np.concatenate([p for _, _, p in parts]).reshape(-1, 2)
    order = np.lexsort((positions[:, 1], positions[:, 0], keys))
    sorted_keys = keys[order]
    present, first, totals = np.unique(
        sorted_keys, return_index=True, return_counts=True
    )
    at = np.searchsorted(present, sorted_keys)
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(len(order)) - first[at]
    total = np.empty(len(order), np.int64)
    total[order] = totals[at]
    start = 0
    for chunk_of, k, _ in parts:
        stop = start + len(k)
        yield chunk_of, (k, ranks[start:stop], total[start:stop])
        start = stop


class _PlaceDoFn(beam.DoFn):
    """`(chunk id, {records: [block], ranks: [(keys, ranks, totals)]})` ->
    pieces (see `PlaceRecords`)."""

    def __init__(self, num_shards, files, policy):
        self._n = num_shards
        self._dropper = DuplicateDropper(files, policy)

    def teardown(self):
        self._dropper.close()

    def process(self, item, plan, ranks, duplicates=None):
        chunk_of, joined = item
        (block,) = joined[_RECORDS]  # one block per validated chunk
        if duplicates:
            block, errors = self._dropper.split(block, duplicates)
            for error in errors:
                yield beam.pvalue.TaggedOutput(ERRORS, error)
            if block is None:
                return
        # One part per rank group, each in the chunk's order.
        parts = list(joined[_RANKS]) or [(np.zeros(0, np.int64),) * 3]
        rank_keys, rank_of, total_of = (
            np.concatenate(a) for a in zip(*parts, strict=True)
        )
        keys, width = _sub_bucket_keys(block, plan)
        size = plan.batch_size
        to_shard = collections.defaultdict(list)  # one element per shard
        expected = dict(blocks.by_key(rank_keys))
        for key, index in blocks.by_key(keys):
            b, sub = key // width, key % width
            at = expected.get(key, np.zeros(0, np.int64))
            if len(at) != len(index):  # both sides drop the same duplicates
                raise RuntimeError(
                    f"chunk {chunk_of}, key {(b, sub)}: {len(index)} records but "
                    f"{len(at)} ranks (a bug)"
                )
            rank, n = rank_of[at], int(total_of[at[0]])
            full = n - n % size
            batch = np.where(rank < full, rank // size, -1)
            for i, part in blocks.by_key(batch):
                members = block.take(index[part])
                if i < 0:  # the key's remainder, pooled per bucket
                    yield beam.pvalue.TaggedOutput(REMAINDER, (b, members))
                    continue
                batch_key = (b, 0, sub, i)
                to_shard[shard_of_batch(batch_key, ranks, self._n)].append(
                    (batch_key, members.members())
                )
        yield from to_shard.items()


def _chunk_remainder(item, plan):
    b, parts = item
    members = Block.concat(parts).sorted().members()
    yield from batch_keys_of(members, b, 1, 0, plan.batch_size)
