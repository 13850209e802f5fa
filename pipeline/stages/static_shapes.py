"""Static shapes (`--static_shapes`, `--max_buckets K`): at most K values of T.

Place in the flow: validate -> **bucket** -> features, beside `stages.bucket`.
Pure numpy, shared by both engines (`make_plan`; `pipeline.beam.static_shapes`
is the Beam wrapper, `pipeline.tfdata.static_shapes` the tfdata engine's
remainder batches; the tfdata engine follows the same rules as it streams), by
the metadata.json entry and by `stages.tradeoff` (`seqshards stats`).

Training loops that compile per input shape (XLA, `jit_compile=True`, TPUs,
`torch.compile`) pay one compilation per distinct [B, T]. In static mode:

  * Boundaries: with `--bucket_boundaries auto` and `--max_buckets K`, a
    dynamic programme over the length histogram picks at most K contiguous
    length ranges minimising the padded steps with T fixed per bucket (T = the
    bucket's longest length): `bounded_boundaries`. Without K, the auto
    boundaries of `stages.bucket`.
  * T per bucket (`bucket_lengths`): bucket i's upper boundary; the last
    (unbounded) bucket's T is the longest valid example.
  * Batches (`plan_batches`, the rule both engines implement): each bucket's
    examples, in position order (file, record), are chunked by B; its full
    chunks are batches, padded to the bucket's T. The remainders (fewer than B
    examples per bucket) are concatenated bucket after bucket (each in position
    order) and chunked by B again: a bucket's remainder joins the next longer
    bucket's instead of forming a short batch, so at most one batch of the
    whole output is short. A batch's T is the T of the bucket of its longest
    example (`batch_length`). With `--drop_remainder` the remainders are
    dropped instead: every batch holds exactly B examples, and the dropped
    examples are listed in `dropped/remainder.jsonl` and counted in
    metadata.json (`examples_written + dropped + errors == examples_in`).
  * Order: the bucket batches in the order of the example completing them (as
    if examples arrived one by one in position order), then the remainder
    batches. Batch k goes to shard `output.shard_of(k)`, so both engines write
    the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.stages import bucket, fileio
from pipeline.stages.bucket import BucketPlan
from pipeline.stages.config import check_max_buckets
from pipeline.stages.paths import DROPPED_DIR, DROPPED_FILE


def bounded_boundaries_all(
    histogram: Mapping[int, int],
    batch_size: int,
    ks: Sequence[int],
    *,
    static: bool,
) -> dict[int, tuple[int, ...]]:
    """`bounded_boundaries` for several K at once (one programme up to max(ks))."""
    if static:
        return bucket.bounded_search(histogram, ks, charge=0.0)
    unbounded = bucket.auto_boundaries(histogram, batch_size, max_buckets=None)
    need = [k for k in ks if len(unbounded) + 1 > k]
    out = {k: unbounded for k in ks if k not in need}
    charge = bucket.BUCKET_PENALTY * batch_size
    return {**out, **bucket.bounded_search(histogram, need, charge=charge)}


def bounded_boundaries(
    histogram: Mapping[int, int], batch_size: int, max_buckets: int, *, static: bool
) -> tuple[int, ...]:
    """Auto boundaries with at most `max_buckets` buckets.

    Static (`static=True`): minimises the padded steps with T = each bucket's
    longest length (no short batches to pay for: remainders move on, see the
    module docstring). Dynamic: the cost of bucket.auto_boundaries (each bucket
    charged `BUCKET_PENALTY` of a batch for its short batch), now with at most
    K buckets; when auto already gives at most K, its boundaries.

    Args:
      histogram: {length: count} of the valid examples.
      batch_size: B.
      max_buckets: K >= 1.
      static: Which cost (above).
    """
    check_max_buckets(max_buckets)
    return bounded_boundaries_all(histogram, batch_size, [max_buckets], static=static)[
        max_buckets
    ]


def buckets_for_shapes(
    max_shapes: int,
    histogram: Mapping[int, int],
    batch_size: int,
    drop_remainder: bool,
) -> int:
    """Buckets static mode may use so that the output has at most `max_shapes`
    distinct [B, T] (what a compiled training loop pays for): all of them
    when every batch is full (`drop_remainder`, or N a multiple of B), else
    one fewer, the one short batch being a shape of its own."""
    total = sum(int(n) for n in histogram.values())
    short = not drop_remainder and total % batch_size != 0
    return max(1, max_shapes - 1) if short else max_shapes


def bucket_lengths(boundaries: Sequence[int], max_length: int) -> tuple[int, ...]:
    """T of each bucket id: its upper boundary; the last bucket's is `max_length`
    (the longest valid example; unused when that bucket is empty)."""
    return tuple(int(b) for b in boundaries) + (int(max_length),)


def make_plan(
    histogram: Mapping[int, int],
    boundaries: Sequence[int] | str,
    batch_size: int,
    *,
    max_buckets: int | None = None,
    static_shapes: bool = False,
    drop_remainder: bool = False,
) -> BucketPlan:
    """The `BucketPlan` of a job with #22's options (both engines call this).

    Without `max_buckets` and `static_shapes` it is `bucket.make_plan`'s plan.
    `max_buckets` bounds the auto boundaries (`bounded_boundaries`; in static
    mode the one short batch counts as a shape, `buckets_for_shapes`);
    `static_shapes` fixes T per bucket (`plan.lengths`, `bucket_lengths`).

    Args:
      histogram: {length: count} of the valid examples (in static mode the
        exact one: the plan of the batches depends on every example).
      boundaries: "auto" or explicit sorted upper bounds.
      batch_size: B.
      max_buckets: At most this many buckets (shapes in static mode), or None.
      static_shapes: T fixed per bucket.
      drop_remainder: Static mode drops the remainders (no short batch).
    """
    if boundaries == "auto" and max_buckets is not None:
        if static_shapes:
            max_buckets = buckets_for_shapes(
                max_buckets, histogram, batch_size, drop_remainder
            )
        boundaries = bounded_boundaries(
            histogram, batch_size, max_buckets, static=static_shapes
        )
    plan = bucket.make_plan(histogram, boundaries, batch_size)
    if not static_shapes:
        return plan
    longest = max((int(k) for k in histogram), default=1)
    return dataclasses.replace(plan, lengths=bucket_lengths(plan.boundaries, longest))


def batch_length(
    lengths: np.ndarray, boundaries: Sequence[int], ts: Sequence[int]
) -> int:
    """T of a batch: that of the bucket of its longest example (`ts`:
    `bucket_lengths`)."""
    return int(ts[bucket.assign_bucket(int(np.max(lengths)), boundaries)])


@dataclasses.dataclass(frozen=True)
class StaticBatches:
    """The batches of static mode, in output order (see the module docstring).

    Attributes:
      batches: Index arrays into the examples given to `plan_batches`, members
        in the order they are written.
      lengths: T of each batch.
      dropped: Indices of the dropped examples (`--drop_remainder`), in position
        order within each bucket, buckets in order.
    """

    batches: list
    lengths: list
    dropped: np.ndarray

    def summary(self, all_lengths: np.ndarray, batch_size: int) -> dict:
        """Padding efficiency, shapes {T: batches}, short batches, dropped."""
        all_lengths = np.asarray(all_lengths, np.int64)
        real = padded = short = 0
        shapes: dict = {}
        for members, t in zip(self.batches, self.lengths, strict=True):
            real += int(all_lengths[members].sum())
            padded += len(members) * t
            short += len(members) < batch_size
            key = (len(members), t)
            shapes[key] = shapes.get(key, 0) + 1
        return {
            "efficiency": bucket.padding_efficiency(real, padded - real),
            "shapes": shapes,
            "short_batches": short,
            "dropped": len(self.dropped),
            "batches": len(self.batches),
        }


def plan_batches(
    positions: Sequence[tuple[int, int]] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    boundaries: Sequence[int],
    batch_size: int,
    *,
    drop_remainder: bool = False,
) -> StaticBatches:
    """The batches static mode forms from these valid examples (the reference
    both engines implement; `seqshards stats` and the tests use it).

    Args:
      positions: `(file_index, record_index)` of each valid example.
      lengths: Their lengths (>= 1).
      boundaries: The plan's boundaries.
      batch_size: B.
      drop_remainder: Drop the remainders instead of batching them.
    """
    lengths = np.asarray(lengths, np.int64)
    if not len(lengths):
        return StaticBatches([], [], np.zeros(0, np.int64))
    pos = np.asarray(positions, np.int64).reshape(len(lengths), 2)
    order = np.lexsort((pos[:, 1], pos[:, 0]))
    ts = bucket_lengths(boundaries, int(lengths.max()))
    buckets = bucket.assign_buckets(lengths, boundaries)
    full, rest = [], []
    for b in np.unique(buckets).tolist():
        idx = order[buckets[order] == b]  # position order
        cut = len(idx) - len(idx) % batch_size
        for start in range(0, cut, batch_size):
            full.append(idx[start : start + batch_size])
        rest.append(idx[cut:])
    # In the order of the example completing them: the last member's position.
    rank = np.empty(len(lengths), np.int64)
    rank[order] = np.arange(len(lengths))
    full.sort(key=lambda members: rank[members[-1]])
    rest = np.concatenate(rest) if rest else np.zeros(0, np.int64)
    batches = list(full)
    dropped = rest if drop_remainder else np.zeros(0, np.int64)
    if not drop_remainder:
        batches += bucket.chunk(rest, batch_size)
    return StaticBatches(
        batches, [batch_length(lengths[m], boundaries, ts) for m in batches], dropped
    )


def shapes_json(shapes: Mapping[tuple[int, int], int], depth: int) -> list[dict]:
    """metadata.json's `static_shapes.shapes`: `[{shape: [B, T, D], batches}]`,
    by T then B."""
    return [
        {"shape": [int(b), int(t), int(depth)], "batches": int(n)}
        for (b, t), n in sorted(
            shapes.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]


def dropped_lines(
    positions: np.ndarray, lengths: np.ndarray, files: Sequence[str]
) -> str:
    """`dropped/remainder.jsonl`: one `{"file", "record_index", "length"}` line
    per dropped example, in position order."""
    positions = np.asarray(positions, np.int64).reshape(-1, 2)
    order = np.lexsort((positions[:, 1], positions[:, 0]))
    lines = []
    for k in order.tolist():
        f, r = positions[k].tolist()
        lines.append(
            json.dumps(
                {
                    "file": files[f] if 0 <= f < len(files) else "",
                    "length": int(lengths[k]),
                    "record_index": int(r),
                },
                sort_keys=True,
            )
        )
    return "".join(line + "\n" for line in lines)


def write_dropped(
    directory: str, positions: np.ndarray, lengths: np.ndarray, files: Sequence[str]
) -> list[str]:
    """Writes DIR/dropped/remainder.jsonl if any example was dropped; returns
    the files written (relative to DIR)."""
    if not len(lengths):
        return []
    fileio.makedirs(f"{directory}/{DROPPED_DIR}")
    fileio.write_bytes(
        f"{directory}/{DROPPED_FILE}",
        dropped_lines(positions, lengths, files).encode("utf-8"),
    )
    return [DROPPED_FILE]


def metadata_entry(
    *,
    max_buckets: int | None,
    drop_remainder: bool,
    shapes: Mapping[tuple[int, int], int],
    depth: int,
    batch_size: int,
    dropped_files: Sequence[str],
) -> dict:
    """metadata.json's `static_shapes` object (see README, Output format)."""
    return {
        "max_buckets": max_buckets,
        "drop_remainder": bool(drop_remainder),
        "shapes": shapes_json(shapes, depth),
        "short_batches": int(sum(n for (b, _), n in shapes.items() if b < batch_size)),
        "dropped_files": sorted(dropped_files),
    }


def metadata_args(
    config, *, shapes: Mapping, dropped: int, dropped_files: Sequence[str], depth: int
) -> dict:
    """`metadata.build_metadata`'s static-mode arguments, none without
    `config.static_shapes` (both engines call this).

    Args:
      config: The `JobConfig`.
      shapes: {(B, T): batches} of the batches written.
      dropped: Examples dropped (`--drop_remainder`).
      dropped_files: The dropped/ files written (relative to DIR).
      depth: D.
    """
    if not config.static_shapes:
        return {}
    entry = metadata_entry(
        max_buckets=config.max_buckets,
        drop_remainder=config.drop_remainder,
        shapes=shapes,
        depth=depth,
        batch_size=config.batch_size,
        dropped_files=dropped_files,
    )
    return {"static": entry, "dropped": dropped}
