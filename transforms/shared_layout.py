"""The shared-layout fast path of `SequenceFeatures` (traced calls only).

Place in the flow: `SequenceFeatures.call` -> **shared_layout** -> the columns'
step rows; the general path (`ColumnParts`) runs when this one does not apply.

In the usual sequence input every feature is a SparseTensor `[B, T, K]` parsed
from the same sequences: every step of every row holds one id (categorical
features) or `prod(shape)` numbers (numeric features), steps `0 .. length - 1`
in row-major order. Then the general path's per-value work (positions, an
order check and a length per column, the equality asserts across columns)
reduces to: the lengths counted on one categorical feature's rows, one
comparison of every feature's indices with the indices of the full layout
of those lengths (written once per width by RaggedTensorToSparse), and one
comparison of the dense shapes and sizes. `plan` builds that check, a scalar
decided once per batch; when it holds, each column's output rows are its
values in input order (numeric values as they are, embedding rows gathered,
indicator rows one-hot), the same numbers as the general path gives, which
runs when it does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from transforms import _base, inputs
from transforms.dense import EmbeddingColumn, IndicatorColumn
from transforms.numeric import SequenceNumericColumn


class Layout(NamedTuple):
    """The batch's shared step layout (valid when `full` holds).

    `rows()` (call it where the rows are needed, e.g. in a branch) returns
    each column's rows `float32 [S, width]`, S = sum(lengths), in column
    order: row `sum(lengths[:b]) + t` is step `(b, t)`.
    """

    full: tf.Tensor  # scalar bool: every feature has the layout of `lengths`
    lengths: tf.Tensor  # int64 [B], steps per row
    splits: tf.Tensor  # int64 [B + 1], row splits of the S steps
    batch_size: tf.Tensor  # int64 scalar B
    num_steps: tf.Tensor  # int64 scalar T
    rows: Callable[[], list[tf.Tensor]]
    paddings: list[float]  # each column's value at absent steps


def _plain(categorical) -> bool:
    """Ids are the lookup of the input values, at the input's coordinates."""
    return type(categorical).sparse_ids is _base.SequenceCategoricalColumn.sparse_ids


def _entries_per_step(column, features: dict) -> int | None:
    """Values per step of the column's feature in the layout (numeric: its
    width; categorical: 1), or None when the column has no such path."""
    if isinstance(column, SequenceNumericColumn):
        fn = column.normalizer_fn
        if fn is not None and not getattr(fn, "elementwise", False):
            return None  # TF calls it with the SparseTensor: any layout
        key, per_step = column.key, column.output_width
    elif isinstance(column, (EmbeddingColumn, IndicatorColumn)):
        categorical = column.categorical_column
        if not _plain(categorical):
            return None  # weighted, bucketized: ids of their own
        if isinstance(column, EmbeddingColumn) and column.max_norm is not None:
            return None
        key, per_step = categorical.key, 1
    else:
        return None
    value = features.get(key)
    if not isinstance(value, tf.SparseTensor) or value.shape.rank != 3:
        return None
    if isinstance(column, SequenceNumericColumn):
        return per_step if value.dtype.is_floating else None
    try:
        categorical.check_input_dtype(value.dtype)
    except ValueError:
        return None  # the general path raises TF's error
    return per_step


def _key(column) -> str:
    if isinstance(column, SequenceNumericColumn):
        return column.key
    return column.categorical_column.key


def plan(
    columns: list, features: dict, lookups: dict, table: Callable[[Any], Any]
) -> Layout | None:
    """The shared layout of `features` for `columns`, or None when a column or
    an input has no such path (then only the general path runs).

    Args:
      columns: The layer's columns, sorted by name.
      features: The call's features (SparseTensors `[B, T, K]` here).
      lookups: Lookup state per categorical column (`make_lookup`).
      table: Column -> its embedding table (read where the rows are built).
    """
    if tf.executing_eagerly() or not isinstance(features, dict):
        return None
    per_step: dict[str, int] = {}  # feature key -> values per step
    numeric: dict[str, bool] = {}
    for column in columns:
        count = _entries_per_step(column, features)
        if count is None or per_step.setdefault(_key(column), count) != count:
            return None
        numeric[_key(column)] = isinstance(column, SequenceNumericColumn)
    keys = list(per_step)
    ref_key = next((k for k in keys if per_step[k] == 1), None)
    if ref_key is None:
        return None
    ref = features[ref_key]
    batch_size, num_steps, _ = tf.unstack(ref.dense_shape, num=3)
    # Steps per row, counted on the reference's rows (a negative row, which
    # DenseBincount refuses, counts as row 0: the comparison below fails).
    rows = tf.maximum(ref.indices[:, 0], 0)
    lengths = tf.raw_ops.DenseBincount(
        input=rows, size=batch_size, weights=tf.zeros([0], tf.int64)
    )
    splits, step_ids = tf.raw_ops.RaggedRange(
        starts=tf.constant(0, tf.int64),
        limits=lengths,
        deltas=tf.constant(1, tf.int64),
        Tsplits=tf.int64,
    )
    # Each feature's indices must be those of the full layout: one
    # comparison per feature covers the order, the steps, the slots and the
    # count (see `_full_indices`).
    full_indices: dict[int, tf.Tensor] = {}
    conditions = []
    for key in keys:
        width = per_step[key]
        if width not in full_indices:
            full_indices[width] = _full_indices(splits, step_ids, width)
        conditions.append(_all_equal(features[key].indices, full_indices[width]))
    # B and T of every feature those of the reference, a numeric feature's
    # K its column's width, one value per index, and no step at or beyond T.
    observed, expected = [], []
    for key in keys:
        value = features[key]
        b, t, k = tf.unstack(value.dense_shape, num=3)
        observed += [b, t, tf.size(value.values, tf.int64)]
        expected += [batch_size, num_steps, splits[-1] * per_step[key]]
        if numeric[key]:
            observed.append(k)
            expected.append(tf.constant(per_step[key], tf.int64))
    longest = tf.reduce_max(lengths)
    observed.append(tf.minimum(longest, num_steps))
    expected.append(longest)
    conditions.append(_all_equal(tf.stack(observed), tf.stack(expected)))
    # An embedding's rows need valid ids: looked up here, for the check.
    ids = {}
    for column in columns:
        if isinstance(column, EmbeddingColumn):
            categorical = column.categorical_column
            if categorical not in ids:
                ids[categorical] = _lookup(categorical, features, lookups)
                conditions.append(tf.reduce_all(ids[categorical] >= 0))

    def column_rows() -> list[tf.Tensor]:
        # Lookups made here belong to the caller's graph (a branch): not kept.
        branch_ids = dict(ids)

        def ids_of(categorical):
            if categorical not in branch_ids:
                branch_ids[categorical] = _lookup(categorical, features, lookups)
            return branch_ids[categorical]

        out = []
        for column in columns:
            if isinstance(column, SequenceNumericColumn):
                values = inputs.normalize(features[column.key], column.key).values
                if column.normalizer_fn is not None:
                    values = column.normalizer_fn(values)
                out.append(tf.reshape(values, [-1, column.output_width]))
            elif isinstance(column, EmbeddingColumn):
                # TF's segment kernel copies a lone row as is: the same bits.
                ids_ = ids_of(column.categorical_column)
                out.append(tf.gather(table(column), ids_))
            else:  # an invalid id: a row of zeros, as TF drops it
                depth = column.categorical_column.num_buckets
                ids_ = ids_of(column.categorical_column)
                out.append(tf.one_hot(ids_, depth, dtype=tf.float32))
        return out

    paddings = [
        float(np.float32(c.default_value))
        if isinstance(c, SequenceNumericColumn)
        else 0.0
        for c in columns
    ]
    full = tf.reduce_all(tf.stack(conditions))
    return Layout(full, lengths, splits, batch_size, num_steps, column_rows, paddings)


def _all_equal(x, y) -> tf.Tensor:
    """Scalar bool: x and y have the same shape and values (False, not an
    error, when the shapes differ: Equal then gives a scalar False, which the
    reshape lets the reduction over a static rank-1 shape read)."""
    equal = tf.raw_ops.Equal(x=x, y=y, incompatible_shape_error=False)
    return tf.reduce_all(tf.reshape(equal, [-1]))


def _full_indices(splits, step_ids, width: int) -> tf.Tensor:
    """int64 `[S * width, 3]`: the indices of a SparseTensor holding `width`
    values at every step `t < lengths[b]` (`splits`: the row splits of the
    S steps, `step_ids` `[S]`), in row-major order. One RaggedTensorToSparse
    writes them in one pass: ~70 us a call on the small bench row, where
    building them from the reference's indices with broadcasts (Eigen's
    generic broadcast path) took ~230 us."""
    if width == 1:
        values = tf.reshape(step_ids, [-1, 1])
    else:
        values = tf.zeros(tf.stack([splits[-1], width]), tf.bool)
    indices, _, _ = tf.raw_ops.RaggedTensorToSparse(
        rt_nested_splits=[splits], rt_dense_values=values
    )
    return indices


def _lookup(categorical, features: dict, lookups: dict) -> tf.Tensor:
    """The ids of `categorical`'s input values, int64 [N]."""
    values = features[categorical.key].values
    return categorical.lookup(values, lookups.get(categorical))
