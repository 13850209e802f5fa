"""Validation: the closed `Reason` enum, per-batch checks, and `ValidateRecords`.

Place in the flow: read -> decode -> **validate** -> bucket -> features.
A record is valid when it parses as a SequenceExample with the CONTEXT specs, every
column's feature list is present, numeric steps carry exactly prod(shape) finite
values, identity ids (columns without default_value) lie in [0, num_buckets), and
all feature lists have the same length L >= 1, L being the reference length (last
step with a value + 1). Everything else becomes a dead letter with a `Reason`.

Empty sequences (all feature lists present, L == 0) are dead-lettered as
`empty_sequence`: a zero-length row would be all padding and breaks RNN masking.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.metrics import Metrics
from google.protobuf.message import DecodeError

from pipeline.decode import DecodedBatch, Decoder, RecordSpec

NAMESPACE = "seqshards"
VALID = "valid"
ERRORS = "errors"


class Reason(str, enum.Enum):
    """Why a record is a dead letter; names counters, errors/ files, metadata keys."""

    CORRUPT_RECORD = "corrupt_record"  # TFRecord CRC mismatch (framing damage)
    TRUNCATED_RECORD = "truncated_record"  # file ends inside a record
    NOT_A_SEQUENCE_EXAMPLE = "not_a_sequence_example"  # bytes are no such proto
    MISSING_FEATURE = "missing_feature"  # feature list / required context absent
    WRONG_DTYPE = "wrong_dtype"  # e.g. bytes where floats are expected
    WRONG_SHAPE = "wrong_shape"  # values per step != prod(shape), context size
    NON_FINITE = "non_finite"  # NaN or Inf in a numeric feature
    ID_OUT_OF_RANGE = "id_out_of_range"  # identity id < 0 or >= num_buckets
    UNEQUAL_LENGTHS = "unequal_lengths"  # feature lists of different lengths
    EMPTY_SEQUENCE = "empty_sequence"  # every feature list has length 0
    INVALID_RECORD = "invalid_record"  # any other parser rejection

    def __str__(self) -> str:
        return self.value


class ErrorRecord(NamedTuple):
    """One dead letter: reason, human detail, source position, original bytes."""

    reason: Reason
    detail: str
    position: tuple[int, int]
    data: bytes


def classify_parse_error(message: str) -> Reason:
    """Maps a `parse_sequence_example` error message onto a `Reason`."""
    if "Invalid protocol message" in message or "Could not parse" in message:
        return Reason.NOT_A_SEQUENCE_EXAMPLE
    if "Data types don't match" in message or "dtype" in message.lower():
        return Reason.WRONG_DTYPE
    if "required but could not be found" in message or message.endswith("found 0"):
        return Reason.MISSING_FEATURE
    if "Inconsistent" in message or "Number of" in message or "shape" in message:
        return Reason.WRONG_SHAPE
    return Reason.INVALID_RECORD


def check_batch(
    serialized: Sequence[bytes], decoded: DecodedBatch, spec: RecordSpec
) -> tuple[np.ndarray, dict[int, tuple[Reason, str]]]:
    """Validates a decoded batch.

    Args:
      serialized: The N records the batch was decoded from.
      decoded: `Decoder.decode(serialized)`.
      spec: The record spec.

    Returns:
      `(lengths, problems)`: int64 [N] lengths (-1 for invalid records) and
      input index -> (Reason, detail) for every invalid record.
    """
    n = len(serialized)
    problems: dict[int, tuple[Reason, str]] = {
        i: (classify_parse_error(msg), msg) for i, msg in decoded.parse_errors.items()
    }
    rows = decoded.ok_rows
    m = len(rows)
    found: dict[int, tuple[Reason, str]] = {}  # ok-row index -> first problem

    def mark(bad_rows, reason, detail):
        for r in np.unique(bad_rows).tolist():
            found.setdefault(r, (reason, detail))

    keys = list(spec.sequence)
    eff = np.zeros((len(keys), m), np.int64)
    empty_rows = set()
    for k, key in enumerate(keys):
        values, step_splits, row_splits = decoded.features[key]
        steps = np.diff(row_splits)
        counts = np.diff(step_splits)
        step_row = np.repeat(np.arange(m), steps)
        empty_rows.update(np.flatnonzero(steps == 0).tolist())
        width = spec.numeric_widths.get(key)
        if width is not None:
            bad = counts != width
            if bad.any():
                mark(
                    step_row[bad],
                    Reason.WRONG_SHAPE,
                    f"feature list {key!r}: a step has a number of values other "
                    f"than prod(shape)={width}",
                )
            if values.dtype.kind == "f":
                nonfinite = ~np.isfinite(values)
                if nonfinite.any():
                    value_step = np.repeat(np.arange(len(counts)), counts)
                    mark(
                        step_row[value_step[nonfinite]],
                        Reason.NON_FINITE,
                        f"feature list {key!r} holds NaN or Inf",
                    )
            eff[k] = steps
            continue
        num_buckets = spec.id_ranges.get(key)
        if num_buckets is not None:
            out = (values < 0) | (values >= num_buckets)
            if out.any():
                value_step = np.repeat(np.arange(len(counts)), counts)
                mark(
                    step_row[value_step[out]],
                    Reason.ID_OUT_OF_RANGE,
                    f"feature list {key!r} holds ids outside [0, {num_buckets})",
                )
        nonempty = np.flatnonzero(counts > 0)
        if len(nonempty):
            pos = nonempty - row_splits[step_row[nonempty]]
            np.maximum.at(eff[k], step_row[nonempty], pos + 1)

    # Feature lists absent from the proto (the parser reports them as empty).
    for r in sorted(empty_rows):
        missing = _missing_lists(serialized[rows[r]], keys)
        if isinstance(missing, Reason):
            found[r] = (missing, "not a SequenceExample proto")
        elif missing:
            found[r] = (Reason.MISSING_FEATURE, f"feature list(s) {missing} missing")
    if m and len(keys):
        unequal = (eff != eff[:1]).any(axis=0)
        for r in np.flatnonzero(unequal).tolist():
            detail = ", ".join(f"{key}={int(eff[k, r])}" for k, key in enumerate(keys))
            found.setdefault(r, (Reason.UNEQUAL_LENGTHS, f"lengths {detail}"))
        for r in np.flatnonzero(eff[0] == 0).tolist():
            found.setdefault(r, (Reason.EMPTY_SEQUENCE, "every feature list is empty"))
    lengths = np.full(n, -1, np.int64)
    if m and len(keys):
        lengths[rows] = eff[0]
    for r, problem in found.items():
        lengths[rows[r]] = -1
        problems[int(rows[r])] = problem
    return lengths, problems


def _missing_lists(data: bytes, keys: Sequence[str]) -> list[str] | Reason:
    try:
        proto = tf.train.SequenceExample.FromString(data)
    except DecodeError:
        return Reason.NOT_A_SEQUENCE_EXAMPLE
    present = proto.feature_lists.feature_list
    return [key for key in keys if key not in present]


def validate_chunk(
    decoder: Decoder,
    spec: RecordSpec,
    chunk: Sequence[tuple[tuple[int, int], bytes]],
) -> tuple[list[tuple[tuple[int, int], int, bytes]], list[ErrorRecord]]:
    """Decodes and validates `(position, bytes)` pairs.

    Returns:
      `(valid, errors)`: valid `(position, length, bytes)` triples in input order and
      `ErrorRecord`s.
    """
    serialized = [data for _, data in chunk]
    lengths, problems = check_batch(serialized, decoder.decode(serialized), spec)
    valid, errors = [], []
    for i, (position, data) in enumerate(chunk):
        if lengths[i] >= 0:
            valid.append((position, int(lengths[i]), data))
        else:
            reason, detail = problems[i]
            errors.append(ErrorRecord(reason, detail, position, data))
    return valid, errors


class ValidateRecords(beam.PTransform):
    """Chunks of (position, bytes) -> outputs `.valid` (position, length, bytes)
    and `.errors` (ErrorRecord)."""

    def __init__(self, spec: RecordSpec):
        super().__init__()
        self._spec = spec

    def expand(self, chunks):  # [(position, bytes)] -> valid | errors
        return chunks | "Check" >> beam.ParDo(_ValidateDoFn(self._spec)).with_outputs(
            ERRORS, main=VALID
        )


class _ValidateDoFn(beam.DoFn):
    def __init__(self, spec: RecordSpec):
        self._spec = spec
        self._decoder = None

    def setup(self):
        self._decoder = Decoder(self._spec)

    def process(self, chunk):
        valid, errors = validate_chunk(self._decoder, self._spec, chunk)
        yield from valid
        for error in errors:
            Metrics.counter(NAMESPACE, f"errors_{error.reason.value}").inc()
            yield beam.pvalue.TaggedOutput(ERRORS, error)
