"""Dense padded inputs (`sequence_length=`, `padding_value=`) and ragged inputs:
the same numbers as the equivalent SparseTensors, no sparse round trip."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

W = np.random.default_rng(4).normal(size=(10, 3)).astype(np.float32)
LENGTHS = [3, 1, 0]
RATING = [[1.0, 2.0, 3.0], [4.0], []]
PAIR = [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0]], []]
IDS = [[1, 2, 3], [4], []]
GENRE = [["a", "b", "zz"], ["c"], []]


def columns():
    genre = T.sequence_categorical_column_with_vocabulary_list(
        "genre", ["a", "b", "c"], num_oov_buckets=1
    )
    ids = T.sequence_categorical_column_with_identity("ids", 10)
    return [
        T.sequence_numeric_column("rating", default_value=-1.0),
        T.sequence_numeric_column("pair", shape=(2,)),
        T.embedding_column(ids, 3, initializer=W),
        T.indicator_column(genre),
    ]


def pad(rows, value, width=None):
    t = max(len(r) for r in rows)
    out = []
    for r in rows:
        fill = value if width is None else [value] * width
        out.append(list(r) + [fill] * (t - len(r)))
    return out


def sparse_features():
    return {
        "rating": tf.ragged.constant(RATING).to_sparse(),
        "pair": tf.ragged.constant(PAIR, ragged_rank=2).to_sparse(),
        "ids": tf.ragged.constant(IDS, tf.int64).to_sparse(),
        "genre": tf.ragged.constant(GENRE).to_sparse(),
    }


def dense_features():
    return {
        "rating": np.array(pad(RATING, 9.0), np.float32),  # [B, T]
        "pair": np.array(pad(PAIR, 9.0, 2), np.float32),  # [B, T, 2]
        "ids": np.array(pad(IDS, 0), np.int64),  # garbage past the length
        "genre": np.array(pad(GENRE, "a"), object),
    }


@pytest.fixture(scope="module")
def layer():
    return T.SequenceFeatures(columns())


@pytest.fixture(scope="module")
def expected(layer):
    out, length = layer(sparse_features())
    return out.numpy(), length.numpy()


def test_dense_with_sequence_length_equals_sparse(layer, expected):
    out, length = layer(dense_features(), sequence_length=LENGTHS)
    np.testing.assert_array_equal(out.numpy(), expected[0])
    np.testing.assert_array_equal(length.numpy(), expected[1])
    np.testing.assert_array_equal(length.numpy(), LENGTHS)


def test_ragged_equals_sparse(layer, expected):
    ragged = {
        "rating": tf.ragged.constant(RATING),
        "pair": tf.ragged.constant(PAIR, ragged_rank=2),
        "ids": tf.ragged.constant(IDS, tf.int64),
        "genre": tf.ragged.constant(GENRE),
    }
    out, length = layer(ragged)
    np.testing.assert_array_equal(out.numpy(), expected[0])
    np.testing.assert_array_equal(length.numpy(), expected[1])


def test_padding_value_marks_absent_values(layer, expected):
    features = dense_features()
    features["ids"] = np.array(pad(IDS, -1), np.int64)  # TF's ignore value
    features["genre"] = np.array(pad(GENRE, ""), object)
    out, length = layer(features, padding_value=9.0)
    np.testing.assert_array_equal(out.numpy(), expected[0])
    np.testing.assert_array_equal(length.numpy(), expected[1])


def test_padding_value_per_key(layer, expected):
    features = dense_features()
    features["genre"] = np.array(pad(GENRE, "<pad>"), object)
    out, _ = layer(
        features,
        padding_value={"rating": 9.0, "pair": 9.0, "ids": 0, "genre": "<pad>"},
    )
    np.testing.assert_array_equal(out.numpy(), expected[0])


def test_traced_dense_inputs(layer, expected):
    traced = tf.function(lambda f, n: layer(f, sequence_length=n))
    features = {k: tf.constant(v) for k, v in dense_features().items()}
    out, length = traced(features, tf.constant(LENGTHS))
    np.testing.assert_array_equal(out.numpy(), expected[0])
    np.testing.assert_array_equal(length.numpy(), expected[1])


def _op_types(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_numeric_paths_build_no_sparse_tensor():
    layer = T.SequenceFeatures(
        [
            T.sequence_numeric_column("rating"),
            T.sequence_numeric_column("pair", shape=(2,)),
        ]
    )
    dense = {
        "rating": tf.TensorSpec([None, None], tf.float32),
        "pair": tf.TensorSpec([None, None, 2], tf.float32),
    }
    ops = _op_types(
        lambda f, n: layer(f, sequence_length=n),
        dense,
        tf.TensorSpec([None], tf.int64),
    )
    assert not {"Where", "GatherNd", "RaggedTensorToSparse"} & ops, ops
    ragged = {
        "rating": tf.RaggedTensorSpec(
            [None, None], tf.float32, row_splits_dtype=tf.int64
        ),
        "pair": tf.RaggedTensorSpec(
            [None, None, None], tf.float32, ragged_rank=2, row_splits_dtype=tf.int64
        ),
    }
    ops = _op_types(lambda f: layer(f), ragged)
    assert not {"RaggedTensorToSparse", "Where", "RaggedTensorToTensor"} & ops, ops


def test_dense_numeric_without_length_or_padding_is_refused_like_tf():
    layer = T.SequenceFeatures([T.sequence_numeric_column("rating")])
    with pytest.raises(TypeError, match="Input must be a SparseTensor"):
        layer({"rating": np.ones((2, 3), np.float32)})


def test_dense_categorical_without_length_keeps_tf_rule():
    ids = T.sequence_categorical_column_with_identity("ids", 10)
    layer = T.SequenceFeatures([T.indicator_column(ids)])
    out, length = layer({"ids": np.array([[1, -1, 2, -1]], np.int64)})
    np.testing.assert_array_equal(length.numpy(), [3])  # last id at step 2


def test_lengths_out_of_range_are_invalid():
    layer = T.SequenceFeatures([T.sequence_numeric_column("rating")])
    with pytest.raises(tf.errors.InvalidArgumentError, match="sequence_length"):
        layer({"rating": np.ones((2, 3), np.float32)}, sequence_length=[4, 1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="sequence_length"):
        tf.function(lambda f, n: layer(f, sequence_length=n))(
            {"rating": tf.ones((2, 3))}, tf.constant([-1, 1])
        )


def test_padding_value_dict_with_unknown_key():
    layer = T.SequenceFeatures([T.sequence_numeric_column("rating")])
    with pytest.raises(ValueError, match="padding_value"):
        layer({"rating": np.ones((1, 2), np.float32)}, padding_value={"x": 0.0})


def test_dense_width_must_be_a_step_axis():
    layer = T.SequenceFeatures([T.sequence_numeric_column("pair", shape=(2,))])
    with pytest.raises(ValueError, match=r"must be \[B, T, 2\]"):
        layer({"pair": np.ones((1, 4), np.float32)}, sequence_length=[2])


def test_keras_functional_model_with_dense_input_and_lengths():
    rating = keras.Input(shape=(None,), dtype="float32", name="rating")
    lengths = keras.Input(shape=(), dtype="int64", name="lengths")
    layer = T.SequenceFeatures([T.sequence_numeric_column("rating")])
    x, _ = layer({"rating": rating}, sequence_length=lengths)
    model = keras.Model([rating, lengths], x)
    out = model([np.array([[1.0, 2.0, 9.0]], np.float32), np.array([2])])
    np.testing.assert_array_equal(np.asarray(out)[0, :, 0], [1.0, 2.0, 0.0])
