"""Chunks of the tfdata engine: read, decoded and validated on threads, in order.

Place in the flow: **read -> decode/validate -> drop duplicate ids** of the
tfdata engine and its analyze pass. Files are read one after the other,
records in file order, so the first record of an example id met is the one at
the smallest position (`validate.FirstIdWins`), as in the Beam job; the main
pass looks up only the ids the first pass saw repeated (`ids`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.stages import tfrecord, validate
from pipeline.stages.validate import read_error
from pipeline.tfdata import ids
from pipeline.tfdata.threads import ahead

CHUNK = 1024  # records per chunk


def read_all(files: Sequence[str], chunk_size: int | None = None):
    """Yields (chunk [(position, bytes)], read ErrorRecords, bytes read), files
    one after the other, records in file order (duplicate ids rely on it);
    `chunk_size` records a chunk (`CHUNK` if None)."""
    for fi, path in enumerate(files):
        size = chunk_size or CHUNK
        for records, errors in tfrecord.read_file(path, fi, chunk_size=size):
            errors = [read_error(position, e) for position, e in errors]
            nbytes = sum(len(d) + 16 for _, d in records)
            yield records, errors, nbytes + sum(len(e.data) for e in errors)


def checked_chunks(files, decoder, spec, policy):
    """Yields (chunk, read errors, bytes read, (Checked, DecodedBatch, rows) or
    None): reading and validation each run in their own thread."""

    def check(chunks):
        for chunk, read_errors, nbytes in chunks:
            result = (
                validate.validate_decoded(decoder, spec, chunk, policy, files)
                if chunk
                else None
            )
            yield chunk, read_errors, nbytes, result

    return ahead(check(ahead(read_all(files), "read")), "validate")


def drop_duplicates(
    spec,
    result,
    files: Sequence[str],
    first_ids: validate.FirstIdWins,
    repeated: np.ndarray | None = None,
    fingerprints: np.ndarray | None = None,
):
    """Drops later duplicate ids of a validated chunk (`first_ids`: the ids
    seen so far, updated).

    With `repeated` (the first pass's `ids`: sorted fingerprints of the ids
    met more than once), only records whose id fingerprint is in it are
    looked up, and `first_ids` holds those ids alone; without it, every id.
    `fingerprints`: those of the valid records' ids, if already computed
    (`workers`).

    Returns `(valid, errors, truncated, decoded, rows)` of a validated chunk.
    """
    if result is None:
        return [], [], [], None, np.zeros(0, np.int64)
    checked, decoded, rows = result
    valid, errors = checked.valid, list(checked.errors)
    if spec.id_feature is None:
        return valid, errors, checked.truncated, decoded, rows
    if repeated is None:
        suspects = range(len(valid))
    elif len(repeated) == 0:  # no id met twice: no fingerprint to look up
        suspects = []
    else:
        fps = (
            ids.fingerprints(decoded.ids[rows])
            if fingerprints is None
            else fingerprints
        )
        suspects = np.flatnonzero(ids.repeated_in(fps, repeated)).tolist()
    later = []
    for k in suspects:
        member, ident = valid[k], checked.ids[k]
        first = first_ids.first(ident, member[0])
        if first is not None:
            later.append(k)
            errors.append(validate.duplicate_error(member, ident, first, files))
    if later:
        keep = np.ones(len(valid), bool)
        keep[later] = False
        valid = [member for member, kept in zip(valid, keep, strict=True) if kept]
        rows = rows[keep]
    return valid, errors, checked.truncated, decoded, rows
