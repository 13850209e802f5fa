"""Output: the directory layout, shard naming, dead-letter files, atomic staging.

Place in the flow: features -> batch_format -> **output** -> metadata ->
publish. Both engines write through here: shard files (`RecordWriter`,
`shard_file`, `shard_of`), dead-letter files (`write_dead_letters`), the
staging location (`Staging`), on local disks and object stores (`fileio`).

Output directory layout (DIR):
  shards/part-XXXXX-of-NNNNN.tfrecord   one record per batch (batch_format.py)
  errors/<reason>.jsonl                 dead letters, one JSON object a line
  embeddings/<embedding column>.npy     the embedding tables used ([V, dim] float32)
  metadata.json                         written last (see `metadata`)

Dead-letter line: {"reason", "detail", "file", "record_index", "data_b64"} where
`data_b64` is base64 of the record's original bytes (for framing damage: the
damaged bytes, at most 1 MiB), `file` the input path, `record_index` the
position of the record in its file (0-based).

Shards are assigned deterministically: batch of rank r (in the engine's batch
order) goes to shard r % N (`shard_of`), and each shard holds its batches in
that order.
Atomicity (the protocol is in `publish`): everything is written into a
staging location next to DIR, metadata.json last, listing every file with its
size and CRC32C. Locally the staging directory is renamed into place; replacing
an existing DIR (--overwrite) swaps the two directories in one step on Linux
(renameat2 RENAME_EXCHANGE); elsewhere it takes two renames. On object stores
(gs://, s3://), which cannot rename, `publish.commit_remote` copies the listed
files and writes DIR/metadata.json last. Each local file is written under a
temporary name and renamed to its deterministic final name (an object appears
whole when its upload completes), so a retried or duplicated bundle rewrites
the same file with the same bytes (idempotent); the Beam job writes each
shard once, where its batches are computed (`pipeline.beam.shards`), the same
way. A killed run leaves DIR untouched (or, killed during an object-store
commit, without metadata.json: refused by readers) and a `DIR.staging-*`
directory, safe to delete.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence

import google_crc32c
import tensorflow as tf

from pipeline.stages import fileio, publish, tfrecord
from pipeline.stages.batch_format import Pieces, join_pieces
from pipeline.stages.metadata import MAX_ERROR_POSITIONS
from pipeline.stages.paths import (  # noqa: F401 (the layout's names, used as output.X)
    EMBEDDINGS_DIR,
    ERRORS_DIR,
    METADATA_FILE,
    SHARDS_DIR,
    TMP_MARK,
    check_output_dir,
)


def shard_name(index: int, num_shards: int) -> str:
    """`part-XXXXX-of-NNNNN.tfrecord`."""
    return f"part-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_file(index: int, num_shards: int) -> str:
    """Shard `index`'s path relative to DIR (`shards/part-...`)."""
    return f"{SHARDS_DIR}/{shard_name(index, num_shards)}"


def shard_of(rank: int, num_shards: int) -> int:
    """The shard of the batch of rank `rank` in the engine's batch order (both
    engines deal batches round-robin, so shards differ by at most one batch)."""
    return rank % num_shards


def shard_entry(index: int, num_shards: int, batches: int, examples: int) -> dict:
    """Shard `index`'s entry of metadata.json's `shards`."""
    return {
        "file": shard_file(index, num_shards),
        "batches": int(batches),
        "examples": int(examples),
    }


class RecordWriter:
    """A TFRecord file written record by record from pieces (`record_pieces`).

    Local and uncompressed (POSIX): framed here (`tfrecord.frame_crc`, CRC over
    the pieces, the file's CRC32C extended by it) and written with `os.writev`,
    so a record's bytes go from the batch's arrays to the file with no copy in
    between. Remote and
    uncompressed: framed here, written to a `fileio.open_write` object
    (uploaded by `close`). Gzip: `tf.io.TFRecordWriter` with the pieces joined
    (remote: into a local temporary file, uploaded by `close`).
    """

    def __init__(self, path: str, compression: str = "none"):
        self._fd = self._tf = self._stream = self._upload = None
        self._path = path
        self._crc = self.nbytes = 0  # of the file's bytes (uncompressed only)
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
        self._compressed = self._tf is not None

    def write(self, pieces: Sequence) -> int:
        """Writes one record given as pieces (`Pieces`, or a list of bytes and
        contiguous numpy arrays, as `tfrecord.frame` takes them); returns the bytes
        it takes in the file (framing included, uncompressed)."""
        if self._tf is not None:
            record = join_pieces(pieces)
            self._tf.write(record)
            return tfrecord.HEADER.size + len(record) + tfrecord.CRC.size
        pieces = pieces if isinstance(pieces, Pieces) else Pieces(pieces)
        header, footer, crc = tfrecord.frame_crc(pieces, pieces.nbytes)
        nbytes = len(header) + pieces.nbytes + len(footer)
        # The file's CRC32C from the record's (`frame_crc`): no second pass
        # over the record's bytes.
        self._crc = tfrecord.crc32c_combine(
            google_crc32c.extend(self._crc, header), crc, pieces.nbytes
        )
        self._crc = google_crc32c.extend(self._crc, footer)
        self.nbytes += nbytes
        if self._stream is not None:
            for piece in (header, *pieces, footer):
                self._stream.write(piece)
            return nbytes
        _write_all(self._fd, [header, *pieces, footer], nbytes)
        return nbytes

    def checksum(self) -> tuple[int, str] | None:
        """`(size, CRC32C hex)` of the file written (what `publish.manifest`
        takes as known), or None (gzip: TensorFlow's writer compresses)."""
        if self._compressed:
            return None
        return self.nbytes, f"{self._crc:08x}"

    def abort(self) -> None:
        """Abandons the file: closed, nothing uploaded, a local file removed
        (a failed attempt leaves no partial file under any name)."""
        upload, self._upload = self._upload, None  # (gzip, remote) not uploaded
        if self._stream is not None:
            self._stream.discard()
            self._stream = None
        self.close()
        local = None if fileio.is_remote(self._path) else self._path
        for leftover in (upload, local):
            if leftover is not None:
                fileio.remove(leftover)

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


def temporary_path(path: str) -> str:
    """Where to write `path` first: a temporary name beside it (moved by
    `publish_file`); remote, `path` itself (an object appears whole)."""
    if fileio.is_remote(path):
        return path
    head, sep, tail = path.rpartition("/")
    return f"{head}{sep}.{tail}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def publish_file(tmp: str, path: str) -> None:
    """Moves a file written at `temporary_path(path)` to `path`."""
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

    Gzip: one gzip member per call (gzip members concatenate into a valid
    gzip file).
    """
    n = 0
    tmp = temporary_path(path)
    writer = RecordWriter(tmp, compression)
    try:
        for record in records:
            writer.write([record])
            n += 1
    finally:
        writer.close()
    publish_file(tmp, path)
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
    tmp = temporary_path(path)
    with fileio.open_write(tmp) as f:
        for error in errors:
            f.write((error_line(error, files) + "\n").encode())
            n += 1
    publish_file(tmp, path)
    return n


def write_dead_letters(
    directory: str, reason: str, errors: Iterable, files: Sequence[str]
) -> dict:
    """Writes DIR/errors/<reason>.jsonl: `errors` (ErrorRecords of `reason`)
    sorted by position, one JSON line each.

    Returns:
      `{reason, file, count, positions}`: the file relative to DIR, the number
      of dead letters and the first `metadata.MAX_ERROR_POSITIONS` positions
      (what `metadata.assemble` takes).
    """
    errors = sorted(errors, key=lambda e: e.position)
    rel = f"{ERRORS_DIR}/{reason}.jsonl"
    write_errors(f"{directory}/{rel}", errors, files)
    return {
        "reason": reason,
        "file": rel,
        "count": len(errors),
        "positions": [list(e.position) for e in errors[:MAX_ERROR_POSITIONS]],
    }


class Staging:
    """A staging location next to DIR, put in place by `commit()`.

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
                for sub in (SHARDS_DIR, ERRORS_DIR, EMBEDDINGS_DIR):
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
    """Raises FileNotFoundError (an OSError) if a remote path's bucket does
    not exist."""
    scheme, rest = path.split("://", 1)
    bucket = f"{scheme}://{rest.split('/')[0]}"
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
