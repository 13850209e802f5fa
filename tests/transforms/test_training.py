"""The layer in tf.function (one trace for all shapes), tf.data, and a training
Keras 3 model (SimpleRNN masked with tf.sequence_mask)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T

W1000 = np.random.default_rng(11).normal(size=(1000, 10)).astype(np.float32)


def seed_columns(initializer=W1000):
    rating = T.sequence_numeric_column("rating")
    watches = T.sequence_categorical_column_with_identity("watches", num_buckets=1000)
    return [rating, T.embedding_column(watches, dimension=10, initializer=initializer)]


def test_seed_example_parse_example(seed_serialized):
    """The issue's example: shapes and values as the reference gives them."""
    columns = seed_columns()
    spec = T.make_parse_example_spec(columns)
    assert spec == {
        "rating": tf.io.VarLenFeature(tf.float32),
        "watches": tf.io.VarLenFeature(tf.int64),
    }
    features = tf.io.parse_example(seed_serialized, spec)
    out, length = T.SequenceFeatures(columns)(features, training=True)
    assert out.shape == (2, 5, 11) and out.dtype == tf.float32
    np.testing.assert_array_equal(length.numpy(), [2, 5])
    expected = np.zeros((2, 5, 11), np.float32)
    expected[0, :2, 0] = [1.0, 1.1]
    expected[0, :2, 1:] = W1000[[2, 85]]
    expected[1, :, 0] = [2.0, 2.1, 2.2, 2.3, 2.5]
    expected[1, :, 1:] = W1000[[33, 78, 2, 73, 1]]
    np.testing.assert_array_equal(out.numpy(), expected)


def test_one_trace_for_all_batch_and_time_sizes():
    layer = T.SequenceFeatures(
        seed_columns()
        + [
            T.indicator_column(
                T.sequence_categorical_column_with_vocabulary_list("g", ["a", "b", "c"])
            )
        ]
    )
    layer.build()  # creating variables inside the first trace costs one extra trace
    traces = []

    @tf.function(
        input_signature=[
            {
                "rating": tf.SparseTensorSpec([None, None], tf.float32),
                "watches": tf.SparseTensorSpec([None, None], tf.int64),
                "g": tf.SparseTensorSpec([None, None], tf.string),
            }
        ]
    )
    def step(features):
        traces.append(1)
        return layer(features)

    rng = np.random.default_rng(0)
    for batch_size in (1, 3, 17, 64):
        lengths = rng.integers(0, 40, size=batch_size)
        batch = {
            "rating": tf.ragged.constant(
                [list(rng.normal(size=n)) for n in lengths], tf.float32
            ).to_sparse(),
            "watches": tf.ragged.constant(
                [list(rng.integers(0, 1000, n)) for n in lengths], tf.int64
            ).to_sparse(),
            "g": tf.ragged.constant(
                [[["a", "b", "z"][i % 3] for i in range(n)] for n in lengths], tf.string
            ).to_sparse(),
        }
        out, length = step(batch)
        eager_out, eager_length = layer(batch)
        np.testing.assert_array_equal(out.numpy(), eager_out.numpy())
        np.testing.assert_array_equal(length.numpy(), lengths)
        assert out.shape == (batch_size, max(lengths), 14)
    assert len(traces) == 1
    assert step.experimental_get_tracing_count() == 1


def test_one_trace_for_ragged_inputs():
    layer = T.SequenceFeatures(seed_columns())
    layer.build()
    traces = []

    @tf.function(
        input_signature=[
            {
                "rating": tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1),
                "watches": tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1),
            }
        ]
    )
    def step(features):
        traces.append(1)
        return layer(features)

    for rows in ([[1]], [[1, 2, 3], [4]], [[5, 6], [], [7, 8, 9, 10]]):
        out, length = step(
            {
                "rating": tf.ragged.constant(rows, tf.float32),
                "watches": tf.ragged.constant(rows, tf.int64),
            }
        )
        np.testing.assert_array_equal(length.numpy(), [len(r) for r in rows])
        assert out.shape == (len(rows), max(len(r) for r in rows), 11)
    assert len(traces) == 1


@pytest.mark.parametrize("build_first", [True, False])
def test_tf_data_map(build_first):
    columns = seed_columns() + [
        T.indicator_column(
            T.sequence_categorical_column_with_vocabulary_list(
                "genre", ["a", "b"], num_oov_buckets=1
            )
        )
    ]
    layer = T.SequenceFeatures(columns)
    if build_first:
        layer.build()
    spec = T.make_parse_example_spec(columns)

    def make(r, w, g):
        return tf.train.Example(
            features=tf.train.Features(
                feature={
                    "rating": tf.train.Feature(float_list=tf.train.FloatList(value=r)),
                    "watches": tf.train.Feature(int64_list=tf.train.Int64List(value=w)),
                    "genre": tf.train.Feature(bytes_list=tf.train.BytesList(value=g)),
                }
            )
        ).SerializeToString()

    records = [
        make(
            [1.0] * n,
            list(range(n)),
            [b"a", b"b", b"q"][: min(n, 3)] + [b"a"] * max(0, n - 3),
        )
        for n in (1, 4, 2, 7, 3)
    ]
    ds = (
        tf.data.Dataset.from_tensor_slices(records)
        .batch(2)
        .map(lambda s: tf.io.parse_example(s, spec))
        .map(layer)
    )
    results = list(ds)
    assert [r[0].shape[:2] for r in results] == [(2, 4), (2, 7), (1, 3)]
    eager = [layer(tf.io.parse_example(records[i : i + 2], spec)) for i in (0, 2, 4)]
    for (out, length), (e_out, e_length) in zip(results, eager, strict=True):
        np.testing.assert_array_equal(out.numpy(), e_out.numpy())
        np.testing.assert_array_equal(length.numpy(), e_length.numpy())


@keras.saving.register_keras_serializable(package="seqshards_tests")
class SequenceMask(keras.layers.Layer):
    def call(self, sequence_input, sequence_length):
        return tf.sequence_mask(sequence_length, tf.shape(sequence_input)[1])

    def compute_output_spec(self, sequence_input, sequence_length):
        return keras.KerasTensor(sequence_input.shape[:2], dtype="bool")


def test_simple_rnn_with_sequence_mask_trains():
    """Target: fraction of watched ids < 25 in the sequence; the loss must fall."""
    keras.utils.set_random_seed(0)
    columns = [
        T.sequence_numeric_column("rating"),
        T.embedding_column(
            T.sequence_categorical_column_with_identity("watches", 50), 8
        ),
    ]
    inputs = {
        "rating": keras.Input(
            shape=(None,), sparse=True, dtype="float32", name="rating"
        ),
        "watches": keras.Input(
            shape=(None,), sparse=True, dtype="int64", name="watches"
        ),
    }
    seq, length = T.SequenceFeatures(columns)(inputs)
    hidden = keras.layers.SimpleRNN(16)(seq, mask=SequenceMask()(seq, length))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(keras.optimizers.Adam(0.01), "mse")

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 10, size=512)
    watches = [rng.integers(0, 50, n) for n in lengths]
    ratings = [rng.normal(size=n) for n in lengths]
    y = np.array([[np.mean(w < 25)] for w in watches], np.float32)
    ds = (
        tf.data.Dataset.from_tensor_slices(
            (
                {
                    "rating": tf.ragged.constant(ratings, tf.float32),
                    "watches": tf.ragged.constant(watches, tf.int64),
                },
                y,
            )
        )
        .batch(32)
        .map(lambda f, t: ({k: v.to_sparse() for k, v in f.items()}, t))
    )
    history = model.fit(ds, epochs=6, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0], history


def test_functional_model_with_ragged_inputs():
    columns = [
        T.sequence_numeric_column("r"),
        T.indicator_column(T.sequence_categorical_column_with_identity("w", 5)),
    ]
    inputs = {
        "r": keras.Input(shape=(None,), ragged=True, dtype="float32", name="r"),
        "w": keras.Input(shape=(None,), ragged=True, dtype="int64", name="w"),
    }
    seq, length = T.SequenceFeatures(columns)(inputs)
    model = keras.Model(inputs, [seq, length])
    out, length = model(
        {
            "r": tf.ragged.constant([[1.0, 2.0], [3.0]]),
            "w": tf.ragged.constant([[1, 2], [3]], dtype=tf.int64),
        }
    )
    np.testing.assert_array_equal(
        out.numpy(),
        [[[1, 0, 1, 0, 0, 0], [2, 0, 0, 1, 0, 0]], [[3, 0, 0, 0, 1, 0], [0] * 6]],
    )
    np.testing.assert_array_equal(length.numpy(), [2, 1])


def test_static_shapes_in_graph():
    layer = T.SequenceFeatures(seed_columns())
    layer.build()
    spec = {
        "rating": tf.SparseTensorSpec([None, None], tf.float32),
        "watches": tf.SparseTensorSpec([None, None], tf.int64),
    }
    graph = tf.function(layer).get_concrete_function(spec)
    out, length = graph.structured_outputs
    assert out.shape.as_list() == [None, None, 11]
    assert length.shape.as_list() == [None]
