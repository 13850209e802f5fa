"""The job's file layer: local paths, `gs://` and `s3://`, one small API.

Place in the flow: under every stage that touches a file (tfrecord, output,
metadata, publish, paths, config, spec, analysis, features), the reader and
the CLI. Engine-neutral: imports neither Beam nor TensorFlow, so the tf.data
engine and the reader use it as the Beam job does. The clients are imported
when a scheme is first used (`google.cloud.storage`, `boto3`): a local run
loads neither.

- local paths: `os` (a path without `scheme://`);
- `gs://BUCKET/KEY`: google-cloud-storage, which honours the standard
  `STORAGE_EMULATOR_HOST` (TensorFlow's own GCS client has its endpoint compiled
  in and cannot be pointed at an emulator);
- `s3://BUCKET/KEY`: boto3, which honours `AWS_ENDPOINT_URL` (and the usual
  `AWS_*` credentials and region variables).
Any other scheme (`hdfs://`, `ram://`, ...) is refused by `check_supported`
before any work, naming the supported ones.

Object stores have no directories: a "directory" is a key prefix ending in `/`.
An object appears whole when its upload completes (`open_write` uploads on
close, nothing on an exception), which is what the commit protocol
(`pipeline.stages.publish`) builds on.

`STATS` counts the HTTP requests each client sends (hooks on the clients'
sessions, so retries and multi-request uploads count) and the object bytes read
and written, per process; `stats_line()` is what the CLI prints after a run.
"""

from __future__ import annotations

import base64
import collections
import fnmatch
import glob as _glob
import io
import os
import re
import shutil
import tempfile
import threading
from typing import BinaryIO, NamedTuple

import google_crc32c
import numpy as np

# Remote schemes served here; local paths have none.
SCHEMES = ("gs", "s3")
# A remote reader fetches aligned blocks of this size, and keeps this many.
READ_AHEAD = 1 << 20
CACHE_BLOCKS = 8  # per open file: the Beam job keeps its input files open
# A remote upload is kept in memory up to this size, then in a local temp file.
_SPOOL_BYTES = 64 << 20
_WILDCARD = re.compile(r"[*?\[]")


class ObjectInfo(NamedTuple):
    """An object's size and, where the store keeps it, its CRC32C (hex)."""

    size: int
    crc32c: str | None = None


class IOStats:
    """Requests sent to object stores and object bytes moved, in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: collections.Counter = collections.Counter()
            self.bytes_read = 0
            self.bytes_written = 0

    def request(self, scheme: str, method: str) -> None:
        with self._lock:
            self.requests[f"{scheme} {method}"] += 1

    def moved(self, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written

    def snapshot(self) -> dict:
        """`{requests: {"gs GET": n, ...}, total_requests, bytes_read, bytes_written}`."""
        with self._lock:
            return {
                "requests": dict(sorted(self.requests.items())),
                "total_requests": sum(self.requests.values()),
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            }


STATS = IOStats()


def stats_line() -> str | None:
    """One line with this process's object-store requests and bytes (None: none)."""
    s = STATS.snapshot()
    if not s["total_requests"]:
        return None
    by_method = ", ".join(f"{k} {v:,}" for k, v in s["requests"].items())
    return (
        f"object store: {s['total_requests']:,} requests ({by_method}); "
        f"{s['bytes_read']:,} bytes read, {s['bytes_written']:,} bytes written"
    )


def scheme(path: str) -> str:
    """`gs`, `s3`, another scheme's name, or "" for a local path."""
    head, sep, _ = path.partition("://")
    return head.lower() if sep else ""


def is_remote(path: str) -> bool:
    return "://" in path


def check_supported(path: str, argument: str) -> None:
    """Refuses a path whose scheme this layer does not serve.

    Raises:
      ValueError: `path` has a scheme other than gs:// or s3://.
    """
    name = scheme(path)
    if name and name not in SCHEMES:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a local path, "
            "gs://BUCKET/... or s3://BUCKET/... (the schemes seqshards reads and "
            f"writes). Received: {argument}={path!r} ({name}:// is not supported: "
            "copy the data to a local disk, Google Cloud Storage or S3 first, e.g. "
            "with `hadoop distcp`)"
        )


def _split(path: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of a remote path."""
    name = scheme(path)
    check_supported(path, "path")
    bucket, _, key = path.split("://", 1)[1].partition("/")
    if not bucket:
        raise ValueError(
            f"Invalid remote path. Expected {name}://BUCKET/KEY. Received: {path!r}"
        )
    return name, bucket, key


def _prefix(key: str) -> str:
    """The listing prefix of a "directory" key ("" for the bucket's root)."""
    key = key.rstrip("/")
    return f"{key}/" if key else ""


def crc32c_hex(data) -> str:
    return f"{google_crc32c.value(data):08x}"


# --- backends ----------------------------------------------------------------------


class _GCS:
    """Google Cloud Storage through google-cloud-storage."""

    name = "gs"

    def __init__(self):
        from google.cloud import storage

        try:
            self.client = storage.Client()
        except Exception as e:  # google.auth.exceptions.DefaultCredentialsError
            raise PermissionError(
                "Cannot create a Google Cloud Storage client for gs:// paths "
                f"({e}). Expected application default credentials (`gcloud auth "
                "application-default login`) or, for an emulator, "
                "STORAGE_EMULATOR_HOST=http://HOST:PORT."
            ) from None
        self.client._http.hooks["response"].append(self._count)

    def _count(self, response, *args, **kwargs):
        STATS.request(self.name, response.request.method)

    def _blob(self, bucket: str, key: str):
        return self.client.bucket(bucket).blob(key)

    def info(self, bucket: str, key: str) -> ObjectInfo | None:
        blob = self.client.bucket(bucket).get_blob(key) if key else None
        return None if blob is None else ObjectInfo(int(blob.size), _gcs_crc(blob))

    def list(self, bucket: str, prefix: str, recursive: bool):
        """Yields (key, ObjectInfo) of objects and (prefix, None) of sub-prefixes."""
        blobs = self.client.list_blobs(
            bucket, prefix=prefix, delimiter=None if recursive else "/"
        )
        for page in blobs.pages:
            for blob in page:
                yield blob.name, ObjectInfo(int(blob.size), _gcs_crc(blob))
            for sub in page.prefixes:
                yield sub, None

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        return self._blob(bucket, key).download_as_bytes(
            start=start, end=end - 1, checksum=None
        )

    def upload(self, bucket: str, key: str, f: BinaryIO, size: int, crc: str) -> None:
        blob = self._blob(bucket, key)
        blob.metadata = {"crc32c": crc}
        blob.upload_from_file(f, size=size, rewind=True)

    def delete(self, bucket: str, keys: list[str]) -> None:
        from google.api_core.exceptions import NotFound

        for key in keys:
            try:
                self._blob(bucket, key).delete()
            except NotFound:
                pass

    def copy(self, bucket: str, key: str, dst_bucket: str, dst_key: str) -> None:
        src, dst = self._blob(bucket, key), self._blob(dst_bucket, dst_key)
        token, _, _ = dst.rewrite(src)
        while token is not None:
            token, _, _ = dst.rewrite(src, token=token)

    def create_bucket(self, bucket: str) -> None:
        self.client.create_bucket(bucket)

    def bucket_exists(self, bucket: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_bucket(bucket)
        except NotFound:
            return False
        return True


def _gcs_crc(blob) -> str | None:
    if not blob.crc32c:
        return None
    return base64.b64decode(blob.crc32c).hex()


class _S3:
    """Amazon S3 (or any S3 API) through boto3."""

    name = "s3"

    def __init__(self):
        import boto3

        self.client = boto3.client("s3")
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, request, **kwargs):
        STATS.request(self.name, request.method)

    def _missing(self, e) -> bool:
        code = str(e.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")

    def info(self, bucket: str, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        if not key:
            return None
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if self._missing(e):
                return None
            raise
        crc = head.get("Metadata", {}).get("crc32c")
        return ObjectInfo(int(head["ContentLength"]), crc)

    def list(self, bucket: str, prefix: str, recursive: bool):
        args = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            args["Delimiter"] = "/"
        for page in self.client.get_paginator("list_objects_v2").paginate(**args):
            for obj in page.get("Contents", []):
                yield obj["Key"], ObjectInfo(int(obj["Size"]))
            for sub in page.get("CommonPrefixes", []):
                yield sub["Prefix"], None

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = self.client.get_object(
            Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        return response["Body"].read()

    def upload(self, bucket: str, key: str, f: BinaryIO, size: int, crc: str) -> None:
        f.seek(0)
        self.client.upload_fileobj(
            f, bucket, key, ExtraArgs={"Metadata": {"crc32c": crc}}
        )

    def delete(self, bucket: str, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
            )

    def copy(self, bucket: str, key: str, dst_bucket: str, dst_key: str) -> None:
        self.client.copy({"Bucket": bucket, "Key": key}, dst_bucket, dst_key)

    def create_bucket(self, bucket: str) -> None:
        self.client.create_bucket(Bucket=bucket)

    def bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as e:
            if self._missing(e):
                return False
            raise
        return True


_BACKENDS = {"gs": _GCS, "s3": _S3}
_clients: dict = {}
_clients_lock = threading.Lock()


def _backend(name: str):
    """The process's client for a scheme (created on first use, shared by threads)."""
    with _clients_lock:
        client = _clients.get(name)
        if client is None:
            client = _clients[name] = _BACKENDS[name]()
        return client


def reset_clients() -> None:
    """Drops the clients made so far: the next use makes new ones from the
    environment as it is then (e.g. after an emulator was started)."""
    with _clients_lock:
        _clients.clear()


def _remote(path: str):
    name, bucket, key = _split(path)
    return _backend(name), bucket, key


# --- the API ------------------------------------------------------------------------


def exists(path: str) -> bool:
    """Whether `path` is a file or a directory (a non-empty prefix remotely)."""
    if not is_remote(path):
        return os.path.exists(path)
    return isfile(path) or isdir(path)


def isfile(path: str) -> bool:
    if not is_remote(path):
        return os.path.isfile(path)
    return info(path) is not None


def isdir(path: str) -> bool:
    """Local: a directory. Remote: a bucket root that exists, or a prefix
    `path/` holding at least one object."""
    if not is_remote(path):
        return os.path.isdir(path)
    backend, bucket, key = _remote(path)
    if not key.strip("/"):
        return backend.bucket_exists(bucket)
    for _ in backend.list(bucket, _prefix(key), recursive=False):
        return True
    return False


def info(path: str) -> ObjectInfo | None:
    """Size (and the store's CRC32C, if it keeps one) of a file; None if absent."""
    if not is_remote(path):
        try:
            return ObjectInfo(os.path.getsize(path)) if os.path.isfile(path) else None
        except OSError:
            return None
    backend, bucket, key = _remote(path)
    return backend.info(bucket, key)


def size(path: str) -> int:
    """The size of a file in bytes.

    Raises:
      FileNotFoundError: `path` is not a file.
    """
    found = info(path)
    if found is None:
        raise FileNotFoundError(f"No such file: {path!r}")
    return found.size


def listdir(path: str) -> list[str]:
    """Names directly under a directory (sorted; sub-directories without `/`)."""
    if not is_remote(path):
        return sorted(os.listdir(path))
    backend, bucket, key = _remote(path)
    prefix = _prefix(key)
    names = {
        name[len(prefix) :].rstrip("/")
        for name, _ in backend.list(bucket, prefix, recursive=False)
    }
    return sorted(n for n in names if n)


def list_files(path: str) -> dict[str, ObjectInfo]:
    """Every file under a directory, recursively: {relative path: ObjectInfo}
    (one listing request per 1,000 objects remotely)."""
    out = {}
    if not is_remote(path):
        for root, _, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                out[rel] = ObjectInfo(os.path.getsize(full))
        return out
    backend, bucket, key = _remote(path)
    prefix = _prefix(key)
    for name, found in backend.list(bucket, prefix, recursive=True):
        if found is not None and not name.endswith("/"):
            out[name[len(prefix) :]] = found
    return out


def glob(pattern: str) -> list[str]:
    """Files matching `pattern` (`*`, `?`, `[...]` within one path segment), sorted."""
    if not is_remote(pattern):
        return sorted(_glob.glob(pattern))
    backend, bucket, key = _remote(pattern)
    head = f"{pattern.split('://', 1)[0]}://{bucket}/"
    wildcard = _WILDCARD.search(key)
    if wildcard is None:
        return [pattern] if backend.info(bucket, key) is not None else []
    parts = [re.compile(fnmatch.translate(part)) for part in key.split("/")]

    def matches(name: str) -> bool:  # segment by segment, as a local glob
        segments = name.split("/")
        return len(segments) == len(parts) and all(
            p.match(s) for p, s in zip(parts, segments, strict=True)
        )

    return sorted(
        head + name
        for name, found in backend.list(bucket, key[: wildcard.start()], True)
        if found is not None and matches(name)
    )


def create_bucket(path: str) -> None:
    """Creates the bucket of `scheme://BUCKET[/...]` (emulators in tests; a
    job expects its buckets to exist)."""
    backend, bucket, _ = _remote(path)
    backend.create_bucket(bucket)


def makedirs(path: str) -> None:
    """Creates a local directory (and parents); nothing to do remotely."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Deletes a file (an absent one is fine)."""
    if not is_remote(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    backend, bucket, key = _remote(path)
    backend.delete(bucket, [key])


def rmtree(path: str) -> None:
    """Deletes a directory and everything under it (an absent one is fine)."""
    if not is_remote(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    remove_under(path, list_files(path))


def remove_under(directory: str, rels) -> None:
    """Deletes files `rels` (relative paths) under `directory` (batched on S3)."""
    if not is_remote(directory):
        for rel in rels:
            remove(os.path.join(directory, rel))
        return
    backend, bucket, key = _remote(directory)
    backend.delete(bucket, [_prefix(key) + rel for rel in rels])


def copy(src: str, dst: str) -> None:
    """Copies a file; between objects of one store, server-side (no bytes
    through this process)."""
    if is_remote(src) and scheme(src) == scheme(dst):
        backend, bucket, key = _remote(src)
        _, dst_bucket, dst_key = _remote(dst)
        backend.copy(bucket, key, dst_bucket, dst_key)
        return
    with open_read(src) as f, open_write(dst) as out:
        shutil.copyfileobj(f, out, 1 << 20)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with open_write(path) as f:
        f.write(data)


def checksum(path: str, known: ObjectInfo | None = None) -> str:
    """A file's CRC32C (hex): the store's own where it keeps one (GCS; S3
    objects written here carry it in their metadata), else computed by reading."""
    if known is not None and known.crc32c:
        return known.crc32c
    if is_remote(path):
        found = info(path)
        if found is not None and found.crc32c:
            return found.crc32c
    crc = 0
    with open_read(path) as f:
        while True:
            block = f.read(4 << 20)
            if not block:
                return f"{crc:08x}"
            crc = google_crc32c.extend(crc, block)


def open_read(path: str) -> BinaryIO:
    """A binary file for reading: local `open(path, "rb", buffering=0)`;
    remote a seekable reader fetching byte ranges (`RemoteReader`).

    Raises:
      FileNotFoundError: no such file.
    """
    if not is_remote(path):
        return open(path, "rb", buffering=0)
    backend, bucket, key = _remote(path)
    found = backend.info(bucket, key)
    if found is None:
        raise FileNotFoundError(f"No such file: {path!r}")
    return RemoteReader(backend, bucket, key, found.size, path)


def open_write(path: str) -> BinaryIO:
    """A binary file for writing: local `open(path, "wb")`; remote a buffer
    uploaded as one object when closed without error (`RemoteWriter`)."""
    if not is_remote(path):
        return open(path, "wb")
    backend, bucket, key = _remote(path)
    return RemoteWriter(backend, bucket, key)


class RemoteReader(io.RawIOBase):
    """A remote object read by byte ranges, through a cache of aligned
    `READ_AHEAD`-byte blocks (at most `CACHE_BLOCKS`, least recently used
    dropped): sequential reads cost a request per block, and the Beam job's
    reads of records by offset (`pipeline.beam.refs`), which jump around a file, fetch
    each block once while it stays cached (a small file: once in all). Missing
    neighbouring blocks are fetched in one request. No `fileno`: callers take
    their non-local branches."""

    def __init__(self, backend, bucket: str, key: str, size: int, name: str):
        super().__init__()
        self._backend, self._bucket, self._key = backend, bucket, key
        self.size, self.name = size, name
        self._pos = 0
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self):  # noqa: D102 - not a local file
        raise io.UnsupportedOperation("fileno: a remote object")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fetch(self, first: int, last: int) -> None:
        """Puts blocks [first, last] in the cache, one request for the missing."""
        missing = [b for b in range(first, last + 1) if b not in self._blocks]
        if missing:
            start = missing[0] * READ_AHEAD
            end = min(self.size, (missing[-1] + 1) * READ_AHEAD)
            data = self._backend.read_range(self._bucket, self._key, start, end)
            STATS.moved(read=len(data))
            for b in range(missing[0], missing[-1] + 1):
                offset = (b - missing[0]) * READ_AHEAD
                self._blocks[b] = data[offset : offset + READ_AHEAD]
        for b in range(first, last + 1):
            self._blocks.move_to_end(b)
        while len(self._blocks) > max(CACHE_BLOCKS, last - first + 1):
            self._blocks.popitem(last=False)

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        first, last = self._pos // READ_AHEAD, (end - 1) // READ_AHEAD
        self._fetch(first, last)
        data = b"".join(self._blocks[b] for b in range(first, last + 1))
        skip = self._pos - first * READ_AHEAD
        data = data[skip : skip + end - self._pos]
        self._pos = end
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class RemoteWriter(io.RawIOBase):
    """Bytes for one remote object, uploaded (with their CRC32C in the
    object's metadata) by `close()`; an exception inside `with` uploads
    nothing, so the object is either absent or whole."""

    def __init__(self, backend, bucket: str, key: str):
        super().__init__()
        self._backend, self._bucket, self._key = backend, bucket, key
        self._spool = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)
        self._crc, self._size, self._failed = 0, 0, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._spool.write(view)
        # (google_crc32c takes bytes or arrays, not memoryviews: no copy)
        self._crc = google_crc32c.extend(self._crc, np.frombuffer(view, np.uint8))
        self._size += len(view)
        return len(view)

    def __exit__(self, kind, value, tb):
        self._failed = kind is not None
        return super().__exit__(kind, value, tb)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._backend.upload(
                    self._bucket, self._key, self._spool, self._size, f"{self._crc:08x}"
                )
                STATS.moved(written=self._size)
        finally:
            self._spool.close()
            super().close()

    def discard(self) -> None:
        """Closes without uploading."""
        self._failed = True
        self.close()

    def __del__(self):  # never upload an abandoned writer's bytes
        if not self.closed:
            self.discard()


def upload(local_path: str, path: str) -> None:
    """Copies a local file to `path` (remote or local)."""
    with open(local_path, "rb") as f, open_write(path) as out:
        shutil.copyfileobj(f, out, 1 << 20)


_local_copies: dict[str, str] = {}


def local_copy(path: str) -> str:
    """A local path holding `path`'s bytes: the path itself when local, else a
    copy in a temporary directory, made once per process (for readers that
    only take local files, e.g. TensorFlow's lookup-table initializers)."""
    if not is_remote(path):
        return path
    with _clients_lock:
        local = _local_copies.get(path)
    if local is not None and os.path.exists(local):
        return local
    directory = tempfile.mkdtemp(prefix="seqshards-")
    local = os.path.join(directory, os.path.basename(path.rstrip("/")) or "file")
    with open(local, "wb") as out:
        out.write(read_bytes(path))
    with _clients_lock:
        _local_copies[path] = local
    return local
