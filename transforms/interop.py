"""`from_tf_feature_columns`: migrate `tf.feature_column` sequence columns.

Place in the flow: used once, when a user moves a model from
`tf_keras.experimental.SequenceFeatures` to ours. Reads TensorFlow's column
namedtuples (and, given a built tf_keras layer, its embedding tables) and
returns the equivalent transforms columns. TensorFlow's deprecated
`tf.feature_column` module is only read here, never by the layer's math.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf
from tensorflow.python.feature_column import feature_column_v2 as tf_fc
from tensorflow.python.feature_column import sequence_feature_column as tf_sfc
from tensorflow.python.ops import init_ops

from transforms import (
    _base,
    categorical,
    dense,
    numeric,
    serialization,
    shared_embeddings,
    weighted,
)


def from_tf_feature_columns(
    feature_columns: Iterable, layer=None
) -> list[_base.FeatureColumn]:
    """Converts TF sequence feature columns into transforms columns.

    Supported: `sequence_numeric_column`, `sequence_categorical_column_with_*`,
    `weighted_categorical_column` over those (or under
    `SequenceCategoricalColumn`, the form TF's layer computes), and
    `embedding_column` / `indicator_column` / `shared_embeddings` over those.
    TF's default embedding initializer (unseeded truncated normal) becomes
    ours (seeded). An embedding / indicator over a NON-sequence categorical
    column converts too and, as in TF, fails when the layer is called.

    To keep trained weights, pass the built tf_keras `SequenceFeatures` that
    used the columns: each embedding column then carries its table as a NumPy
    initializer, so `SequenceFeatures(from_tf_feature_columns(cols, layer))`
    computes the same outputs as `layer` (also readable afterwards with
    `get_embedding_weights()`).

    Args:
      feature_columns: TF columns (a single column is accepted too).
      layer: Optional built `tf_keras.experimental.SequenceFeatures`.

    Returns:
      The converted columns, in input order.

    Raises:
      ValueError: an unsupported column (with TF's SequenceFeatures message),
        or an unbuilt `layer` / a layer without a table for an embedding column.
    """
    if isinstance(feature_columns, tf.__internal__.feature_column.FeatureColumn):
        feature_columns = [feature_columns]
    tables = _layer_tables(layer) if layer is not None else None
    return [_convert(column, tables) for column in feature_columns]


def _layer_tables(layer) -> dict[str, np.ndarray]:
    if not layer.built:
        raise ValueError(
            "Invalid value for argument `layer`. Expected a built SequenceFeatures "
            "layer (call it on a batch first). Received: an unbuilt layer "
            f"{layer.name!r}"
        )
    return {v.name: v.numpy() for v in layer.variables}


def _unsupported(column):
    return ValueError(
        f"Items of feature_columns must be a {_base.SequenceDenseColumn}. You can "
        "wrap a categorical column with an embedding_column or indicator_column. "
        f"Given: {column}"
    )


def _convert(column, tables=None):
    if isinstance(column, _base.FeatureColumn):
        return column
    if isinstance(column, tf_sfc.SequenceNumericColumn):
        return numeric.SequenceNumericColumn(
            key=column.key,
            shape=tuple(column.shape),
            default_value=column.default_value,
            dtype=column.dtype,
            normalizer_fn=column.normalizer_fn,
        )
    if isinstance(column, tf_fc.CategoricalColumn):
        return convert_categorical(column)
    if isinstance(column, tf_fc.IndicatorColumn):
        return dense.IndicatorColumn(convert_categorical(column.categorical_column))
    if isinstance(column, tf_fc.EmbeddingColumn):
        return dense.EmbeddingColumn(
            categorical_column=convert_categorical(column.categorical_column),
            dimension=column.dimension,
            combiner=column.combiner,
            max_norm=column.max_norm,
            trainable=column.trainable,
            use_safe_embedding_lookup=column.use_safe_embedding_lookup,
            **_table_source(
                column.initializer,
                column.dimension,
                column.ckpt_to_load_from,
                column.tensor_name_in_ckpt,
                None if tables is None else _find_table(tables, column.name),
            ),
        )
    if isinstance(column, tf_fc.SharedEmbeddingColumn):
        creator = column.shared_embedding_column_creator
        name = creator._name  # noqa: SLF001  (TF keeps the creator's fields private)
        return shared_embeddings.SharedEmbeddingColumn(
            categorical_column=convert_categorical(column.categorical_column),
            dimension=creator.dimension,
            combiner=column.combiner,
            max_norm=column.max_norm,
            trainable=creator._trainable,  # noqa: SLF001
            use_safe_embedding_lookup=column.use_safe_embedding_lookup,
            shared_embedding_collection_name=name,
            **_table_source(
                creator._initializer,  # noqa: SLF001
                creator.dimension,
                creator._ckpt_to_load_from,  # noqa: SLF001
                creator._tensor_name_in_ckpt,  # noqa: SLF001
                None if tables is None else _find_shared_table(tables, name),
            ),
        )
    raise _unsupported(column)


def _table_source(initializer, dimension, ckpt, tensor_name, table) -> dict:
    """The embedding table's initializer and checkpoint fields: the layer's
    trained `table` if given, else TF's initializer (its default -> ours)."""
    if table is not None:
        return {
            "initializer": dense.ArrayInitializer(table),
            "ckpt_to_load_from": None,
            "tensor_name_in_ckpt": None,
        }
    if _is_tf_default_initializer(initializer, dimension):
        initializer = None
    return {
        "initializer": initializer,
        "ckpt_to_load_from": ckpt,
        "tensor_name_in_ckpt": tensor_name,
    }


def convert_categorical(column) -> _base.FeatureColumn:
    """A TF categorical column as ours: a sequence column as our sequence
    column, a non-sequence one as `NonSequenceCategoricalColumn` (so that an
    embedding / indicator over it fails at call with TF's message).

    TF's `weighted_categorical_column(sequence_categorical_column_with_*(...))`
    becomes our sequence weighted column, the same as TF's
    `SequenceCategoricalColumn(weighted_categorical_column(...))` (TF's layer
    computes only the latter; both mean weighted ids per step).
    """
    if isinstance(
        column,
        (_base.SequenceCategoricalColumn, serialization.NonSequenceCategoricalColumn),
    ):
        return column
    if isinstance(column, tf_fc.SequenceCategoricalColumn):
        return _sequence_column(column.categorical_column, column)
    if isinstance(column, tf_fc.WeightedCategoricalColumn) and isinstance(
        column.categorical_column, tf_fc.SequenceCategoricalColumn
    ):
        return weighted.SequenceWeightedCategoricalColumn(
            categorical_column=convert_categorical(column.categorical_column),
            weight_feature_key=column.weight_feature_key,
            dtype=column.dtype,
        )
    if isinstance(column, tf_fc.CategoricalColumn):
        return serialization.NonSequenceCategoricalColumn(
            _sequence_column(column, column)
        )
    raise _unsupported(column)


def _sequence_column(inner, column):
    """Our sequence column for TF's `SequenceCategoricalColumn(inner)`."""
    if isinstance(inner, tf_fc.WeightedCategoricalColumn):
        return weighted.SequenceWeightedCategoricalColumn(
            categorical_column=_sequence_column(inner.categorical_column, column),
            weight_feature_key=inner.weight_feature_key,
            dtype=inner.dtype,
        )
    return _convert_categorical(inner, column)


def _convert_categorical(inner, column):
    """Our sequence column for TF's non-sequence identity / hash / vocabulary
    column `inner` (`column`: the column named in the error)."""
    if isinstance(inner, tf_fc.IdentityCategoricalColumn):
        return categorical.IdentityCategoricalColumn(
            key=inner.key,
            num_buckets=inner.number_buckets,
            default_value=inner.default_value,
        )
    if isinstance(inner, tf_fc.HashedCategoricalColumn):
        return categorical.HashedCategoricalColumn(
            key=inner.key, hash_bucket_size=inner.hash_bucket_size, dtype=inner.dtype
        )
    if isinstance(inner, tf_fc.VocabularyListCategoricalColumn):
        return categorical.VocabularyListCategoricalColumn(
            key=inner.key,
            vocabulary_list=tuple(inner.vocabulary_list),
            dtype=inner.dtype,
            default_value=inner.default_value,
            num_oov_buckets=inner.num_oov_buckets,
        )
    if isinstance(inner, tf_fc.VocabularyFileCategoricalColumn):
        return categorical.VocabularyFileCategoricalColumn(
            key=inner.key,
            vocabulary_file=inner.vocabulary_file,
            vocabulary_size=int(inner.vocabulary_size),
            num_oov_buckets=inner.num_oov_buckets,
            dtype=inner.dtype,
            default_value=inner.default_value,
            file_format=inner.file_format,
        )
    raise _unsupported(column)


def _is_tf_default_initializer(initializer, dimension) -> bool:
    if not isinstance(initializer, init_ops.TruncatedNormal):
        return False
    return (
        initializer.mean == 0.0
        and np.isclose(initializer.stddev, 1 / np.sqrt(dimension))
        and initializer.seed is None
    )


def _find_shared_table(tables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The shared table: TF names its variable by the collection name."""
    matches = [
        value
        for variable, value in tables.items()
        if variable.split(":")[0].split("/")[-1] == _base.sanitize_name(name)
        or variable.split(":")[0] == name
    ]
    if len(matches) != 1:
        raise ValueError(
            "Invalid value for argument `layer`. Expected one embedding table for "
            f"shared embedding collection {name!r} among the layer's variables "
            "(TF creates shared tables outside the layer): convert without "
            "`layer` and copy the table with `set_embedding_weights("
            f"{{{name!r}: table}})`. Received: variables {sorted(tables)}"
        )
    return matches[0]


def _find_table(tables: dict[str, np.ndarray], column_name: str) -> np.ndarray:
    suffix = f"/{_base.sanitize_name(column_name)}/embedding_weights:0"
    matches = [value for name, value in tables.items() if name.endswith(suffix)]
    if len(matches) != 1:
        raise ValueError(
            "Invalid value for argument `layer`. Expected one embedding table for "
            f"column {column_name!r}. Received: variables {sorted(tables)}"
        )
    return matches[0]
