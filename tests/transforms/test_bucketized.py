"""sequence_bucketized_column: TF parity on single-step data (tf_keras
DenseFeatures over bucketized_column), NumPy on sequences, TF's checks."""

import os
import pickle
import warnings

import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*deprecated.*")

W = np.random.default_rng(2).normal(size=(12, 3)).astype(np.float32)
BOUNDARIES = [0.0, 1.0, 10.0]


def numpy_ids(values, boundaries, k):
    """Bucket of the i-th value of a step + i * (len(boundaries) + 1)."""
    values = np.asarray(values, np.float32).reshape(-1, k)
    buckets = np.searchsorted(np.asarray(boundaries, np.float32), values, side="right")
    return buckets + np.arange(k) * (len(boundaries) + 1)


@pytest.mark.parity
@pytest.mark.parametrize("shape", [(1,), (2,)])  # TF's shape () fails (IndexError)
def test_single_step_matches_tf_dense_features(shape):
    import tf_keras

    fc = tf.feature_column
    k = int(np.prod(shape))
    x = np.array([[-1.0, 5.0], [0.5, 20.0], [3.0, 1.0], [10.0, 0.0]], np.float32)
    x = x[:, :k]
    n = (len(BOUNDARIES) + 1) * k

    def build(m, numeric):
        bucket = (m.bucketized_column if m is fc else m.sequence_bucketized_column)(
            numeric("p", shape=shape), BOUNDARIES
        )
        init = tf.constant_initializer(W[:n]) if m is fc else W[:n]
        return [
            m.indicator_column(bucket),
            m.embedding_column(bucket, 3, combiner="sqrtn", initializer=init),
        ]

    ref = tf_keras.layers.DenseFeatures(build(fc, fc.numeric_column))
    want = ref({"p": x.reshape((4,) + shape)}).numpy()
    ours = T.SequenceFeatures(build(T, T.sequence_numeric_column))
    for inputs in (
        {"p": tf.ragged.constant(x[:, None, :].tolist(), ragged_rank=2)},
        {"p": tf.RaggedTensor.from_tensor(x).to_sparse()},  # [B, k]: 1 step
    ):
        out, length = ours(inputs)
        assert out.shape == (4, 1, n + 3)
        np.testing.assert_allclose(out.numpy()[:, 0], want, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(length.numpy(), [1, 1, 1, 1])


def test_sequence_matches_numpy():
    steps = [[[-1.0, 5.0], [0.5, 20.0], [3.0, 1.0]], [[10.0, 0.0]]]
    source = T.sequence_numeric_column("p", shape=(2,))
    bucket = T.sequence_bucketized_column(source, BOUNDARIES)
    assert bucket.num_buckets == 8
    layer = T.SequenceFeatures(
        [T.indicator_column(bucket), T.embedding_column(bucket, 3, "sum", W[:8])]
    )
    out, length = layer({"p": tf.ragged.constant(steps, ragged_rank=2)})
    np.testing.assert_array_equal(length.numpy(), [3, 1])
    out = out.numpy()
    for b, row in enumerate(steps):
        for t, values in enumerate(row):
            ids = numpy_ids(values, BOUNDARIES, 2)[0]
            hot = np.zeros(8, np.float32)
            hot[ids] = 1
            np.testing.assert_array_equal(out[b, t, 3:], hot)  # indicator
            np.testing.assert_allclose(out[b, t, :3], W[ids].sum(0), rtol=1e-6)
    assert not out[1, 1:].any()  # padding


def test_flat_2d_input_and_dense_input_agree():
    source = T.sequence_numeric_column("p", shape=(2,))
    layer = T.SequenceFeatures(
        [T.indicator_column(T.sequence_bucketized_column(source, BOUNDARIES))]
    )
    flat = tf.ragged.constant([[-1.0, 5.0, 0.5, 20.0], [10.0, 0.0]])  # 2 values/step
    steps = tf.ragged.constant(
        [[[-1.0, 5.0], [0.5, 20.0]], [[10.0, 0.0]]], ragged_rank=2
    )
    dense = np.array(
        [[[-1.0, 5.0], [0.5, 20.0]], [[10.0, 0.0], [0.0, 0.0]]], np.float32
    )
    a = layer({"p": flat})
    b = layer({"p": steps})
    c = layer({"p": dense}, sequence_length=[2, 1])
    for other in (b, c):
        np.testing.assert_array_equal(a[0].numpy(), other[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), other[1].numpy())


def test_normalizer_applies_before_bucketizing():
    source = T.sequence_numeric_column(
        "p", shape=(), normalizer_fn=T.zscore(10.0, 10.0)
    )
    layer = T.SequenceFeatures(
        [T.indicator_column(T.sequence_bucketized_column(source, [0.0]))]
    )
    out = layer({"p": tf.ragged.constant([[5.0, 15.0]])})[0].numpy()
    np.testing.assert_array_equal(out[0], [[1, 0], [0, 1]])


def test_with_numeric_source_in_one_layer():
    source = T.sequence_numeric_column("p")
    layer = T.SequenceFeatures(
        [source, T.indicator_column(T.sequence_bucketized_column(source, [2.0]))]
    )
    out, _ = layer({"p": tf.ragged.constant([[1.0, 3.0]])})
    np.testing.assert_array_equal(out.numpy()[0], [[1, 1, 0], [3, 0, 1]])
    assert T.make_parse_example_spec(layer.feature_columns) == {
        "p": tf.io.VarLenFeature(tf.float32)
    }


@pytest.mark.parametrize(
    "source, boundaries, match",
    [
        (
            T.sequence_categorical_column_with_identity("p", 3),
            [1.0],
            "source_column must be a column generated with sequence_numeric_column",
        ),
        (
            T.sequence_numeric_column("p", shape=(2, 2)),
            [1.0],
            "source_column must be one-dimensional column",
        ),
        (T.sequence_numeric_column("p"), [], "boundaries must not be empty"),
        (
            T.sequence_numeric_column("p"),
            [2.0, 1.0],
            "boundaries must be a sorted list",
        ),
        (
            T.sequence_numeric_column("p"),
            [1.0, 1.0],
            "boundaries must be a sorted list",
        ),
        (T.sequence_numeric_column("p"), {1.0: 2}, "boundaries must be a sorted list"),
        (T.sequence_numeric_column("p"), ["a"], "Expected numbers"),
    ],
)
def test_tf_checks(source, boundaries, match):
    with pytest.raises(ValueError, match=match):
        T.sequence_bucketized_column(source, boundaries)


def test_names_config_and_pickle():
    source = T.sequence_numeric_column("p", shape=(2,))
    bucket = T.sequence_bucketized_column(source, [0, 1.5])
    assert bucket.name == "p_bucketized" and bucket.key == "p"
    assert bucket.boundaries == (0, 1.5) and bucket.num_buckets == 6
    assert T.embedding_column(bucket, 2).name == "p_bucketized_embedding"
    layer = T.SequenceFeatures([T.indicator_column(bucket)])
    clone = T.SequenceFeatures.from_config(layer.get_config())
    assert clone.feature_columns == layer.feature_columns
    assert pickle.loads(pickle.dumps(bucket)) == bucket
    assert repr(bucket).startswith(
        "SequenceBucketizedColumn(source_column=SequenceNumericColumn(key='p'"
    )
