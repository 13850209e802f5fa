"""Column configs in TensorFlow 2.21's feature-column format.

Place in the flow: every column's `get_config` / `from_config` and
`SequenceFeatures.get_config` / `from_config` go through here. A serialized
column is `{'class_name', 'config'}` exactly as
`tf.__internal__.feature_column.serialize_feature_column` writes TF's column,
so configs move both ways between TF code and ours:

  sequence_numeric_column      SequenceNumericColumn {key, shape (tuple), ...}
  sequence_categorical_*       SequenceCategoricalColumn {categorical_column:
                               IdentityCategoricalColumn {key, number_buckets,
                               default_value} | HashedCategoricalColumn |
                               VocabularyListCategoricalColumn |
                               VocabularyFileCategoricalColumn}
  sequence_weighted_*          SequenceCategoricalColumn {categorical_column:
                               WeightedCategoricalColumn {categorical_column,
                               weight_feature_key, dtype}}
  embedding / indicator        EmbeddingColumn / IndicatorColumn, as TF's
  beyond TF's set, same style  SequenceBucketizedColumn {source_column,
                               boundaries (tuple)}, SharedEmbeddingColumn
                               {EmbeddingColumn's keys,
                               shared_embedding_collection_name}

TF nests a non-sequence column inside `SequenceCategoricalColumn`; ours has no
such constructor (see `NonSequenceCategoricalColumn`), but the nested config
is read and written as TF's. Configs of our format before this one (sequence
categorical columns serialized bare under their class name, identity with
`num_buckets`, `SequenceWeightedCategoricalColumn`, list shapes, `initializer:
None`) still load: a bare categorical config where a sequence column belongs
(inside an embedding, indicator or weighted column) is read as the sequence
column.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import tensorflow as tf
from tensorflow.python.ops import init_ops

from transforms import _base

SEQUENCE_CATEGORICAL = "SequenceCategoricalColumn"

_CLASSES: dict[str, type] = {}


def register_column(cls: type) -> type:
    """Class decorator: makes `cls` known to `deserialize_column`, under its
    class name and its TF inner class name (`TF_INNER_CLASS_NAME`), if any."""
    _CLASSES[cls.__name__] = cls
    inner = getattr(cls, "TF_INNER_CLASS_NAME", None)
    if inner:
        _CLASSES[inner] = cls
    return cls


def serialize_column(column: _base.FeatureColumn) -> dict[str, Any]:
    """Returns `{'class_name', 'config'}` for `column`, TF's serialization form."""
    return {"class_name": column.config_class_name, "config": column.get_config()}


def _column_class(class_name: str, custom_objects) -> type:
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name]
    if class_name not in _CLASSES:
        raise ValueError(
            "Invalid value for argument `config`. Expected the config of a "
            "transforms or tf.feature_column sequence column (class_name one of "
            f"{sorted({SEQUENCE_CATEGORICAL, *_CLASSES})}). "
            f"Received: class_name={class_name!r}"
        )
    return _CLASSES[class_name]


def deserialize_column(config, custom_objects=None) -> _base.FeatureColumn:
    """Inverse of `serialize_column`; reads TF's configs too.

    A bare non-sequence categorical config (TF's `IdentityCategoricalColumn`
    etc. at the top level) gives its `NonSequenceCategoricalColumn`.
    """
    if isinstance(config, _base.FeatureColumn):
        return config
    if not isinstance(config, dict) or not {"class_name", "config"} <= set(config):
        raise ValueError(
            "Invalid value for argument `config`. Expected a dict with keys "
            f"'class_name' and 'config'. Received: config={config!r}"
        )
    class_name, inner = config["class_name"], config["config"]
    if class_name == SEQUENCE_CATEGORICAL:
        column = deserialize_column(inner["categorical_column"], custom_objects)
        if not isinstance(column, NonSequenceCategoricalColumn):
            raise ValueError(
                "Invalid value for argument `config`. Expected a non-sequence "
                "categorical column inside SequenceCategoricalColumn. Received: "
                f"{inner['categorical_column']!r}"
            )
        return column.sequence_column
    cls = _column_class(class_name, custom_objects)
    if getattr(cls, "TF_INNER_CLASS_NAME", None) == class_name:
        # TF's non-sequence column: the inner config of our sequence column
        # (for identity and friends also our older format of the column).
        return NonSequenceCategoricalColumn(
            cls.from_inner_config(inner, custom_objects=custom_objects)
        )
    return cls.from_config(inner, custom_objects=custom_objects)


def deserialize_categorical(config, custom_objects=None) -> _base.FeatureColumn:
    """A categorical column's config read as a sequence column where one
    belongs (embedding, indicator, weighted): a bare non-sequence config gives
    its sequence column (TF's form inside a weighted column; our older
    format elsewhere)."""
    column = deserialize_column(config, custom_objects)
    if isinstance(column, NonSequenceCategoricalColumn):
        return column.sequence_column
    return column


def non_sequence(column: _base.SequenceCategoricalColumn) -> _base.FeatureColumn:
    """TF's inner column of a sequence categorical column (its only parent),
    or the column itself when it is beyond TF's set (bucketized)."""
    if column.TF_INNER_CLASS_NAME:
        return NonSequenceCategoricalColumn(column)
    return column


@dataclasses.dataclass(frozen=True)
class NonSequenceCategoricalColumn(_base.FeatureColumn):
    """TF's non-sequence categorical column (`categorical_column_with_*`,
    `weighted_categorical_column`), seen through its sequence twin.

    It is the `parents` of a sequence categorical column, the inner
    `categorical_column` of its config, and what a TF non-sequence column
    converts to. There is no constructor for it: non-sequence columns only
    make TF's SequenceFeatures fail, so embedding / indicator columns over
    one raise TF's ValueError when the layer is called, as TF's do.
    """

    sequence_column: _base.SequenceCategoricalColumn

    @property
    def name(self) -> str:
        return self.sequence_column.name

    @property
    def key(self) -> str:
        return self.sequence_column.key

    @property
    def num_buckets(self) -> int:
        return self.sequence_column.num_buckets

    @property
    def parse_example_spec(self) -> dict[str, tf.io.VarLenFeature]:
        return self.sequence_column.parse_example_spec

    @property
    def parents(self) -> list:
        return self.sequence_column.inner_parents()

    @property
    def config_class_name(self) -> str:
        return self.sequence_column.TF_INNER_CLASS_NAME

    def get_config(self) -> dict[str, Any]:
        return self.sequence_column.inner_config()

    def lookup_columns(self) -> list:
        return []

    def __repr__(self) -> str:
        return self.sequence_column.tf_inner_repr()


def tf_default_initializer_config(dimension: int) -> dict[str, Any]:
    """The config TF writes for `embedding_column`'s default initializer."""
    return {
        "class_name": "TruncatedNormal",
        "config": {
            "mean": 0.0,
            "stddev": 1 / math.sqrt(dimension),
            "seed": None,
            "dtype": "float32",
        },
    }


def serialize_initializer(initializer, dimension: int):
    """`None` (ours: seeded truncated normal, TF's distribution) as TF's
    default initializer config; others as Keras objects."""
    if initializer is None:
        return tf_default_initializer_config(dimension)
    return keras.saving.serialize_keras_object(initializer)


def deserialize_initializer(config, dimension: int, custom_objects=None):
    """Inverse of `serialize_initializer`; TF's configs of `tf.compat.v1`
    initializers (no 'module' key) give those initializers."""
    if config is None or config == tf_default_initializer_config(dimension):
        return None
    if isinstance(config, dict) and "module" not in config:
        tf_initializers = {
            name: value
            for name, value in vars(init_ops).items()
            if isinstance(value, type) and issubclass(value, init_ops.Initializer)
        }
        cls = (custom_objects or {}).get(config.get("class_name")) or (
            tf_initializers.get(config.get("class_name"))
        )
        if cls is not None:
            return cls.from_config(config["config"])
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
