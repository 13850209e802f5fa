"""TFRecord files: framing and CRC, reading record by record with positions.

Place in the flow: **read** -> decode/validate -> bucket -> features -> write.
Shared by both engines (the Beam wrapper is `pipeline.beam.read`). Every record carries its position `(file_index,
record_index)`: `file_index` indexes the sorted list of matched input files,
`record_index` counts the records of that file from 0 in reading order (a damaged
stretch counts as one record).

Unlike `tf.data.TFRecordDataset` or Beam's `ReadFromTFRecord`, damage does not end
the read: a record whose data CRC does not match becomes a `corrupt_record` dead
letter and reading goes on; a length header whose CRC does not match is resynced
by scanning forward for the next valid record (up to `MAX_RESYNC_BYTES`), the
skipped bytes becoming one `corrupt_record`; an incomplete record at the end of
the file becomes a `truncated_record`.

Framing: uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data).
"""

from __future__ import annotations

import functools
import glob as _glob
import io
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from google_crc32c import extend as _crc32c_extend
from google_crc32c import value as _crc32c

from pipeline.stages import fileio

# Dead letters keep at most this many bytes of a damaged stretch.
MAX_ERROR_BYTES = 1 << 20
# How far a resync after a bad length header scans for the next record.
MAX_RESYNC_BYTES = 4 << 20
_BLOCK = 4 << 20
# TFRecord framing: length (uint64) + masked CRC of it; data; masked CRC of data.
HEADER = struct.Struct("<QI")
CRC = struct.Struct("<I")

Position = tuple[int, int]


class ReadError(NamedTuple):
    """A damaged stretch of a TFRecord file (one dead letter)."""

    reason: str  # "corrupt_record" | "truncated_record" (validate.Reason values)
    detail: str
    data: bytes


def masked_crc32c(data: bytes) -> int:
    """The TFRecord masked CRC32C of `data`."""
    return _mask(_crc32c(data))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=1 << 16)
def _length_crc(length: int) -> int:
    """The masked CRC of a length header's 8 bytes (they are `length`'s, so
    a reader checks a header by its value: records share a few lengths)."""
    return masked_crc32c(struct.pack("<Q", length))


def frame(pieces: list, nbytes: int | None = None) -> tuple[bytes, bytes]:
    """TFRecord framing of one record given as pieces (bytes or contiguous numpy
    arrays, written one after the other; `nbytes` in all, if known): `(header,
    footer)` to write before and after them. The record is never joined into
    one buffer."""
    return frame_crc(pieces, nbytes)[:2]


def frame_crc(pieces: list, nbytes: int | None = None) -> tuple[bytes, bytes, int]:
    """`frame`, plus the CRC32C of the pieces (unmasked): with `crc32c_combine`
    a writer extends a whole file's CRC32C over the record without a second
    pass over its bytes."""
    if nbytes is None:
        nbytes = sum(memoryview(p).nbytes for p in pieces)
    length = struct.pack("<Q", nbytes)
    crc = 0
    for piece in pieces:
        crc = _crc32c_extend(crc, piece)
    return length + CRC.pack(masked_crc32c(length)), CRC.pack(_mask(crc)), crc


# CRC32C combine (zlib's crc32_combine for the Castagnoli polynomial), so
# the CRC of a file is extended by a record's CRC instead of its bytes: a
# writer holding the GIL reads each batch record's ~1 MB once, not twice.
# Polynomials are 32 bits, reflected as in the CRC (bit 31 is x^0).
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial (`a` nonzero)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n() -> list[int]:
    """x^(2^k) modulo the polynomial, k = 0..31 (zlib's `x2n_table`)."""
    p, table = 1 << 30, []  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n()
# Byte tables of "times x^(8 * 2^k)": built when a length first has bit k.
_SHIFTS: dict[int, tuple[list[int], ...]] = {}


def _shift_tables(k: int) -> tuple[list[int], ...]:
    tables = _SHIFTS.get(k)
    if tables is None:
        a = _X2N[(k + 3) & 31]
        basis = [_multmodp(a, 1 << i) for i in range(32)]  # linear in the CRC
        tables = tuple([0] * 256 for _ in range(4))
        for j, table in enumerate(tables):
            for byte in range(1, 256):
                low = byte & -byte
                table[byte] = table[byte ^ low] ^ basis[8 * j + low.bit_length() - 1]
        _SHIFTS[k] = tables
    return tables


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32C of A + B from `crc1` of A, `crc2` of B and B's `len2` bytes
    (as `google_crc32c.extend(crc1, B)`, without reading B): a few table
    lookups per bit of `len2`."""
    k = 0
    while len2:
        if len2 & 1:
            t0, t1, t2, t3 = _shift_tables(k)
            crc1 = (
                t0[crc1 & 255]
                ^ t1[(crc1 >> 8) & 255]
                ^ t2[(crc1 >> 16) & 255]
                ^ t3[crc1 >> 24]
            )
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


def match_files(pattern: str) -> list[str]:
    """Sorted files matching the glob `pattern` (local, gs:// or s3://, `fileio`).

    Every local match must be a regular file: a matched directory, broken
    symbolic link or special file is refused rather than silently skipped.

    Raises:
      FileNotFoundError: if nothing matches, or a match is a broken symlink.
      IsADirectoryError: if a match is a directory.
      ValueError: if `pattern` is empty or a match is not a regular file.
    """
    if not pattern:
        raise ValueError(
            "Invalid value for argument `input`. Expected a non-empty glob of "
            f"TFRecord files. Received: input={pattern!r}"
        )
    fileio.check_supported(pattern, "input")
    if "://" in pattern:
        files = fileio.glob(pattern)
    else:
        files = _glob.glob(pattern)
        for path in sorted(files):
            _check_regular_file(path, pattern)
    if not files:
        raise FileNotFoundError(
            f"Invalid value for argument `input`. Expected a glob matching at least "
            f"one TFRecord file. Received: input={pattern!r} (no file matches)"
        )
    return sorted(files)


def _check_regular_file(path: str, pattern: str) -> None:
    fix = "narrow the glob (e.g. add the file extension) or move it away"
    if os.path.islink(path) and not os.path.exists(path):
        raise FileNotFoundError(
            f"Input {path!r} matched by --input {pattern!r} is a broken symbolic "
            f"link (to {os.readlink(path)!r}): fix the link, or {fix}."
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Input {path!r} matched by --input {pattern!r} is a directory, not a "
            f"TFRecord file: {fix}."
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"Input {path!r} matched by --input {pattern!r} is not a regular file "
            f"(a pipe, socket or device): {fix}."
        )


def check_readable(files: list[str]) -> None:
    """Opens every local file once; raises PermissionError naming the first that
    cannot be read (opening, unlike os.access, also catches root's failures)."""
    for path in files:
        if "://" in path:
            continue
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            raise PermissionError(
                f"Input file {path!r} cannot be read ({e.strerror or e}): fix its "
                "permissions or exclude it from --input."
            ) from None


def file_size(path: str) -> int:
    return fileio.size(path)


def open_file(path: str) -> BinaryIO:
    """Local: unbuffered `open` (an `io.FileIO`); remote: `fileio.RemoteReader`."""
    return fileio.open_read(path)


class _Buffer:
    """A sliding window over a binary file."""

    def __init__(self, f: BinaryIO):
        self._f, self.buf, self.start, self.eof = f, b"", 0, False  # start: file offset

    def ensure(self, end: int) -> bool:
        """Makes file bytes [.., end) available; False if the file is shorter."""
        while self.start + len(self.buf) < end and not self.eof:
            want = max(_BLOCK, end - self.start - len(self.buf))
            more = self._f.read(want)
            if not more:
                self.eof = True
            self.buf += more
        return self.start + len(self.buf) >= end

    def get(self, begin: int, end: int) -> bytes:
        return self.buf[begin - self.start : end - self.start]

    def drop_before(self, offset: int, *, now: bool = False) -> None:
        """Forgets the bytes before `offset`: once more than a block of them is
        held, or `now` (before a read appends: the append copies what is kept)."""
        if offset - self.start > (0 if now else _BLOCK):
            self.buf = self.buf[offset - self.start :]
            self.start = offset

    def end(self) -> int:
        return self.start + len(self.buf)


def iter_records(f: BinaryIO) -> Iterator[tuple[int, bytes | ReadError]]:
    """Yields `(record_index, data)` or `(record_index, ReadError)` for a file.

    Args:
      f: A binary file object positioned at the start of a TFRecord file.
    """
    for index, _, item in iter_located(f):
        yield index, item


def iter_located(f: BinaryIO) -> Iterator[tuple[int, int, bytes | ReadError]]:
    """`iter_records` with each record's byte offset in the file: yields
    `(record_index, offset, data | ReadError)`; a record's data is the bytes
    `[offset + 12, offset + 12 + len(data))`, its CRC the next 4 (what
    `read_at` reads back, with no walk over the headers before it).
    """
    buf = _Buffer(f)
    offset, index = 0, 0
    unpack_crc = CRC.unpack_from
    while True:
        # Fast path: the healthy records already in the buffer, in one loop with
        # no reads (anything else, a read or damage, is the general path below).
        data, base = buf.buf, buf.start
        pos, held = offset - base, len(buf.buf)
        short = True  # the loop stopped for want of bytes (a read follows)
        while pos + 12 <= held:
            length, length_crc = HEADER.unpack_from(data, pos)
            end = pos + 16 + length
            if end > held:
                break
            record = data[pos + 12 : end - 4]
            if (
                _length_crc(length) != length_crc
                or _mask(_crc32c(record)) != unpack_crc(data, end - 4)[0]
            ):
                short = False
                break
            yield index, base + pos, record
            index += 1
            pos = end
        offset = base + pos
        buf.drop_before(offset, now=short)
        if not buf.ensure(offset + 12):
            rest = buf.get(offset, buf.end())
            if rest:
                yield (
                    index,
                    offset,
                    ReadError(
                        "truncated_record",
                        f"incomplete length header at byte {offset} "
                        f"({len(rest)} bytes)",
                        rest[:MAX_ERROR_BYTES],
                    ),
                )
            return
        header = buf.get(offset, offset + 12)
        length, length_crc = HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            nxt = _resync(buf, offset + 1)
            stop = nxt if nxt is not None else _read_to_end(buf)
            skipped = buf.get(offset, min(stop, offset + MAX_ERROR_BYTES))
            yield (
                index,
                offset,
                ReadError(
                    "corrupt_record",
                    f"length header CRC mismatch at byte {offset}; "
                    f"skipped {stop - offset} "
                    "bytes" + ("" if nxt is not None else " to the end of the file"),
                    skipped,
                ),
            )
            index += 1
            if nxt is None:
                return
            offset = nxt
            continue
        end = offset + 12 + length + 4
        if not buf.ensure(end):
            rest = buf.get(offset, buf.end())
            yield (
                index,
                offset,
                ReadError(
                    "truncated_record",
                    f"record at byte {offset} declares {length} bytes, the file ends "
                    f"{buf.end() - offset} bytes later",
                    rest[:MAX_ERROR_BYTES],
                ),
            )
            return
        data = buf.get(offset + 12, offset + 12 + length)
        (data_crc,) = CRC.unpack(buf.get(end - 4, end))
        if masked_crc32c(data) != data_crc:
            yield (
                index,
                offset,
                ReadError(
                    "corrupt_record",
                    f"data CRC mismatch in the record at byte {offset} "
                    f"({length} bytes)",
                    data[:MAX_ERROR_BYTES],
                ),
            )
        else:
            yield index, offset, data
        index += 1
        offset = end


def _read_to_end(buf: _Buffer) -> int:
    while not buf.eof:
        buf.ensure(buf.end() + _BLOCK)
    return buf.end()


def _resync(buf: _Buffer, start: int) -> int | None:
    """Offset of the next valid record at or after `start`, or None."""
    buf.ensure(start + MAX_RESYNC_BYTES + 12)
    stop = min(buf.end() - 12, start + MAX_RESYNC_BYTES)
    for cand in range(start, stop + 1):
        header = buf.get(cand, cand + 12)
        length, length_crc = HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            continue
        end = cand + 12 + length + 4
        if not buf.ensure(end):
            continue
        data = buf.get(cand + 12, end - 4)
        if masked_crc32c(data) == CRC.unpack(buf.get(end - 4, end))[0]:
            return cand
    return None


def read_file(
    path: str, file_index: int, *, chunk_size: int = 512
) -> Iterator[tuple[list[tuple[Position, bytes]], list[tuple[Position, ReadError]]]]:
    """Reads one file in chunks: yields `(records, read_errors)` lists.

    Args:
      path: File to read.
      file_index: Its index in the sorted list of input files.
      chunk_size: Records per yielded chunk.
    """
    for records, errors, _ in read_file_located(
        path, file_index, chunk_size=chunk_size
    ):
        yield records, errors


def read_file_located(
    path: str, file_index: int, *, chunk_size: int = 512
) -> Iterator[tuple[list, list, list[int]]]:
    """`read_file` with where each record is: yields `(records, read_errors,
    offsets)`, `offsets[i]` the byte offset of `records[i]` in the file
    (`iter_located`), so a later step reads a record back with `read_at`."""
    records, errors, offsets = [], [], []
    with open_file(path) as f:
        for index, offset, item in iter_located(f):
            if isinstance(item, ReadError):
                errors.append(((file_index, index), item))
            else:
                records.append(((file_index, index), item))
                offsets.append(offset)
            if len(records) >= chunk_size:
                yield records, errors, offsets
                records, errors, offsets = [], [], []
    if records or errors:
        yield records, errors, offsets


def read_at(f: BinaryIO, offset: int, size: int, name: str = "") -> bytes:
    """The data of the record at byte `offset` of the open file `f` holding
    `size` bytes (as `iter_located` met it): one ranged read (local: `pread`,
    no seek) of the data and its CRC, checked.

    Raises:
      RuntimeError: the bytes no longer match their CRC (the file `name`
        changed since it was first read).
    """
    start, end = offset + HEADER.size, offset + HEADER.size + size + CRC.size
    if isinstance(f, io.FileIO):
        framed = os.pread(f.fileno(), end - start, start)
    else:
        f.seek(start)
        framed = f.read(end - start)
    data = framed[:size]
    if (
        len(framed) != size + CRC.size
        or masked_crc32c(data) != CRC.unpack_from(framed, size)[0]
    ):
        raise RuntimeError(
            f"Input file {name!r} changed while the job ran: the record at byte "
            f"{offset} ({size} bytes) no longer matches its CRC. Rerun the job on "
            "input that stays unchanged while it runs."
        )
    return data


def write_tfrecords(path: str, records) -> None:
    """Writes `records` (bytes) with TFRecord framing (used by tests and data/)."""
    with open(path, "wb") as f:
        for data in records:
            header, footer = frame([data])
            f.write(header + data + footer)
