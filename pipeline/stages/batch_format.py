"""The batch record: one output batch as a serialized `tf.train.Example`.

Place in the flow: features -> **batch_format** -> output (shard files).

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

The bytes are those of `SerializeToString(deterministic=True)`, put together
directly as pieces (`Pieces`: buffers written one after the other), so the
[B, T, D] tensor is never copied into a proto.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from pipeline.stages import wire


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
    append = blocks.append
    # A loop over Python ints: a batch's runs are short (a few examples
    # each), where numpy's per-call cost (cumsum, flatnonzero) dominates.
    for rows, lengths in runs:
        lengths = lengths.tolist()
        blocks.nbytes += row * t * len(lengths)
        start = end = 0
        for n in lengths:
            end += n
            if n < t:
                if end > start:
                    append(rows[start:end])
                append(zeros[: row * (t - n)])
                start = end
        if len(rows) > start:
            append(rows[start:])
    return blocks


def _zeros(nbytes: int) -> np.ndarray:
    """`nbytes` zero bytes (one buffer, grown as needed, shared)."""
    global _ZEROS
    if len(_ZEROS) < nbytes:
        _ZEROS = np.zeros(max(nbytes, 2 * len(_ZEROS)), np.uint8)
    return _ZEROS[:nbytes]


_ZEROS = np.zeros(0, np.uint8)


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
