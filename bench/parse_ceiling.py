"""Throughput ceilings on the benchmark data: what any engine pays before features.

Modes (no features, no writing; each returns examples and seconds):
  read      tf.data interleave of TFRecordDataset, counted in batches of 1024
  tf_parse  + batched `tf.io.parse_sequence_example` (batch 1000, AUTOTUNE map,
            the reference's full spec: 4 feature lists + 3 context features)
  tfxbsl    tfx-bsl's SequenceExample -> Arrow decoder
            (`tfx_bsl.coders.sequence_example_coder.SequenceExamplesToRecordBatchDecoder`,
            typed by a schema) on one thread, batches of 1000, records framed by a
            plain-Python TFRecord reader (no CRC check); `decode_seconds` is the
            decoder alone
  beam_read Beam `ReadFromTFRecord` -> `Map(len)` -> `Count.Globally`; the runner
            comes from the Beam flags after `--` (e.g. `--runner FnApiRunner
            --direct_running_mode multi_processing --direct_num_workers 2`)

Usage:
  python bench/parse_ceiling.py --mode tf_parse --input 'bench/work/data-20000/data-*'
"""

from __future__ import annotations

import argparse
import glob
import json
import pathlib
import struct
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

MODES = ("read", "tf_parse", "tfxbsl", "beam_read")
SEQUENCE_COLUMN = "##SEQUENCE##"
_SCHEMA = """
feature { name: "id" type: BYTES }
feature { name: "label" type: INT }
feature { name: "user_country" type: BYTES }
feature {
  name: "##SEQUENCE##"
  type: STRUCT
  struct_domain {
    feature { name: "genre" type: BYTES }
    feature { name: "price" type: FLOAT }
    feature { name: "rating" type: FLOAT }
    feature { name: "watches" type: INT }
  }
}
"""


def _files(pattern: str) -> list[str]:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"No input files match `--input`. Received: {pattern!r}"
        )
    return files


def _tf_count(ds) -> int:
    import tensorflow as tf

    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, k: n + k))


def _records(files: list[str]):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )


def read(files: list[str]) -> dict:
    import tensorflow as tf

    start = time.perf_counter()
    ds = _records(files).batch(1024).map(lambda s: tf.size(s, out_type=tf.int64))
    return {"examples": _tf_count(ds), "seconds": time.perf_counter() - start}


def tf_parse(files: list[str]) -> dict:
    import tensorflow as tf
    from reference_pipeline import CONTEXT, tf_columns

    spec = tf.feature_column.make_parse_example_spec(tf_columns())

    def parse(serialized):
        context, sequences, _ = tf.io.parse_sequence_example(
            serialized, context_features=CONTEXT, sequence_features=spec
        )
        # Touch every output so nothing is pruned; count the examples.
        touched = [tf.size(v.values) for v in sequences.values()]
        touched += [tf.size(v) for v in context.values()]
        return tf.size(serialized, out_type=tf.int64) + 0 * tf.cast(
            tf.add_n(touched), tf.int64
        )

    start = time.perf_counter()
    ds = (
        _records(files)
        .batch(1000)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .prefetch(tf.data.AUTOTUNE)
    )
    return {"examples": _tf_count(ds), "seconds": time.perf_counter() - start}


def iter_tfrecords(path: str):
    """Yields the records of one TFRecord file (framing only, CRCs not checked)."""
    with open(path, "rb") as f:
        data = f.read()
    pos, end = 0, len(data)
    while pos < end:
        (length,) = struct.unpack_from("<Q", data, pos)
        yield data[pos + 12 : pos + 12 + length]
        pos += 16 + length


def tfxbsl(files: list[str], batch_size: int = 1000) -> dict:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders import sequence_example_coder

    schema = text_format.Parse(_SCHEMA, schema_pb2.Schema()).SerializeToString()
    decoder = sequence_example_coder.SequenceExamplesToRecordBatchDecoder(
        SEQUENCE_COLUMN, schema
    )
    examples, decode_seconds = 0, 0.0
    start = time.perf_counter()
    batch: list[bytes] = []
    for path in files:
        for record in iter_tfrecords(path):
            batch.append(record)
            if len(batch) == batch_size:
                t = time.perf_counter()
                examples += decoder.DecodeBatch(batch).num_rows
                decode_seconds += time.perf_counter() - t
                batch = []
    if batch:
        t = time.perf_counter()
        examples += decoder.DecodeBatch(batch).num_rows
        decode_seconds += time.perf_counter() - t
    return {
        "examples": examples,
        "seconds": time.perf_counter() - start,
        "decode_seconds": decode_seconds,
    }


def beam_read(files: list[str], beam_argv: list[str]) -> dict:
    import apache_beam as beam
    from apache_beam.metrics.metric import Metrics, MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    counter = Metrics.counter("seqshards_bench", "records")

    def count(record):
        counter.inc()
        return len(record)

    pattern = files[0].rsplit("/", 1)[0] + "/data-*.tfrecord"
    start = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(beam_argv))
    _ = (
        p
        | "Read" >> beam.io.ReadFromTFRecord(pattern)
        | "Size" >> beam.Map(count)
        | "Sum" >> beam.CombineGlobally(sum)
    )
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    found = result.metrics().query(MetricsFilter().with_name("records"))["counters"]
    return {"examples": sum(c.committed for c in found), "seconds": seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument(
        "--input", required=True, help="Glob of SequenceExample TFRecords."
    )
    args, beam_argv = parser.parse_known_args(argv)
    files = _files(args.input)
    if args.mode == "beam_read":
        metrics = beam_read(files, beam_argv)
    else:
        metrics = {"read": read, "tf_parse": tf_parse, "tfxbsl": tfxbsl}[args.mode](
            files
        )
    metrics["mode"] = args.mode
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
