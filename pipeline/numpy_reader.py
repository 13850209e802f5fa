"""Reading materialized shards with NumPy only: `iter_batches` (no TensorFlow, no Beam).

Place in the flow: the consumer side of DIR, beside `pipeline.reader`
(`load_dataset`, TensorFlow). For JAX and PyTorch training loops that should not install or
import TensorFlow. Reads metadata.json, each shard's TFRecord framing (length,
masked CRC-32C of the length, data, masked CRC-32C of the data; both CRCs
checked by `stages.tfrecord.iter_records`, the job's own walk) and decodes each batch record, a
`tf.train.Example` (`stages.batch_format` describes its features), walking
its wire format (`stages.protowire`): Example {1: Features {1: map<string,
Feature>}}, Feature {1: BytesList, 2: FloatList, 3: Int64List}, each {1:
repeated value} (packed or not).

Imports: gzip, numpy, `pipeline.stages.protowire` (nothing),
`pipeline.stages.tfrecord` (google_crc32c), `pipeline.stages.fileio` (local,
gs:// and s3://; clients on first use) and `pipeline.stages.metadata`
(`load_metadata`, which checks DIR against metadata.json's file list); none of
them loads TensorFlow (tests/pipeline/test_numpy_reader.py checks).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import numpy as np

from pipeline.stages import fileio, tfrecord
from pipeline.stages.metadata import load_metadata
from pipeline.stages.protowire import Malformed, fields, varints

_SHUFFLE_BUFFER = 256  # batches, as load_dataset's shuffle
_CYCLE = 4  # shards read in turn, as load_dataset's interleave


class ShardError(ValueError):
    """A shard is damaged (CRC mismatch, truncated record, malformed batch)."""


def read_metadata(directory: str) -> dict:
    """DIR/metadata.json, once DIR checks out against it: `load_metadata`
    itself (`stages.metadata`, no TensorFlow), for local, gs:// and s3:// DIRs.

    Raises:
      FileNotFoundError: if DIR has no metadata.json (not a complete run).
      ValueError: if its format version is not supported by this reader.
      publish.IncompleteOutputError: a file metadata.json lists is missing or
        differs.
    """
    return load_metadata(directory)


def iter_records(path: str, compression: str = "none") -> Iterator[bytes]:
    """The records of one TFRecord file, CRCs checked (the framing walk is
    `stages.tfrecord.iter_records`', the job's own reader).

    Raises:
      ShardError: on a CRC mismatch or a record cut short, naming the file,
        the record and what is wrong.
    """
    with fileio.open_read(path) as raw:
        f = gzip.GzipFile(fileobj=raw) if compression == "gzip" else raw
        for index, item in tfrecord.iter_records(f):
            if isinstance(item, tfrecord.ReadError):
                what = (
                    "is cut short"
                    if item.reason == "truncated_record"
                    else "is damaged"
                )
                raise ShardError(
                    f"{path}: record {index} {what} ({item.detail}): re-run the "
                    "job to rewrite the shard."
                )
            yield item


def _feature(data, start: int, end: int):
    """A Feature's values: list of bytes, float32 array or int64 array."""
    for kind, _, _, list_start, list_end in fields(data, start, end):
        if kind == 1:  # BytesList
            return [bytes(data[s:e]) for *_, s, e in fields(data, list_start, list_end)]
        if kind == 2:  # FloatList: packed (wire type 2) or one fixed32 each
            parts = [
                np.frombuffer(data, "<f4", (e - s) // 4, s)
                for *_, s, e in fields(data, list_start, list_end)
            ]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if kind == 3:  # Int64List: packed or one varint each, alike as bytes
            values = []
            for *_, s, e in fields(data, list_start, list_end):
                values += varints(data, s, e)
            return np.asarray(values, np.int64)
    return []


def decode_example(data) -> dict:
    """A serialized `tf.train.Example` -> {feature key: values} (`_feature`).
    `sequence_input`'s single bytes value is kept as (start, end) offsets.

    Raises:
      ShardError: the bytes are not a `tf.train.Example`.
    """
    try:
        return _decode_example(data)
    except (Malformed, StopIteration, UnicodeDecodeError) as e:
        raise ShardError(
            f"A batch record does not decode as a tf.train.Example ({e!r}): the "
            "shard is damaged or not a seqshards shard; re-run the job."
        ) from None


def _decode_example(data) -> dict:
    features = {}
    for number, _, _, start, end in fields(data, 0, len(data)):
        if number != 1:
            continue
        for entry_number, _, _, e_start, e_end in fields(data, start, end):
            if entry_number != 1:
                continue
            key, value = None, (0, 0)
            for n, _, _, s, e in fields(data, e_start, e_end):
                if n == 1:
                    key = bytes(data[s:e]).decode()
                elif n == 2:
                    value = (s, e)
            if key == "sequence_input":  # Feature{1: BytesList{1: value}}
                *_, list_start, list_end = next(fields(data, *value))
                *_, s, e = next(fields(data, list_start, list_end))
                features[key] = (s, e)
            else:
                features[key] = _feature(data, *value)
    return features


_DTYPES = {"int64": np.int64, "float32": np.float32, "string": object}


def batch_of(data, metadata: dict) -> dict:
    """One batch record -> the dict `load_dataset` yields, as NumPy arrays:
    `sequence_input` float32 [B, T, D], `sequence_length` int64 [B], each
    context feature `[B, ...]` (strings as bytes objects; `var_len` ones as a
    list of B arrays, like `RaggedTensor.to_list()` rows)."""
    features = decode_example(data)
    b, t, d = (int(v) for v in features["shape"])
    start, end = features["sequence_input"]
    if end - start != 4 * b * t * d:
        raise ShardError(
            f"sequence_input holds {end - start} bytes for [{b}, {t}, {d}]"
        )
    x = np.frombuffer(data, "<f4", b * t * d, start).reshape(b, t, d)
    out = {
        "sequence_input": x.astype(np.float32),  # a writable copy (torch wants one)
        "sequence_length": np.asarray(features["sequence_length"], np.int64),
    }
    for name, entry in metadata.get("context", {}).items():
        values = features.get(name, [])
        dtype = _DTYPES.get(entry["dtype"], object)
        if dtype is object:
            array = np.empty(len(values), object)
            array[:] = list(values)
        else:
            array = np.asarray(values, dtype)
        if entry["kind"] == "var_len":
            ends = np.cumsum(features[f"{name}/row_lengths"])
            out[name] = np.split(array, ends[:-1]) if b else []
        else:
            out[name] = array.reshape(b, *[int(s) for s in entry["shape"]])
    return out


def _interleaved(paths: list[str], compression: str) -> Iterator[bytes]:
    """Records of `paths` in the order of `load_dataset`'s interleave (cycle of
    `_CYCLE` files, one record each in turn; a finished file's slot takes the
    next file when its turn comes)."""
    pending = iter(paths)
    slots: list = [None] * max(1, min(_CYCLE, len(paths)))
    opened_all = False
    i = 0
    while not opened_all or any(s is not None for s in slots):
        if slots[i] is None and not opened_all:
            path = next(pending, None)
            if path is None:
                opened_all = True
            else:
                slots[i] = iter_records(path, compression)
                continue  # read from it in this turn
        if slots[i] is not None:
            record = next(slots[i], None)
            if record is not None:
                yield record
            else:
                slots[i] = None
        i = (i + 1) % len(slots)


def iter_batches(
    directory: str, shuffle: bool = False, seed: int | None = None
) -> Iterator[dict]:
    """Batches of a seqshards output directory as NumPy dicts, without
    TensorFlow or Beam: the same values as `pipeline.load_dataset`, in the same
    order when not shuffled.

    Args:
      directory: A seqshards output directory DIR (a local path).
      shuffle: Shuffle the shard order and the batches (a buffer of 256
        batches; each batch stays one length bucket). Not the order of
        `load_dataset(shuffle_batches=True)`.
      seed: Seed of the shuffle.

    Yields:
      `{'sequence_input': float32 [B, T, D], 'sequence_length': int64 [B],
      <context name>: [B, ...]}` (see `batch_of`).

    Raises:
      FileNotFoundError: DIR has no metadata.json.
      ShardError: a shard record fails its CRC or does not decode.
    """
    metadata = read_metadata(directory)
    paths = [f"{directory.rstrip('/')}/{s['file']}" for s in metadata["shards"]]
    compression = metadata.get("compression", "none")
    rng = np.random.default_rng(seed)
    if shuffle:
        paths = [paths[i] for i in rng.permutation(len(paths))]
    records = _interleaved(paths, compression)
    if not shuffle:
        for data in records:
            yield batch_of(data, metadata)
        return
    buffer: list = []
    for data in records:
        if len(buffer) < _SHUFFLE_BUFFER:
            buffer.append(data)
            continue
        k = int(rng.integers(len(buffer)))
        buffer[k], data = data, buffer[k]
        yield batch_of(data, metadata)
    for k in rng.permutation(len(buffer)):
        yield batch_of(buffer[k], metadata)
