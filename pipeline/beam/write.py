"""Beam wrappers of the output: `WriteShards`, `WriteErrors`.

Place in the flow: features -> **write** -> metadata. Shard naming and
assignment, dead-letter files and the staging directory are
`pipeline.stages.output`'s, shared with the tfdata engine.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence

import apache_beam as beam

from pipeline.stages import fileio, output
from pipeline.stages.output import PIECES_DIR, RecordWriter


class WriteShards(beam.PTransform):
    """(batch_key, record, BatchStats) -> shard files; returns `(index,
    output.shard_entry)` per shard (empty shards included).

    Each batch is written at once, by the worker that computed it, into a piece
    file (fused with the features step: no step ever holds a shard's records,
    which would be hundreds of MB in one element). Only the small
    `(key, examples, piece)` references are gathered; shard i then copies, in key
    order, the pieces of the batches of rank r with r % N == i (TFRecord framing
    is per record, so the copies make a valid file). A piece is a byte range of
    a piece file: uncompressed, a bundle's batches share one file (creating a
    file per batch cost more than writing it, on local disks and object stores
    alike); gzip, a batch has a file of its own (one gzip member, as
    `write_records` writes it). A retried bundle writes new piece files (named
    per attempt) and its failed attempt's references are discarded with its
    outputs, and shards are written under a temporary name: the shards' bytes
    do not depend on retries. `output.remove_pieces` deletes the pieces once all
    shards exist.
    """

    def __init__(self, directory: str, num_shards: int, compression: str = "none"):
        super().__init__()
        self._directory, self._num_shards = directory, num_shards
        self._compression = compression

    def expand(self, batches):
        n = self._num_shards
        return (
            batches
            | "WritePieces"
            >> beam.ParDo(_WritePiecesDoFn(self._directory, self._compression))
            | "AllPieces" >> beam.combiners.ToList()
            | "AssignShards" >> beam.FlatMap(_shard_pieces, n=n)
            | "SpreadShards" >> beam.Reshuffle()
            | "WriteShard" >> beam.Map(_write_shard, directory=self._directory, n=n)
        )


class _WritePiecesDoFn(beam.DoFn):
    """(batch_key, record, BatchStats) -> (batch_key, examples, piece), piece =
    `(path, offset, size)`: where the batch's framed record is (see WriteShards)."""

    def __init__(self, directory: str, compression: str = "none"):
        self._directory, self._compression = directory, compression
        self._writer, self._path, self._offset = None, None, 0

    def start_bundle(self):
        self._close()  # (a failed bundle's file, if teardown did not run)
        self._path, self._offset = None, 0

    def process(self, batch):
        key, record, stats = batch
        if self._compression != "none":
            name = "-".join(str(int(k)) for k in key)
            path = f"{self._directory}/{PIECES_DIR}/{name}.tfrecord"
            output.write_records(path, [record], self._compression)
            yield key, stats.examples, (path, 0, None)  # None: the whole file
            return
        if self._writer is None:
            self._path = f"{self._directory}/{PIECES_DIR}/{uuid.uuid4().hex}.tfrecord"
            self._writer = RecordWriter(self._path)
        size = self._writer.write([record])
        yield key, stats.examples, (self._path, self._offset, size)
        self._offset += size

    def finish_bundle(self):
        self._close()  # the file is complete before the bundle's outputs count

    def teardown(self):
        self._close()

    def _close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _shard_pieces(pieces, n):
    """[(key, examples, piece)] -> (shard index, [(key, examples, piece)] in key
    order), per shard."""
    shards = [[] for _ in range(n)]
    for rank, piece in enumerate(sorted(pieces, key=lambda p: p[0])):
        shards[output.shard_of(rank, n)].append(piece)
    yield from enumerate(shards)


def _write_shard(item, directory, n):
    index, pieces = item
    path = f"{directory}/{output.shard_file(index, n)}"
    tmp = output.temporary_path(path)
    concatenate([piece for _, _, piece in pieces], tmp)
    output.publish_file(tmp, path)
    examples = sum(examples for _, examples, _ in pieces)
    return index, output.shard_entry(index, n, len(pieces), examples)


def concatenate(sources: Sequence[tuple[str, int, int | None]], path: str) -> None:
    """Writes the byte ranges `sources` ((file, offset, size), size None: to the
    end of the file), one after the other, as the file `path` (an empty one for
    no sources). Local files are copied by the kernel (`os.sendfile`: no read
    into Python); remote ones through `fileio` (ranged reads, one upload)."""
    if fileio.is_remote(path) or any(fileio.is_remote(s) for s, _, _ in sources):
        with fileio.open_write(path) as out:
            for f, offset, size in _opened(sources):
                f.seek(offset)
                out.write(f.read(-1 if size is None else size))
        return
    with open(path, "wb") as out:
        for f, offset, size in _opened(sources):
            _copy(f, out, offset, size)


def _opened(sources):
    """`(open file, offset, size)` per range of `sources`, a file opened once
    for consecutive ranges of it (a bundle's batches share one piece file)."""
    f, name = None, None
    try:
        for source, offset, size in sources:
            if source != name:
                if f is not None:
                    f.close()
                f, name = fileio.open_read(source), source
            yield f, offset, size
    finally:
        if f is not None:
            f.close()


def _copy(src, dst, offset: int = 0, size: int | None = None) -> None:
    """Appends `size` bytes of file `src` from `offset` (size None: to its end)
    to file `dst` (both open, binary)."""
    end = os.fstat(src.fileno()).st_size if size is None else offset + size
    if hasattr(os, "sendfile") and sys.platform.startswith("linux"):
        while offset < end:
            sent = os.sendfile(dst.fileno(), src.fileno(), offset, end - offset)
            if not sent:
                raise OSError(f"{src.name!r} shrank while it was copied")
            offset += sent
        return
    src.seek(offset)
    while offset < end:
        data = src.read(min(1 << 20, end - offset))
        if not data:
            raise OSError(f"{src.name!r} shrank while it was copied")
        dst.write(data)
        offset += len(data)


class WriteErrors(beam.PTransform):
    """ErrorRecord -> errors/<reason>.jsonl (sorted by position); returns
    `output.write_dead_letters`' `{reason, file, count, positions}` per reason
    present."""

    def __init__(self, directory: str, files: Sequence[str]):
        super().__init__()
        self._directory, self._files = directory, list(files)

    def expand(self, errors):
        return (
            errors
            | "KeyByReason" >> beam.Map(lambda e: (e.reason.value, e))
            | "GroupByReason" >> beam.GroupByKey()
            | "WriteReason"
            >> beam.Map(_write_reason, directory=self._directory, files=self._files)
        )


def _write_reason(item, directory, files):
    reason, errors = item
    return output.write_dead_letters(directory, reason, errors, files)
