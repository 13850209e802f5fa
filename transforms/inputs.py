"""Input views: every accepted feature value -> its present values, flat.

Place in the flow: `SequenceFeatures.call` -> `InputCache` (_base.py) -> **inputs**
-> columns. A feature value may be

  * a SparseTensor `[B, T]` / `[B, T, K]` (tf.io.parse_example /
    parse_sequence_example with `make_parse_example_spec`), rank 1 meaning one
    step per row;
  * a RaggedTensor `[B, (steps)]` / `[B, (steps), (K)]` / `[B, (steps), K]`;
  * a dense Tensor / array `[B, T]` / `[B, T, K]`, padded: its steps are
    `t < sequence_length[b]` when the call gives `sequence_length`, and values
    equal to the padding value are absent (a number for numeric features and
    weights, per key with a dict; categorical features drop TF's -1 / '').

Each becomes a `Flat` view: the present values `[N]` in row-major order with
their coordinates (row, step, slot...) and the bounding dimensions, read
straight from the sparse indices, the ragged row partitions or a mask (no
`to_sparse()` round trip). A dense numeric input with `sequence_length` and no
padding value becomes `DenseSteps` instead: the numeric column writes every
slot of it directly. Error messages for unusable inputs are TF 2.21's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf


class Flat(NamedTuple):
    """The present values of one feature, flat and row-major.

    Attributes:
      values: `[N]` values (floats as float32).
      coords: int64 `[N]` coordinates per axis: row, step, then slots.
      dims: int64 scalars, the bounding shape per axis (`B`, `T`, ...).
      static_batch_size: `B` when known statically.
      length: int64 `[B]` explicit sequence lengths (dense input with
        `sequence_length`), or None: lengths then follow the values.
    """

    values: tf.Tensor
    coords: tuple
    dims: tuple
    static_batch_size: int | None
    length: tf.Tensor | None = None

    @property
    def rank(self) -> int:
        return len(self.dims)

    def to_sparse(self) -> tf.SparseTensor:
        return tf.SparseTensor(
            tf.stack(self.coords, axis=1), self.values, tf.stack(self.dims)
        )


class DenseSteps(NamedTuple):
    """A dense numeric input `[B, T, ...]` with explicit lengths (all slots of
    steps `t < length[b]` present, the others absent)."""

    values: tf.Tensor  # [B, T, ...] (floats as float32)
    length: tf.Tensor  # int64 [B]
    static_batch_size: int | None


def _cast(value):
    if value.dtype.is_floating and value.dtype != tf.float32:
        return tf.cast(value, tf.float32)
    return value


def _check_rank(key: str, value) -> int:
    rank = value.shape.rank
    if rank is None:
        raise ValueError(f"Feature (key: {key}) must have a known rank. Given: {value}")
    if rank == 0:
        raise ValueError(f"Feature (key: {key}) cannot have rank 0. Given: {value}")
    return rank


def from_sparse(sp: tf.SparseTensor) -> Flat:
    rank = sp.shape.rank
    return Flat(
        values=sp.values,
        coords=tuple(tf.unstack(sp.indices, num=rank, axis=1)),
        dims=tuple(tf.unstack(sp.dense_shape, num=rank)),
        static_batch_size=sp.shape[0],
    )


def _row_ids(splits: tf.Tensor, n) -> tf.Tensor:
    """Row of each of the `n` values partitioned by `splits`.

    O(n): each row start adds 1 at its first value and a cumulative sum counts
    them (empty rows add at the same place; starts at `n` fall outside). TF's
    `value_rowids` does one binary search per value (UpperBound), which
    dominated the layer on long flat inputs.
    """
    n = tf.cast(n, splits.dtype)
    starts = tf.math.bincount(
        splits[1:-1], minlength=n, maxlength=n, dtype=splits.dtype, axis=-1
    )
    return tf.cumsum(starts)


def _max_row_length(splits: tf.Tensor) -> tf.Tensor:
    lengths = splits[1:] - splits[:-1]
    return tf.reduce_max(tf.concat([lengths, tf.zeros([1], splits.dtype)], 0))


def from_ragged(rt: tf.RaggedTensor) -> Flat:
    """Flat view of `[B, (steps)]`, `[B, (steps), (K)]` or `[B, (steps), K]`,
    read from the row splits; other ragged shapes go through `to_sparse()`."""
    rt = rt.with_row_splits_dtype(tf.int64)
    rank = rt.shape.rank
    splits = rt.row_splits
    num_rows = tf.shape(splits, out_type=tf.int64)[0] - 1
    if rank == 2:
        n = splits[-1]
        rows = _row_ids(splits, n)
        steps = tf.range(n, dtype=tf.int64) - tf.gather(splits, rows)
        dims = (num_rows, _max_row_length(splits))
        return Flat(rt.values, (rows, steps), dims, rt.shape[0])
    if rank == 3 and rt.ragged_rank in (1, 2):
        step_rows = _row_ids(splits, splits[-1])  # row of each step
        if rt.ragged_rank == 2:
            inner = rt.values.row_splits
            values = rt.values.values
            step_of = _row_ids(inner, inner[-1])  # step of each value
            slots = tf.range(inner[-1], dtype=tf.int64) - tf.gather(inner, step_of)
            width = _max_row_length(inner)
        else:  # uniform inner dimension: values [S, K]
            width = tf.shape(rt.values, out_type=tf.int64)[1]
            values = tf.reshape(rt.values, [-1])
            n = tf.shape(values, out_type=tf.int64)[0]
            step_of = tf.range(n, dtype=tf.int64) // tf.maximum(width, 1)
            slots = tf.range(n, dtype=tf.int64) - step_of * width
        rows = tf.gather(step_rows, step_of)
        steps = step_of - tf.gather(splits, rows)
        dims = (num_rows, _max_row_length(splits), width)
        return Flat(values, (rows, steps, slots), dims, rt.shape[0])
    return from_sparse(rt.to_sparse())


def _checked_lengths(lengths, num_steps) -> tf.Tensor:
    """`lengths` as int64 [B], checked to lie in [0, T]."""
    lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int64)
    message = (
        "Invalid value for argument `sequence_length`. Expected lengths in "
        "[0, T] with T the padded inputs' axis 1."
    )
    ok = tf.reduce_all((lengths >= 0) & (lengths <= num_steps))
    if tf.executing_eagerly():
        if not bool(ok):
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                f"{message} Received: sequence_length={lengths.numpy()}, "
                f"T={int(num_steps)}",
            )
        return lengths
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, lengths])]):
        return tf.identity(lengths)


def from_dense(
    key: str,
    value: tf.Tensor,
    *,
    lengths=None,
    padding: Any = None,
    dense_steps: bool = False,
) -> Flat | DenseSteps:
    """Flat view of a dense `[B, T, ...]` input.

    Args:
      key: Feature key (for messages).
      value: The dense tensor, rank >= 2.
      lengths: `[B]` sequence lengths (steps `t >= length` are absent), or None.
      padding: Values equal to it are absent (None: every value of a step is).
      dense_steps: Return `DenseSteps` when only `lengths` marks absence.
    """
    shape = tf.shape(value, out_type=tf.int64)
    num_steps = shape[1]
    if lengths is not None:
        lengths = _checked_lengths(lengths, num_steps)
        if padding is None and dense_steps:
            return DenseSteps(value, lengths, value.shape[0])
    mask = None
    if padding is not None:
        try:
            pad = tf.cast(tf.convert_to_tensor(padding), value.dtype)
        except (TypeError, ValueError, tf.errors.UnimplementedError):
            raise TypeError(
                f"Invalid value for argument `padding_value` of feature {key!r}. "
                f"Expected a value of dtype {value.dtype.name}. Received: {padding!r}"
            ) from None
        mask = tf.not_equal(value, pad)
    if lengths is not None:
        steps = tf.sequence_mask(lengths, num_steps)
        steps = tf.reshape(
            steps,
            tf.concat([tf.shape(steps), tf.ones([value.shape.rank - 2], tf.int32)], 0),
        )
        steps = tf.broadcast_to(steps, tf.shape(value))
        mask = steps if mask is None else tf.logical_and(mask, steps)
    if mask is None:
        mask = tf.ones_like(value, dtype=tf.bool)
    indices = tf.where(mask)
    rank = value.shape.rank
    return Flat(
        values=tf.gather_nd(value, indices),
        coords=tuple(tf.unstack(indices, num=rank, axis=1)),
        dims=tuple(tf.unstack(shape, num=rank)),
        static_batch_size=value.shape[0],
        length=lengths,
    )


def tf_ignore_value(dtype: tf.DType):
    """TF's ignore value of dense categorical inputs: '' / -1 (0 for floats)."""
    if dtype == tf.string:
        return ""
    return -1 if dtype.is_integer else 0


def normalize(value, key: str):
    """Casts floats to float32, checks the rank, makes rank 1 into `[B, 1]`.

    Returns a SparseTensor, a RaggedTensor or a dense Tensor.
    """
    if isinstance(value, tf.RaggedTensor):
        return _cast(value)
    if not isinstance(value, tf.SparseTensor):
        value = tf.convert_to_tensor(value)
    value = _cast(value)
    rank = _check_rank(key, value)
    if rank == 1:
        if isinstance(value, tf.SparseTensor):
            value = tf.sparse.reshape(value, [tf.shape(value, tf.int64)[0], 1])
        else:
            value = tf.expand_dims(value, -1)
    return value
