"""Column base classes, the column registry and the per-call input cache.

Place in the flow: constructors (numeric.py, categorical.py, dense.py) build the
frozen column dataclasses defined on top of these bases; `SequenceFeatures`
(sequence_features.py) hands every call's `features` dict to an `InputCache`,
which turns each raw input once into its flat view (inputs.py: sparse, ragged
or padded dense -> present values with their coordinates) and caches the flat
id lookup of each categorical column so that an embedding and an indicator of
the same column share it.

Error messages repeat TensorFlow 2.21's `tf.feature_column` wording on purpose
(callers migrate from it and match on them); `__repr__` of every column is the
one TensorFlow prints, for the same reason.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from transforms import inputs


def sanitize_name(name: str) -> str:
    """Replaces every character outside `[A-Za-z0-9_.-]` with `_` (TF's rule)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def assert_key_is_string(key: Any) -> None:
    if not isinstance(key, str):
        raise ValueError(
            f"key must be a string. Got: type {type(key)}. Given key: {key}."
        )


def assert_string_or_int(dtype: tf.DType, prefix: str) -> None:
    if dtype != tf.string and not dtype.is_integer:
        raise ValueError(f"{prefix} dtype must be string or integer. dtype: {dtype}.")


class FeatureColumn(abc.ABC):
    """Base of every transforms column (frozen dataclasses, hashable, picklable)."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The column's name; SequenceFeatures sorts its output by it."""

    @property
    @abc.abstractmethod
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        """`{key: tf.io.VarLenFeature(dtype)}` for tf.io.parse_(sequence_)example."""

    @property
    @abc.abstractmethod
    def parents(self) -> list:
        """TF's `parents`: the feature keys (str) and columns this one is built
        on, e.g. `[key]` for a numeric column, `[categorical_column]` for an
        embedding."""

    @property
    def config_class_name(self) -> str:
        """`class_name` of the serialized column (serialization.py)."""
        return type(self).__name__

    def get_config(self) -> dict[str, Any]:
        config = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tf.DType):
                value = value.name
            config[field.name] = value
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None):
        kwargs = dict(config)
        for field in dataclasses.fields(cls):
            if field.name == "dtype" and kwargs.get("dtype") is not None:
                kwargs["dtype"] = tf.as_dtype(kwargs["dtype"])
        return cls(**kwargs)


class SequenceCategoricalColumn(FeatureColumn):
    """A sequence of ids in `[0, num_buckets)` per step (identity/hash/vocab).

    TF builds one from a non-sequence column (`SequenceCategoricalColumn(
    categorical_column=X)`); `TF_INNER_CLASS_NAME` names X's class, whose
    config (`inner_config`) and parents (`inner_parents`) this column writes
    in TF's form. None: a column beyond TF's set, serialized as itself.
    """

    TF_INNER_CLASS_NAME: ClassVar[str | None] = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def config_class_name(self) -> str:
        if self.TF_INNER_CLASS_NAME:
            return "SequenceCategoricalColumn"
        return type(self).__name__

    @property
    def parents(self) -> list:
        """TF's: `[X]`, the non-sequence column (its parents: `[key]`)."""
        from transforms import serialization  # imports this module

        return [serialization.non_sequence(self)]

    def inner_parents(self) -> list:
        """The parents of TF's non-sequence column X."""
        return [self.key]

    def inner_config(self) -> dict[str, Any]:
        """The config of TF's non-sequence column X (same keys as TF's)."""
        return FeatureColumn.get_config(self)

    @classmethod
    def from_inner_config(cls, config: dict[str, Any], custom_objects=None):
        """The sequence column of TF's non-sequence config `config`."""
        return super().from_config(config, custom_objects)

    def get_config(self) -> dict[str, Any]:
        if not self.TF_INNER_CLASS_NAME:
            return super().get_config()
        return {
            "categorical_column": {
                "class_name": self.TF_INNER_CLASS_NAME,
                "config": self.inner_config(),
            }
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None):
        """Reads TF's `SequenceCategoricalColumn` config (or our older format:
        the non-sequence config itself)."""
        if not cls.TF_INNER_CLASS_NAME:
            return super().from_config(config, custom_objects)
        if set(config) != {"categorical_column"}:
            return cls.from_inner_config(config, custom_objects)
        from transforms import serialization  # imports this module

        column = serialization.deserialize_categorical(
            config["categorical_column"], custom_objects
        )
        if not isinstance(column, cls):
            raise ValueError(
                f"Invalid value for argument `config`. Expected the config of a "
                f"{cls.__name__}. Received: the config of {column!r}"
            )
        return column

    # Subclasses provide `key`, `dtype` and `num_buckets` (field or property).

    @property
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        return {self.key: tf.io.VarLenFeature(self.dtype)}

    def check_input_dtype(self, dtype: tf.DType) -> None:
        """Raises TF's ValueError for an input dtype this column cannot read."""
        if dtype.is_integer != self.dtype.is_integer:
            raise ValueError(
                "Column dtype and SparseTensors dtype must be compatible. "
                f"key: {self.key}, column dtype: {self.dtype}, tensor dtype: {dtype}"
            )
        assert_string_or_int(dtype, prefix=f"column_name: {self.key} input_tensor")

    def make_lookup(self) -> Any:
        """Builds the (eager) lookup state, e.g. a hash table; None if stateless."""
        return None

    def lookup_columns(self) -> list[SequenceCategoricalColumn]:
        """The columns whose `make_lookup` state this column reads (the layer
        builds one per column; a wrapper returns its inner column's)."""
        return [self]

    def sparse_ids(self, cache: InputCache) -> SparseIds:
        """Looks up this column's ids in the batch (`cache.ids` caches it)."""
        flat = cache.flat(self.key, numeric=False)
        self.check_input_dtype(flat.values.dtype)
        ids = self.lookup(flat.values, cache.state(self))
        rows, steps = flat.coords[0], flat.coords[1]
        batch_size, num_steps = flat.dims[0], flat.dims[1]
        length = flat.length
        segments = increasing = None
        if not tf.executing_eagerly():  # one order check for lengths and rows
            segments = rows * num_steps + steps
            increasing = strictly_increasing(segments)
        if length is None:
            length = sequence_length(rows, steps, batch_size, in_order=increasing)
        return SparseIds(
            rows=rows,
            steps=steps,
            ids=ids,
            batch_size=batch_size,
            num_steps=num_steps,
            length=length,
            static_batch_size=flat.static_batch_size,
            segments=segments,
            increasing=increasing,
        )

    @abc.abstractmethod
    def lookup(self, values: tf.Tensor, state: Any) -> tf.Tensor:
        """Maps the flat input `values` [N] to int64 ids [N] (may be < 0: dropped)."""

    def _tf_repr(self, inner: str) -> str:
        return f"SequenceCategoricalColumn(categorical_column={inner})"

    def tf_inner_repr(self) -> str:
        """TF's repr of the wrapped non-sequence column (`X` of
        `SequenceCategoricalColumn(categorical_column=X)`), for wrappers."""
        text, prefix = repr(self), "SequenceCategoricalColumn(categorical_column="
        if text.startswith(prefix) and text.endswith(")"):
            return text[len(prefix) : -1]
        return text


class SequenceDenseColumn(FeatureColumn):
    """A column giving `[B, T, output_width]` values per step."""

    @property
    @abc.abstractmethod
    def variable_shape(self) -> tf.TensorShape:
        """Shape of one step's value (TF's `variable_shape`)."""

    @property
    def output_width(self) -> int:
        """Number of features this column contributes to the last output axis."""
        return int(self.variable_shape.num_elements())

    @abc.abstractmethod
    def sequence_dense(
        self, cache: InputCache, state: Any
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns `(dense [B, T, output_width], sequence_length int64 [B])`.

        The column on its own, shaped like TF's per-column output; the layer
        uses it when it cannot scatter into one shared buffer (see `parts`).
        """

    @abc.abstractmethod
    def parts(self, cache: InputCache, state: Any) -> ColumnParts:
        """Returns the column's T, lengths and its scattered writes (`ColumnParts`)."""


class Updates(NamedTuple):
    """Writes into the flat `[B * T * D]` output of the layer.

    `set_positions`/`set_values` overwrite (each position at most once);
    `add_positions` each add 1.0, or `add_values` when given (repeats
    accumulate: multi-hot counts, summed weights).
    """

    set_positions: tf.Tensor | None = None
    set_values: tf.Tensor | None = None
    add_positions: tf.Tensor | None = None
    add_values: tf.Tensor | None = None


class StepRows(NamedTuple):
    """A column's values as one full row per present step (traced fast path).

    `positions` are the entries' row-major positions in the column's own
    output: `(row * T + step) * per_step + slot`. If they strictly increase and
    number `per_step * sum(length)`, the entries fill every slot of every step
    `t < length[b]` and nothing else (each entry lies before its row's length,
    distinct entries fit only one way), so `values()` holds row `(b, t)` of
    the output at index `sum(length[:b]) + t`.
    """

    positions: tf.Tensor  # int64 [N]
    per_step: int  # entries per step: the column's width (numeric) or 1 (ids)
    valid: tf.Tensor | None  # a further scalar bool condition, or None
    values: Any  # Callable[[], float32 [N / per_step, output_width]]
    padding: float  # the column's value at absent steps
    increasing: tf.Tensor | None = None  # `positions` strictly increase, if known


class ColumnParts(NamedTuple):
    """One column's contribution to a SequenceFeatures call.

    `updates(offset, depth, padding)` builds the column's writes into the shared
    flat output (step `(b, t)`, feature `j` at `(b * T + t) * depth + offset + j`),
    which is pre-filled with `padding`; it is only called once all columns are
    known to agree on T. `dense()` is
    the stand-alone `[B, T, width]` output (used for error reporting / fallback).
    `step_rows()` returns the column's `StepRows`, or None if it has no such
    form (the layer then always writes through `updates`).
    """

    num_steps: tf.Tensor  # int64 scalar T
    length: tf.Tensor  # int64 [B]
    batch_size: tf.Tensor  # int64 scalar B
    static_batch_size: int | None
    dtype: tf.DType  # output dtype (float32, or an integer numeric column's dtype)
    default_value: float  # padding value of this column's features
    updates: Any  # Callable[[int, int, float], Updates]
    dense: Any  # Callable[[], tf.Tensor]
    step_rows: Any = lambda: None  # Callable[[], StepRows | None]


class SparseIds(NamedTuple):
    """Flat ids of one categorical column for one batch.

    `ids[i]` sits at row `rows[i]`, step `steps[i]`; entries are in input order
    (row-major for canonical SparseTensors and for RaggedTensors). `weights[i]`
    is its float32 weight for a weighted column, else `weights` is None.
    """

    rows: tf.Tensor  # int64 [N]
    steps: tf.Tensor  # int64 [N]
    ids: tf.Tensor  # int64 [N]
    batch_size: tf.Tensor  # int64 scalar B
    num_steps: tf.Tensor  # int64 scalar T
    length: tf.Tensor  # int64 [B]
    static_batch_size: int | None
    weights: tf.Tensor | None = None  # float32 [N]
    # Traced only (else None): `rows * num_steps + steps` [N], and whether they
    # strictly increase (scalar bool).
    segments: tf.Tensor | None = None
    increasing: tf.Tensor | None = None


def sequence_length(rows, steps, batch_size, in_order=None):
    """`max(step) + 1` per row, 0 for rows without entries; int64 [B].

    Traced, rows in order (canonical SparseTensors, ragged inputs: checked
    per batch) take SegmentMax, ~5x faster on CPU than UnsortedSegmentMax,
    which other inputs take; the same values either way. `in_order`: a scalar
    bool already computed that implies the rows are in order (e.g. strictly
    increasing row-major positions, which the step rows check anyway), used
    instead of a check of its own (4 ops on N values fewer per batch).
    """
    if tf.executing_eagerly():
        return _unsorted_length(rows, steps, batch_size)

    def in_order_length():
        length = tf.math.segment_max(steps + 1, rows)  # [max(rows) + 1]
        missing = batch_size - tf.shape(length, out_type=tf.int64)[0]
        return tf.maximum(tf.pad(length, tf.reshape(tf.stack([0, missing]), [1, 2])), 0)

    if in_order is None:
        in_order = tf.reduce_all(rows[1:] >= rows[:-1])
    return tf.cond(
        in_order,
        in_order_length,
        lambda: _unsorted_length(rows, steps, batch_size),
    )


def _unsorted_length(rows, steps, batch_size):
    length = tf.math.unsorted_segment_max(steps + 1, rows, num_segments=batch_size)
    return tf.maximum(length, 0)


class InputCache:
    """Per-call view of `features`: flat inputs and categorical ids, each once.

    Args:
      features: The layer's `features` dict.
      states: Lookup state per categorical column (`make_lookup`).
      sequence_length: Optional `[B]` lengths of the dense (padded) inputs.
      padding_value: Optional padding value of dense inputs: a number for
        numeric features (and weights), or a dict key -> value for any feature.
    """

    def __init__(
        self, features: dict, states: dict, sequence_length=None, padding_value=None
    ):
        self._features = features
        self._states = states
        self._lengths = sequence_length
        self._padding = padding_value
        self._inputs: dict[str, Any] = {}
        self._flat: dict[tuple, Any] = {}
        self._ids: dict[SequenceCategoricalColumn, SparseIds] = {}
        self._segments: dict[SequenceCategoricalColumn, tf.Tensor] = {}

    def state(self, column) -> Any:
        """The lookup state built for `column` (None if it has none)."""
        return self._states.get(column)

    def input(self, key: str):
        """The input of `key`: a SparseTensor, RaggedTensor or dense Tensor,
        floats as float32, rank >= 2."""
        if key not in self._inputs:
            if key not in self._features:
                raise ValueError(f"Feature {key} is not in features dictionary.")
            self._inputs[key] = inputs.normalize(self._features[key], key)
        return self._inputs[key]

    def input_dtype(self, key: str) -> tf.DType:
        """The dtype of `features[key]` as given (before the float32 cast)."""
        if key not in self._features:
            raise ValueError(f"Feature {key} is not in features dictionary.")
        value = self._features[key]
        dtype = getattr(value, "dtype", None)
        return tf.as_dtype(dtype) if dtype is not None else self.input(key).dtype

    def _padding_of(self, key: str, numeric: bool):
        if isinstance(self._padding, dict):
            return self._padding.get(key)
        return self._padding if numeric else None

    def flat(
        self, key: str, *, numeric: bool, dense_steps: bool = False, ignore: Any = None
    ) -> inputs.Flat | inputs.DenseSteps:
        """The flat view of `key` (inputs.py).

        Args:
          key: Feature key.
          numeric: Numeric values (the scalar `padding_value` applies) or
            categorical ones (TF's -1 / '' are absent unless a per-key padding
            value is given).
          dense_steps: A dense input with `sequence_length` and no padding may
            come back as `DenseSteps`.
          ignore: For a numeric dense input without `sequence_length` or
            padding: the value that is absent (None: such an input is refused,
            as TF refuses dense sequence numeric inputs).
        """
        value = self.input(key)
        dense = not isinstance(value, (tf.RaggedTensor, tf.SparseTensor))
        # Only a dense input's view depends on how it is read.
        cache_key = (key, numeric, dense_steps, ignore) if dense else (key,)
        if cache_key in self._flat:
            return self._flat[cache_key]
        if isinstance(value, tf.RaggedTensor):
            flat = inputs.from_ragged(value)
        elif isinstance(value, tf.SparseTensor):
            flat = inputs.from_sparse(value)
        else:
            padding = self._padding_of(key, numeric)
            if numeric and padding is None and self._lengths is None:
                if ignore is None:
                    raise TypeError("Input must be a SparseTensor.")
                padding = ignore
            if not numeric and padding is None:
                padding = inputs.tf_ignore_value(value.dtype)
            flat = inputs.from_dense(
                key,
                value,
                lengths=self._lengths,
                padding=padding,
                dense_steps=dense_steps,
            )
        self._flat[cache_key] = flat
        return flat

    def ids(self, column: SequenceCategoricalColumn) -> SparseIds:
        """Looks up the ids of `column` once per call (shared by its users)."""
        if column not in self._ids:
            self._ids[column] = column.sparse_ids(self)
        return self._ids[column]

    def segments(self, column: SequenceCategoricalColumn) -> tf.Tensor:
        """`row * T + step` of each id of `column`, int64 [N] (once per call)."""
        if column not in self._segments:
            ids = self.ids(column)
            segments = ids.segments
            if segments is None:
                segments = ids.rows * ids.num_steps + ids.steps
            self._segments[column] = segments
        return self._segments[column]


def strictly_increasing(values: tf.Tensor) -> tf.Tensor:
    """Scalar bool: `values` [N] sorted with no repeats (True when N <= 1)."""
    return tf.reduce_all(values[1:] > values[:-1])
