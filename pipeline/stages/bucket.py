"""Length bucketing: boundaries ("auto" or a list), length -> bucket id, batch plans.

Place in the flow: validate -> **bucket** -> features. Pure functions shared by the Beam
job (`pipeline.beam`) and the tf.data engine (`pipeline.tfdata`).

Conventions:
  * `boundaries` is a sorted tuple of upper bounds; bucket i holds lengths
    `<= boundaries[i]`, the last bucket (id `len(boundaries)`) holds the rest.
  * A histogram is a dict `{length: count}` over the valid examples.
  * Padding efficiency = real steps / sum over batches of B * T (T = the longest
    example of the batch, B = its number of examples).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.stages import config

# Each sub-key of a bucket collects about this many batches before grouping.
SUBKEY_BATCHES = 32
# Each bucket is charged this fraction of a batch of padding at its longest length:
# trades a little padding for fewer buckets (fewer short batches). At B=128 on
# lognormal(median 30, sigma 1) lengths: 120 buckets, >= 98.8 % efficiency.
BUCKET_PENALTY = 0.05
# `--bucket_boundaries auto` picks at most this many buckets unless `--max_buckets`
# says otherwise. Each bucket holds one open batch while a job runs, so memory
# follows the number of buckets, and the penalized search alone finds more of
# them as the data grows (bench data, B=128: 147 buckets at 200k examples, 258
# at 2M, peak RSS 1.36 -> 1.88 GB). Beyond ~100 buckets the padding saved is
# small: 2M bench examples at 128 buckets keep 99.2 % efficiency (99.8 % at 258).
AUTO_MAX_BUCKETS = 128
# Histograms with more distinct lengths are coarsened before the auto search.
_MAX_DP_POINTS = 2048


def parse_boundaries(text: str) -> tuple[int, ...] | str:
    """Parses the `--bucket_boundaries` flag: "auto" or comma-separated ints.

    Raises:
      ValueError: if the list is empty, not strictly increasing or has values < 1.
    """
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not config.valid_boundaries(values):
        raise ValueError(
            "Invalid value for argument `bucket_boundaries`. Expected 'auto' or "
            "strictly increasing integers >= 1 separated by commas (e.g. 8,16,32). "
            f"Received: bucket_boundaries={text!r}"
        )
    return values


def assign_bucket(length: int, boundaries: Sequence[int]) -> int:
    """Returns the bucket id, in [0, len(boundaries)], for `length` steps.

    Args:
      length: Number of steps T, >= 1.
      boundaries: Sorted upper bounds; bucket i holds lengths <= boundaries[i].
    """
    return bisect.bisect_left(boundaries, length)  # = searchsorted(side="left")


def assign_buckets(lengths: np.ndarray, boundaries: Sequence[int]) -> np.ndarray:
    """Vectorized `assign_bucket`: int64 [N] lengths -> int64 [N] bucket ids."""
    return np.searchsorted(
        np.asarray(boundaries, np.int64), lengths, side="left"
    ).astype(np.int64)


def sorted_histogram(histogram: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct lengths ascending, their counts) of a histogram (counts > 0)."""
    items = sorted((int(k), int(v)) for k, v in histogram.items() if v > 0)
    if not items:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lengths, counts = zip(*items, strict=True)
    return np.asarray(lengths, np.int64), np.asarray(counts, np.int64)


def auto_boundaries(
    histogram: Mapping[int, int],
    batch_size: int,
    max_buckets: int | None = AUTO_MAX_BUCKETS,
) -> tuple[int, ...]:
    """Chooses boundaries that minimize padded steps for `batch_size`.

    Dynamic programme over the sorted distinct lengths: buckets are contiguous
    length ranges, a bucket costs (its examples) * (its longest length) plus
    `BUCKET_PENALTY` of a batch, the price of its one short batch (which keeps
    the number of buckets down). Thin tails may form small buckets: forcing every
    bucket to hold `batch_size` examples padded a long tail into one batch and
    lost to fixed boundary lists on small inputs. The cost is an upper bound of
    the padded steps of the batches the job forms. When that optimum has more
    than `max_buckets` buckets, the best of the same cost with at most
    `max_buckets` (`bounded_search`): what bounds the job's memory.

    Args:
      histogram: {length: count} of the valid examples.
      batch_size: B, >= 1.
      max_buckets: At most this many buckets (default `AUTO_MAX_BUCKETS`), or
        None: no bound.

    Returns:
      The boundaries (possibly empty: one bucket).
    """
    lengths, counts = sorted_histogram(histogram)
    if len(lengths) <= 1 or counts.sum() < 2 * batch_size:
        return ()
    if len(lengths) > _MAX_DP_POINTS:
        lengths, counts = coarsen(lengths, counts, _MAX_DP_POINTS)
    m = len(lengths)
    prefix = np.concatenate([[0], np.cumsum(counts)]).astype(np.float64)
    best = np.full(m + 1, np.inf)
    best[0] = 0.0
    choice = np.zeros(m + 1, np.int64)
    for j in range(1, m + 1):
        # Candidate starts i (group = distinct lengths i..j-1).
        n = prefix[j] - prefix[:j]
        cost = best[:j] + (n + BUCKET_PENALTY * batch_size) * lengths[j - 1]
        i = int(np.argmin(cost))
        best[j], choice[j] = cost[i], i
    if not np.isfinite(best[m]):
        return ()
    ends = []
    j = m
    while j > 0:
        ends.append(int(lengths[j - 1]))
        j = int(choice[j])
    ends.reverse()
    if max_buckets is not None and len(ends) > max_buckets:
        charge = BUCKET_PENALTY * batch_size
        return bounded_search(histogram, [max_buckets], charge)[max_buckets]
    return tuple(ends[:-1])  # the last group is the unbounded bucket


def coarsen(lengths, counts, points):
    """Merges distinct lengths into `points` groups of similar mass (max kept)."""
    cum = np.cumsum(counts)
    edges = np.searchsorted(cum, np.linspace(0, cum[-1], points + 1)[1:], side="left")
    edges = np.unique(np.minimum(edges, len(lengths) - 1))
    starts = np.concatenate([[0], edges[:-1] + 1])
    new_counts = np.array(
        [counts[s : e + 1].sum() for s, e in zip(starts, edges, strict=True)]
    )
    return lengths[edges], new_counts


# Histograms with more distinct lengths are coarsened before the bounded search
# (its cost is K * m^2 for m distinct lengths).
_MAX_BOUNDED_DP_POINTS = 1024


def _dp_layers(lengths: np.ndarray, counts: np.ndarray, max_k: int, charge: float):
    """Best cost of the first j distinct lengths in exactly k buckets, k <= max_k.

    A bucket of distinct lengths i..j-1 costs (its examples + `charge`) * its
    longest length. Returns (costs [max_k + 1, m + 1], choices: the start i of
    the last bucket, same shape).
    """
    m = len(lengths)
    prefix = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    # cost[i, j] of a bucket holding distinct lengths i..j-1 (inf unless i < j).
    i, j = np.arange(m + 1)[:, None], np.arange(m + 1)[None, :]
    top = np.concatenate([[0], lengths]).astype(np.float64)[None, :]
    bucket_cost = np.where(
        i < j, (prefix[None, :] - prefix[:, None] + charge) * top, np.inf
    )
    costs = np.full((max_k + 1, m + 1), np.inf)
    choices = np.zeros((max_k + 1, m + 1), np.int64)
    costs[0, 0] = 0.0
    for k in range(1, max_k + 1):
        total = costs[k - 1][:, None] + bucket_cost
        choices[k] = np.argmin(total, axis=0)
        costs[k] = total[choices[k], np.arange(m + 1)]
    return costs, choices


def _backtrack(lengths: np.ndarray, choices: np.ndarray, k: int) -> tuple[int, ...]:
    ends, j = [], len(lengths)
    while j > 0:
        ends.append(int(lengths[j - 1]))
        j = int(choices[k, j])
        k -= 1
    ends.reverse()
    return tuple(ends[:-1])  # the last bucket is the unbounded one


def bounded_search(
    histogram: Mapping[int, int], ks: Sequence[int], charge: float
) -> dict[int, tuple[int, ...]]:
    """{k: boundaries} for each k in `ks`: the contiguous length ranges, at most
    k of them, minimizing the sum over buckets of (examples + `charge`) * the
    bucket's longest length (one programme up to max(ks)). `charge` 0 is static
    mode's cost; `BUCKET_PENALTY * batch_size` is `auto_boundaries`' cost."""
    lengths, counts = sorted_histogram(histogram)
    if len(lengths) > _MAX_BOUNDED_DP_POINTS:
        lengths, counts = coarsen(lengths, counts, _MAX_BOUNDED_DP_POINTS)
    if not ks or len(lengths) <= 1:
        return {k: () for k in ks}
    costs, choices = _dp_layers(lengths, counts, min(max(ks), len(lengths)), charge)
    out = {}
    for k in ks:
        k_used = min(k, len(lengths))
        best = int(np.argmin(costs[1 : k_used + 1, -1])) + 1  # fewer may cost less
        out[k] = _backtrack(lengths, choices, best)
    return out


def estimated_padding_efficiency(
    histogram: Mapping[int, int], boundaries: Sequence[int]
) -> float:
    """Lower bound of the padding efficiency: each bucket padded to its longest."""
    lengths, counts = sorted_histogram(histogram)
    if not len(lengths):
        return 1.0
    buckets = assign_buckets(lengths, boundaries)
    padded = 0
    for b in np.unique(buckets):
        sel = buckets == b
        padded += int(counts[sel].sum()) * int(lengths[sel].max())
    return float((lengths * counts).sum()) / padded


def num_subkeys(count: int, batch_size: int) -> int:
    """Number of sub-keys a bucket of `count` examples is spread over (>= 1)."""
    return max(1, count // (batch_size * SUBKEY_BATCHES))


def subkeys(positions: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Stable (process-independent) sub-keys: int64 [k], record i's in
    [0, n[i]), from its position `positions[i]` = (file, record) (a 64-bit
    mix of both: records of one file spread over all sub-keys)."""
    positions = np.asarray(positions, np.int64).reshape(-1, 2).astype(np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps: mod 2**64
        x = ((positions[:, 0] & np.uint64(0xFFFFFFFF)) << np.uint64(40)) ^ (
            positions[:, 1] & np.uint64(0xFFFFFFFFFF)
        )
        x = x * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(31)
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    return (x % np.asarray(n, np.uint64)).astype(np.int64)


def subkey(position: tuple[int, int], n: int) -> int:
    """`subkeys` of one position."""
    return int(subkeys(np.asarray([position]), np.asarray([n]))[0])


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """What both engines need to form batches.

    Attributes:
      boundaries: Sorted upper bounds (see module docstring).
      batch_size: B.
      subkeys: Number of sub-keys per bucket id (Beam engine only).
      estimated_efficiency: `estimated_padding_efficiency` of the histogram.
      lengths: `--static_shapes`: T of each bucket id
        (`static_shapes.make_plan`); empty otherwise (T = each batch's
        longest example).
    """

    boundaries: tuple[int, ...]
    batch_size: int
    subkeys: tuple[int, ...]
    estimated_efficiency: float
    lengths: tuple[int, ...] = ()

    @property
    def num_buckets(self) -> int:
        return len(self.boundaries) + 1


def make_plan(
    histogram: Mapping[int, int],
    boundaries: Sequence[int] | str,
    batch_size: int,
) -> BucketPlan:
    """Builds the `BucketPlan` from the length histogram of the valid examples.

    Args:
      histogram: {length: count}.
      boundaries: "auto" or explicit sorted upper bounds.
      batch_size: B.
    """
    if isinstance(boundaries, str):
        if boundaries != "auto":
            raise ValueError(
                "Invalid value for argument `boundaries`. Expected 'auto' or a "
                f"sequence of ints. Received: boundaries={boundaries!r}"
            )
        bounds = auto_boundaries(histogram, batch_size)
    else:
        bounds = tuple(int(b) for b in boundaries)
    per_bucket = [0] * (len(bounds) + 1)
    for length, count in histogram.items():
        per_bucket[assign_bucket(int(length), bounds)] += int(count)
    return BucketPlan(
        boundaries=bounds,
        batch_size=int(batch_size),
        subkeys=tuple(num_subkeys(c, batch_size) for c in per_bucket),
        estimated_efficiency=estimated_padding_efficiency(histogram, bounds),
    )


@dataclasses.dataclass(frozen=True)
class BucketBatches:
    """The batches the job forms for one bucket (see `simulate_batches`).

    Attributes:
      bucket: Bucket id.
      examples: Examples in the bucket.
      batches: Batches formed (only the last can hold fewer than B examples).
      real_steps: Sum of the examples' lengths.
      padded_steps: Padding only: sum over batches of B * T, minus real_steps.
      max_length: Longest example of the bucket.
      shapes: ((b, T), batches) pairs: the batches' shapes.
    """

    bucket: int
    examples: int
    batches: int
    real_steps: int
    padded_steps: int
    max_length: int
    shapes: tuple = ()


def simulate_batches(
    positions: Sequence[tuple[int, int]], lengths: Sequence[int], plan: BucketPlan
) -> list[BucketBatches]:
    """Forms batches as `FormBatches` (the Beam job) does and counts their padding.

    Same rules: bucket by `plan.boundaries`; a bucket is spread over
    `plan.subkeys[b]` sub-keys by `subkey(position)`; each sub-key's examples,
    sorted by position, are chunked by B and the full chunks are batches; a
    bucket's remainders, sorted by position, are chunked again. Each batch is
    padded to its longest example. (The tfdata engine chunks each bucket in
    reading order; its padding can differ slightly.)

    Args:
      positions: `(file_index, record_index)` of each valid example.
      lengths: Their lengths (>= 1), same order.
      plan: The plan (`make_plan` over the same examples' histogram).

    Returns:
      One `BucketBatches` per non-empty bucket, by bucket id.
    """
    lengths = np.asarray(lengths, np.int64)
    if not len(lengths):
        return []
    pos = np.asarray(positions, np.int64).reshape(len(lengths), 2)
    buckets = assign_buckets(lengths, plan.boundaries)
    b_size = plan.batch_size
    out = []
    for b in np.unique(buckets).tolist():
        idx = np.flatnonzero(buckets == b)
        idx = idx[np.lexsort((pos[idx, 1], pos[idx, 0]))]  # sorted by position
        n = plan.subkeys[b] if b < len(plan.subkeys) else 1
        if n > 1:
            subs = subkeys(pos[idx], np.full(len(idx), n))
            parts, rest = [], []
            for s in range(n):
                members = idx[subs == s]  # stays sorted by position
                full = len(members) - len(members) % b_size
                parts.append(members[:full])
                rest.append(members[full:])
            rest = np.concatenate(rest)
            rest = rest[np.lexsort((pos[rest, 1], pos[rest, 0]))]
            groups = [*parts, rest]
        else:
            groups = [idx]
        batches = real = total = 0
        shapes: dict = {}
        for members in groups:
            if not len(members):
                continue
            group = lengths[members]
            starts = np.arange(0, len(group), b_size)
            sizes = np.diff(np.append(starts, len(group)))
            batches += len(starts)
            real += int(group.sum())
            longest = np.maximum.reduceat(group, starts)
            total += int((longest * sizes).sum())
            for shape in zip(sizes.tolist(), longest.tolist(), strict=True):
                shapes[shape] = shapes.get(shape, 0) + 1
        out.append(
            BucketBatches(
                int(b),
                len(idx),
                batches,
                real,
                total - real,
                int(lengths[idx].max()),
                tuple(sorted(shapes.items())),
            )
        )
    return out


def padding_efficiency(real_steps: int, padded_steps: int) -> float:
    """real / (real + padding) as reported in metadata.json (1.0 with no steps)."""
    total = real_steps + padded_steps
    return 1.0 if total == 0 else real_steps / total


def batch_keys(counts: Mapping[tuple[int, int], int], batch_size: int) -> list[tuple]:
    """The keys of the batches that records counted per `(bucket, sub-key)`
    form (the Beam job's dynamic batching), sorted: `(bucket, 0, sub, i)` for
    each full batch of a sub-key, `(bucket, 1, 0, i)` for the batches of the
    bucket's remainders pooled. Counts alone decide them, so a batch's rank
    (and its shard) is known before any record is grouped."""
    keys, rest = [], collections.Counter()
    for (b, sub), n in counts.items():
        keys.extend((b, 0, sub, i) for i in range(n // batch_size))
        rest[b] += n % batch_size
    for b, n in rest.items():
        keys.extend((b, 1, 0, i) for i in range(-(-n // batch_size)))
    return sorted(keys)


def chunk(items: Sequence, batch_size: int) -> list:
    """Splits `items` into consecutive chunks of `batch_size` (last may be short)."""
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def bucket_range(boundaries: Sequence[int], b: int) -> str:
    """Lengths of bucket `b`, e.g. "9-12" or "769+"."""
    low = boundaries[b - 1] + 1 if b > 0 else 1
    if b >= len(boundaries):
        return f"{low}+"
    return f"{low}-{boundaries[b]}" if boundaries[b] != low else f"{low}"


def default_num_shards(total_input_bytes: int, *, target_bytes: int = 256 << 20) -> int:
    """Default `--num_shards`: one shard per `target_bytes` of input (>= 1)."""
    return max(1, math.ceil(total_input_bytes / target_bytes))
