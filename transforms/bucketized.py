"""`sequence_bucketized_column`: numeric values per step -> bucket ids.

Place in the flow: a categorical column over a `sequence_numeric_column`; it
reads the source's present values (normalized by its `normalizer_fn`, as TF's
`bucketized_column` does), bucketizes them with one `Bucketize` op and hands
the ids to `embedding_column` / `indicator_column` like any categorical column.

Semantics are TF's `bucketized_column`, per step: buckets are
`(-inf, b0), [b0, b1), ..., [b_last, +inf)`; for a source of shape `(k,)` the
i-th value of a step gets id `bucket + i * (len(boundaries) + 1)`, so
`num_buckets = (len(boundaries) + 1) * k`. Steps (or slots) without a value
have no id (TF's non-sequence column would bucketize the default instead).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import tensorflow as tf

from transforms import _base, serialization
from transforms.numeric import SequenceNumericColumn


def sequence_bucketized_column(
    source_column: SequenceNumericColumn, boundaries
) -> SequenceBucketizedColumn:
    """Returns a sequence categorical column bucketizing `source_column`.

    Example:
    ```python
    price = transforms.sequence_numeric_column("price")
    bucket = transforms.sequence_bucketized_column(price, [10.0, 100.0])
    column = transforms.indicator_column(bucket)  # [B, T, 3] one-hot per step
    ```

    Args:
      source_column: A `sequence_numeric_column` of shape `()` or `(k,)`.
      boundaries: A sorted list or tuple of floats, strictly increasing.

    Raises:
      ValueError: `source_column` is not a one-dimensional sequence numeric
        column, or `boundaries` is empty or not sorted (TF's messages).
    """
    if not isinstance(source_column, SequenceNumericColumn):
        raise ValueError(
            "source_column must be a column generated with sequence_numeric_column()"
            f". Given: {source_column}"
        )
    if len(source_column.shape) > 1:
        raise ValueError(
            f"source_column must be one-dimensional column. Given: {source_column}"
        )
    if not boundaries:
        raise ValueError("boundaries must not be empty.")
    if not isinstance(boundaries, (list, tuple)):
        raise ValueError("boundaries must be a sorted list.")
    for i in range(len(boundaries) - 1):
        if boundaries[i] >= boundaries[i + 1]:
            raise ValueError("boundaries must be a sorted list.")
    for b in boundaries:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b):
            raise ValueError(
                "Invalid value for argument `boundaries`. Expected numbers. "
                f"Received: boundaries={boundaries!r}"
            )
    return SequenceBucketizedColumn(source_column, tuple(boundaries))


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class SequenceBucketizedColumn(_base.SequenceCategoricalColumn):
    """See `sequence_bucketized_column`."""

    source_column: SequenceNumericColumn
    boundaries: tuple

    @property
    def name(self) -> str:
        return f"{self.source_column.name}_bucketized"

    @property
    def key(self) -> str:
        return self.source_column.key

    @property
    def dtype(self) -> tf.DType:
        return self.source_column.dtype

    @property
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        return self.source_column.parse_example_spec

    @property
    def values_per_step(self) -> int:
        """k, the source's values per step."""
        return int(math.prod(self.source_column.shape))

    @property
    def num_buckets(self) -> int:
        return (len(self.boundaries) + 1) * self.values_per_step

    def __repr__(self) -> str:
        return (
            f"SequenceBucketizedColumn(source_column={self.source_column!r}, "
            f"boundaries={self.boundaries!r})"
        )

    @property
    def parents(self) -> list:
        return [self.source_column]  # as TF's BucketizedColumn

    def get_config(self) -> dict[str, Any]:
        """In TF's BucketizedColumn style (boundaries a tuple)."""
        return {
            "source_column": serialization.serialize_column(self.source_column),
            "boundaries": tuple(self.boundaries),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(
            source_column=serialization.deserialize_column(
                config["source_column"], custom_objects
            ),
            boundaries=tuple(config["boundaries"]),
        )

    def check_input_dtype(self, dtype):
        if not (dtype.is_integer or dtype.is_floating):
            raise ValueError(
                f"Invalid input, not numeric. key: {self.key} dtype: {dtype}"
            )

    def lookup(self, values, state=None):
        """Bucket of each value (slot 0)."""
        return tf.cast(
            tf.raw_ops.Bucketize(
                input=values, boundaries=[float(b) for b in self.boundaries]
            ),
            tf.int64,
        )

    def sparse_ids(self, cache: _base.InputCache) -> _base.SparseIds:
        flat = self.source_column.flat_values(cache)
        self.check_input_dtype(flat.values.dtype)
        buckets = self.lookup(flat.values)
        k = self.values_per_step
        rows, coords, dims = flat.coords[0], flat.coords, flat.dims
        if flat.rank == 3:
            steps, slots, num_steps = coords[1], coords[2], dims[1]
        else:  # values laid out along the row: step = offset // k
            if flat.rank == 2:
                offsets, row_size = coords[1], dims[1]
            else:
                shape = tf.stack(dims)
                strides = tf.math.cumprod(shape[1:], exclusive=True, reverse=True)
                offsets = tf.reduce_sum(tf.stack(coords[1:], axis=1) * strides, 1)
                row_size = tf.reduce_prod(shape[1:])
            if k == 1:
                steps, slots, num_steps = offsets, None, row_size
            else:
                steps = offsets // k
                slots = offsets - steps * k
                num_steps = (row_size + (k - 1)) // k
        ids = buckets if slots is None else buckets + slots * (len(self.boundaries) + 1)
        length = flat.length
        if length is None:
            length = _base.sequence_length(rows, steps, dims[0])
        return _base.SparseIds(
            rows=rows,
            steps=steps,
            ids=ids,
            batch_size=dims[0],
            num_steps=num_steps,
            length=length,
            static_batch_size=flat.static_batch_size,
        )
