"""`sequence_weighted_categorical_column`: per-step ids with per-id weights.

Place in the flow: wraps a sequence categorical column; its ids come from the
wrapped column (looked up once per call, shared with other users of it), its
weights from a second feature, read with the same flat views (inputs.py). The
two must hold one weight per id at every step (in the same order); otherwise
the layer raises `tf.errors.InvalidArgumentError` (the job dead-letters such
records first, reason `weight_count_mismatch`). `embedding_column` /
`indicator_column` over it use the weights (dense.py).

TF has `weighted_categorical_column` for non-sequence columns only; this is its
sequence form: same arguments, name (`<column>_weighted_by_<key>`), parse spec
and messages, and TF's repr of
`SequenceCategoricalColumn(weighted_categorical_column(...))`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from transforms import _base, serialization


def sequence_weighted_categorical_column(
    categorical_column: _base.SequenceCategoricalColumn,
    weight_feature_key: str,
    dtype: tf.DType = tf.float32,
) -> SequenceWeightedCategoricalColumn:
    """Returns a sequence categorical column whose ids carry weights.

    Example:
    ```python
    terms = transforms.sequence_categorical_column_with_hash_bucket("terms", 1000)
    weighted = transforms.sequence_weighted_categorical_column(terms, "frequencies")
    column = transforms.embedding_column(weighted, dimension=8, combiner="sum")
    # step t of row b: sum_i frequencies[b, t, i] * table[id(terms[b, t, i])]
    ```

    Args:
      categorical_column: A `sequence_categorical_column_with_*` (or bucketized)
        column giving the ids.
      weight_feature_key: Feature key of the weights: one value per id of
        every step, in the same order (a float32 feature list in the parse spec).
      dtype: Weight dtype, float or integer (weights are used as float32).

    Raises:
      ValueError: a dtype not convertible to float, a non-categorical column, or
        a weight key equal to one of the column's own keys.
    """
    if dtype is not None:
        dtype = tf.as_dtype(dtype)
    if (dtype is None) or not (dtype.is_integer or dtype.is_floating):
        raise ValueError(f"dtype {dtype} is not convertible to float.")
    if not isinstance(categorical_column, _base.SequenceCategoricalColumn):
        raise ValueError(
            "Unsupported input type. Input must be a CategoricalColumn. "
            f"Given: {categorical_column}"
        )
    _base.assert_key_is_string(weight_feature_key)
    column = SequenceWeightedCategoricalColumn(
        categorical_column=categorical_column,
        weight_feature_key=weight_feature_key,
        dtype=dtype,
    )
    column.parse_example_spec  # noqa: B018  (TF's "already exists" ValueError)
    return column


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class SequenceWeightedCategoricalColumn(_base.SequenceCategoricalColumn):
    """See `sequence_weighted_categorical_column`.

    `dtype` is the weights' dtype (TF's field); the ids' input dtype is the
    wrapped column's.
    """

    categorical_column: _base.SequenceCategoricalColumn
    weight_feature_key: str
    dtype: tf.DType = tf.float32

    TF_INNER_CLASS_NAME = "WeightedCategoricalColumn"

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_weighted_by_{self.weight_feature_key}"

    @property
    def key(self) -> str:
        return self.categorical_column.key

    @property
    def num_buckets(self) -> int:
        return self.categorical_column.num_buckets

    @property
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        config = dict(self.categorical_column.parse_example_spec)
        if self.weight_feature_key in config:
            raise ValueError(
                f"Parse config {config[self.weight_feature_key]} already exists for "
                f"{self.weight_feature_key}."
            )
        config[self.weight_feature_key] = tf.io.VarLenFeature(self.dtype)
        return config

    def __repr__(self) -> str:
        inner = self.categorical_column.tf_inner_repr()
        return self._tf_repr(
            f"WeightedCategoricalColumn(categorical_column={inner}, "
            f"weight_feature_key={self.weight_feature_key!r}, dtype={self.dtype!r})"
        )

    def inner_parents(self) -> list:
        # TF's WeightedCategoricalColumn: [categorical_column, weight key].
        return [
            serialization.non_sequence(self.categorical_column),
            self.weight_feature_key,
        ]

    def inner_config(self) -> dict[str, Any]:
        return {
            "categorical_column": serialization.serialize_column(
                serialization.non_sequence(self.categorical_column)
            ),
            "weight_feature_key": self.weight_feature_key,
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_inner_config(cls, config, custom_objects=None):
        # Also our older format (the wrapped column serialized as a sequence
        # column, under the class name SequenceWeightedCategoricalColumn).
        return cls(
            categorical_column=serialization.deserialize_categorical(
                config["categorical_column"], custom_objects
            ),
            weight_feature_key=config["weight_feature_key"],
            dtype=tf.as_dtype(config["dtype"]),
        )

    def check_input_dtype(self, dtype):
        self.categorical_column.check_input_dtype(dtype)

    def lookup_columns(self):
        return self.categorical_column.lookup_columns()

    def lookup(self, values, state):
        return self.categorical_column.lookup(values, state)

    def sparse_ids(self, cache: _base.InputCache) -> _base.SparseIds:
        ids = cache.ids(self.categorical_column)
        given = cache.input_dtype(self.weight_feature_key)
        if given.base_dtype != self.dtype:
            raise ValueError(f"Bad dtype, expected {self.dtype}, but got {given}.")
        # A dense weight input drops 0.0 (TF's rule) unless sequence_length or
        # a padding value says which steps/values are present.
        flat = cache.flat(self.weight_feature_key, numeric=True, ignore=0.0)
        weights = tf.cast(flat.values, tf.float32)
        check = self._check_counts(ids, flat)
        if check is not None:
            with tf.control_dependencies([check]):
                weights = tf.identity(weights)
        return ids._replace(weights=weights)

    def _check_counts(self, ids, flat):
        """One weight per id at every step: equal per-step counts (both inputs
        are row-major, so weight i then belongs to id i)."""
        num_steps = tf.maximum(ids.num_steps, flat.dims[1])
        size = ids.batch_size * num_steps
        counts = [
            tf.math.bincount(
                rows * num_steps + steps,
                minlength=size,
                maxlength=size,
                dtype=tf.int64,
            )
            for rows, steps in ((ids.rows, ids.steps), flat.coords[:2])
        ]
        differ = tf.not_equal(counts[0], counts[1])
        message = (
            f"Invalid input for {self.name}: feature {self.weight_feature_key!r} "
            f"must hold one weight per id of feature {self.key!r} at every step"
        )
        if tf.executing_eagerly():
            bad = tf.where(differ)[:, 0].numpy()
            if len(bad):
                row, step = divmod(int(bad[0]), int(num_steps))
                raise tf.errors.InvalidArgumentError(
                    None,
                    None,
                    f"{message}; counts differ at {len(bad)} step(s), first at row "
                    f"{row}, step {step}: {int(counts[0][bad[0]])} id(s), "
                    f"{int(counts[1][bad[0]])} weight(s).",
                )
            return None
        return tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(differ)),
            [f"{message}; per-step counts differ."],
        )
