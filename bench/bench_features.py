"""Examples/s of transforms.SequenceFeatures vs tf_keras.experimental.SequenceFeatures.

Same columns (numeric `rating`, numeric `price` shape (2,), embedding dim 16 over
100k identity ids `watches`, indicator over a 20-word vocabulary list `genre`),
same embedding table, same batches, both layers inside the same `tf.function`
wrapping: `reduce_retracing=True` (traced on warm-up, a retrace while timing is an
error) or, with `--signature`, a shape-free input signature (which adds ~1 ms of
Python per call to both). Outputs are asserted bit-identical before timing.

Batches are built directly as the SparseTensors the parsers give:
  sequence  tf.io.parse_sequence_example (feature lists): 3-D [B, steps, K]
  flat      tf.io.parse_example (one flat list per feature): 2-D [B, N]
  small     the sequence layout, B=32, 3 columns (numeric `values` shape
            (12,), the embedding over `watches`, the indicator over `genre`):
            small batches, where the per-call cost of the layer dominates
            (run it with `taskset -c 1`: one thread, as in a training step)
Lengths: lognormal(median 30, sigma 1), rounded, clipped to 1..1000.

Timing: per-batch wall time, median over the run; ex/s = B / median. The ratio
is the median of paired ratios ref / ours, each from the two layers running the
same batches close in time (a call in two adjacent blocks, two adjacent tf.data
passes), so that a load change between pairs cancels out ("ex/s ratio": the
ratio of the two ex/s medians, for comparison with earlier runs).

Call rows interleave the two layers in blocks of 10 calls (ref x10, ours x10,
then ours first, ...): a pipeline calls one layer batch after batch, so a call
normally follows a call of the same layer (its buffers in the caches and the
allocator). With `--interleave call` they alternate call by call (the old
mode): every call then follows one of the other layer, which measures a cold
start neither layer sees in use. Blocks are short (tens of ms) and alternate in
order, so load from other processes still hits both alike.

tf.data rows time the steady state: passes of n batches through an iterator
made before timing (n such that a pass of the faster layer takes >= 1 s), 7
rounds alternating the order.

Usage:
  python bench/bench_features.py            # B=64 and B=1024, both layouts
  python bench/bench_features.py --quick    # a short run (~3-5 minutes on 2 busy cores)
  python bench/bench_features.py --interleave call   # alternate call by call
  python bench/bench_features.py --rows sequence:call:64 --iterations 2000
                                            # one row, more calls (an A/B)
  taskset -c 1 python bench/bench_features.py --rows small:call:32 small:tf.data:32
                                            # the small-batch rows, one thread
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import transforms  # noqa: E402

VOCAB20 = (
    "action", "adventure", "animation", "children", "comedy", "crime",
    "documentary", "drama", "fantasy", "film-noir", "horror", "imax",
    "musical", "mystery", "romance", "sci-fi", "thriller", "war", "western",
    "unknown",
)  # fmt: skip
NUM_IDS, DIM = 100_000, 16
BLOCK = 10  # calls of one layer in a row in the default (block) interleaving


def build_columns(m, table=None):
    """The benchmark columns in either API (`transforms` or `tf.feature_column`)."""
    init = None
    if table is not None:
        init = table if m is transforms else tf.constant_initializer(table)
    return [
        m.sequence_numeric_column("rating"),
        m.sequence_numeric_column("price", shape=(2,)),
        m.embedding_column(
            m.sequence_categorical_column_with_identity("watches", NUM_IDS),
            DIM,
            initializer=init,
        ),
        m.indicator_column(
            m.sequence_categorical_column_with_vocabulary_list("genre", VOCAB20)
        ),
    ]


SMALL_WIDTH = 12  # numbers per step of the small row's numeric column


def build_small_columns(m, table=None):
    """The small row's columns: numeric shape (12,), embedding, indicator."""
    numeric = m.sequence_numeric_column("values", shape=(SMALL_WIDTH,))
    return [numeric, *build_columns(m, table)[2:]]


def make_small_batch(rng, batch_size: int) -> dict[str, tf.SparseTensor]:
    """The sequence layout's batch with `values` [B, steps, 12] instead of the
    two numeric columns."""
    batch = make_batch(rng, batch_size, "sequence")
    indices = batch.pop("rating").indices.numpy()
    del batch["price"]
    n = len(indices)
    rows, steps = (
        np.repeat(indices[:, 0], SMALL_WIDTH),
        np.repeat(indices[:, 1], SMALL_WIDTH),
    )
    slots = np.tile(np.arange(SMALL_WIDTH), n)
    shape = batch["watches"].dense_shape.numpy()
    batch["values"] = tf.SparseTensor(
        np.stack([rows, steps, slots], 1),
        rng.normal(0.0, 1.0, n * SMALL_WIDTH).astype(np.float32),
        [shape[0], shape[1], SMALL_WIDTH],
    )
    return batch


def make_batch(rng, batch_size: int, layout: str) -> dict[str, tf.SparseTensor]:
    lengths = np.clip(np.rint(rng.lognormal(np.log(30), 1.0, batch_size)), 1, 1000)
    lengths = lengths.astype(np.int64)
    n, t_max = int(lengths.sum()), int(lengths.max())
    rows = np.repeat(np.arange(batch_size), lengths)
    steps = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rating = rng.normal(3.5, 1.0, n).astype(np.float32)
    price = rng.uniform(0, 20, (n, 2)).astype(np.float32)
    watches = (rng.zipf(1.3, n) - 1) % NUM_IDS
    genre = np.array(VOCAB20 + ("unseen",), dtype=object)[rng.integers(0, 21, n)]
    zeros = np.zeros(n, np.int64)
    if layout == "sequence":
        idx1 = np.stack([rows, steps, zeros], 1)
        price_idx = np.stack(
            [np.repeat(rows, 2), np.repeat(steps, 2), np.tile([0, 1], n)], 1
        )
        shape1, shape2 = [batch_size, t_max, 1], [batch_size, t_max, 2]
    else:
        idx1 = np.stack([rows, steps], 1)
        price_idx = np.stack(
            [np.repeat(rows, 2), 2 * np.repeat(steps, 2) + np.tile([0, 1], n)], 1
        )
        shape1, shape2 = [batch_size, t_max], [batch_size, 2 * t_max]
    return {
        "rating": tf.SparseTensor(idx1, rating, shape1),
        "price": tf.SparseTensor(price_idx, price.reshape(-1), shape2),
        "watches": tf.SparseTensor(idx1, tf.constant(watches, tf.int64), shape1),
        "genre": tf.SparseTensor(idx1, tf.constant(genre.astype(bytes)), shape1),
    }


def signature(layout: str):
    rank = 2 if layout == "flat" else 3
    shape = [None] * rank
    numeric = ("values",) if layout == "small" else ("rating", "price")
    return [
        {
            **{key: tf.SparseTensorSpec(shape, tf.float32) for key in numeric},
            "watches": tf.SparseTensorSpec(shape, tf.int64),
            "genre": tf.SparseTensorSpec(shape, tf.string),
        }
    ]


def _tracing_counts(*fns) -> tuple[int, ...]:
    return tuple(fn.experimental_get_tracing_count() for fn in fns)


def time_pair(
    fn_ref, fn_ours, batches, iterations: int, block: int = BLOCK
) -> tuple[float, float, float]:
    """Median seconds per batch of each layer over `iterations` calls each,
    interleaved in blocks of `block` calls (1: call by call), the first layer
    alternating, so that load from other processes hits both alike; and the
    median of the per-call ratios ref / ours (call i of both layers runs the
    same batch, in two blocks a few ms apart: a change of load between blocks
    cancels out)."""
    times = {fn_ref: [], fn_ours: []}
    for first in range(0, iterations, block):
        calls = range(first, min(first + block, iterations))
        for fn in (fn_ref, fn_ours) if (first // block) % 2 else (fn_ours, fn_ref):
            for i in calls:
                batch = batches[i % len(batches)]
                start = time.perf_counter()
                _, length = fn(batch)
                length.numpy()
                times[fn].append(time.perf_counter() - start)
    ratios = np.divide(times[fn_ref], times[fn_ours])
    return (
        float(np.median(times[fn_ref])),
        float(np.median(times[fn_ours])),
        float(np.median(ratios)),
    )


def time_pair_dataset(
    ref, ours, batches, min_seconds: float, rounds: int
) -> tuple[float, float, float, int]:
    """Seconds per batch with the layer as a tf.data map, consumed in a
    `tf.function` loop (no Python per batch): the median per layer, the median
    over rounds of the round's ratio ref / ours, and the batches per layer run.

    Steady state: each layer's map runs over `batches` repeated without end,
    through one iterator made before timing, so a timed pass of n batches pays
    neither iterator creation nor instantiating and optimizing the map
    function (~150 ms per iterator here, with tens of ms of jitter: timing a
    fresh pass, or the difference of two, buried the per-batch cost of the
    faster layer in it). n is the same for both layers, chosen so that a pass
    of the faster one takes >= `min_seconds`. Rounds alternate the order; each
    round's ratio pairs two passes taken seconds apart, so a change of load
    between rounds cancels out.
    """
    source = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        source = source.concatenate(tf.data.Dataset.from_tensors(batch))

    def runner(layer):
        """`take(n)`: the next n batches through `layer`; returns seconds per batch."""
        mapped = source.repeat().map(
            lambda f: tf.shape(layer(f)[0], out_type=tf.int64)[0]
        )
        # The map runs when the loop asks: no injected prefetch or parallel map
        # computing batches ahead, outside the timed pass (in the other
        # layer's, or between passes).
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        options.experimental_optimization.map_parallelization = False
        iterator = iter(mapped.with_options(options))

        @tf.function
        def consume(n):
            total = tf.constant(0, tf.int64)
            for _ in tf.range(n):
                total += iterator.get_next()
            return total

        def take(n: int) -> float:
            start = time.perf_counter()
            consume(tf.constant(n)).numpy()
            return (time.perf_counter() - start) / n

        take(2 * len(batches))  # trace, warm up
        return take

    runs = {"ref": runner(ref), "ours": runner(ours)}
    fastest = min(take(4 * len(batches)) for take in [*runs.values()] * 2)
    count = max(len(batches), int(np.ceil(min_seconds / fastest)))
    per_batch = {"ref": [], "ours": []}
    for r in range(rounds):
        for name in ("ref", "ours") if r % 2 else ("ours", "ref"):
            per_batch[name].append(runs[name](count))
    ratios = np.divide(per_batch["ref"], per_batch["ours"])
    return (
        float(np.median(per_batch["ref"])),
        float(np.median(per_batch["ours"])),
        float(np.median(ratios)),
        rounds * count,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--signature", action="store_true", help="wrap with an input_signature"
    )
    parser.add_argument(
        "--interleave",
        choices=("block", "call"),
        default="block",
        help=f"call rows: alternate blocks of {BLOCK} calls (default) or single calls",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        metavar="LAYOUT:MODE:B",
        help="time only these rows, e.g. sequence:call:64 (batches are the "
        "full run's all the same)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        help="calls per layer in each call row (default: 400 at B=64, 40 at "
        "B=1024; --quick 80 and 12)",
    )
    args = parser.parse_args(argv)
    rows = None if args.rows is None else set(args.rows)
    sizes = {"sequence": (64, 1024), "flat": (64, 1024), "small": (32,)}
    known = {
        f"{layout}:{mode}:{b}"
        for layout, batch_sizes in sizes.items()
        for mode in ("call", "tf.data")
        for b in batch_sizes
    }
    if rows is not None and not rows <= known:
        parser.error(f"--rows: unknown {sorted(rows - known)}; known {sorted(known)}")
    warnings.filterwarnings("ignore")
    tf.get_logger().setLevel("ERROR")
    import tf_keras  # the reference; only imported by the benchmark and tests

    layers = {}  # columns -> (ref, ours), the same table in both
    for name, build in (("default", build_columns), ("small", build_small_columns)):
        ours = transforms.SequenceFeatures(build(transforms))
        table = ours.get_embedding_weights()["watches_embedding"]
        ref = tf_keras.experimental.SequenceFeatures(build(tf.feature_column, table))
        layers[name] = ref, ours
    rng = np.random.default_rng(args.seed)
    budget = {32: 80, 64: 80, 1024: 12} if args.quick else {32: 400, 64: 400, 1024: 40}
    if args.iterations is not None:
        budget = dict.fromkeys(budget, args.iterations)
    dataset_timing = (
        {"min_seconds": 0.25, "rounds": 5}
        if args.quick
        else {"min_seconds": 1.0, "rounds": 7}
    )
    print(
        f"bench_features: {'quick' if args.quick else 'full'} run, "
        f"{os.cpu_count()} CPUs visible, TF {tf.__version__}, call rows "
        f"interleaved by {args.interleave}, "
        + ("" if rows is None else f"rows {' '.join(sorted(rows))}, ")
        + "load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    header = f"{'layout':<9} {'mode':<8} {'B':>5} {'batches':>7} {'reference ex/s':>15} {'ours ex/s':>11} {'ratio':>6} {'ex/s ratio':>10}"
    print(header)
    print("-" * len(header))
    worst = float("inf")
    for layout in ("sequence", "flat", "small"):
        ref, ours = layers["small" if layout == "small" else "default"]
        # reduce_retracing rather than input_signature: binding a dict of
        # SparseTensors to a signature costs ~1 ms of Python per call (same
        # for both layers, none of it theirs); tracing is checked below.
        wrap = (
            {"input_signature": signature(layout)}
            if args.signature
            else {"reduce_retracing": True}
        )
        fn_ref, fn_ours = tf.function(ref, **wrap), tf.function(ours, **wrap)
        for batch_size in sizes[layout]:
            iterations = budget[batch_size]
            if layout == "small":
                batches = [make_small_batch(rng, batch_size) for _ in range(4)]
            else:
                batches = [make_batch(rng, batch_size, layout) for _ in range(4)]
            modes = [
                mode
                for mode in ("call", "tf.data")
                if rows is None or f"{layout}:{mode}:{batch_size}" in rows
            ]
            if not modes:
                continue  # its batches are drawn all the same (same rng state)
            for batch in batches:  # same output, bit for bit, before timing
                (r_out, r_len), (o_out, o_len) = fn_ref(batch), fn_ours(batch)
                np.testing.assert_array_equal(o_out.numpy(), r_out.numpy())
                np.testing.assert_array_equal(o_len.numpy(), r_len.numpy())
            for batch in batches:  # relaxed shapes traced: no retracing below
                fn_ref(batch), fn_ours(batch)
            traces = _tracing_counts(fn_ref, fn_ours)
            mean_b = np.mean([int(b["watches"].dense_shape[0]) for b in batches])
            for mode in modes:
                if mode == "call":
                    block = BLOCK if args.interleave == "block" else 1
                    t_ref, t_ours, ratio = time_pair(
                        fn_ref, fn_ours, batches, iterations, block=block
                    )
                    now = _tracing_counts(fn_ref, fn_ours)
                    if now != traces:
                        raise RuntimeError(f"retraced while timing: {traces} -> {now}")
                    count = iterations
                else:
                    t_ref, t_ours, ratio, count = time_pair_dataset(
                        ref, ours, batches, **dataset_timing
                    )
                speed_ref, speed_ours = mean_b / t_ref, mean_b / t_ours
                worst = min(worst, ratio)
                print(
                    f"{layout:<9} {mode:<8} {batch_size:>5} {count:>7} "
                    f"{speed_ref:>15,.0f} {speed_ours:>11,.0f} {ratio:>5.2f}x "
                    f"{speed_ours / speed_ref:>9.2f}x",
                    flush=True,
                )
    print(f"outputs identical on every batch; lowest ratio {worst:.2f}x (target >= 2x)")
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        "call: tf.function called from Python per batch (includes ~ms of Python "
        "dispatch, same for both); tf.data: the layer as a Dataset.map, as the "
        "pipeline runs it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
