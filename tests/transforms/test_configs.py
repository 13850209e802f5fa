"""Column configs (TF's format, see tests/parity/test_parity_configs.py for the
comparison with TF): the columns beyond TF's set, `parents`, and configs written
by our format before TF's."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import transforms as T
from transforms.serialization import (
    NonSequenceCategoricalColumn,
    deserialize_column,
    serialize_column,
)

OLD_LAYER_CONFIG = (
    pathlib.Path(__file__).parent
    / "data"
    / "sequence_features_config_before_tf_format.json"
)


def columns_of_old_config():
    """The columns whose layer config (format before TF's) is OLD_LAYER_CONFIG."""
    return [
        T.sequence_numeric_column("n", shape=(2,), default_value=-1.0),
        T.embedding_column(
            T.sequence_categorical_column_with_identity("w", 20, default_value=0),
            3,
            combiner="sqrtn",
        ),
        T.indicator_column(
            T.sequence_categorical_column_with_vocabulary_list(
                "v", ["a", "b"], num_oov_buckets=2
            )
        ),
        T.embedding_column(
            T.sequence_weighted_categorical_column(
                T.sequence_categorical_column_with_hash_bucket("t", 10), "f"
            ),
            2,
            combiner="sum",
        ),
        T.indicator_column(
            T.sequence_bucketized_column(T.sequence_numeric_column("p"), [1.0, 2.0])
        ),
    ] + T.sequence_shared_embedding_columns(
        [
            T.sequence_categorical_column_with_identity("a", 5),
            T.sequence_categorical_column_with_identity("b", 5),
        ],
        2,
    )


def test_old_format_layer_config_still_loads():
    old = json.loads(OLD_LAYER_CONFIG.read_text())
    assert old["feature_columns"][0]["config"]["categorical_column"]["config"][
        "num_buckets"
    ]  # the old identity key: really the old format
    layer = T.SequenceFeatures.from_config(old)
    assert (
        layer.feature_columns
        == T.SequenceFeatures(columns_of_old_config()).feature_columns
    )
    # and it writes the new format, which loads to the same columns
    again = T.SequenceFeatures.from_config(json.loads(json.dumps(layer.get_config())))
    assert again.feature_columns == layer.feature_columns


def test_beyond_tf_columns_config_style():
    price = T.sequence_numeric_column("price")
    bucketized = T.sequence_bucketized_column(price, [10.0, 100.0])
    assert serialize_column(bucketized) == {
        "class_name": "SequenceBucketizedColumn",
        "config": {
            "source_column": {
                "class_name": "SequenceNumericColumn",
                "config": {
                    "key": "price",
                    "shape": (1,),
                    "default_value": 0.0,
                    "dtype": "float32",
                    "normalizer_fn": None,
                },
            },
            "boundaries": (10.0, 100.0),
        },
    }
    cost = T.sequence_bucketized_column(T.sequence_numeric_column("cost"), [1.0, 2.0])
    shared = T.sequence_shared_embedding_columns([bucketized, cost], 4)
    for column in [bucketized, T.indicator_column(bucketized), *shared]:
        config = json.loads(json.dumps(serialize_column(column)))
        assert deserialize_column(config) == column
    config = serialize_column(shared[1])
    assert config["class_name"] == "SharedEmbeddingColumn"
    assert config["config"]["shared_embedding_collection_name"] == (
        "cost_bucketized_price_bucketized_shared_embedding"
    )
    assert config["config"]["categorical_column"]["class_name"] == (
        "SequenceBucketizedColumn"
    )


def test_weighted_over_bucketized_serializes_the_bucketized_column():
    bucketized = T.sequence_bucketized_column(T.sequence_numeric_column("p"), [1.0])
    column = T.sequence_weighted_categorical_column(bucketized, "pw")
    inner = column.get_config()["categorical_column"]
    assert inner["class_name"] == "WeightedCategoricalColumn"
    assert inner["config"]["categorical_column"]["class_name"] == (
        "SequenceBucketizedColumn"
    )
    assert deserialize_column(serialize_column(column)) == column
    assert column.parents[0].parents == [bucketized, "pw"]


def test_parents_of_every_kind():
    identity = T.sequence_categorical_column_with_identity("w", 4)
    numeric = T.sequence_numeric_column("n")
    bucketized = T.sequence_bucketized_column(numeric, [1.0])
    weighted = T.sequence_weighted_categorical_column(identity, "ww")
    (inner,) = identity.parents
    assert isinstance(inner, NonSequenceCategoricalColumn) and inner.parents == ["w"]
    assert (
        repr(inner)
        == "IdentityCategoricalColumn(key='w', number_buckets=4, default_value=None)"
    )
    assert numeric.parents == ["n"]
    assert bucketized.parents == [numeric]
    assert weighted.parents[0].parents == [inner, "ww"]
    assert T.indicator_column(identity).parents == [identity]
    assert T.embedding_column(weighted, 2).parents == [weighted]
    shared = T.sequence_shared_embedding_columns([identity], 2)[0]
    assert shared.parents == [identity]


def test_non_sequence_column_fails_at_call_with_tf_message():
    """A TF config of an embedding over a bare non-sequence column nested in
    the layer is read as the sequence column (our older format); the
    non-sequence column itself (TF's parents, a converted TF column) builds
    an embedding that the layer refuses at call, as TF's layer does."""
    identity = T.sequence_categorical_column_with_identity("aaa", 3)
    column = T.embedding_column(identity.parents[0], 2)
    layer = T.SequenceFeatures([column])  # construction passes, as in TF
    with pytest.raises(ValueError) as error:  # Keras wraps it, as tf_keras
        layer({"aaa": tf.ragged.constant([[1]], tf.int64)})
    assert (
        "In embedding_column: aaa_embedding. categorical_column must be of type "
        "SequenceCategoricalColumn to use SequenceFeatures. Suggested fix: Use one "
        "of sequence_categorical_column_with_*. Given (type <class "
        "'transforms.serialization.NonSequenceCategoricalColumn'>): "
        "IdentityCategoricalColumn(key='aaa', number_buckets=3, default_value=None)"
    ) in str(error.value)
    with pytest.raises(ValueError, match="In indicator_column: aaa_indicator"):
        T.SequenceFeatures([T.indicator_column(identity.parents[0])]).step_rows(
            {"aaa": tf.ragged.constant([[1]], tf.int64)}
        )


def test_old_layer_outputs_equal_new():
    old = T.SequenceFeatures.from_config(json.loads(OLD_LAYER_CONFIG.read_text()))
    new = T.SequenceFeatures(columns_of_old_config())
    batch = {
        "n": tf.ragged.constant([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]]),
        "w": tf.ragged.constant([[1, 25], [3]], tf.int64),
        "v": tf.ragged.constant([["a", "q"], ["b"]]),
        "t": tf.ragged.constant([["x", "y"], ["z"]]),
        "f": tf.ragged.constant([[1.0, 2.0], [3.0]]),
        "p": tf.ragged.constant([[0.5, 1.5], [2.5]]),
        "a": tf.ragged.constant([[1, 2], [3]], tf.int64),
        "b": tf.ragged.constant([[4, 0], [1]], tf.int64),
    }
    out_old, n_old = old(batch)
    out_new, n_new = new(batch)
    np.testing.assert_array_equal(out_old.numpy(), out_new.numpy())
    np.testing.assert_array_equal(n_old.numpy(), n_new.numpy())
