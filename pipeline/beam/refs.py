"""Records by reference (Beam job): shuffle positions, fetch the bytes where needed.

Place in the flow: read -> validate -> **(bytes dropped)** -> bucket -> **(bytes
fetched)** -> features. After validation the valid records read from the input
files travel as positions and lengths (`blocks.Block` without bytes): the
grouping steps (duplicate ids, histogram, batches) then move 24 bytes per record
instead of the record
(the 200k bench input is 467 MB, which every shuffle copied and the in-process
runner held whole). The worker computing a batch reads its records again by
file offset (`RecordFetcher`), checking each record's CRC, and applies the
length policy again, so it sees the very bytes validation saw.

Offsets come from a walk over the length headers of a file (12 bytes per record,
no data read). A file whose framing is damaged (a length header CRC mismatch, a
truncated record) is read once with `tfrecord.iter_records` instead, which resyncs
exactly as the first read did, and its records are kept in memory: damaged files
are rare and the first read already dead-lettered the damage.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Sequence

import apache_beam as beam

from pipeline.stages import tfrecord, validate

# Read-ahead of the header walk: the walk seeks from header to header, inside
# the buffer for records smaller than it (no system call per record).
_WALK_BUFFER = 1 << 20


def header_offsets(f) -> tuple[list[int], bool]:
    """Offsets of the records of a TFRecord file, from its length headers.

    Returns:
      `(offsets, complete)`: `complete` is False when the walk stopped at a
      damaged header or an incomplete record (offsets then cover the records
      before it).
    """
    offsets, offset = [], 0
    while True:
        f.seek(offset)
        header = f.read(12)
        if not header:
            return offsets, True
        if len(header) < 12:
            return offsets, False
        length, length_crc = tfrecord.HEADER.unpack(header)
        if tfrecord.masked_crc32c(header[:8]) != length_crc:
            return offsets, False
        offsets.append(offset)
        offset += 12 + length + 4


class RecordFetcher:
    """Reads records back by position; one per worker (holds open files)."""

    def __init__(self, files: Sequence[str], policy: validate.Policy):
        self._files, self._policy = tuple(files), policy
        self._open: dict[int, object] = {}
        self._offsets: dict[int, list[int]] = {}
        self._damaged: dict[int, dict[int, bytes]] = {}
        self._lock = threading.Lock()

    def _file(self, file_index: int):
        with self._lock:  # threads of one worker share the fetcher
            return self._file_locked(file_index)

    def _file_locked(self, file_index: int):
        f = self._open.get(file_index)
        if f is None:
            path = self._files[file_index]
            f = tfrecord.open_file(path)
            if isinstance(f, io.FileIO):  # local: walk the headers through a buffer
                with open(f.fileno(), "rb", buffering=_WALK_BUFFER, closefd=False) as w:
                    offsets, complete = header_offsets(w)
            else:  # remote: the reader caches blocks (fileio.RemoteReader)
                offsets, complete = header_offsets(f)
            if complete:
                # offsets[i + 1] - offsets[i]: record i with its framing.
                self._offsets[file_index] = [*offsets, tfrecord.file_size(path)]
            else:
                f.seek(0)
                self._damaged[file_index] = {
                    index: data
                    for index, data in tfrecord.iter_records(f)
                    if not isinstance(data, tfrecord.ReadError)
                }
            self._open[file_index] = f
        return f

    def _read_at(self, f, offset: int, size: int) -> bytes:
        if isinstance(f, io.FileIO):  # local file: one pread, no seek
            return os.pread(f.fileno(), size, offset)
        with self._lock:
            f.seek(offset)
            return f.read(size)

    def fetch(self, position: tuple[int, int]) -> bytes:
        """The validated bytes of the valid record at `position`.

        Raises:
          RuntimeError: the record no longer matches its CRC (the input file
            changed while the job ran).
        """
        file_index, record_index = position
        f = self._file(file_index)
        damaged = self._damaged.get(file_index)
        if damaged is not None:
            data = damaged[record_index]
        else:
            offsets = self._offsets[file_index]
            offset = offsets[record_index]
            framed = self._read_at(f, offset, offsets[record_index + 1] - offset)
            length = len(framed) - 16  # the walk checked the header
            data = framed[12 : 12 + length]
            if (
                tfrecord.masked_crc32c(data)
                != tfrecord.CRC.unpack_from(framed, 12 + length)[0]
            ):
                raise RuntimeError(
                    f"Input file {self._files[file_index]!r} changed while the job "
                    f"ran: record {record_index} no longer matches its CRC."
                )
        return validate.apply_max_length(data, self._policy)

    def fill(self, members: Iterable[tuple]) -> list[tuple]:
        """`(position, length, bytes | None)` -> the same with bytes, in order
        (reads sorted by file and offset)."""
        members = list(members)
        missing = sorted(
            (m[0] for m in members if m[2] is None), key=lambda p: (p[0], p[1])
        )
        got = {tuple(p): self.fetch(p) for p in missing}
        return [
            m if m[2] is not None else (m[0], m[1], got[tuple(m[0])]) for m in members
        ]

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


class FillErrorBytes(beam.PTransform):
    """ErrorRecords of by-reference records (data None) -> with their bytes."""

    def __init__(self, files: Sequence[str], policy: validate.Policy):
        super().__init__()
        self._files, self._policy = tuple(files), policy

    def expand(self, errors):
        return errors | "Fetch" >> beam.ParDo(
            _FillErrorsDoFn(self._files, self._policy)
        )


class _FillErrorsDoFn(beam.DoFn):
    def __init__(self, files, policy):
        self._files, self._policy = files, policy
        self._fetcher = None

    def setup(self):
        self._fetcher = RecordFetcher(self._files, self._policy)

    def process(self, error):
        if error.data is None:
            error = error._replace(data=self._fetcher.fetch(error.position))
        yield error

    def teardown(self):
        if self._fetcher is not None:
            self._fetcher.close()
