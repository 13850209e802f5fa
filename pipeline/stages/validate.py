"""Validation: the closed `Reason` enum, the error model, per-batch checks, ids.

Place in the flow: read -> decode -> **validate** -> bucket -> features.
A record is valid when it parses as a SequenceExample with the CONTEXT specs, every
column's feature list is present, numeric steps carry exactly prod(shape) finite
values, identity ids (columns without default_value) lie in [0, num_buckets),
weighted columns hold one finite weight per id at every step, and all feature
lists have the same length L >= 1, L being the reference length (last step with
a value + 1). Everything else becomes a dead letter with a `Reason`.

Empty sequences (all feature lists present, L == 0) are dead-lettered as
`empty_sequence`: a zero-length row would be all padding and breaks RNN masking.

`Policy` adds the job's choices: `max_length` (a record with a feature list of
more steps is `too_long`, or truncated to its first `max_length` steps, decided
on the serialized bytes before decoding, see `wire`) and `on_invalid` ("fail"
raises `InvalidRecordError` for the first NaN/Inf or out-of-range id instead of
dead-lettering it). Non-UTF-8 bytes are valid values (TF strings are bytes): a
vocabulary column maps them to its default/OOV id like any other miss.
Duplicate example ids are found later, over the whole input (`DUPLICATE_ID`):
both engines keep the record at the smallest position with `FirstIdWins`.
The Beam wrappers (`ValidateRecords`, `DropDuplicateIds`) are in
`pipeline.beam.validate`.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from pipeline.stages import tfrecord, wire
from pipeline.stages.decode import DecodedBatch, Decoder, RecordSpec


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
    WEIGHT_COUNT_MISMATCH = "weight_count_mismatch"  # a step's weights != its ids
    EMPTY_SEQUENCE = "empty_sequence"  # every feature list has length 0
    TOO_LONG = "too_long"  # a feature list has > --max_sequence_length steps
    DUPLICATE_ID = "duplicate_id"  # id seen at a smaller position (that one kept)
    INVALID_RECORD = "invalid_record"  # any other parser rejection

    def __str__(self) -> str:
        return self.value


# Reasons `--on_invalid fail` stops the job for.
INVALID_VALUES = frozenset({Reason.NON_FINITE, Reason.ID_OUT_OF_RANGE})


@dataclasses.dataclass(frozen=True)
class Policy:
    """How validation treats long and invalid records (flags of the job).

    Attributes:
      max_length: Most steps a feature list may have (None: no limit).
      on_long: "dead_letter" (`too_long`) or "truncate" (keep the first
        `max_length` steps of every feature list).
      on_invalid: "dead_letter" or "fail" (raise `InvalidRecordError`) for
        NaN/Inf values and out-of-range identity ids.
    """

    max_length: int | None = None
    on_long: str = "dead_letter"
    on_invalid: str = "dead_letter"

    @classmethod
    def of(cls, config) -> Policy:
        """The policy a job's `JobConfig` asks for (`--max_sequence_length`,
        `--on_long`, `--on_invalid`): one place, so both engines and both
        analyze passes validate alike."""
        return cls(config.max_sequence_length, config.on_long, config.on_invalid)


class InvalidRecordError(ValueError):
    """`--on_invalid fail`: an offending record stops the job."""


class Checked(NamedTuple):
    """Result of `validate_chunk`.

    Attributes:
      valid: `(position, length, bytes)` in input order (bytes truncated when
        the policy says so).
      errors: `ErrorRecord`s (with the original bytes).
      ids: The example id (bytes) of each valid record, or None per record when
        the spec has no id feature.
      truncated: Positions of the valid records that were truncated.
    """

    valid: list
    errors: list
    ids: list
    truncated: list


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
            # A row's reference length: its last nonempty step + 1 (steps
            # are in row order, positions increasing within a row; what
            # np.maximum.at gave, without its per-element cost).
            row = step_row[nonempty]
            last = np.flatnonzero(np.append(row[1:] != row[:-1], True))
            eff[k, row[last]] = nonempty[last] - row_splits[row[last]] + 1

    for weight_key, id_key in spec.weights.items():
        _check_weights(decoded, weight_key, id_key, m, mark)

    # Feature lists absent from the proto (the parser reports them as empty).
    for r in sorted(empty_rows):
        missing = _missing_lists(serialized[rows[r]], keys)
        if isinstance(missing, Reason):
            found[r] = (missing, "not a SequenceExample proto")
        elif missing:
            detail = f"feature list(s) {missing} missing"
            if len(missing) == len(keys):
                detail += " (no feature lists at all: a tf.train.Example?)"
            found[r] = (Reason.MISSING_FEATURE, detail)
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


def _present_steps(step_splits, row_splits, m):
    """`(row, step, count)` of the steps holding >= 1 value."""
    counts = np.diff(step_splits)
    row = np.repeat(np.arange(m), np.diff(row_splits))
    step = np.arange(len(counts)) - row_splits[row]
    nonzero = counts > 0
    return row[nonzero], step[nonzero], counts[nonzero]


def _check_weights(decoded, weight_key, id_key, m, mark) -> None:
    """Marks rows whose weights are not one per id at every step, or not finite."""
    weights, w_steps, w_rows = decoded.features[weight_key]
    _, i_steps, i_rows = decoded.features[id_key]
    if weights.dtype.kind == "f" and not np.isfinite(weights).all():
        value_step = np.repeat(np.arange(len(w_steps) - 1), np.diff(w_steps))
        step_row = np.repeat(np.arange(m), np.diff(w_rows))
        mark(
            step_row[value_step[~np.isfinite(weights)]],
            Reason.NON_FINITE,
            f"feature list {weight_key!r} holds NaN or Inf",
        )
    ids = _present_steps(i_steps, i_rows, m)
    per_step = _present_steps(w_steps, w_rows, m)
    if len(ids[0]) == len(per_step[0]) and all(
        np.array_equal(a, b) for a, b in zip(ids, per_step, strict=True)
    ):
        return
    # Compare (row, step, count) triples; a step absent from one side counts 0.
    steps = int(max([1] + [int(s.max()) + 1 for s in (ids[1], per_step[1]) if len(s)]))
    most = int(max([1] + [int(c.max()) + 1 for c in (ids[2], per_step[2]) if len(c)]))
    codes = [(r * steps + s) * most + c for r, s, c in (ids, per_step)]
    differing = np.setxor1d(codes[0], codes[1])
    mark(
        differing // (steps * most),
        Reason.WEIGHT_COUNT_MISMATCH,
        f"feature lists {id_key!r} and {weight_key!r}: a step holds a number of "
        "weights other than its number of ids",
    )


def _missing_lists(data: bytes, keys: Sequence[str]) -> list[str] | Reason:
    try:
        proto = tf.train.SequenceExample.FromString(data)
    except DecodeError:
        return Reason.NOT_A_SEQUENCE_EXAMPLE
    present = proto.feature_lists.feature_list
    return [key for key in keys if key not in present]


def read_error(position: tuple[int, int], error: tfrecord.ReadError) -> ErrorRecord:
    """The dead letter of a damaged stretch `tfrecord.read_file` reported."""
    return ErrorRecord(Reason(error.reason), error.detail, position, error.data)


class FirstIdWins:
    """Of the records sharing an example id, keeps the one at the smallest position.

    The one implementation of duplicate ids, for every pass: feed records in
    position order (the order a single reader meets them; the Beam job sorts
    each id group's positions first) and `first` says whether each is kept.
    The ids seen stay in memory (one entry per distinct id).
    """

    def __init__(self):
        self._first: dict[Hashable, object] = {}

    def first(self, ident: Hashable, position) -> object | None:
        """None if the record at `position` is the first with `ident` (kept),
        else the position of that first record (this one is a duplicate).

        Args:
          ident: The example id.
          position: Its sortable position, e.g. `(file_index, record_index)`;
            records at equal positions are one record (all kept).
        """
        first = self._first.setdefault(ident, position)
        return None if first == position else first

    def keep(self, ids: Sequence, positions: Sequence) -> np.ndarray:
        """`first` over a chunk: bool [N], True where the record is kept."""
        return np.fromiter(
            (self.first(i, p) is None for i, p in zip(ids, positions, strict=True)),
            bool,
            len(ids),
        )


def describe_position(position: tuple[int, int], files: Sequence[str] = ()) -> str:
    """`file 'path', record i` (or the file index when the paths are unknown)."""
    file_index, record_index = position
    if 0 <= file_index < len(files):
        return f"file {files[file_index]!r}, record {record_index}"
    return f"file index {file_index}, record {record_index}"


def duplicate_error(
    member: tuple, ident: bytes, first: tuple[int, int], files: Sequence[str] = ()
) -> ErrorRecord:
    """The dead letter of a valid `(position, length, bytes)` record whose id was
    already seen at `first` (a smaller position)."""
    position, _, data = member
    return ErrorRecord(
        Reason.DUPLICATE_ID,
        f"example id {ident!r} already at {describe_position(first, files)} "
        "(the record at the smallest position is kept)",
        position,
        data,
    )


def apply_max_length(data: bytes, policy: Policy) -> bytes | None:
    """The bytes of a record validation goes on with under the length limit:
    `data` itself, its first `max_length` steps (on_long "truncate"), or None
    (too long: a dead letter). Records read back by reference (`beam.refs`) take
    the same path, so they are the bytes validation kept."""
    limit = policy.max_length
    if limit is None or wire.max_steps(data, limit) <= limit:
        return data
    return wire.truncate(data, limit) if policy.on_long == "truncate" else None


def validate_chunk(
    decoder: Decoder,
    spec: RecordSpec,
    chunk: Sequence[tuple[tuple[int, int], bytes]],
    policy: Policy = Policy(),
    files: Sequence[str] = (),
) -> Checked:
    """Decodes and validates `(position, bytes)` pairs (see `validate_decoded`)."""
    return validate_decoded(decoder, spec, chunk, policy, files)[0]


def validate_decoded(
    decoder: Decoder,
    spec: RecordSpec,
    chunk: Sequence[tuple[tuple[int, int], bytes]],
    policy: Policy = Policy(),
    files: Sequence[str] = (),
) -> tuple[Checked, DecodedBatch, np.ndarray]:
    """Decodes and validates `(position, bytes)` pairs, keeping the decoded values.

    Returns:
      `(checked, decoded, rows)`: `rows` int64 [len(checked.valid)] holds the
      row of each valid record in `decoded` (whose features, ids and context
      are those of the valid records' possibly truncated bytes).

    Args:
      decoder: `Decoder(spec)`.
      spec: The record spec.
      chunk: Records with their `(file_index, record_index)` positions.
      policy: Length limit and invalid-value policy.
      files: Input paths by file index (for `InvalidRecordError` messages).

    Raises:
      InvalidRecordError: `policy.on_invalid == "fail"` and a record has NaN/Inf
        or an out-of-range id (the first such record of the chunk is named).
    """
    # Per record, only C-level list building (zip, compress, map): the
    # records of a chunk are, as a rule, all valid.
    positions = [position for position, _ in chunk]
    originals = [data for _, data in chunk]
    serialized = originals
    too_long: dict[int, str] = {}
    truncated: set[int] = set()
    if policy.max_length is not None:
        serialized = list(originals)
        limit = policy.max_length
        for i, data in enumerate(originals):
            kept = apply_max_length(data, policy)
            if kept is None:
                too_long[i] = (
                    f"a feature list has more than {limit} steps "
                    f"(--max_sequence_length {limit})"
                )
            elif kept is not data:
                serialized[i] = kept
                truncated.add(i)
    keep = [i for i in range(len(chunk)) if i not in too_long]
    if too_long:
        serialized = [serialized[i] for i in keep]
    decoded = decoder.decode(serialized)
    lengths, problems = check_batch(serialized, decoded, spec)
    ids = [None] * len(keep)
    if decoded.ids is not None:
        if len(decoded.ok_rows) == len(keep):  # every record parsed
            ids = list(map(bytes, decoded.ids.tolist()))
        else:
            for row, ident in zip(
                decoded.ok_rows.tolist(), decoded.ids.tolist(), strict=True
            ):
                ids[row] = bytes(ident)
    row_of = np.full(len(keep), -1, np.int64)
    row_of[decoded.ok_rows] = np.arange(len(decoded.ok_rows))
    ok = lengths >= 0
    kept_positions = positions if not too_long else [positions[i] for i in keep]
    mask = ok.tolist()
    valid = list(
        zip(
            itertools.compress(kept_positions, mask),
            itertools.compress(lengths.tolist(), mask),
            itertools.compress(serialized, mask),
            strict=True,
        )
    )
    valid_ids = list(itertools.compress(ids, mask))
    valid_truncated = (
        [positions[i] for k, i in enumerate(keep) if i in truncated and mask[k]]
        if truncated
        else []
    )
    errors = []
    for k in np.flatnonzero(~ok).tolist():  # in input order
        i = keep[k]
        position = positions[i]
        reason, detail = problems[k]
        if policy.on_invalid == "fail" and reason in INVALID_VALUES:
            raise InvalidRecordError(
                f"Invalid record ({reason.value}) at "
                f"{describe_position(position, files)}: {detail}. The job stops "
                "because of --on_invalid fail: fix the data or run with "
                "--on_invalid dead_letter."
            )
        errors.append(ErrorRecord(reason, detail, position, originals[i]))
    for i, detail in too_long.items():
        errors.append(ErrorRecord(Reason.TOO_LONG, detail, positions[i], originals[i]))
    errors.sort(key=lambda e: e.position)
    checked = Checked(valid, errors, valid_ids, valid_truncated)
    return checked, decoded, row_of[ok]
