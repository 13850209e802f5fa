"""Output: the batch record format, shard and dead-letter files, atomic staging.

Place in the flow: features -> **write** -> metadata.

Output directory layout (DIR):
  shards/part-XXXXX-of-NNNNN.tfrecord   one record per batch (below)
  errors/<reason>.jsonl                 dead letters, one JSON object a line
  embeddings/<embedding column>.npy     the embedding tables used ([V, dim] float32)
  metadata.json                         written last (see metadata.py)

Batch record: a serialized `tf.train.Example` with the features
  sequence_input   bytes_list, 1 value: raw little-endian float32 bytes of the
                   row-major [B, T, D] tensor (T = the longest example of the batch;
                   steps t >= sequence_length[b] are zero)
  shape            int64_list [B, T, D]
  sequence_length  int64_list [B]
  example_id       bytes_list [B], only when CONTEXT has the id feature (`id`)
  <context name>   every CONTEXT feature, the batch's values flattened row-major
                   (FixedLenFeature of shape s: B * prod(s) values; VarLenFeature:
                   all values, plus `<name>/row_lengths` int64_list [B]); the value
                   kind follows the spec dtype (int64_list, float_list, bytes_list)
Any framework can read it: parse the Example, take `sequence_input`'s bytes as
float32 little-endian and reshape to `shape`.

Dead-letter line: {"reason", "detail", "file", "record_index", "data_b64"} where
`data_b64` is base64 of the record's original bytes (for framing damage: the
damaged bytes, at most 1 MiB), `file` the input path, `record_index` the
position of the record in its file (0-based).

Shards are assigned deterministically: batches sorted by their batch key, batch of
rank r goes to shard r % N, and each shard holds its batches in key order.
Atomicity (the protocol is in publish.py): everything is written into a
staging location next to DIR, metadata.json last, listing every file with its
size and CRC32C. Locally the staging directory is renamed into place; replacing
an existing DIR (--overwrite) swaps the two directories in one step on Linux
(renameat2 RENAME_EXCHANGE); elsewhere it takes two renames. On object stores
(gs://, s3://), which cannot rename, `publish.commit_remote` copies the listed
files and writes DIR/metadata.json last. Each local file is written under a
temporary name and renamed to its deterministic final name (an object appears
whole when its upload completes), so a retried or duplicated bundle rewrites
the same file with the same bytes (idempotent). The Beam job's intermediate
piece files (batch records waiting for their shard, see `WriteShards`) are
named per bundle attempt instead: a retry writes new ones, and the whole pieces
directory is deleted before the commit. A killed run leaves DIR untouched (or,
killed during an object-store commit, without metadata.json: refused by
readers) and a `DIR.staging-*` directory, safe to delete.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import itertools
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from pipeline import fileio, publish, read, wire
from pipeline.paths import (  # noqa: F401 (the layout's names, used as write.X)
    EMBEDDINGS_DIR,
    ERRORS_DIR,
    METADATA_FILE,
    PIECES_DIR,
    SHARDS_DIR,
    TMP_MARK,
    check_output_dir,
)


def shard_name(index: int, num_shards: int) -> str:
    """`part-XXXXX-of-NNNNN.tfrecord`."""
    return f"part-{index:05d}-of-{num_shards:05d}.tfrecord"


def encode_batch(
    sequence_input: np.ndarray,
    sequence_length: np.ndarray,
    context: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    example_id: Sequence[bytes] | None = None,
) -> bytes:
    """Serializes one batch as the batch record described in the module docstring.

    Args:
      sequence_input: float32 [B, T, D].
      sequence_length: int [B].
      context: name -> (flat values, row_lengths or None for FixedLen).
      example_id: [B] ids, or None.
    """
    x = np.ascontiguousarray(sequence_input, dtype="<f4")
    blocks = Pieces([x.reshape(-1)] if x.size else [], x.nbytes)
    pieces = record_pieces(x.shape, sequence_length, context, example_id, blocks)
    return join_pieces(pieces)


def join_pieces(pieces: Sequence) -> bytes:
    """The bytes of `record_pieces`' pieces, as one record."""
    return b"".join(memoryview(p).cast("B") for p in pieces)


class Pieces(list):
    """Buffers to write one after the other, with their total size in bytes
    (`nbytes`), counted as they are put together: a batch record is tens to
    hundreds of pieces (two per example shorter than T), and summing their
    sizes again at each level of the message and for the framing cost more
    than building them."""

    __slots__ = ("nbytes",)

    def __init__(self, pieces=(), nbytes: int | None = None):
        super().__init__(pieces)
        self.nbytes = _size(self) if nbytes is None else nbytes


def record_pieces(
    shape: tuple[int, int, int],
    sequence_length: np.ndarray,
    context: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    example_id: Sequence[bytes] | None,
    blocks: Pieces,
) -> Pieces:
    """The bytes of `encode_batch` as pieces to write one after the other
    (`RecordWriter.write`); `blocks`: the [B, T, D] tensor's float32 bytes, in
    order, as any number of buffers (`padded_blocks`), never copied here."""
    nbytes = 4 * int(np.prod(shape))
    if blocks.nbytes != nbytes:
        raise ValueError(f"{blocks.nbytes} tensor bytes for shape {shape}")
    tensor = _prefixed(_tag_len(1, nbytes), blocks)
    feature = {
        "sequence_input": _feature(1, tensor),
        "shape": _int64_field(np.asarray(shape, np.int64)),
        "sequence_length": _int64_field(np.asarray(sequence_length, np.int64)),
    }
    if example_id is not None:
        feature["example_id"] = _bytes_field(list(example_id))
    for name, (values, row_lengths) in context.items():
        feature[name] = _values_field(values)
        if row_lengths is not None:
            feature[f"{name}/row_lengths"] = _int64_field(np.asarray(row_lengths))
    # The bytes of `tf.train.Example(...).SerializeToString(deterministic=True)`
    # (map entries sorted by key, packed int64/float lists), written directly:
    # a proto message would copy the [B, T, D] bytes twice.
    entries = Pieces()
    for key in _key_order(tuple(sorted(feature))):
        encoded = key.encode()
        entry = _prefixed(_tag_len(1, len(encoded)) + encoded, feature[key])
        head = _tag_len(1, entry.nbytes)
        entries.append(head)
        entries.extend(entry)
        entries.nbytes += len(head) + entry.nbytes
    return _prefixed(_tag_len(1, entries.nbytes), entries)


def padded_blocks(
    runs: Sequence[tuple[np.ndarray, np.ndarray]], t: int, depth: int
) -> Pieces:
    """The bytes of a padded float32 [B, t, D] tensor, never held as one array.

    Args:
      runs: [(rows [sum(lengths), D] contiguous, lengths)]: examples' steps one
        after the other, the batch's examples in order over all runs.
      t: T, at least the longest example.
      depth: D.

    Returns:
      Buffers to write in order: stretches of `rows` (examples as long as T
      follow each other with no padding, so a run of them is one view) and,
      after each shorter example, a view of one shared buffer of zeros.
    """
    row = 4 * depth
    zeros = _zeros(row * t)
    blocks = Pieces()
    for rows, lengths in runs:
        blocks.nbytes += row * t * len(lengths)
        ends = np.cumsum(lengths)
        start = 0
        for k in np.flatnonzero(lengths < t).tolist():
            end = int(ends[k])
            if end > start:
                blocks.append(rows[start:end])
            blocks.append(zeros[: row * (t - int(lengths[k]))])
            start = end
        if len(rows) > start:
            blocks.append(rows[start:])
    return blocks


def _zeros(nbytes: int) -> np.ndarray:
    """`nbytes` zero bytes (one buffer, grown as needed, shared)."""
    global _ZEROS
    if len(_ZEROS) < nbytes:
        _ZEROS = np.zeros(max(nbytes, 2 * len(_ZEROS)), np.uint8)
    return _ZEROS[:nbytes]


_ZEROS = np.zeros(0, np.uint8)


class RecordWriter:
    """A TFRecord file written record by record from pieces (`record_pieces`).

    Local and uncompressed (POSIX): framed here (`read.frame`, CRC over the
    pieces) and written with `os.writev`, so a record's bytes go from the
    batch's arrays to the file with no copy in between. Remote and
    uncompressed: framed here, written to a `fileio.open_write` object
    (uploaded by `close`). Gzip: `tf.io.TFRecordWriter` with the pieces joined
    (remote: into a local temporary file, uploaded by `close`).
    """

    def __init__(self, path: str, compression: str = "none"):
        self._fd = self._tf = self._stream = self._upload = None
        self._path = path
        if compression == "none" and fileio.is_remote(path):
            self._stream = fileio.open_write(path)
        elif compression == "none" and hasattr(os, "writev"):
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        else:
            local = path
            if fileio.is_remote(path):
                fd, local = tempfile.mkstemp(suffix=".tfrecord.gz")
                os.close(fd)
                self._upload = local
            self._tf = tf.io.TFRecordWriter(local, record_options(compression))

    def write(self, pieces: Sequence) -> int:
        """Writes one record given as pieces (`Pieces`, or a list of bytes and
        contiguous numpy arrays, as `read.frame` takes them); returns the bytes
        it takes in the file (framing included, uncompressed)."""
        if self._tf is not None:
            record = join_pieces(pieces)
            self._tf.write(record)
            return read.HEADER.size + len(record) + read.CRC.size
        pieces = pieces if isinstance(pieces, Pieces) else Pieces(pieces)
        header, footer = read.frame(pieces, pieces.nbytes)
        nbytes = len(header) + pieces.nbytes + len(footer)
        if self._stream is not None:
            for piece in (header, *pieces, footer):
                self._stream.write(piece)
            return nbytes
        _write_all(self._fd, [header, *pieces, footer], nbytes)
        return nbytes

    def close(self) -> None:
        """Completes the file (remote: uploads it)."""
        if self._tf is not None:
            self._tf.close()
            if self._upload is not None:
                try:
                    fileio.upload(self._upload, self._path)
                finally:
                    os.remove(self._upload)
        elif self._fd is not None:
            os.close(self._fd)
        elif self._stream is not None:
            self._stream.close()
        self._fd = self._tf = self._stream = self._upload = None


_IOV_MAX = 1024  # buffers per writev call (Linux's IOV_MAX)


def _write_all(fd: int, buffers: list, nbytes: int) -> None:
    """Writes every buffer (`nbytes` in all) in order: one `os.writev` call
    as a rule, more when it writes fewer bytes or there are many buffers."""
    written = os.writev(fd, buffers) if len(buffers) <= _IOV_MAX else 0
    if written == nbytes:
        return
    views = [memoryview(b).cast("B") for b in buffers]
    i, n = 0, written
    while True:
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if i == len(views):
            return
        if n:
            views[i] = views[i][n:]
        n = os.writev(fd, views[i : i + _IOV_MAX])


@functools.lru_cache(maxsize=64)
def _key_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The order protobuf's deterministic serialization gives these map keys
    (implementation-defined: upb puts a key after its longer extensions)."""
    empty = tf.train.Feature(int64_list=tf.train.Int64List())
    data = tf.train.Features(feature={k: empty for k in keys}).SerializeToString(
        deterministic=True
    )
    order, pos = [], 0
    while pos < len(data):  # map entries: tag, length, {1: key, 2: value}
        length, pos = _read_varint(data, pos + 1)
        key_length, key_start = _read_varint(data, pos + 1)
        order.append(data[key_start : key_start + key_length].decode())
        pos += length
    return tuple(order)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _size(parts) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)


def _prefixed(head: bytes, body: Pieces) -> Pieces:
    """`head` then `body`'s pieces."""
    return Pieces([head, *body], len(head) + body.nbytes)


_varint = wire.encode_varint


def _tag_len(number: int, length: int) -> bytes:
    return _varint((number << 3) | 2) + _varint(length)


def _feature(kind: int, body: Sequence) -> Pieces:
    """A `Feature` message (oneof `kind`: 1 bytes, 2 float, 3 int64 list) as the
    value field (2) of a map entry: [tag+length, payload parts...]."""
    body = body if isinstance(body, Pieces) else Pieces(body)
    inner = _prefixed(_tag_len(kind, body.nbytes), body)
    return _prefixed(_tag_len(2, inner.nbytes), inner)


def _bytes_field(values: Sequence[bytes]) -> Pieces:
    lengths = list(map(len, values))
    if not lengths:
        return _feature(1, [])
    if max(lengths) < 128:  # most ids and strings: a 2-byte prefix each
        prefixes = map(_BYTES_PREFIX.__getitem__, lengths)
    else:
        prefixes = (_BYTES_PREFIX[n] if n < 128 else _tag_len(1, n) for n in lengths)
    pairs = zip(prefixes, values, strict=True)
    return _feature(1, [b"".join(itertools.chain.from_iterable(pairs))])


# Tag and one-byte length of a short bytes value (most ids and strings).
_BYTES_PREFIX = tuple(bytes((0x0A, n)) for n in range(128))


def _varints(values: np.ndarray) -> bytes:
    """Protobuf varints of int64 values (negatives as 10-byte two's complement).

    Values in [0, 128) (labels, short lengths) are their own one-byte varints;
    otherwise ten numpy passes over [N, 10] groups."""
    v = np.asarray(values, np.int64).ravel()
    if not len(v) or (v.min() >= 0 and v.max() < 128):
        return v.astype(np.uint8).tobytes()
    v = v.view(np.uint64)
    shifts = np.arange(0, 70, 7, dtype=np.uint64)
    groups = ((v[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    nonzero = (v[:, None] >> shifts) != 0
    count = np.maximum(1, nonzero.sum(axis=1))  # bits are contiguous from the low end
    k = np.arange(10)
    groups[k < (count - 1)[:, None]] |= 0x80
    return groups[k < count[:, None]].tobytes()


def _int64_field(values: np.ndarray) -> Pieces:
    values = np.asarray(values, np.int64).ravel()
    if not len(values):
        return _feature(3, [])
    packed = _varints(values)
    return _feature(3, [_tag_len(1, len(packed)), packed])


def _values_field(values: np.ndarray) -> Pieces:
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return _int64_field(values.astype(np.int64))
    if values.dtype.kind == "f":
        if not len(values):
            return _feature(2, [])
        packed = np.ascontiguousarray(values, "<f4").tobytes()
        return _feature(2, [_tag_len(1, len(packed)), packed])
    return _bytes_field(list(map(bytes, values.tolist())))


def _temporary(path: str) -> str:
    """Where to write `path` first: a temporary name beside it (renamed by
    `_publish_file`); remote, `path` itself (an object appears whole)."""
    if fileio.is_remote(path):
        return path
    head, sep, tail = path.rpartition("/")
    return f"{head}{sep}.{tail}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def _publish_file(tmp: str, path: str) -> None:
    """Moves a file written by `_temporary(path)` to `path`."""
    if tmp != path:
        os.replace(tmp, path)


def record_options(compression: str = "none") -> tf.io.TFRecordOptions | None:
    """TFRecord writer options of `--compression` ("none" or "gzip", level 1:
    deflate's fastest level, the shards being mostly float32 bytes)."""
    if compression == "gzip":
        return tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)
    return None


def write_records(
    path: str, records: Iterable[bytes], compression: str = "none"
) -> int:
    """Writes TFRecords to `path` (via a temporary name); returns the number.

    Gzip files concatenate into a valid gzip file (one member each), so pieces
    written here can be joined into a shard whatever the compression.
    """
    n = 0
    tmp = _temporary(path)
    writer = RecordWriter(tmp, compression)
    try:
        for record in records:
            writer.write([record])
            n += 1
    finally:
        writer.close()
    _publish_file(tmp, path)
    return n


def error_line(error, files: Sequence[str]) -> str:
    """One dead-letter JSON line for an `ErrorRecord`."""
    file_index, record_index = error.position
    return json.dumps(
        {
            "reason": str(
                error.reason.value if hasattr(error.reason, "value") else error.reason
            ),
            "detail": error.detail,
            "file": files[file_index] if 0 <= file_index < len(files) else "",
            "record_index": int(record_index),
            "data_b64": base64.b64encode(error.data).decode("ascii"),
        },
        sort_keys=True,
    )


def write_errors(path: str, errors: Iterable, files: Sequence[str]) -> int:
    """Writes dead letters (sorted by the caller) as JSON lines; returns the count."""
    n = 0
    tmp = _temporary(path)
    with fileio.open_write(tmp) as f:
        for error in errors:
            f.write((error_line(error, files) + "\n").encode())
            n += 1
    _publish_file(tmp, path)
    return n


class Staging:
    """A staging directory next to DIR, renamed into place by `commit()`.

    Usage: `staging = Staging(dir, overwrite)`; write under `staging.path`; then
    `commit()` on success or `abort()` on failure.
    """

    def __init__(self, output_dir: str, overwrite: bool):
        check_output_dir(output_dir, overwrite)
        self.output_dir = output_dir.rstrip("/")
        self.overwrite = overwrite
        self.path = f"{self.output_dir}.staging-{uuid.uuid4().hex[:12]}"
        try:
            if fileio.is_remote(self.path):
                _check_bucket(self.path)
            else:
                for sub in (SHARDS_DIR, ERRORS_DIR, EMBEDDINGS_DIR, PIECES_DIR):
                    os.makedirs(f"{self.path}/{sub}")
        except OSError as e:
            self.abort()
            raise PermissionError(
                "Invalid value for argument `output`. Expected a writable location. "
                f"Received: output={output_dir!r} (cannot create {self.path!r}: "
                f"{getattr(e, 'strerror', None) or e}; pick a writable --output)"
            ) from None

    def commit(self) -> None:
        """Puts the staged run at DIR (replacing an old DIR if allowed): a
        directory rename locally, `publish.commit_remote` on object stores."""
        remove_pieces(self.path)
        if fileio.is_remote(self.path):
            check_output_dir(self.output_dir, self.overwrite)
            publish.commit_remote(self.path, self.output_dir)
            return
        for sub in (SHARDS_DIR, ERRORS_DIR):  # temporaries of failed attempts
            for tmp in fileio.glob(f"{self.path}/{sub}/.*{TMP_MARK}*"):
                fileio.remove(tmp)
        old = None
        if os.path.lexists(self.output_dir):
            check_output_dir(self.output_dir, self.overwrite)
            if _exchange(self.path, self.output_dir):
                fileio.rmtree(self.path)  # now holds the previous DIR
                return
            if os.listdir(self.output_dir):
                old = f"{self.output_dir}.old-{uuid.uuid4().hex[:12]}"
                os.rename(self.output_dir, old)
            else:
                fileio.rmtree(self.output_dir)
        os.rename(self.path, self.output_dir)
        if old is not None:
            fileio.rmtree(old)

    def abort(self) -> None:
        """Removes the staging location (DIR is left untouched)."""
        fileio.rmtree(self.path)


def _check_bucket(path: str) -> None:
    """Raises OSError if the bucket of a remote path does not exist."""
    bucket = path.split("://", 1)[0] + "://" + path.split("://", 1)[1].split("/")[0]
    if not fileio.isdir(bucket):
        raise FileNotFoundError(f"no bucket {bucket!r}")


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two local paths (Linux renameat2 RENAME_EXCHANGE); False
    where that is unavailable (other OS or file system, remote paths)."""
    if "://" in a or "://" in b:
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return (
        renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        == 0
    )


# --- Beam wrappers ------------------------------------------------------------------

import apache_beam as beam  # noqa: E402


class WriteShards(beam.PTransform):
    """(batch_key, record, BatchStats) -> shard files; returns shard info dicts
    `{index, file, batches, examples}` (one per shard, empty shards included).

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
    do not depend on retries. `remove_pieces` deletes the pieces once all
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
            write_records(path, [record], self._compression)
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
        shards[rank % n].append(piece)
    yield from enumerate(shards)


def _write_shard(item, directory, n):
    index, pieces = item
    rel = f"{SHARDS_DIR}/{shard_name(index, n)}"
    path = f"{directory}/{rel}"
    tmp = _temporary(path)
    concatenate([piece for _, _, piece in pieces], tmp)
    _publish_file(tmp, path)
    return {
        "index": index,
        "file": rel,
        "batches": len(pieces),
        "examples": int(sum(examples for _, examples, _ in pieces)),
    }


def concatenate(sources: Sequence[tuple[str, int, int | None]], path: str) -> None:
    """Writes the byte ranges `sources` ((file, offset, size), size None: to the
    end of the file), one after the other, as the file `path` (an empty one for
    no sources). Local files are copied by the kernel (`os.sendfile`: no read
    into Python); remote ones through `fileio` (ranged reads, one upload)."""
    if fileio.is_remote(path) or any(fileio.is_remote(s) for s, _, _ in sources):
        with fileio.open_write(path) as out:
            for f, offset, size in _opened(sources, _open_read):
                f.seek(offset)
                out.write(f.read(-1 if size is None else size))
        return
    with open(path, "wb") as out:
        for f, offset, size in _opened(sources, open):
            _copy(f, out, offset, size)


def _open_read(path: str, mode: str):
    return fileio.open_read(path)


def _opened(sources, opener):
    """`(open file, offset, size)` per range of `sources`, a file opened once
    for consecutive ranges of it (a bundle's batches share one piece file)."""
    f, name = None, None
    try:
        for source, offset, size in sources:
            if source != name:
                if f is not None:
                    f.close()
                f, name = opener(source, "rb"), source
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


def remove_pieces(directory: str) -> None:
    """Deletes the per-batch piece files (after every shard has been written)."""
    fileio.rmtree(f"{directory}/{PIECES_DIR}")


class WriteErrors(beam.PTransform):
    """ErrorRecord -> errors/<reason>.jsonl (sorted by position); returns
    `{reason, file, count, positions}` per reason present."""

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
    errors = sorted(errors, key=lambda e: e.position)
    rel = f"{ERRORS_DIR}/{reason}.jsonl"
    write_errors(f"{directory}/{rel}", errors, files)
    return {
        "reason": reason,
        "file": rel,
        "count": len(errors),
        "positions": [list(e.position) for e in errors[:10]],
    }
