"""Beam wrappers of validation: `ValidateRecords` and `DropDuplicateIds`.

Place in the flow: read -> **validate** -> drop duplicate ids -> bucket. The
checks themselves are `pipeline.stages.validate` (shared with the tfdata
engine); here they run per chunk on threads (`overlap.Overlapped`) and their
results leave as tagged outputs, valid records as `blocks.Block`s.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.beam import NAMESPACE, overlap, refs
from pipeline.stages import blocks
from pipeline.stages.blocks import Block, LocatedChunk
from pipeline.stages.decode import Decoder, RecordSpec
from pipeline.stages.validate import (
    FirstIdWins,
    Policy,
    Reason,
    duplicate_error,
    validate_chunk,
)

VALID = "valid"
ERRORS = "errors"
IDS = "ids"
LIGHT = "light"
TRUNCATED = "truncated"


class ValidateRecords(beam.PTransform):
    """Chunks of (position, bytes) -> outputs `.valid`, `.errors` (ErrorRecord),
    `.ids` (when the spec has an id feature), `.light` and `.truncated`
    (positions of truncated records).

    `.valid` holds one `blocks.Block` of a chunk's valid records (what the
    grouping steps take, see `stages.blocks`; with `by_reference` and
    `blocks.LocatedChunk`s in, their extents instead of their bytes), `.ids`
    one `(ids, positions)` pair per such block, `.light` the same block
    without bytes or extents (positions and lengths: what the plan and the
    shard ranks are computed from, so the steps moving the records need not
    wait for them).
    """

    def __init__(
        self,
        spec: RecordSpec,
        policy: Policy | None = None,
        files: Sequence[str] = (),
        *,
        by_reference: bool = False,
    ):
        super().__init__()
        self._spec, self._files = spec, tuple(files)
        self._policy = policy or Policy()
        self._by_reference = by_reference

    def expand(self, chunks):  # [(position, bytes)] -> valid | errors | ids | ...
        do_fn = _ValidateDoFn(self._spec, self._policy, self._files, self._by_reference)
        return chunks | "Check" >> beam.ParDo(do_fn).with_outputs(
            ERRORS, IDS, LIGHT, TRUNCATED, main=VALID
        )


class _ValidateDoFn(beam.DoFn):
    """One chunk per element, validated on threads (`overlap.Overlapped`: the
    next chunk is read and checked while one's parse runs); outputs come out
    in input order."""

    def __init__(
        self,
        spec: RecordSpec,
        policy: Policy,
        files: Sequence[str],
        by_reference: bool = False,
    ):
        self._spec, self._policy, self._files = spec, policy, files
        self._by_reference = by_reference
        self._decoder = None
        self._overlap = overlap.Overlapped(self._check)

    def setup(self):
        # String values stay tensors: validation never reads them (no Python
        # bytes object per value).
        self._decoder = Decoder(self._spec, strings_as_tensors=True)
        self._overlap.open()

    def start_bundle(self):
        self._overlap.start()

    def _check(self, chunk):  # on a pool thread
        records = chunk.records if isinstance(chunk, LocatedChunk) else chunk
        checked = validate_chunk(
            self._decoder, self._spec, records, self._policy, self._files
        )
        extents = None
        if self._by_reference and isinstance(chunk, LocatedChunk):
            extents = chunk.extents([member[0] for member in checked.valid])
        return checked, extents

    def process(self, chunk):
        for checked in self._overlap.submit(chunk):
            yield from self._outputs(checked)

    def finish_bundle(self):
        for checked in self._overlap.drain():
            for output in self._outputs(checked):
                yield overlap.in_global_window(output)

    def teardown(self):
        self._overlap.close()

    def _outputs(self, result):  # on the bundle's thread (metrics live there)
        checked, extents = result
        if checked.valid:
            # By reference when the chunk says where its records are.
            block = Block.of(checked.valid, extents is None, extents)
            yield block
            yield beam.pvalue.TaggedOutput(LIGHT, Block(block.positions, block.lengths))
            if self._spec.id_feature is not None:
                yield beam.pvalue.TaggedOutput(IDS, (checked.ids, block.positions))
        for position in checked.truncated:
            yield beam.pvalue.TaggedOutput(TRUNCATED, position)
        for error in checked.errors:
            Metrics.counter(NAMESPACE, f"errors_{error.reason.value}").inc()
            yield beam.pvalue.TaggedOutput(ERRORS, error)


# Groups the ids are spread over to find duplicates (by a stable hash of the id).
ID_GROUPS = 16


def _ids_by_group(item, groups: int):
    """A chunk's `(ids, positions)` -> `(group, (ids, positions))` per group."""
    ids, positions = item
    of_id = [zlib.crc32(ident) % groups for ident in ids]
    for group, index in blocks.by_key(of_id):
        yield group, ([ids[i] for i in index.tolist()], positions[index])


def later_duplicates(item):
    """`(group, [(ids, positions)])` -> `(position, (id, first position))` for
    every record of the group whose id a smaller position holds
    (`validate.FirstIdWins` over the group in position order)."""
    _, parts = item
    pairs = sorted(
        (tuple(position), ident)
        for ids, positions in parts
        for ident, position in zip(ids, positions.tolist(), strict=True)
    )
    first_ids = FirstIdWins()
    for position, ident in pairs:
        first = first_ids.first(ident, position)
        if first is not None:
            yield position, (ident, first)


class FindDuplicateIds(beam.PTransform):
    """`(ids, positions)` per chunk (`ValidateRecords`' `.ids`) -> `(position,
    (id, first position))` of every record whose id a smaller position holds.

    Only ids and positions are shuffled, a chunk's in one element per id group
    (`ID_GROUPS`); the result is as large as the number of duplicates (a side
    input of `DropDuplicateIds` and of `without_duplicates`).
    """

    def expand(self, ids):
        return (
            ids
            | "ByIdGroup" >> beam.FlatMap(_ids_by_group, groups=ID_GROUPS)
            | "GroupIds" >> beam.GroupByKey()
            | "LaterDuplicates" >> beam.FlatMap(later_duplicates)
        )


def duplicate_mask(block: Block, duplicates) -> np.ndarray:
    """bool [n]: which records of `block` are at a position of `duplicates`."""
    if not duplicates:
        return np.zeros(len(block), bool)
    return np.asarray([tuple(p) in duplicates for p in block.positions.tolist()], bool)


def without_duplicates(block: Block, duplicates) -> Block:
    """`block` without the records at the positions of `duplicates`."""
    found = duplicate_mask(block, duplicates)
    return block.take(~found) if found.any() else block


class DropDuplicateIds(beam.PTransform):
    """Valid `blocks.Block`s -> outputs `.valid` (Blocks) and `.errors`
    (`duplicate_id`): of the records sharing an example id, the one at the
    smallest position is kept.

    Args:
      duplicates: `FindDuplicateIds`' output.
      files, policy: As `ValidateRecords`' (dead letters of records kept by
        reference are read back).
    """

    def __init__(
        self, duplicates, files: Sequence[str] = (), policy: Policy | None = None
    ):
        super().__init__()
        self._duplicates, self._files = duplicates, tuple(files)
        self._policy = policy  # by-reference duplicates: re-applied

    def expand(self, valid):  # Blocks -> valid | errors
        return valid | "Drop" >> beam.ParDo(
            _DropDuplicatesDoFn(self._files, self._policy),
            duplicates=beam.pvalue.AsDict(self._duplicates),
        ).with_outputs(ERRORS, main=VALID)


class DuplicateDropper:
    """Drops the records of a block at the positions of `FindDuplicateIds`'
    output, as `duplicate_id` dead letters (by-reference members read back
    first: dead letters keep their bytes; duplicates are few, so they are read
    one by one). Used where the blocks are (`DropDuplicateIds`, and
    `bucket.PlaceRecords`, which drops them where it places the records)."""

    def __init__(self, files: Sequence[str] = (), policy: Policy | None = None):
        self._files, self._policy = tuple(files), policy or Policy()
        self._fetcher = None

    def _with_bytes(self, member):
        if not isinstance(member[2], tuple):
            return member
        if self._fetcher is None:
            self._fetcher = refs.RecordFetcher(self._files, self._policy)
        return self._fetcher.fill([member])[0]

    def split(self, block: Block, duplicates) -> tuple[Block | None, list]:
        """`(block without the duplicates or None if none is left, their
        dead letters)`."""
        found = duplicate_mask(block, duplicates)
        if not found.any():
            return block, []
        counter = Metrics.counter(NAMESPACE, f"errors_{Reason.DUPLICATE_ID.value}")
        errors = []
        for member in block.take(found).members():
            member = self._with_bytes(member)
            ident, first = duplicates[member[0]]
            counter.inc()
            errors.append(duplicate_error(member, ident, first, self._files))
        return (None if found.all() else block.take(~found)), errors

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()


class _DropDuplicatesDoFn(beam.DoFn):
    def __init__(self, files, policy):
        self._dropper = DuplicateDropper(files, policy)

    def teardown(self):
        self._dropper.close()

    def process(self, block, duplicates):
        kept, errors = self._dropper.split(block, duplicates)
        for error in errors:
            yield beam.pvalue.TaggedOutput(ERRORS, error)
        if kept is not None:
            yield kept
