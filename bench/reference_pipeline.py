"""The stock-TensorFlow baseline: what a competent user writes without seqshards.

Flow (issue 6): tf.data interleave -> length pre-pass -> `bucket_by_sequence_length`
(hand-picked boundaries, batch 128) -> `tf.io.parse_sequence_example` ->
`tf_keras.experimental.SequenceFeatures` over `tf.feature_column` columns ->
`tf.io.serialize_tensor` -> one `tf.train.Example` per batch -> `TFRecordWriter`.

Written to be fair: parallel interleave, AUTOTUNE maps, the length pre-pass batched
(one `parse_sequence_example` of a single feature list per 1024 records), parse +
features + serialize_tensor fused in one parallel map, prefetch, order not enforced
(`deterministic=False`), the embedding layer built once before the run.

`--no_bucketing` batches in input order (padding to each batch's longest example).
`--stop_after STAGE` ends the pipeline after STAGE and just counts elements in the
graph; the time differences between stop points give the per-stage profile.

Usage:
  python bench/reference_pipeline.py --input 'bench/work/data-20000/data-*' \
      --output /tmp/ref.tfrecord [--no_bucketing] [--stop_after parse]
Prints one JSON line of metrics (examples, seconds, output_bytes, padding_efficiency).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import sys
import time

import tensorflow as tf
import tf_keras

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gen_data import GENRES, NUM_WATCH_IDS  # noqa: E402

BOUNDARIES = [8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192,
              256, 320, 384, 512, 768]  # fmt: skip
BATCH_SIZE = 128
EMBEDDING_DIM = 16
STAGES = ("read", "length", "bucket", "parse", "features", "serialize", "write")
CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "user_country": tf.io.FixedLenFeature([], tf.string),
}
AUTOTUNE = tf.data.AUTOTUNE


def tf_columns() -> list:
    """The benchmark columns in stock `tf.feature_column` (D = 39)."""
    fc = tf.feature_column
    return [
        fc.sequence_numeric_column("rating"),
        fc.sequence_numeric_column("price", shape=(2,)),
        fc.embedding_column(
            fc.sequence_categorical_column_with_identity("watches", NUM_WATCH_IDS),
            EMBEDDING_DIM,
        ),
        fc.indicator_column(
            fc.sequence_categorical_column_with_vocabulary_list("genre", list(GENRES))
        ),
    ]


def _records(pattern: str) -> tf.data.Dataset:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"No input files match `--input`. Received: {pattern!r}"
        )
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    )


def _with_lengths(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Length pre-pass over a batch: parse only `rating`, read its lengths."""
    _, _, lengths = tf.io.parse_sequence_example(
        serialized,
        sequence_features={"rating": tf.io.FixedLenSequenceFeature([], tf.float32)},
    )
    return serialized, tf.cast(lengths["rating"], tf.int32)


def build_dataset(
    pattern: str, *, bucketing: bool, stop_after: str, layer, spec: dict
) -> tf.data.Dataset:
    """The reference tf.data pipeline, cut after `stop_after`."""
    ds = _records(pattern)
    if stop_after == "read":
        return ds
    if bucketing:
        ds = ds.batch(1024).map(_with_lengths, num_parallel_calls=AUTOTUNE).unbatch()
        if stop_after == "length":
            return ds
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda serialized, length: length,
            bucket_boundaries=BOUNDARIES,
            bucket_batch_sizes=[BATCH_SIZE] * (len(BOUNDARIES) + 1),
        ).map(lambda serialized, length: serialized)
    else:
        ds = ds.batch(BATCH_SIZE)
    if stop_after in ("length", "bucket"):
        return ds

    def parse(serialized):
        context, sequences, _ = tf.io.parse_sequence_example(
            serialized, context_features=CONTEXT, sequence_features=spec
        )
        return context, sequences

    def features(serialized):
        context, sequences = parse(serialized)
        sequence_input, sequence_length = layer(sequences, training=False)
        return context, sequence_input, sequence_length

    def serialize(serialized):
        context, sequence_input, sequence_length = features(serialized)
        shape = tf.shape(sequence_input, out_type=tf.int64)
        out = {
            "sequence_input": tf.io.serialize_tensor(sequence_input),
            "sequence_length": tf.io.serialize_tensor(sequence_length),
            **{k: tf.io.serialize_tensor(v) for k, v in context.items()},
        }
        return out, shape[0], tf.reduce_sum(sequence_length), shape[0] * shape[1]

    fn = {"parse": parse, "features": features}.get(stop_after, serialize)
    return ds.map(fn, num_parallel_calls=AUTOTUNE, deterministic=False).prefetch(
        AUTOTUNE
    )


def _example(tensors: dict) -> bytes:
    feature = {
        k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        for k, v in sorted(tensors.items())
    }
    return tf.train.Example(
        features=tf.train.Features(feature=feature)
    ).SerializeToString()


def run(
    pattern: str, output: str, *, bucketing: bool = True, stop_after: str = "write"
) -> dict:
    """Runs the reference; returns its metrics."""
    columns = tf_columns()
    spec = tf.feature_column.make_parse_example_spec(columns)
    layer = tf_keras.experimental.SequenceFeatures(columns)
    # Build the embedding variables once, outside the tf.data functions.
    probe = next(
        iter(
            build_dataset(
                pattern, bucketing=False, stop_after="parse", layer=None, spec=spec
            ).take(1)
        )
    )
    layer(probe[1])

    start = time.perf_counter()
    ds = build_dataset(
        pattern, bucketing=bucketing, stop_after=stop_after, layer=layer, spec=spec
    )
    metrics = {"stop_after": stop_after, "bucketing": bucketing}
    if stop_after != "write":
        if stop_after in ("read", "length"):  # per-record reduce costs ~60 us/element
            ds = ds.batch(4096).map(lambda *x: tf.shape(x[0], out_type=tf.int64)[0])
        else:  # batches of the bucketed/plain pipeline
            ds = ds.map(lambda *x: tf.constant(1, tf.int64))
        count = ds.reduce(tf.constant(0, tf.int64), lambda n, k: n + k)
        metrics.update(elements=int(count))
    else:
        batches = examples = real = total = 0
        with tf.io.TFRecordWriter(output) as writer:
            for tensors, size, real_steps, total_steps in ds.as_numpy_iterator():
                writer.write(_example(tensors))
                batches += 1
                examples += int(size)
                real += int(real_steps)
                total += int(total_steps)
        metrics.update(
            batches=batches,
            examples=examples,
            real_steps=real,
            total_steps=total,  # sum over batches of B * T
            padding_efficiency=real / total if total else None,
            output_bytes=os.path.getsize(output),
        )
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input", required=True, help="Glob of SequenceExample TFRecords."
    )
    parser.add_argument("--output", required=True, help="Output TFRecord file.")
    parser.add_argument("--no_bucketing", action="store_true")
    parser.add_argument("--stop_after", choices=STAGES, default="write")
    args = parser.parse_args(argv)
    metrics = run(
        args.input,
        args.output,
        bucketing=not args.no_bucketing,
        stop_after=args.stop_after,
    )
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
