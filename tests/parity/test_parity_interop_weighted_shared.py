"""from_tf_feature_columns for TF's weighted categorical and shared-embedding
columns: same numbers as tf_keras' SequenceFeatures."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from parity_helpers import sp, sp3
from tensorflow.python.feature_column import feature_column_v2 as tf_fc

import transforms

pytestmark = pytest.mark.parity
fc = tf.feature_column
W = (np.arange(24, dtype=np.float32).reshape(8, 3) - 7.0) / 5.0


def weighted_inside(key="t", weight="f"):
    """TF's form its layer computes: SequenceCategoricalColumn(weighted(X))."""
    inner = fc.categorical_column_with_vocabulary_list(
        key, ["a", "b", "c"], num_oov_buckets=5
    )
    return tf_fc.SequenceCategoricalColumn(
        fc.weighted_categorical_column(inner, weight)
    )


def weighted_outside(key="t", weight="f"):
    """The form users write: weighted_categorical_column(sequence_*(...))."""
    inner = fc.sequence_categorical_column_with_vocabulary_list(
        key, ["a", "b", "c"], num_oov_buckets=5
    )
    return fc.weighted_categorical_column(inner, weight)


BATCHES = {
    "one_per_step": {
        "t": sp([["a", "zz", "c"], ["b"]]),
        "f": sp([[2.0, 0.5, -1.0], [3.0]]),
    },
    "several_per_step": {
        "t": sp3([[["a", "b"], ["c"]], [["zz", "a", "a"]]]),
        "f": sp3([[[2.0, 1.0], [0.5]], [[1.0, 3.0, 0.25]]]),
    },
    "zero_weight": {
        "t": sp3([[["a", "b"], ["c"]], [["b"]]]),
        "f": sp3([[[0.0, 1.0], [0.0]], [[4.0]]]),
    },
}


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("form", ["inside", "outside"])
def test_weighted_embedding_parity(batch, combiner, form):
    init = tf.constant_initializer(W)
    reference = fc.embedding_column(weighted_inside(), 3, combiner, initializer=init)
    given = (
        reference
        if form == "inside"
        else fc.embedding_column(weighted_outside(), 3, combiner, initializer=init)
    )
    numeric = fc.sequence_numeric_column("n")
    features = dict(BATCHES[batch], n=sp([[1.0, 2.0, 3.0], [4.0]]))
    if batch != "one_per_step":
        features["n"] = sp([[1.0, 2.0], [4.0]])
    ref_out, ref_len = tf_keras.experimental.SequenceFeatures([reference, numeric])(
        features
    )
    columns = transforms.from_tf_feature_columns([given, numeric])
    assert columns[0] == transforms.embedding_column(
        transforms.sequence_weighted_categorical_column(
            transforms.sequence_categorical_column_with_vocabulary_list(
                "t", ["a", "b", "c"], num_oov_buckets=5
            ),
            "f",
        ),
        3,
        combiner,
        initializer=init,
    )
    for call in ("eager", "traced"):
        layer = transforms.SequenceFeatures(columns)
        run = layer if call == "eager" else tf.function(layer)
        out, length = run(features)
        np.testing.assert_allclose(out.numpy(), ref_out.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(length.numpy(), ref_len.numpy())


def test_weighted_parse_spec_and_name_match_tf():
    ours = transforms.from_tf_feature_columns([weighted_outside()])[0]
    assert ours.name == weighted_outside().name == weighted_inside().name
    assert transforms.make_parse_example_spec([ours]) == fc.make_parse_example_spec(
        [weighted_inside()]
    )


def shared_reference(combiner, features, table):
    """tf_keras' output for TF's shared_embeddings (graph mode only in TF 2)."""
    with tf.Graph().as_default():
        columns = fc.shared_embeddings(
            [
                fc.sequence_categorical_column_with_identity("a", 8),
                fc.sequence_categorical_column_with_identity("b", 8),
            ],
            3,
            combiner=combiner,
            initializer=tf.constant_initializer(table),
        )
        out, length = tf_keras.experimental.SequenceFeatures(columns)(
            {k: v() for k, v in features.items()}
        )
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return session.run([out, length]), columns


SHARED_FEATURES = {
    "a": lambda: sp([[1, 2, 7], [3]], tf.int64),
    "b": lambda: sp([[4, 0, 0], [1]], tf.int64),
}


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_shared_embeddings_parity(combiner):
    (ref_out, ref_len), tf_columns = shared_reference(combiner, SHARED_FEATURES, W)
    columns = transforms.from_tf_feature_columns(tf_columns)
    assert [c.name for c in columns] == ["a_shared_embedding", "b_shared_embedding"]
    assert {c.table_name for c in columns} == {"a_b_shared_embedding"}
    layer = transforms.SequenceFeatures(columns)
    out, length = layer({k: v() for k, v in SHARED_FEATURES.items()})
    assert len(layer.weights) == 1
    np.testing.assert_array_equal(out.numpy(), ref_out)
    np.testing.assert_array_equal(length.numpy(), ref_len)


def test_shared_embeddings_default_initializer_becomes_ours():
    with tf.Graph().as_default():
        tf_columns = fc.shared_embeddings(
            [
                fc.sequence_categorical_column_with_identity("a", 8),
                fc.sequence_categorical_column_with_identity("b", 8),
            ],
            3,
        )
        columns = transforms.from_tf_feature_columns(tf_columns)
    assert columns == transforms.sequence_shared_embedding_columns(
        [
            transforms.sequence_categorical_column_with_identity("a", 8),
            transforms.sequence_categorical_column_with_identity("b", 8),
        ],
        3,
    )
