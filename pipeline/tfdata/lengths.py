"""The tfdata engine's first pass: the length histogram `--bucket_boundaries
auto` needs, and the fingerprints of repeated ids (`ids`).

Place in the flow: a first, light pass before **bucket** and the main pass's
duplicate ids (one feature list and the id parsed per record).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from pipeline.stages import decode, fileio, validate
from pipeline.tfdata import chunks, ids
from pipeline.tfdata.threads import ahead


class FirstPass(NamedTuple):
    """What the first pass found.

    Attributes:
      histogram: Length -> records (see `first_pass`).
      repeated: Sorted uint64 fingerprints of the ids met more than once
        (`ids`), or None when the spec has no id feature.
    """

    histogram: dict[int, int]
    repeated: np.ndarray | None


def first_pass(files, spec, new_report, policy) -> FirstPass:
    """Length histogram for `--bucket_boundaries auto` and the repeated ids,
    from a light parse.

    Only one feature list and the id are parsed (`decode.length_spec`): this
    pass costs a fraction of validation, which runs once, in the main pass.
    Counted: each record that parses, once per id (its first position), with
    the length policy applied (too long: clipped under truncate, left out
    under dead_letter; empty: left out). Records that validation later
    dead-letters for another reason (dtype, unequal lengths, NaN...) are
    counted too: they can only move the boundaries, an estimate by nature.
    The ids seen are fingerprints logged to disk (`ids.IdLog`), not kept.

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
        return count_lengths(
            _reader_lengths(files, light, policy), policy, new_report()
        )


def histogram(files, spec, new_report, policy) -> dict[int, int]:
    """The length histogram of `first_pass`."""
    return first_pass(files, spec, new_report, policy).histogram


def count_lengths(chunks, policy, report) -> FirstPass:
    """The `FirstPass` of (lengths, `ids.IdBatch` or None, records, bytes)
    chunks (see `first_pass`); a chunk's ids may hold more records than its
    lengths: fingerprints only (`_reader_lengths`)."""
    hist: collections.Counter = collections.Counter()
    log = None
    try:
        for lengths, id_batch, records, nbytes in chunks:
            keep = lengths > 0
            if policy.max_length is not None:
                if policy.on_long == "truncate":
                    lengths = np.minimum(lengths, policy.max_length)
                else:
                    keep &= lengths <= policy.max_length
            counted = np.where(keep, lengths, 0)
            hist.update(lengths[keep].tolist())
            if id_batch is not None:
                log = log or ids.IdLog()
                extra = len(id_batch.sizes) - len(lengths)  # fingerprints only
                log.add(id_batch, np.concatenate([counted, np.full(extra, -1)]))
            if report:
                report.add(records, nbytes)
        repeated = None
        if log is not None:
            repeated, dropped = log.finish()
            log = None
            hist.subtract(dropped.tolist())
    finally:
        if log is not None:  # a failed pass: its files go
            log.finish()
    if report:
        report.done()
    return FirstPass({k: v for k, v in hist.items() if v > 0}, repeated)


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
        features, id_values, _ = parse_batch(serialized)
        row_splits = features[key][2]
        records = tf.size(serialized, out_type=tf.int64)
        nbytes = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
        lengths = row_splits[1:] - row_splits[:-1]
        return lengths, ids.summarize(id_values), records, nbytes + 16 * records

    dataset = (
        tf.data.TFRecordDataset(list(files), buffer_size=1 << 22)
        .batch(chunks.CHUNK)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
        .with_options(_no_autotune())
    )
    for lengths, summary, records, nbytes in dataset.as_numpy_iterator():
        id_batch = ids.IdBatch(*summary) if light.id_feature is not None else None
        yield lengths, id_batch, records, nbytes


def _reader_lengths(
    files, light: decode.RecordSpec, policy: validate.Policy | None = None
):
    """The same chunks through `tfrecord.read_file` and `decode.Decoder`.

    A record the light parse rejects whose truncated bytes (`--on_long
    truncate`) parse may be valid in the main pass: its id's fingerprint is
    logged after the chunk's ids (fingerprint only, not in the histogram), so
    that its duplicates are found there too."""
    policy = policy or validate.Policy()
    decoder = decode.Decoder(light)
    (key,) = light.sequence
    with_ids = light.id_feature is not None
    for chunk, read_errors, nbytes in ahead(chunks.read_all(files), "read"):
        records = len(chunk) + len(read_errors)
        if not chunk:
            yield np.zeros(0, np.int64), None, records, nbytes
            continue
        decoded = decoder.decode([data for _, data in chunk])
        id_batch = None
        if with_ids:
            found = [decoded.ids]
            if policy.max_length is not None and policy.on_long == "truncate":
                rejected = [chunk[i][1] for i in sorted(decoded.parse_errors)]
                cut = [validate.apply_max_length(data, policy) for data in rejected]
                cut = [c for c, d in zip(cut, rejected, strict=True) if c is not d]
                found.append(decoder.decode(cut).ids)
            id_batch = ids.id_batch(np.concatenate(found))
        yield np.diff(decoded.features[key][2]), id_batch, records, nbytes
