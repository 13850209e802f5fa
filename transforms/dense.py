"""`embedding_column` and `indicator_column`: ids -> per-step vectors.

Place in the flow: both read the flat ids of their categorical column (looked
up once per call by `InputCache`, shared by an embedding and an indicator of the
same column). In the layer's fused path (`parts`) they only emit writes into
the shared `[B * T * D]` output:
  embedding  unique ids -> gather rows (clip to max_norm) -> one
             `tf.sparse.segment_{sum,mean,sqrt_n}` over the occupied steps
             (the kernel TF's safe_embedding_lookup_sparse ends in, same
             operands in the same order: bit-identical) -> `[U, dim]` writes;
             traced with one id per occupied step, a plain gather of the rows
             (the segment kernel copies a lone row as is: same bits);
  indicator  one position per valid id (the layer counts repeats).
Over a weighted column (weighted.py) the embedding multiplies each row by its
weight and combines as TF's `embedding_lookup_sparse` with `sp_weights` (sum,
mean = sum(w e) / sum(w), sqrtn = sum(w e) / sqrt(sum(w^2)); for mean/sqrtn
ids with weight <= 0 are pruned like TF's safe lookup), and the indicator adds
the weights.
`sequence_dense` is the stand-alone per-column form (fallback, error paths).

Embedding tables are created by the layer (`make_initializer`): by default a
truncated normal (mean 0, stddev 1/sqrt(dim)) seeded from a SHA-256 of the
column name, so every process builds the same table; or a NumPy array
(`ArrayInitializer`), a callable, or a TF checkpoint tensor.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from transforms import _base, serialization

_COMBINERS = ("mean", "sqrtn", "sum")


@keras.saving.register_keras_serializable(package="transforms")
class ArrayInitializer(keras.initializers.Initializer):
    """Initializer returning a fixed NumPy table (hashable, serializable)."""

    def __init__(self, value):
        value = np.asarray(value, dtype=np.float32)
        self._value = value
        self._value.setflags(write=False)
        self._digest = hashlib.sha256(
            value.tobytes() + str(value.shape).encode()
        ).digest()

    @property
    def value(self) -> np.ndarray:
        return self._value

    def __call__(self, shape, dtype=None, **kwargs):
        if tuple(shape) != self._value.shape:
            raise ValueError(
                "Invalid value for argument `initializer`. Expected an array of "
                f"shape {tuple(shape)}. Received: shape={self._value.shape}"
            )
        return tf.constant(self._value, dtype=dtype or tf.float32)

    def __eq__(self, other):
        return isinstance(other, ArrayInitializer) and self._digest == other._digest

    def __hash__(self):
        return hash(self._digest)

    def __repr__(self):
        return f"ArrayInitializer(shape={self._value.shape})"

    def get_config(self):
        return {
            "shape": list(self._value.shape),
            "data": base64.b64encode(self._value.astype("<f4").tobytes()).decode(),
        }

    @classmethod
    def from_config(cls, config):
        data = np.frombuffer(base64.b64decode(config["data"]), dtype="<f4")
        return cls(data.reshape(config["shape"]))


class _CheckpointInitializer:
    """Loads `tensor_name` from the TF checkpoint `ckpt` (tf.train.load_variable)."""

    def __init__(self, ckpt: str, tensor_name: str):
        self._ckpt, self._tensor_name = ckpt, tensor_name

    def __call__(self, shape, dtype=None, **kwargs):
        value = tf.train.load_variable(self._ckpt, self._tensor_name)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                "Invalid value for argument `tensor_name_in_ckpt`. Expected a tensor "
                f"of shape {tuple(shape)}. Received: {self._tensor_name!r} of shape "
                f"{tuple(value.shape)} in {self._ckpt}"
            )
        return tf.constant(value, dtype=dtype or tf.float32)


def default_seed(name: str) -> int:
    """Stable 31-bit seed from a column name (same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") >> 1


def embedding_column(
    categorical_column: _base.SequenceCategoricalColumn,
    dimension: int,
    combiner: str = "mean",
    initializer: Callable | np.ndarray | None = None,
    ckpt_to_load_from: str | None = None,
    tensor_name_in_ckpt: str | None = None,
    max_norm: float | None = None,
    trainable: bool = True,
    use_safe_embedding_lookup: bool = True,
) -> EmbeddingColumn:
    """Returns a column embedding each step's ids (TF signature).

    Args:
      categorical_column: A `sequence_categorical_column_with_*` column.
      dimension: Embedding width.
      combiner: How a step's ids combine: "mean", "sqrtn" or "sum".
      initializer: A callable `(shape, dtype)`, or a NumPy array
        `[num_buckets, dimension]`. Default: truncated normal, mean 0, stddev
        `1/sqrt(dimension)`, seeded from the column name (deterministic).
      ckpt_to_load_from: TF checkpoint to warm-start the table from...
      tensor_name_in_ckpt: ...and the name of the tensor in it.
      max_norm: If set, each looked-up row is clipped to this L2 norm.
      trainable: Whether the table is trained.
      use_safe_embedding_lookup: Accepted for compatibility (no effect).

    Raises:
      ValueError: Bad dimension, half-specified checkpoint, non-callable
        initializer, unknown combiner, a non-categorical `categorical_column`.
    """
    if dimension is None or dimension < 1:
        raise ValueError(f"Invalid dimension {dimension}.")
    if isinstance(dimension, float) or not isinstance(dimension, (int, np.integer)):
        raise TypeError(
            "Invalid value for argument `dimension`. Expected an int. "
            f"Received: dimension={dimension!r}"
        )
    if (ckpt_to_load_from is None) != (tensor_name_in_ckpt is None):
        raise ValueError(
            "Must specify both `ckpt_to_load_from` and `tensor_name_in_ckpt` "
            "or none of them."
        )
    if isinstance(initializer, (np.ndarray, list)):
        initializer = ArrayInitializer(initializer)
    if initializer is not None and not callable(initializer):
        raise ValueError(
            "initializer must be callable if specified. "
            f"Embedding of column_name: {categorical_column.name}"
        )
    if combiner not in _COMBINERS:
        raise ValueError(
            f"combiner must be one of 'mean', 'sqrtn' or 'sum', got {combiner}"
        )
    categorical_column = _check_categorical(categorical_column)
    return EmbeddingColumn(
        categorical_column=categorical_column,
        dimension=int(dimension),
        combiner=combiner,
        initializer=initializer,
        ckpt_to_load_from=ckpt_to_load_from,
        tensor_name_in_ckpt=tensor_name_in_ckpt,
        max_norm=max_norm,
        trainable=trainable,
        use_safe_embedding_lookup=use_safe_embedding_lookup,
    )


def indicator_column(
    categorical_column: _base.SequenceCategoricalColumn,
) -> IndicatorColumn:
    """Returns a multi-hot `[num_buckets]` column per step (TF signature)."""
    return IndicatorColumn(_check_categorical(categorical_column))


def _check_categorical(column):
    """Returns `column` as ours: a TF categorical column is converted
    (`from_tf_feature_columns`; a non-sequence one then fails when the layer
    is called, as TF's does). Anything else: TF's indicator_column ValueError
    (TF's embedding_column accepts anything and fails at call time; ours
    raises this at construction)."""
    if isinstance(column, tf.__internal__.feature_column.FeatureColumn):
        from transforms import interop  # interop imports this module

        column = interop.convert_categorical(column)
    if not isinstance(
        column,
        (_base.SequenceCategoricalColumn, serialization.NonSequenceCategoricalColumn),
    ):
        raise ValueError(
            "Unsupported input type. Input must be a CategoricalColumn. "
            f"Given: {column}"
        )
    return column


def check_sequence_categorical(column) -> None:
    """TF's call-time ValueError for an embedding / indicator column over a
    non-sequence categorical column (raised by `SequenceFeatures`)."""
    inner = getattr(column, "categorical_column", None)
    if isinstance(inner, serialization.NonSequenceCategoricalColumn):
        kind = (
            "embedding_column"
            if isinstance(column, EmbeddingColumn)
            else "indicator_column"
        )
        raise ValueError(
            f"In {kind}: {column.name}. categorical_column must be of type "
            "SequenceCategoricalColumn to use SequenceFeatures. Suggested fix: "
            "Use one of sequence_categorical_column_with_*. "
            f"Given (type {type(inner)}): {inner}"
        )


def _initializer_key(initializer):
    """Identity of an initializer for ==/hash: Keras ones compare by config."""
    if isinstance(initializer, keras.initializers.Initializer) and not isinstance(
        initializer, ArrayInitializer
    ):
        try:
            config = json.dumps(initializer.get_config(), sort_keys=True, default=repr)
        except (NotImplementedError, TypeError):
            return initializer
        return (type(initializer), config)
    return initializer


@serialization.register_column
@dataclasses.dataclass(frozen=True, eq=False)
class EmbeddingColumn(_base.SequenceDenseColumn):
    """See `embedding_column`.

    Equality and hash compare Keras initializers by class and config, so a
    column equals its `from_config` round trip.
    """

    categorical_column: _base.SequenceCategoricalColumn
    dimension: int
    combiner: str = "mean"
    initializer: Callable | None = None
    ckpt_to_load_from: str | None = None
    tensor_name_in_ckpt: str | None = None
    max_norm: float | None = None
    trainable: bool = True
    use_safe_embedding_lookup: bool = True

    def _key(self):
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        values[3] = _initializer_key(self.initializer)
        return tuple(values)

    def __eq__(self, other):
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_embedding"

    @property
    def parse_example_spec(self):
        return self.categorical_column.parse_example_spec

    @property
    def variable_shape(self) -> tf.TensorShape:
        return tf.TensorShape([self.dimension])

    @property
    def num_buckets(self) -> int:
        return self.categorical_column.num_buckets

    @property
    def table_name(self) -> str:
        """Name of the embedding table (the column's; shared columns share one)."""
        return self.name

    def table_spec(self) -> tuple:
        """What makes the table: columns sharing one must agree on it."""
        return (
            self.num_buckets,
            self.dimension,
            _initializer_key(self.initializer),
            self.ckpt_to_load_from,
            self.tensor_name_in_ckpt,
            self.trainable,
        )

    @property
    def parents(self) -> list:
        return [self.categorical_column]

    def get_config(self) -> dict[str, Any]:
        """TF's config; the default initializer (None) as TF's default."""
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        config["categorical_column"] = serialization.serialize_column(
            self.categorical_column
        )
        config["initializer"] = serialization.serialize_initializer(
            self.initializer, self.dimension
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.setdefault("use_safe_embedding_lookup", True)  # as TF
        config["categorical_column"] = serialization.deserialize_categorical(
            config["categorical_column"], custom_objects
        )
        config["initializer"] = serialization.deserialize_initializer(
            config.get("initializer"), config["dimension"], custom_objects
        )
        return cls(**config)

    def table_initializer(self) -> Callable:
        """The initializer used for the `[num_buckets, dimension]` table."""
        if self.initializer is not None:
            return self.initializer
        return keras.initializers.TruncatedNormal(
            mean=0.0,
            stddev=1.0 / math.sqrt(self.dimension),
            seed=default_seed(self.table_name),
        )

    def make_initializer(self) -> Callable:
        """`(shape, dtype) -> table`: the checkpoint tensor if given, else the
        initializer (see `table_initializer`)."""
        if self.ckpt_to_load_from is None:
            return self.table_initializer()
        return _CheckpointInitializer(self.ckpt_to_load_from, self.tensor_name_in_ckpt)

    def _segment_op(self):
        return {
            "sum": tf.sparse.segment_sum,
            "mean": tf.sparse.segment_mean,
            "sqrtn": tf.sparse.segment_sqrt_n,
        }[self.combiner]

    def _valid(self, ids, segments):
        """Steps (`segments`: `row * T + step` per entry), ids and weights (None
        if unweighted) of the entries with id >= 0 (and, unless combiner is
        "sum", weight > 0: TF's safe lookup prunes the rest)."""
        keep = ids.ids >= 0
        if ids.weights is not None and self.combiner != "sum":
            keep = tf.logical_and(keep, ids.weights > 0)
        keep = tf.where(keep)[:, 0]
        segments = tf.gather(segments, keep)
        weights = None if ids.weights is None else tf.gather(ids.weights, keep)
        return segments, tf.gather(ids.ids, keep), weights

    def _combine(self, rows, positions, segment_ids, weights, num_segments=None):
        """Combines the rows of each segment (sorted ids unless `num_segments`).

        Unweighted: TF's `tf.sparse.segment_*` kernel. Weighted: TF's
        `embedding_lookup_sparse` arithmetic (gather, multiply, segment_sum,
        div_no_nan by the weights' sum or sqrt of squares' sum).
        """
        if weights is None:
            return self._segment_op()(
                rows, positions, segment_ids, num_segments=num_segments
            )

        def segment_sum(data):
            if num_segments is None:
                return tf.math.segment_sum(data, segment_ids)
            return tf.math.unsorted_segment_sum(data, segment_ids, num_segments)

        weights = weights[:, tf.newaxis]
        out = segment_sum(tf.gather(rows, positions) * weights)
        if self.combiner == "mean":
            out = tf.math.divide_no_nan(out, segment_sum(weights))
        elif self.combiner == "sqrtn":
            out = tf.math.divide_no_nan(out, tf.sqrt(segment_sum(tf.pow(weights, 2))))
        return out

    def _rows(self, table, flat_ids):
        """As TF's embedding_lookup_sparse: gather the unique rows (ResourceGather
        raises TF's out-of-range error), clip them; returns rows, positions."""
        unique_ids, positions = tf.unique(flat_ids)
        rows = tf.gather(table, unique_ids)
        if self.max_norm is not None:
            rows = tf.clip_by_norm(rows, self.max_norm, axes=[1])
        return rows, positions

    def sequence_dense(self, cache, table):
        ids = cache.ids(self.categorical_column)
        batch_size, num_steps = ids.batch_size, ids.num_steps
        segments, flat_ids, weights = self._valid(ids, ids.rows * num_steps + ids.steps)
        rows, positions = self._rows(table, flat_ids)
        out = self._combine(
            rows, positions, segments, weights, num_segments=batch_size * num_steps
        )
        dense = tf.reshape(out, tf.stack([batch_size, num_steps, self.dimension]))
        dense.set_shape([ids.static_batch_size, None, self.dimension])
        return dense, ids.length

    def _reduce_steps(self, table, segments, flat_ids, weights):
        """Combines the ids of each occupied step: returns the distinct steps
        `[U]` (input order) and their combined rows `[U, dim]`.

        Same kernel and operand order as TF over the occupied steps only, so
        bit-identical. Canonical (row-major) input keeps `step_index` sorted;
        interleaved steps make the segment op raise.
        """
        steps, step_index = tf.unique(segments)
        if weights is None and self.max_norm is None and not tf.executing_eagerly():
            # In a graph the segment op reads the table rows itself (same rows,
            # same order: same sums) and its gradient is sparse: no Unique +
            # gather of the ids. Eagerly the gather stays, for TF's
            # out-of-range message.
            out = self._segment_op()(table, flat_ids, step_index, sparse_gradient=True)
        else:
            rows, positions = self._rows(table, flat_ids)
            out = self._combine(rows, positions, step_index, weights)
        return steps, out

    def parts(self, cache, table):
        ids = cache.ids(self.categorical_column)

        def updates(offset: int, depth: int, padding: float) -> _base.Updates:
            segments = cache.segments(self.categorical_column)
            if (
                ids.weights is None
                and self.max_norm is None
                and not tf.executing_eagerly()
            ):
                # Every id valid and one per step (segments strictly increasing;
                # the usual sequence input): TF's segment kernel copies a lone
                # row as is (`out = row`, no arithmetic), so a gather gives the
                # same bits without the valid-id selection, Unique and the
                # per-segment loop; its gradient is sparse too. Otherwise
                # select and reduce.
                steps, out = tf.cond(
                    tf.logical_and(
                        tf.reduce_all(ids.ids >= 0),
                        _base.strictly_increasing(segments)
                        if ids.increasing is None
                        else ids.increasing,
                    ),
                    lambda: (segments, tf.gather(table, ids.ids)),
                    lambda: self._reduce_steps(table, *self._valid(ids, segments)),
                )
            else:
                steps, out = self._reduce_steps(table, *self._valid(ids, segments))
            where = tf.reshape(
                steps[:, None] * depth
                + tf.range(offset, offset + self.dimension, dtype=tf.int64)[None, :],
                [-1],
            )
            return _base.Updates(set_positions=where, set_values=tf.reshape(out, [-1]))

        def step_rows() -> _base.StepRows | None:
            # One valid id per step: its row as is (see the gather above).
            if ids.weights is not None or self.max_norm is not None:
                return None
            return _base.StepRows(
                positions=cache.segments(self.categorical_column),
                per_step=1,
                valid=tf.reduce_all(ids.ids >= 0),
                values=lambda: tf.gather(table, ids.ids),
                padding=0.0,
                increasing=ids.increasing,
            )

        return _base.ColumnParts(
            num_steps=ids.num_steps,
            length=ids.length,
            batch_size=ids.batch_size,
            static_batch_size=ids.static_batch_size,
            dtype=tf.float32,
            default_value=0.0,
            updates=updates,
            dense=lambda: self.sequence_dense(cache, table)[0],
            step_rows=step_rows,
        )


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class IndicatorColumn(_base.SequenceDenseColumn):
    """See `indicator_column`."""

    categorical_column: _base.SequenceCategoricalColumn

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_indicator"

    @property
    def parse_example_spec(self):
        return self.categorical_column.parse_example_spec

    @property
    def variable_shape(self) -> tf.TensorShape:
        return tf.TensorShape([1, self.categorical_column.num_buckets])

    @property
    def parents(self) -> list:
        return [self.categorical_column]

    def get_config(self) -> dict[str, Any]:
        return {
            "categorical_column": serialization.serialize_column(
                self.categorical_column
            )
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(
            serialization.deserialize_categorical(
                config["categorical_column"], custom_objects
            )
        )

    def sequence_dense(self, cache, state=None):
        ids = cache.ids(self.categorical_column)
        batch_size, num_steps = ids.batch_size, ids.num_steps
        depth = self.categorical_column.num_buckets
        valid = tf.logical_and(ids.ids >= 0, ids.ids < depth)
        segments = tf.boolean_mask(ids.rows * num_steps + ids.steps, valid)
        hot = tf.stack([segments, tf.boolean_mask(ids.ids, valid)], axis=1)
        adds = (
            tf.ones_like(segments, dtype=tf.float32)
            if ids.weights is None
            else tf.boolean_mask(ids.weights, valid)
        )
        out = tf.scatter_nd(
            hot,
            adds,
            tf.stack([batch_size * num_steps, tf.constant(depth, tf.int64)]),
        )
        dense = tf.reshape(out, tf.stack([batch_size, num_steps, depth]))
        dense.set_shape([ids.static_batch_size, None, depth])
        return dense, ids.length

    def parts(self, cache, state=None):
        ids = cache.ids(self.categorical_column)
        num_buckets = self.categorical_column.num_buckets

        def updates(offset: int, depth: int, padding: float) -> _base.Updates:
            # Where + gather: the same selection as tf.boolean_mask in 3 ops
            # instead of ~15 (its shape plumbing), which cost more than the data.
            keep = tf.where(tf.logical_and(ids.ids >= 0, ids.ids < num_buckets))[:, 0]
            where = cache.segments(self.categorical_column) * depth + (ids.ids + offset)
            weights = None
            if ids.weights is not None:  # TF's weighted indicator sums weights
                weights = tf.gather(ids.weights, keep)
            return _base.Updates(
                add_positions=tf.gather(where, keep), add_values=weights
            )

        def step_rows() -> _base.StepRows | None:
            # One id per step: its one-hot row (an invalid id: a row of zeros,
            # as TF drops it). A weighted indicator writes weights: no rows.
            if ids.weights is not None:
                return None
            return _base.StepRows(
                positions=cache.segments(self.categorical_column),
                per_step=1,
                valid=None,
                values=lambda: tf.one_hot(ids.ids, num_buckets, dtype=tf.float32),
                padding=0.0,
                increasing=ids.increasing,
            )

        return _base.ColumnParts(
            num_steps=ids.num_steps,
            length=ids.length,
            batch_size=ids.batch_size,
            static_batch_size=ids.static_batch_size,
            dtype=tf.float32,
            default_value=0.0,
            updates=updates,
            dense=lambda: self.sequence_dense(cache, state)[0],
            step_rows=step_rows,
        )
