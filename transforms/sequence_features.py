"""`SequenceFeatures`: a Keras 3 layer turning parsed sequence features into
`(sequence_input float32 [B, T, D], sequence_length int64 [B])`.

Place in the flow: parsed SparseTensors (tf.io.parse_example /
parse_sequence_example with `make_parse_example_spec`), RaggedTensors, or dense
padded tensors with `sequence_length=` / `padding_value=` go in (inputs.py reads
each as flat values, no sparse round trip); columns are evaluated in name order
and laid out on the last axis (`column_layout`). Embedding tables are one
variable per table name: shared embedding columns of one collection read and
train the same variable. The semantics (T, padding, lengths, errors) are those of
`tf_keras.experimental.SequenceFeatures` in TF 2.21.

Speed: TF densifies every column separately (one-hot tensors, [B*T, dim]
embedding buffers, zero masks) and then concatenates. Here each column looks
up its ids once on the flat values. Traced, with 3-D SparseTensor inputs that
share one step layout (shared_layout.py: checked per batch on the indices,
before any per-column work), the columns' rows are laid out directly; other
traced inputs go through the per-column parts. There, when every column has
one full row at every step before its row's length (checked per batch), the
rows of the present steps `[S, D]` are concatenated and one
`RaggedTensorToTensor` (or, for large outputs, a multi-threaded gather) pads
them to `[B, T, D]`, writing each output value once. Otherwise (and eagerly) each column emits (position, value) writes and
one `SparseToDense` over the padding value builds `[B, T, D]`; with one id per
step (checked per batch) embeddings gather their rows and indicator writes
need no dedupe. When columns disagree on T the per-column outputs are
concatenated instead, so TF's own ConcatOp error is raised; integer numeric
columns (which keep their dtype) also take that path.

Deviations from tf_keras (all documented in tests): RaggedTensor and dense
padded inputs are accepted (same numbers as the equivalent SparseTensors); `combiner` is validated when the
column is built, not at call; numeric/indicator inputs with out-of-order sparse
indices are accepted (TF raises) and give the sorted input's values;
`partitioner` must be None.
"""

from __future__ import annotations

import collections.abc
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import cond_v2  # functional Case (not lowered)

from transforms import _base, serialization, shared_layout
from transforms.dense import EmbeddingColumn, check_sequence_categorical
from transforms.numeric import SequenceNumericColumn
from transforms.specs import make_parse_example_spec

# Output values (float32) above which full step rows are gathered (32 MiB: glibc
# serves larger blocks from fresh pages, faulted in on first touch, every call).
_GATHER_OUTPUT_SIZE = 1 << 23


def _is_tf_feature_column(column) -> bool:
    return isinstance(column, tf.__internal__.feature_column.FeatureColumn)


def _normalize_feature_columns(feature_columns) -> list[_base.FeatureColumn]:
    if isinstance(feature_columns, _base.FeatureColumn) or _is_tf_feature_column(
        feature_columns
    ):
        feature_columns = [feature_columns]
    if isinstance(feature_columns, collections.abc.Iterator):
        feature_columns = list(feature_columns)
    if isinstance(feature_columns, dict):
        raise ValueError("Expected feature_columns to be iterable, found dict.")
    columns = []
    for column in feature_columns:
        if _is_tf_feature_column(column):
            from transforms.interop import from_tf_feature_columns

            column = from_tf_feature_columns([column])[0]
        if not isinstance(column, _base.FeatureColumn):
            raise ValueError(
                "Items of feature_columns must be a FeatureColumn. "
                f"Given (type {type(column)}): {column}."
            )
        columns.append(column)
    if not columns:
        raise ValueError("feature_columns must not be empty.")
    name_to_column = {}
    for column in columns:
        if column.name in name_to_column:
            raise ValueError(
                f"Duplicate feature column name found for columns: {column} and "
                f"{name_to_column[column.name]}. This usually means that these "
                "columns refer to same base feature. Either one must be discarded "
                "or a duplicated but renamed item must be inserted in features dict."
            )
        name_to_column[column.name] = column
    return sorted(columns, key=lambda c: c.name)


class _ByColumn(collections.abc.MutableMapping):
    """`{column: lookup table or None}`, deliberately not a dict: Keras and
    TensorFlow track a dict attribute's values, and a SavedModel cannot name
    entries keyed by columns (`tf.saved_model.save` of a model holding the
    layer failed). The tables are tracked through the layer's
    `_lookup_resources` list instead."""

    def __init__(self):
        self._by_column: dict = {}

    def __getitem__(self, column):
        return self._by_column[column]

    def __setitem__(self, column, lookup) -> None:
        self._by_column[column] = lookup

    def __delitem__(self, column) -> None:
        del self._by_column[column]

    def __iter__(self):
        return iter(self._by_column)

    def __len__(self) -> int:
        return len(self._by_column)


def _check_shared_tables(columns) -> None:
    """Columns naming one embedding table must agree on how it is made."""
    tables: dict[str, EmbeddingColumn] = {}
    for column in columns:
        if not isinstance(column, EmbeddingColumn):
            continue
        first = tables.setdefault(column.table_name, column)
        if first.table_spec() != column.table_spec():
            raise ValueError(
                "Invalid value for argument `feature_columns`. Expected the columns "
                f"sharing the embedding table {column.table_name!r} to agree on its "
                "num_buckets, dimension, initializer, checkpoint and trainable. "
                f"Received: {first} and {column}"
            )


def _verify_static_batch_size_equality(tensors, columns) -> None:
    expected, expected_index = None, None
    for i, tensor in enumerate(tensors):
        batch_size = tensor.shape[0]
        if batch_size is None:
            continue
        if expected is None:
            expected, expected_index = batch_size, i
        elif expected != batch_size:
            raise ValueError(
                "Batch size (first dimension) of each feature must be same. "
                f"Batch size of columns ({columns[expected_index].name}, "
                f"{columns[i].name}): ({expected}, {batch_size})"
            )


def _check_static_batch(parts, columns) -> int | None:
    """TF's static batch check on the per-column outputs; returns the batch size."""
    expected, expected_index = None, None
    for i, part in enumerate(parts):
        if part.static_batch_size is None:
            continue
        if expected is None:
            expected, expected_index = part.static_batch_size, i
        elif expected != part.static_batch_size:
            raise ValueError(
                "Batch size (first dimension) of each feature must be same. "
                f"Batch size of columns ({columns[expected_index].name}, "
                f"{columns[i].name}): ({expected}, {part.static_batch_size})"
            )
    return expected


def _assert_all_equal_and_return(tensors, columns):
    """The first column's lengths, checked equal to every other column's.

    Eagerly: TF's pairwise `assert_equal` (its exact message). In a graph: one
    Assert over all columns (fewer ops per batch; same InvalidArgumentError).
    """
    if len(tensors) == 1:
        return tensors[0]
    if tf.executing_eagerly():
        for t in tensors[1:]:
            tf.compat.v1.assert_equal(tensors[0], t)
        return tensors[0]
    stacked = tf.stack(tensors)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(stacked, tensors[0])),
        [
            "Condition x == y did not hold element-wise: the sequence lengths of "
            f"the feature columns {[c.name for c in columns]} differ."
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensors[0])


def _assert_same_num_steps(parts, columns):
    """Raises TF's ConcatOp InvalidArgumentError when columns disagree on T.

    Eagerly the per-column outputs are concatenated (TF's exact message); in a
    graph one Assert op reports the per-column T (same error type), unguarded:
    `tf.debugging.Assert` wraps int64 data in a cond (~10 more nodes a batch).
    """
    if len(parts) == 1:
        return []
    if tf.executing_eagerly():
        steps = [int(p.num_steps) for p in parts]
        if len(set(steps)) > 1:
            tf.concat([p.dense() for p in parts], -1)  # raises
        return []
    num_steps = tf.stack([p.num_steps for p in parts])
    return [
        tf.raw_ops.Assert(
            condition=tf.reduce_all(tf.equal(num_steps, num_steps[0])),
            data=[
                "ConcatOp : Dimension 1 in both shapes must be equal: the feature "
                f"columns {[c.name for c in columns]} have these T:",
                num_steps,  # Assert formats it (AsString would run every batch)
            ],
            summarize=len(parts),
        )
    ]


def _count(positions, weights):
    """Multi-hot writes -> one write per distinct position: returns the
    positions and their counts (weighted: sums of weights).

    Unweighted writes at strictly increasing positions (one id per step, the
    usual sequence input) are distinct already: their counts are 1.0 and
    Unique + UnsortedSegmentSum are skipped (same values, 0.0 + 1.0 = 1.0).
    """
    flat = tf.concat(positions, 0)

    def merge():
        unique, index = tf.unique(flat)
        if all(w is None for w in weights):
            adds = tf.ones_like(index, tf.float32)
        else:  # weighted: sums of weights
            adds = tf.concat(
                [
                    tf.ones_like(p, tf.float32) if w is None else w
                    for p, w in zip(positions, weights, strict=True)
                ],
                0,
            )
        return unique, tf.math.unsorted_segment_sum(adds, index, tf.size(unique))

    if any(w is not None for w in weights):
        return merge()
    return tf.cond(
        _base.strictly_increasing(flat),
        lambda: (flat, tf.ones_like(flat, tf.float32)),
        merge,
    )


def _concat_values(step_rows) -> tf.Tensor:
    """The columns' `StepRows` values side by side: the step rows `[S, D]`."""
    values = [rows.values() for rows in step_rows]
    return tf.concat(values, 1) if len(values) > 1 else values[0]


def _full_steps(step_rows, sequence_length) -> tf.Tensor:
    """Scalar bool: every column's `StepRows` fill exactly the steps
    `t < sequence_length[b]` (see `_base.StepRows`)."""
    total = tf.reduce_sum(sequence_length)
    conditions, seen, sizes, per_step = [], set(), [], []
    for rows in step_rows:
        if rows.positions.ref() not in seen:  # shared by columns of one feature
            seen.add(rows.positions.ref())
            conditions.append(
                _base.strictly_increasing(rows.positions)
                if rows.increasing is None
                else rows.increasing
            )
            sizes.append(tf.size(rows.positions, out_type=tf.int64))
            per_step.append(rows.per_step)
        if rows.valid is not None:
            conditions.append(rows.valid)
    # One comparison for all sizes (fewer ops per batch than one per column).
    sizes = tf.stack(sizes) if len(sizes) > 1 else sizes[0]
    conditions.append(tf.reduce_all(tf.equal(sizes, total * np.array(per_step))))
    return tf.reduce_all(tf.stack(conditions))


def _padding_row(columns, paddings) -> np.ndarray:
    """The output's row `[D]` at absent steps: each column's padding value."""
    return np.concatenate(
        [
            np.full(column.output_width, padding, np.float32)
            for column, padding in zip(columns, paddings, strict=True)
        ]
    )


def _ragged_rows(values, padding, splits, lengths, shape) -> tf.Tensor:
    """`shape` `[B, T, D]` from the present steps' rows `values` `[S, D]` (row
    b's steps at `splits[b]:splits[b + 1]`) by one RaggedTensorToTensor: it
    copies each row's run of steps and fills the rest with `padding` `[D]`,
    writing every output value once (SparseToDense fills the whole output,
    then writes each value at an int64 position built for it). One thread."""
    del lengths  # the splits carry them
    uniform = len(set(padding.view(np.uint32))) == 1
    return tf.raw_ops.RaggedTensorToTensor(
        shape=shape,
        values=values,
        # One value: the op fills gaps with std::fill, not row copies.
        default_value=padding[0] if uniform else padding,
        row_partition_tensors=[splits],
        row_partition_types=["ROW_SPLITS"],
    )


def _gathered_rows(values, padding, splits, lengths, shape) -> tf.Tensor:
    """As `_ragged_rows`, by a gather of `[B * T]` row indices into the rows
    plus a padding row.

    For large outputs: such an output is a fresh mapping on every call,
    whose first-touch page faults dominate the layer (~75 % of its CPU at
    B=1024, T=1000); TF shards the gather over the intra-op threads, which
    take the faults in parallel (+12 % CPU, -30 % wall time than
    `_ragged_rows` with a second core free).
    """
    table = tf.concat([values, padding[None, :]], 0)
    steps = tf.range(shape[1])[None, :]
    index = tf.where(steps < lengths[:, None], splits[:-1, None] + steps, splits[-1])
    output = tf.gather(table, tf.reshape(index, [-1]))
    return tf.reshape(output, shape)


@keras.saving.register_keras_serializable(package="transforms")
class SequenceFeatures(keras.layers.Layer):
    """A layer for sequence input (Keras 3 port of tf_keras' SequenceFeatures).

    All `feature_columns` must be sequence dense columns (`sequence_numeric_column`,
    `embedding_column` / `indicator_column` over `sequence_categorical_column_*`).
    `tf.feature_column` columns are converted with `from_tf_feature_columns`.

    Example:
    ```python
    rating = transforms.sequence_numeric_column("rating")
    watches = transforms.sequence_categorical_column_with_identity("watches", 1000)
    layer = transforms.SequenceFeatures(
        [rating, transforms.embedding_column(watches, dimension=10)])
    sequence_input, sequence_length = layer(features)  # [B, T, 11], [B]
    mask = tf.sequence_mask(sequence_length)
    ```

    Args:
      feature_columns: A column or an iterable of columns.
      trainable: Whether the embedding tables are trained (each column's own
        `trainable` must hold too).
      name: Layer name (default `sequence_features`).
      **kwargs: Other Keras layer arguments. `partitioner` must be None.
    """

    def __init__(
        self, feature_columns, trainable: bool = True, name: str | None = None, **kwargs
    ):
        partitioner = kwargs.pop("partitioner", None)
        if partitioner is not None:
            raise ValueError(
                "Invalid value for argument `partitioner`. Expected None (variable "
                f"partitioning does not exist in Keras 3). Received: {partitioner!r}"
            )
        super().__init__(trainable=trainable, name=name, **kwargs)
        self._feature_columns = _normalize_feature_columns(feature_columns)
        for column in self._feature_columns:
            if not isinstance(column, _base.SequenceDenseColumn):
                raise ValueError(
                    f"Items of feature_columns must be a {_base.SequenceDenseColumn}. "
                    "You can wrap a categorical column with an embedding_column or "
                    f"indicator_column. Given: {column}"
                )
        _check_shared_tables(self._feature_columns)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._lookups = _ByColumn()
        self._lookup_resources: list = []  # what a SavedModel tracks of them
        self._tables: list = []
        self._table_index: dict[str, int] = {}

    @property
    def feature_columns(self) -> list[_base.SequenceDenseColumn]:
        """The columns, sorted by name (the output order)."""
        return list(self._feature_columns)

    def build(self, input_shape=None):
        """Creates lookup tables and one `[num_buckets, dim]` table per embedding."""
        if self.built:
            return
        for column in self._feature_columns:
            categorical = getattr(column, "categorical_column", None)
            for lookup_column in (
                [] if categorical is None else categorical.lookup_columns()
            ):
                if lookup_column not in self._lookups:
                    with tf.init_scope():
                        lookup = lookup_column.make_lookup()
                    self._lookups[lookup_column] = lookup
                    if lookup is not None:
                        self._lookup_resources.append(lookup)
            if (
                isinstance(column, EmbeddingColumn)
                and column.table_name not in self._table_index
            ):
                shape = (column.num_buckets, column.dimension)
                with (
                    tf.init_scope(),
                    keras.name_scope(_base.sanitize_name(column.table_name)),
                ):
                    table = keras.Variable(
                        column.make_initializer(),
                        shape=shape,
                        dtype="float32",
                        trainable=column.trainable,
                        name="embedding_weights",
                    )
                self._table_index[column.table_name] = len(self._tables)
                self._tables.append(table)
        self.built = True

    def call(self, features, training=None, sequence_length=None, padding_value=None):
        """Returns `(sequence_input [B, T, D], sequence_length int64 [B])`.

        Args:
          features: Feature key -> SparseTensor, RaggedTensor, or dense padded
            Tensor `[B, T]` / `[B, T, K]` (see `sequence_length`, `padding_value`).
          training: Unused.
          sequence_length: int `[B]`: steps `t >= sequence_length[b]` of the dense
            inputs are absent (sparse and ragged inputs carry their own steps).
          padding_value: Values of dense inputs equal to it are absent: a number
            (numeric features and weights) or a dict feature key -> value (any
            feature; categorical ones otherwise drop TF's -1 / '').
        """
        self._check_sequence_columns()
        if not isinstance(features, dict):
            raise ValueError(
                "We expected a dictionary here. Instead we got: ", features
            )
        if isinstance(padding_value, dict):
            keys = set(make_parse_example_spec(self._feature_columns))
            unknown = sorted(set(padding_value) - keys)
            if unknown:
                raise ValueError(
                    "Invalid value for argument `padding_value`. Expected keys among "
                    f"{sorted(keys)}. Received: {unknown}"
                )
        layout = shared_layout.plan(
            self._feature_columns, features, self._lookups, self._state
        )
        if layout is None:
            return self._call_columns(features, sequence_length, padding_value)
        output, sequence_length = self._shared_layout_call(
            layout, lambda: self._call_columns(features, sequence_length, padding_value)
        )
        static_batch = None
        for key in make_parse_example_spec(self._feature_columns):
            static_batch = static_batch or features[key].shape[0]
        output.set_shape([static_batch, None, self.output_width])
        sequence_length.set_shape([static_batch])
        return output, sequence_length

    def _shared_layout_call(self, layout, general):
        """Traced, inputs with a shared step layout (shared_layout.py): one
        cond per batch. The usual batch (the layout holds, an output of at
        most `_GATHER_OUTPUT_SIZE` values) has the columns' rows laid out by
        `_ragged_rows` inline in the caller's graph; every other batch takes
        one function call op (not inlined by grappler: its nodes would go dead
        every batch), which lays out a large output by `_gathered_rows` or
        runs `general` (the per-column path) when the layout does not hold.
        Shares no ops with `general`: the general path's lengths, asserts and
        positions only run in its call.
        """
        depth = self.output_width
        large = layout.batch_size * layout.num_steps > _GATHER_OUTPUT_SIZE // depth
        shape = tf.stack([layout.batch_size, layout.num_steps, depth])
        padding = _padding_row(self._feature_columns, layout.paddings)

        def fast(rows_to_output):
            values = layout.rows()
            values = tf.concat(values, 1) if len(values) > 1 else values[0]
            output = rows_to_output(
                values, padding, layout.splits, layout.lengths, shape
            )
            return output, layout.lengths

        def other():  # the rare batches, in one call op
            return tf.cond(layout.full, lambda: fast(_gathered_rows), general)

        other_call = tf.function(
            other, autograph=False, experimental_attributes={"_noinline": True}
        )
        return tf.cond(
            tf.logical_and(layout.full, tf.logical_not(large)),
            lambda: fast(_ragged_rows),
            other_call,
        )

    def _call_columns(self, features, sequence_length, padding_value):
        """The general path: each column's `ColumnParts`, checked to agree on
        the lengths and T, laid out by `_output`."""
        cache = _base.InputCache(
            features,
            self._lookups,
            sequence_length=sequence_length,
            padding_value=padding_value,
        )
        parts = [
            column.parts(cache, self._state(column)) for column in self._feature_columns
        ]
        lengths = [p.length for p in parts]
        _verify_static_batch_size_equality(lengths, self._feature_columns)
        sequence_length = _assert_all_equal_and_return(lengths, self._feature_columns)
        if any(p.dtype != tf.float32 for p in parts):
            # Integer numeric columns keep their dtype (TF's concat then fails
            # when they are mixed with float columns): per-column path.
            outputs = [p.dense() for p in parts]
            _verify_static_batch_size_equality(outputs, self._feature_columns)
            return tf.concat(outputs, -1), sequence_length
        static_batch = _check_static_batch(parts, self._feature_columns)
        checks = _assert_same_num_steps(parts, self._feature_columns)
        with tf.control_dependencies(checks):
            output = self._output(parts, sequence_length)
        output.set_shape([static_batch, None, self.output_width])
        return output, sequence_length

    def _output(self, parts, sequence_length):
        """`[B, T, D]`. Traced, one of three ways per batch (one `Case` op):
        when every column has one row at every step before its row's length
        (the usual sequence input; `_full_steps`), from those step rows, laid
        out by `_ragged_rows` or, for outputs of more than `_GATHER_OUTPUT_SIZE`
        values, `_gathered_rows`; otherwise by `_scatter`. Eagerly always
        `_scatter` (TF's eager error messages).
        """
        if tf.executing_eagerly():
            return self._scatter(parts)
        step_rows = [p.step_rows() for p in parts]
        if any(r is None for r in step_rows):
            return self._scatter(parts)
        batch_size, num_steps = parts[0].batch_size, parts[0].num_steps
        large = batch_size * num_steps * self.output_width > _GATHER_OUTPUT_SIZE
        branch = tf.where(
            _full_steps(step_rows, sequence_length), 1 + tf.cast(large, tf.int32), 0
        )
        padding = _padding_row(self._feature_columns, [r.padding for r in step_rows])

        def lay_out(rows_to_output):  # in the branch: the rows only there
            splits = tf.concat([tf.zeros([1], tf.int64), tf.cumsum(sequence_length)], 0)
            shape = tf.stack([batch_size, num_steps, self.output_width])
            values = _concat_values(step_rows)
            return rows_to_output(values, padding, splits, sequence_length, shape)

        # A functional Case (the branch taken runs as its own function call):
        # lowered into the caller's graph (tf.switch_case), ~190 nodes of the
        # branches not taken would go dead every batch.
        return cond_v2.indexed_case(
            branch,
            [
                lambda: self._scatter(parts),
                lambda: lay_out(_ragged_rows),
                lambda: lay_out(_gathered_rows),
            ],
            name="switch_case",
            lower_using_switch_merge=False,
        )

    def _check_sequence_columns(self) -> None:
        """TF's call-time error for a column over a non-sequence categorical."""
        for column in self._feature_columns:
            check_sequence_categorical(column)

    def _state(self, column):
        if isinstance(column, EmbeddingColumn):
            return self._tables[self._table_index[column.table_name]].value
        return None

    @tf.autograph.experimental.do_not_convert  # static Python only (as `call`)
    def step_rows(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """The output's present steps without the padding: `(rows float32
        [S, D], sequence_length int64 [B])`, S = sum(sequence_length). Row
        `sum(sequence_length[:b]) + t` holds `call(features)[0][b, t]`, bit for
        bit, for every t < sequence_length[b].

        For consumers that keep steps unpadded (the seqshards job writes each
        step once, whatever the batch's longest sequence): no `[B, T, D]`
        buffer. Traced, with RaggedTensor inputs `[B, (T), (K)]` whose every
        step holds one id (categorical columns) or prod(shape) numbers
        (numeric columns) in every feature, as parsed and validated sequences
        do, the columns' step rows are concatenated; that condition is checked
        per call on the row partitions (no per-value positions). Other inputs,
        a batch failing the check, and eager calls go through `call` and drop
        the padding (its errors, e.g. columns disagreeing on lengths).
        """
        self.build()
        self._check_sequence_columns()
        fast = self._ragged_step_rows(features)
        if fast is None:
            return self._unpadded_call(features)
        full, rows, sequence_length = fast
        return tf.cond(
            full,
            lambda: (rows(), sequence_length),
            lambda: self._unpadded_call(features),
        )

    def _unpadded_call(self, features):
        x, sequence_length = self.call(features)
        mask = tf.sequence_mask(sequence_length, tf.shape(x, out_type=tf.int64)[1])
        return tf.boolean_mask(x, mask), sequence_length

    def _ragged_step_rows(self, features):
        """`(full, rows, sequence_length)` for `step_rows`' fast path, or None
        when the inputs or columns have no such path: `full` the scalar check,
        `rows()` the concatenated step rows `[S, D]`."""
        if tf.executing_eagerly() or not isinstance(features, dict):
            return None
        column_keys = []  # the one feature key each column reads
        for column in self._feature_columns:
            spec = column.parse_example_spec
            if len(spec) != 1:
                return None
            (key,) = spec
            value = features.get(key)
            if not (
                isinstance(value, tf.RaggedTensor)
                and value.shape.rank == 3
                and value.ragged_rank == 2
            ):
                return None
            column_keys.append(key)
        cache = _base.InputCache(features, self._lookups)
        parts = [
            column.parts(cache, self._state(column)) for column in self._feature_columns
        ]
        if any(p.dtype != tf.float32 for p in parts):
            return None
        step_rows = [p.step_rows() for p in parts]
        if any(r is None for r in step_rows):
            return None
        keys: dict[str, set] = {}  # feature key -> entries per step of its columns
        for key, column_rows in zip(column_keys, step_rows, strict=True):
            keys.setdefault(key, set()).add(column_rows.per_step)
        if any(len(per_step) != 1 for per_step in keys.values()):
            return None
        conditions = [r.valid for r in step_rows if r.valid is not None]
        first = None
        for key, (per_step,) in sorted(keys.items()):
            value = features[key].with_row_splits_dtype(tf.int64)
            counts = value.values.row_lengths()
            conditions.append(tf.reduce_all(tf.equal(counts, per_step)))
            splits = value.row_splits
            if first is None:
                first = splits
                continue
            n = tf.minimum(tf.size(first), tf.size(splits))
            conditions.append(tf.equal(tf.size(first), tf.size(splits)))
            conditions.append(tf.reduce_all(tf.equal(first[:n], splits[:n])))
        full = tf.reduce_all(tf.stack(conditions))
        return full, lambda: _concat_values(step_rows), first[1:] - first[:-1]

    def _scatter(self, parts):
        """Builds `[B, T, D]` in one pass: a single SparseToDense of every
        column's writes over the padding value (no per-column buffers, no concat).
        """
        depth = self.output_width
        batch_size, num_steps = parts[0].batch_size, parts[0].num_steps
        # Padding: the default shared by most output features (0.0 whenever
        # there is an embedding or indicator); other columns write all slots.
        # Only numeric columns can write all their slots; the others (default
        # 0.0) write present steps only, so any of them forces a 0.0 padding.
        widths: dict[bytes, int] = {}
        for column, part in zip(self._feature_columns, parts, strict=True):
            key = np.float32(part.default_value).tobytes()
            widths[key] = widths.get(key, 0) + column.output_width
        if all(isinstance(c, SequenceNumericColumn) for c in self._feature_columns):
            padding = float(np.frombuffer(max(widths, key=widths.get), np.float32)[0])
        else:
            padding = 0.0
        positions, values, counted, counted_values = [], [], [], []
        offset = 0
        for column, part in zip(self._feature_columns, parts, strict=True):
            updates = part.updates(offset, depth, padding)
            offset += column.output_width
            if updates.set_positions is not None:
                positions.append(updates.set_positions)
                values.append(updates.set_values)
            if updates.add_positions is not None:
                counted.append(updates.add_positions)
                counted_values.append(updates.add_values)
        if counted:
            counted_positions, counts = _count(counted, counted_values)
            positions.append(counted_positions)
            values.append(counts)
        output = tf.raw_ops.SparseToDense(
            sparse_indices=tf.expand_dims(tf.concat(positions, 0), 1),
            output_shape=tf.reshape(batch_size * num_steps * depth, [1]),
            sparse_values=tf.concat(values, 0),
            default_value=tf.constant(padding, tf.float32),
            validate_indices=False,
        )
        return tf.reshape(output, tf.stack([batch_size, num_steps, depth]))

    def _output_dtype(self) -> str:
        """float32, or the dtype of integer numeric columns if they are alone."""
        dtypes = {
            c.dtype
            if isinstance(c, SequenceNumericColumn) and c.dtype.is_integer
            else tf.float32
            for c in self._feature_columns
        }
        return dtypes.pop().name if len(dtypes) == 1 else "float32"

    @property
    def output_width(self) -> int:
        """D, the sum of the columns' output widths."""
        return sum(c.output_width for c in self._feature_columns)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_width)

    def compute_output_spec(
        self, features, training=None, sequence_length=None, padding_value=None
    ):
        self._check_sequence_columns()  # TF's layer raises on symbolic calls too
        batch_size = None
        for column in self._feature_columns:
            for key in column.parse_example_spec:
                value = features.get(key) if isinstance(features, dict) else None
                if value is not None and getattr(value, "shape", None) is not None:
                    batch_size = batch_size or value.shape[0]
        return (
            keras.KerasTensor(
                (batch_size, None, self.output_width), dtype=self._output_dtype()
            ),
            keras.KerasTensor((batch_size,), dtype="int64"),
        )

    def get_embedding_weights(self) -> dict[str, np.ndarray]:
        """Returns `{table name: [num_buckets, dim] table}`: the embedding column's
        name, or for shared embedding columns their collection name (one table)."""
        self.build()
        return {
            name: keras.ops.convert_to_numpy(self._tables[i])
            for name, i in self._table_index.items()
        }

    def set_embedding_weights(self, weights: dict[str, Any]) -> None:
        """Assigns tables by embedding column name (builds the layer first)."""
        self.build()
        for name, value in weights.items():
            if name not in self._table_index:
                raise ValueError(
                    "Invalid value for argument `weights`. Expected keys among "
                    f"{sorted(self._table_index)}. Received: {name!r}"
                )
            table = self._tables[self._table_index[name]]
            value = np.asarray(value, dtype=np.float32)
            if value.shape != tuple(table.shape):
                raise ValueError(
                    f"Invalid value for argument `weights[{name!r}]`. Expected shape "
                    f"{tuple(table.shape)}. Received: shape={value.shape}"
                )
            table.assign(value)

    def get_config(self) -> dict[str, Any]:
        """tf_keras' config: name, trainable, dtype (the policy's name, e.g.
        'float32'), partitioner (None) and TF's configs of the columns."""
        config = super().get_config()
        config["dtype"] = self.dtype_policy.name
        config["feature_columns"] = [
            serialization.serialize_column(c) for c in self._feature_columns
        ]
        config["partitioner"] = None
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["feature_columns"] = [
            serialization.deserialize_column(c, custom_objects)
            for c in config["feature_columns"]
        ]
        return cls(**config)
