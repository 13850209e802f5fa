"""The tfdata engine's lengths pass: the histogram `--bucket_boundaries auto` needs.

Place in the flow: a first, light pass before **bucket** (one feature list and
the id parsed per record).
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from pipeline.stages import decode, fileio
from pipeline.stages.validate import FirstIdWins
from pipeline.tfdata import chunks
from pipeline.tfdata.threads import ahead


def histogram(files, spec, new_report, policy) -> dict[int, int]:
    """Length histogram for `--bucket_boundaries auto`, from a light parse.

    Only one feature list and the id are parsed (`decode.length_spec`): this
    pass costs a fraction of validation, which runs once, in the main pass.
    Counted: each record that parses, once per id (its first position), with
    the length policy applied (too long: clipped under truncate, left out
    under dead_letter; empty: left out). Records that validation later
    dead-letters for another reason (dtype, unequal lengths, NaN...) are
    counted too: they can only move the boundaries, an estimate by nature.

    Healthy local input is read and parsed by tf.data (C++ reader, parallel
    parse); damaged framing or a record the parse rejects makes the pass start
    over with the engine's own reader, which isolates them. Remote input
    (gs://, s3://) is read by the engine's reader through `fileio` (not
    TensorFlow's file systems), its chunks decoded by TensorFlow.
    """
    light = decode.length_spec(spec)
    if any(fileio.is_remote(f) for f in files):  # bytes through fileio, not TF
        return count_lengths(_reader_lengths(files, light), policy, new_report())
    try:
        return count_lengths(_tfdata_lengths(files, light), policy, new_report())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
        return count_lengths(_reader_lengths(files, light), policy, new_report())


def count_lengths(chunks, policy, report) -> dict[int, int]:
    """Histogram of (lengths, ids or None, records, bytes) chunks (see above)."""
    hist: collections.Counter = collections.Counter()
    first_ids = FirstIdWins()  # positions: (chunk, row), in reading order
    for k, (lengths, ids, records, nbytes) in enumerate(chunks):
        keep = lengths > 0
        if policy.max_length is not None:
            if policy.on_long == "truncate":
                lengths = np.minimum(lengths, policy.max_length)
            else:
                keep &= lengths <= policy.max_length
        if ids is not None:
            ids = ids.tolist()
            keep &= first_ids.keep(ids, [(k, row) for row in range(len(ids))])
        hist.update(lengths[keep].tolist())
        if report:
            report.add(records, nbytes)
    if report:
        report.done()
    return dict(hist)


def _no_autotune() -> tf.data.Options:
    """tf.data options with the autotuner off (AUTOTUNE parallelism = cores).

    With the autotuner on, while another Python thread holds the GIL (here the
    tracer, 1-2 s), the pass's last `next()` waited ~1 s with no thread busy:
    200k records took 2.60 s beside a thread spinning for 0.8 s (3 of 3 runs),
    1.46-1.54 s with it off, 1.2-1.3 s with no other thread.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _tfdata_lengths(files, light: decode.RecordSpec):
    """(lengths, ids, records, bytes) per `chunks.CHUNK` records, files in order."""
    parse_batch = decode.Decoder(light).parse
    (key,) = light.sequence

    def parse(serialized):
        features, ids, _ = parse_batch(serialized)
        row_splits = features[key][2]
        records = tf.size(serialized, out_type=tf.int64)
        nbytes = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
        return row_splits[1:] - row_splits[:-1], ids, records, nbytes + 16 * records

    dataset = (
        tf.data.TFRecordDataset(list(files), buffer_size=1 << 22)
        .batch(chunks.CHUNK)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
        .with_options(_no_autotune())
    )
    for lengths, ids, records, nbytes in dataset.as_numpy_iterator():
        yield lengths, ids if light.id_feature is not None else None, records, nbytes


def _reader_lengths(files, light: decode.RecordSpec):
    """The same chunks through `tfrecord.read_file` and `decode.Decoder`."""
    decoder = decode.Decoder(light)
    (key,) = light.sequence
    for chunk, read_errors, nbytes in ahead(chunks.read_all(files), "read"):
        records = len(chunk) + len(read_errors)
        if not chunk:
            yield np.zeros(0, np.int64), None, records, nbytes
            continue
        decoded = decoder.decode([data for _, data in chunk])
        yield np.diff(decoded.features[key][2]), decoded.ids, records, nbytes
