"""Column and layer configs against TF 2.21's: equal configs, both ways round trips.

TF's side is `tf.__internal__.feature_column.serialize_feature_column` /
`deserialize_feature_column` (what tf_keras' SequenceFeatures uses) and each
column's `get_config` / `from_config`; ours is `transforms.serialization`.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from parity_helpers import sp
from tensorflow.python.feature_column import feature_column_v2 as tf_fc

import transforms
from transforms.serialization import deserialize_column, serialize_column

pytestmark = pytest.mark.parity
fc = tf.feature_column
TF_SERIALIZE = tf.__internal__.feature_column.serialize_feature_column
TF_DESERIALIZE = tf.__internal__.feature_column.deserialize_feature_column


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "v.txt"
    path.write_text("x\ny\nz\n")
    return str(path)


def weighted(m, key="w", weight="ww"):
    """Weighted ids per step: TF's working form is the sequence column over
    the non-sequence weighted column; ours is the sequence weighted column."""
    if m is transforms:
        return transforms.sequence_weighted_categorical_column(
            transforms.sequence_categorical_column_with_identity(key, 5), weight
        )
    inner = fc.categorical_column_with_identity(key, 5)
    return tf_fc.SequenceCategoricalColumn(
        fc.weighted_categorical_column(inner, weight)
    )


COLUMNS = {
    "numeric": lambda m, p: m.sequence_numeric_column("k"),
    "numeric_2x3_f64": lambda m, p: m.sequence_numeric_column(
        "k2", shape=(2, 3), default_value=-1.0, dtype=tf.float64
    ),
    "numeric_scalar_shape": lambda m, p: m.sequence_numeric_column("k3", shape=()),
    "identity": lambda m, p: m.sequence_categorical_column_with_identity("animal", 4),
    "identity_default": lambda m, p: m.sequence_categorical_column_with_identity(
        "animal", 4, default_value=2
    ),
    "hash_int32": lambda m, p: m.sequence_categorical_column_with_hash_bucket(
        "h", 7, dtype=tf.int32
    ),
    "vocab_list": lambda m, p: m.sequence_categorical_column_with_vocabulary_list(
        "v", ["a", "b"], num_oov_buckets=2
    ),
    "vocab_list_int": lambda m, p: m.sequence_categorical_column_with_vocabulary_list(
        "vi", [10, 20, 30], default_value=1
    ),
    "vocab_file": lambda m, p: m.sequence_categorical_column_with_vocabulary_file(
        "f", p
    ),
    "vocab_file_oov": lambda m, p: m.sequence_categorical_column_with_vocabulary_file(
        "f", p, vocabulary_size=2, num_oov_buckets=3
    ),
    "weighted": lambda m, p: weighted(m),
    "indicator_identity": lambda m, p: m.indicator_column(
        m.sequence_categorical_column_with_identity("animal", 4)
    ),
    "indicator_vocab_file": lambda m, p: m.indicator_column(
        m.sequence_categorical_column_with_vocabulary_file("f", p)
    ),
    "embedding_default": lambda m, p: m.embedding_column(
        m.sequence_categorical_column_with_hash_bucket("h", 7, dtype=tf.int32), 3
    ),
    "embedding_options": lambda m, p: m.embedding_column(
        m.sequence_categorical_column_with_vocabulary_list("v", ["a", "b"]),
        2,
        combiner="sqrtn",
        max_norm=2.0,
        trainable=False,
        use_safe_embedding_lookup=False,
    ),
    "embedding_weighted": lambda m, p: m.embedding_column(weighted(m), 4, "sum"),
}


def tf_config(column):
    """TF's config as it is written to JSON and read back (tuples -> lists)."""
    return json.loads(json.dumps(TF_SERIALIZE(column)))


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_config_equals_tf(kind, vocab_path):
    ours = COLUMNS[kind](transforms, vocab_path)
    theirs = COLUMNS[kind](fc, vocab_path)
    assert serialize_column(ours) == TF_SERIALIZE(theirs)
    assert ours.get_config() == theirs.get_config()


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_tf_config_loads_as_ours(kind, vocab_path):
    """TF -> ours: TF's config (in memory and through JSON) gives our column."""
    ours = COLUMNS[kind](transforms, vocab_path)
    theirs = COLUMNS[kind](fc, vocab_path)
    assert deserialize_column(TF_SERIALIZE(theirs)) == ours
    assert deserialize_column(tf_config(theirs)) == ours
    assert type(ours).from_config(theirs.get_config()) == ours
    if "embedding" not in kind:  # TF's embedding repr has an object address
        assert repr(deserialize_column(TF_SERIALIZE(theirs))) == repr(theirs)


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_our_config_loads_in_tf(kind, vocab_path):
    """Ours -> TF: TF's deserializer and from_config rebuild TF's column."""
    ours = COLUMNS[kind](transforms, vocab_path)
    theirs = COLUMNS[kind](fc, vocab_path)
    back = TF_DESERIALIZE(serialize_column(ours))
    assert type(back) is type(theirs)
    assert back.get_config() == theirs.get_config()
    assert repr(back) == repr(theirs) or "initializer" in theirs.get_config()
    assert type(theirs).from_config(ours.get_config()).get_config() == (
        theirs.get_config()
    )


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_parents_as_tf(kind, vocab_path):
    ours = COLUMNS[kind](transforms, vocab_path)
    theirs = COLUMNS[kind](fc, vocab_path)

    def described(parents):
        return [
            p if isinstance(p, str) else (repr(p), described(p.parents))
            for p in parents
        ]

    if "embedding" in kind:  # TF's embedding repr holds its initializer object
        ours, theirs = ours.parents[0], theirs.parents[0]
    assert described(ours.parents) == described(theirs.parents)


def test_issue_example_indicator_identity():
    column = transforms.indicator_column(
        transforms.sequence_categorical_column_with_identity("animal", 4)
    )
    assert column.get_config() == {
        "categorical_column": {
            "class_name": "SequenceCategoricalColumn",
            "config": {
                "categorical_column": {
                    "class_name": "IdentityCategoricalColumn",
                    "config": {
                        "default_value": None,
                        "key": "animal",
                        "number_buckets": 4,
                    },
                }
            },
        }
    }
    assert transforms.sequence_numeric_column("k").parents == ["k"]


LAYER_COLUMNS = [
    "numeric",
    "numeric_2x3_f64",
    "indicator_identity",
    "embedding_default",
]


def test_layer_config_equals_tf_keras():
    def columns(m):
        return [COLUMNS[k](m, None) for k in LAYER_COLUMNS]

    ours = transforms.SequenceFeatures(columns(transforms), name="seq")
    theirs = tf_keras.experimental.SequenceFeatures(columns(fc), name="seq")
    assert ours.get_config() == theirs.get_config()
    numeric = next(
        c for c in ours.get_config()["feature_columns"] if c["config"].get("key") == "k"
    )
    assert numeric["config"]["shape"] == (1,)


def test_layer_from_tf_keras_config_and_back():
    """tf_keras' layer config -> ours -> tf_keras, same numbers with the same
    tables."""
    columns = [COLUMNS[k](fc, None) for k in LAYER_COLUMNS]
    theirs = tf_keras.experimental.SequenceFeatures(columns, name="seq")
    ours = transforms.SequenceFeatures.from_config(
        json.loads(json.dumps(theirs.get_config()))
    )
    assert ours.get_config() == theirs.get_config()
    again = tf_keras.experimental.SequenceFeatures.from_config(ours.get_config())
    assert again.get_config() == theirs.get_config()
    batch = {
        "k": sp([[1.0, 2.0], [3.0]]),
        "k2": sp([[1.0] * 12, [2.0] * 6], tf.float64),
        "animal": sp([[1, 3], [2]], tf.int64),
        "h": sp([[5, 6], [7]], tf.int32),
    }
    ref_out, ref_len = theirs(batch)
    ours.set_embedding_weights(
        {"h_embedding": next(v for v in theirs.variables if "h_embedding" in v.name)}
    )
    out, length = ours(batch)
    np.testing.assert_array_equal(out.numpy(), ref_out.numpy())
    np.testing.assert_array_equal(length.numpy(), ref_len.numpy())
