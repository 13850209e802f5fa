"""`sequence_numeric_column`: per-step numeric values, padded with a default.

Place in the flow: a column object built by the user; `SequenceFeatures` asks
it for its writes (`parts`): the present values of the batch's input (a flat
view of a SparseTensor, RaggedTensor or padded dense Tensor, see inputs.py)
at their positions in the shared `[B, T, D]` output, padded with the default.
A dense input with `sequence_length` writes all its slots, with no gather.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from transforms import _base, inputs, serialization


def _check_shape(shape, key) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)):
        shape = [shape]
    shape = tuple(shape)
    for dimension in shape:
        if not isinstance(dimension, int):
            raise TypeError(
                f"shape dimensions must be integer. shape: {shape}, key: {key}"
            )
        if dimension < 1:
            raise ValueError(
                f"shape dimensions must be greater than 0. shape: {shape}, key: {key}"
            )
    return shape


def _same_float32(a, b) -> bool:
    """True if `a` and `b` are the same float32 bit pattern (0.0 != -0.0)."""
    return np.float32(a).tobytes() == np.float32(b).tobytes()


def sequence_numeric_column(
    key: str,
    shape=(1,),
    default_value: float = 0.0,
    dtype: tf.DType = tf.float32,
    normalizer_fn: Callable | None = None,
) -> SequenceNumericColumn:
    """Returns a column for a sequence of numeric values (TF signature).

    Args:
      key: Feature key in the parsed `features` dict.
      shape: Shape of one step's value; an int `n` means `(n,)`, `()` one value.
      default_value: Fills steps (and step slots) with no value.
      dtype: Float or integer dtype of the parsed values.
      normalizer_fn: Called once with the input SparseTensor, must return one
        (only present values are normalized). Serialized through Keras
        serialization: register it with `keras.saving.register_keras_serializable`
        for `.keras` files; lambdas round-trip only with `safe_mode=False`.

    Raises:
      TypeError: a non-int shape entry, a non-callable `normalizer_fn`, a
        non-numeric `default_value`.
      ValueError: a shape entry < 1, a dtype not convertible to float.
    """
    shape = _check_shape(shape=shape, key=key)
    dtype = tf.as_dtype(dtype)
    if not (dtype.is_integer or dtype.is_floating):
        raise ValueError(
            f"dtype must be convertible to float. dtype: {dtype}, key: {key}"
        )
    if normalizer_fn is not None and not callable(normalizer_fn):
        raise TypeError(f"normalizer_fn must be a callable. Given: {normalizer_fn}")
    if isinstance(default_value, (bool, np.bool_)) or not isinstance(
        default_value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            "Invalid value for argument `default_value`. Expected a number. "
            f"Received: default_value={default_value!r}"
        )
    return SequenceNumericColumn(
        key,
        shape=shape,
        default_value=default_value,
        dtype=dtype,
        normalizer_fn=normalizer_fn,
    )


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class SequenceNumericColumn(_base.SequenceDenseColumn):
    """See `sequence_numeric_column`."""

    key: str
    shape: tuple[int, ...] = (1,)
    default_value: float = 0.0
    dtype: tf.DType = tf.float32
    normalizer_fn: Callable | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        return {self.key: tf.io.VarLenFeature(self.dtype)}

    @property
    def variable_shape(self) -> tf.TensorShape:
        return tf.TensorShape(self.shape)

    @property
    def parents(self) -> list:
        return [self.key]

    def get_config(self) -> dict[str, Any]:
        """TF's config (shape a tuple); `normalizer_fn` as a Keras object (TF
        writes a function's name, which only `custom_objects` can resolve)."""
        config = super().get_config()
        config["normalizer_fn"] = (
            None
            if self.normalizer_fn is None
            else keras.saving.serialize_keras_object(self.normalizer_fn)
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["shape"] = tuple(config["shape"])  # JSON: a list
        fn = config.get("normalizer_fn")
        if isinstance(fn, str):  # TF's form: a registered function's name
            fn = (custom_objects or {}).get(fn) or keras.saving.get_registered_object(
                fn
            )
            if fn is None:
                raise ValueError(
                    "Invalid value for argument `config`. Expected `normalizer_fn` "
                    "to name a function in `custom_objects` or registered with "
                    "keras.saving.register_keras_serializable. Received: "
                    f"normalizer_fn={config['normalizer_fn']!r}"
                )
        elif fn is not None:
            fn = keras.saving.deserialize_keras_object(
                fn, custom_objects=custom_objects
            )
        config["normalizer_fn"] = fn
        return super().from_config(config, custom_objects)

    def flat_values(self, cache, *, dense_steps: bool = False):
        """The present values, normalized: an `inputs.Flat` view, or (dense
        input with `sequence_length`, only if `dense_steps`) `inputs.DenseSteps`.

        A normalizer with a true `elementwise` attribute (`transforms.zscore`,
        `transforms.minmax`) maps the values directly; any other is called with
        a SparseTensor, as TF calls it.
        """
        flat = cache.flat(self.key, numeric=True, dense_steps=dense_steps)
        fn = self.normalizer_fn
        if isinstance(flat, inputs.DenseSteps) and flat.values.shape.rank == 2:
            if self.output_width > 1:
                raise ValueError(
                    f"Invalid input for feature {self.key!r}: a dense input of a "
                    f"column of shape {self.shape} must be [B, T, "
                    f"{self.output_width}]. Received: shape {flat.values.shape}"
                )
        if fn is None:
            return flat
        if getattr(fn, "elementwise", False):
            return flat._replace(values=fn(flat.values))
        if isinstance(flat, inputs.DenseSteps):
            flat = cache.flat(self.key, numeric=True)
        sp = fn(flat.to_sparse())
        return inputs.from_sparse(sp)._replace(length=flat.length)

    def _flat(self, cache):
        """Present values with their row and in-row offset."""
        flat = self.flat_values(cache)
        if not isinstance(cache.input(self.key), (tf.SparseTensor, tf.RaggedTensor)):
            if flat.rank == 2 and self.output_width > 1:
                raise ValueError(
                    f"Invalid input for feature {self.key!r}: a dense input of a "
                    f"column of shape {self.shape} must be [B, T, "
                    f"{self.output_width}]."
                )
        rank, coords, dims = flat.rank, flat.coords, flat.dims
        if rank == 2:
            offsets, row_size = coords[1], dims[1]
        elif rank == 3:
            offsets, row_size = coords[1] * dims[2] + coords[2], dims[1] * dims[2]
        else:  # row-major position inside the row, as densify + reshape does
            dense_shape = tf.stack(dims)
            strides = tf.math.cumprod(dense_shape[1:], exclusive=True, reverse=True)
            offsets = tf.reduce_sum(tf.stack(coords[1:], axis=1) * strides, axis=1)
            row_size = tf.reduce_prod(dense_shape[1:])
        # Traced: the values' positions in [B, R], checked once for order
        # (strictly increasing: rows in order) for the lengths and the step rows.
        positions = increasing = None
        if not tf.executing_eagerly():
            positions = coords[0] * row_size + offsets
            increasing = _base.strictly_increasing(positions)
        length = flat.length
        if length is None:
            length = _base.sequence_length(
                coords[0], coords[1], dims[0], in_order=increasing
            )
            if rank == 2 and self.output_width > 1:
                length = (length + (self.output_width - 1)) // self.output_width
        return _Flat(
            flat, coords[0], offsets, dims[0], row_size, length, positions, increasing
        )

    def _dense_steps(self, steps: inputs.DenseSteps):
        """`[B, T, width]` of a dense input with explicit lengths."""
        values = steps.values
        shape = tf.shape(values, out_type=tf.int64)
        x = tf.reshape(values, tf.stack([shape[0], shape[1], self.output_width]))
        mask = tf.sequence_mask(steps.length, shape[1])[..., tf.newaxis]
        default = tf.convert_to_tensor(self.default_value, dtype=values.dtype)
        dense = tf.where(mask, x, default)
        dense.set_shape([steps.static_batch_size, None, self.output_width])
        return dense

    def sequence_dense(self, cache, state=None):
        steps = self.flat_values(cache, dense_steps=True)
        if isinstance(steps, inputs.DenseSteps):
            return self._dense_steps(steps), steps.length
        flat, rows, offsets, batch_size, row_size, length, *_ = self._flat(cache)
        width = self.output_width
        default = tf.convert_to_tensor(self.default_value, dtype=flat.values.dtype)
        dense = tf.tensor_scatter_nd_update(
            tf.fill(tf.reshape(batch_size * row_size, [1]), default),
            tf.expand_dims(rows * row_size + offsets, 1),
            flat.values,
        )
        # [B * R] -> [B, R] -> [B, R / width, width]; the second reshape raises
        # TF's own "requires a multiple of" error when R is not divisible.
        dense = tf.reshape(dense, tf.stack([batch_size, row_size]))
        dense = tf.reshape(dense, tf.stack([batch_size, -1, width]))
        dense.set_shape([flat.static_batch_size, None, width])
        return dense, length

    def parts(self, cache, state=None):
        steps = self.flat_values(cache, dense_steps=True)
        if isinstance(steps, inputs.DenseSteps):
            return self._dense_parts(steps)
        flat, rows, offsets, batch_size, row_size, length, positions, increasing = (
            self._flat(cache)
        )
        values = flat.values
        width = self.output_width
        tf.convert_to_tensor(self.default_value, dtype=values.dtype)  # TF's TypeError
        if width == 1:  # [B, R] -> [B, -1, 1] always gives T = R
            num_steps = row_size
        else:
            # T exactly as TF's reshape [B, R] -> [B, -1, width] gives it (its
            # error when R is not a multiple of width, its inference for B = 0),
            # on a 1-byte-per-cell probe instead of the values.
            def probe():
                shaped = tf.reshape(
                    tf.zeros(tf.stack([batch_size, row_size]), tf.bool),
                    tf.stack([batch_size, -1, width]),
                )
                return tf.shape(shaped, out_type=tf.int64)[1]

            if tf.executing_eagerly():
                num_steps = probe()
            else:  # the probe (a [B, R] fill) only when R / width is not plain
                num_steps = tf.cond(
                    tf.logical_and(batch_size > 0, row_size % width == 0),
                    lambda: row_size // width,
                    probe,
                )

        def updates(offset: int, depth: int, padding: float) -> _base.Updates:
            # Input order does not matter here: every value has its own position.
            if _same_float32(self.default_value, padding):
                if width == 1:
                    positions = (rows * num_steps + offsets) * depth + offset
                else:
                    if width & (width - 1) == 0:  # power of 2: shift and mask
                        # (the same floor division and modulo, a cheaper op
                        # than int64 FloorDiv, which TF also splits on threads)
                        shift = width.bit_length() - 1
                        steps = tf.bitwise.right_shift(offsets, shift)
                        slots = tf.bitwise.bitwise_and(offsets, width - 1)
                    else:
                        steps = offsets // width
                        slots = offsets - steps * width
                    positions = (rows * num_steps + steps) * depth + (slots + offset)
                return _base.Updates(set_positions=positions, set_values=values)
            # Another padding value than the layer's: write every slot.
            dense = tf.reshape(self.sequence_dense(cache, state)[0], [-1])
            return _all_slots(batch_size * num_steps, width, offset, depth, dense)

        def step_rows() -> _base.StepRows | None:
            # Position in [B, R] = in [B, T, width] (R = T * width). A 3-D
            # input [B, T, K] lays its values out per step only if K = width.
            if flat.rank > 3:
                return None
            return _base.StepRows(
                positions=rows * row_size + offsets if positions is None else positions,
                per_step=width,
                valid=None if flat.rank == 2 else tf.equal(flat.dims[2], width),
                values=lambda: tf.reshape(values, [-1, width]),
                padding=float(np.float32(self.default_value)),
                increasing=increasing,
            )

        return _base.ColumnParts(
            num_steps=num_steps,
            length=length,
            batch_size=batch_size,
            static_batch_size=flat.static_batch_size,
            dtype=values.dtype,
            default_value=float(np.float32(self.default_value)),
            updates=updates,
            dense=lambda: self.sequence_dense(cache, state)[0],
            step_rows=step_rows,
        )

    def _dense_parts(self, steps: inputs.DenseSteps) -> _base.ColumnParts:
        """Dense input with explicit lengths: every slot is written, no gather."""
        dense = self._dense_steps(steps)
        shape = tf.shape(dense, out_type=tf.int64)
        width = self.output_width

        def updates(offset: int, depth: int, padding: float) -> _base.Updates:
            flat = tf.reshape(dense, [-1])
            return _all_slots(shape[0] * shape[1], width, offset, depth, flat)

        return _base.ColumnParts(
            num_steps=shape[1],
            length=steps.length,
            batch_size=shape[0],
            static_batch_size=steps.static_batch_size,
            dtype=dense.dtype,
            default_value=float(np.float32(self.default_value)),
            updates=updates,
            dense=lambda: dense,
        )


class _Flat(NamedTuple):
    """A numeric column's present values with their rows and in-row offsets."""

    flat: inputs.Flat
    rows: tf.Tensor  # int64 [N]
    offsets: tf.Tensor  # int64 [N], row-major position inside the row
    batch_size: tf.Tensor  # int64 scalar B
    row_size: tf.Tensor  # int64 scalar R
    length: tf.Tensor  # int64 [B]
    positions: tf.Tensor | None  # traced: rows * R + offsets, else None
    increasing: tf.Tensor | None  # traced: positions strictly increase


def _all_slots(num_slots, width: int, offset: int, depth: int, values):
    """Writes of `values` ([num_slots * width]) into every slot of the column."""
    slots = tf.range(num_slots, dtype=tf.int64)
    positions = (
        slots[:, None] * depth
        + tf.range(offset, offset + width, dtype=tf.int64)[None, :]
    )
    return _base.Updates(set_positions=tf.reshape(positions, [-1]), set_values=values)
