"""sequence_weighted_categorical_column: TF parity (tf_keras SequenceFeatures over
TF's own SequenceCategoricalColumn(weighted_categorical_column(...))), NumPy
formulas, parse spec, checks, count mismatches, serialization."""

import os
import pickle
import warnings

import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*deprecated.*")

W = np.random.default_rng(5).normal(size=(10, 3)).astype(np.float32)
IDS = [[[1, 2], [3]], [[4, 4, 5], [], [6]], [[7]]]
WEIGHTS = [[[0.5, 2.0], [1.5]], [[1.0, -1.0, 3.0], [], [0.0]], [[0.25]]]


def ragged(rows, dtype=None):
    return tf.ragged.constant(rows, dtype=dtype, ragged_rank=2)


def features(ids=IDS, weights=WEIGHTS, sparse=True):
    f = {"ids": ragged(ids, tf.int64), "w": ragged(weights, tf.float32)}
    return {k: v.to_sparse() for k, v in f.items()} if sparse else f


def weighted(key="ids", n=10, weight_key="w"):
    return T.sequence_weighted_categorical_column(
        T.sequence_categorical_column_with_identity(key, n), weight_key
    )


def numpy_embedding(ids, weights, table, combiner, num_steps):
    """Hand-computed: per step sum(w e), / sum(w) or / sqrt(sum w^2); for mean
    and sqrtn entries with w <= 0 are pruned (TF's safe lookup)."""
    out = np.zeros((len(ids), num_steps, table.shape[1]), np.float64)
    for b, row in enumerate(ids):
        for t, step in enumerate(row):
            pairs = list(zip(step, weights[b][t], strict=True))
            if combiner != "sum":
                pairs = [(i, w) for i, w in pairs if w > 0]
            if not pairs:
                continue
            total = sum(w * table[i].astype(np.float64) for i, w in pairs)
            if combiner == "mean":
                total = total / sum(w for _, w in pairs)
            elif combiner == "sqrtn":
                total = total / np.sqrt(sum(w * w for _, w in pairs))
            out[b, t] = total
    return out


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_embedding_matches_numpy(combiner):
    layer = T.SequenceFeatures([T.embedding_column(weighted(), 3, combiner, W)])
    out, length = layer(features())
    want = numpy_embedding(IDS, WEIGHTS, W, combiner, 3)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(length.numpy(), [2, 3, 1])


def test_indicator_sums_weights_like_tf():
    """TF's indicator of a weighted column sums the weights of each id
    (negative and zero weights included; repeated ids accumulate)."""
    layer = T.SequenceFeatures([T.indicator_column(weighted())])
    out = layer(features())[0].numpy()
    want = np.zeros((3, 3, 10), np.float32)
    for b, row in enumerate(IDS):
        for t, step in enumerate(row):
            for i, w in zip(step, WEIGHTS[b][t], strict=True):
                want[b, t, i] += w
    np.testing.assert_array_equal(out, want)
    assert out[1, 0, 4] == 0.0  # 1.0 + -1.0


def test_ragged_equals_sparse():
    cols = [
        T.embedding_column(weighted(), 3, "sqrtn", W),
        T.indicator_column(weighted()),
    ]
    layer = T.SequenceFeatures(cols)
    a, la = layer(features(sparse=True))
    b, lb = layer(features(sparse=False))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(la.numpy(), lb.numpy())


@pytest.mark.parity
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("kind", ["identity", "vocabulary_list", "hash_bucket"])
def test_embedding_bit_identical_to_tf(combiner, kind):
    """TF has no sequence weighted column, but its SequenceFeatures accepts
    SequenceCategoricalColumn(weighted_categorical_column(...)) built by hand."""
    import tf_keras
    from tensorflow.python.feature_column import feature_column_v2 as fc2

    fc = tf.feature_column
    vocab = ["a", "b", "c", "d"]
    values = {
        "identity": (IDS, tf.int64),
        "vocabulary_list": (
            [[["a", "b"], ["zz"]], [["c", "c", "d"], [], ["a"]], [["b"]]],
            tf.string,
        ),
        "hash_bucket": (
            [[["x", "y"], ["z"]], [["u", "u", "v"], [], ["w"]], [["q"]]],
            tf.string,
        ),
    }[kind]

    def inner(m, seq):
        if kind == "identity":
            return (
                m.sequence_categorical_column_with_identity("ids", 10)
                if seq
                else m.categorical_column_with_identity("ids", 10)
            )
        if kind == "vocabulary_list":
            f = (
                m.sequence_categorical_column_with_vocabulary_list
                if seq
                else m.categorical_column_with_vocabulary_list
            )
            return f("ids", vocab, num_oov_buckets=2)
        f = (
            m.sequence_categorical_column_with_hash_bucket
            if seq
            else m.categorical_column_with_hash_bucket
        )
        return f("ids", 10)

    ref_cat = fc2.SequenceCategoricalColumn(
        fc.weighted_categorical_column(inner(fc, False), "w")
    )
    ours_cat = T.sequence_weighted_categorical_column(inner(T, True), "w")
    assert repr(ours_cat) == repr(ref_cat)
    assert ours_cat.name == ref_cat.name
    n = ours_cat.num_buckets
    ref = tf_keras.experimental.SequenceFeatures(
        [
            fc.embedding_column(
                ref_cat,
                3,
                combiner=combiner,
                initializer=tf.constant_initializer(W[:n]),
                max_norm=1.5,
            )
        ]
    )
    ours = T.SequenceFeatures(
        [T.embedding_column(ours_cat, 3, combiner, W[:n], max_norm=1.5)]
    )
    feats = {
        "ids": ragged(values[0], values[1]).to_sparse(),
        "w": ragged(WEIGHTS, tf.float32).to_sparse(),
    }
    ref_out, ref_len = ref(feats)
    out, length = ours(feats)
    np.testing.assert_array_equal(out.numpy(), ref_out.numpy())
    np.testing.assert_array_equal(length.numpy(), ref_len.numpy())


def _sequence_example(ids, weights):
    ex = tf.train.SequenceExample()
    for step in ids:
        ex.feature_lists.feature_list["ids"].feature.add().int64_list.value.extend(step)
    for step in weights:
        ex.feature_lists.feature_list["w"].feature.add().float_list.value.extend(step)
    return ex.SerializeToString()


def test_parse_spec_includes_weights_and_parses():
    col = T.embedding_column(weighted(), 3, "sum", W)
    spec = T.make_parse_example_spec([col])
    assert spec == {
        "ids": tf.io.VarLenFeature(tf.int64),
        "w": tf.io.VarLenFeature(tf.float32),
    }
    serialized = [_sequence_example(i, w) for i, w in zip(IDS, WEIGHTS, strict=True)]
    _, parsed, _ = tf.io.parse_sequence_example(serialized, sequence_features=spec)
    out, _ = T.SequenceFeatures([col])(parsed)
    want = numpy_embedding(IDS, WEIGHTS, W, "sum", 3)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)


def test_names_and_properties():
    col = weighted()
    assert col.name == "ids_weighted_by_w"
    assert col.key == "ids" and col.num_buckets == 10 and col.dtype == tf.float32
    assert T.embedding_column(col, 2).name == "ids_weighted_by_w_embedding"
    assert T.indicator_column(col).name == "ids_weighted_by_w_indicator"
    assert T.indicator_column(col).output_width == 10


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: T.sequence_weighted_categorical_column(
                T.sequence_categorical_column_with_identity("ids", 3), "ids"
            ),
            ValueError,
            "Parse config .* already exists for ids",
        ),
        (lambda: weighted(weight_key=7), ValueError, "key must be a string"),
        (
            lambda: T.sequence_weighted_categorical_column(
                T.sequence_categorical_column_with_identity("ids", 3),
                "w",
                dtype=tf.string,
            ),
            ValueError,
            "dtype <dtype: 'string'> is not convertible to float",
        ),
        (
            lambda: T.sequence_weighted_categorical_column(
                T.sequence_numeric_column("x"), "w"
            ),
            ValueError,
            "Input must be a CategoricalColumn",
        ),
    ],
)
def test_constructor_checks(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_weight_dtype_must_match():
    layer = T.SequenceFeatures([T.indicator_column(weighted())])
    f = features()
    f["w"] = tf.cast(f["w"], tf.float64)
    with pytest.raises(ValueError, match="Bad dtype, expected <dtype: 'float32'>"):
        layer(f)


@pytest.mark.parametrize(
    "weights",
    [
        [[[0.5], [1.5]], [[1.0, -1.0, 3.0], [], [0.0]], [[0.25]]],  # one missing
        [[[0.5, 2.0], [1.5]], [[1.0, -1.0, 3.0], [1.0], [0.0]], [[0.25]]],  # extra
        [[[0.5, 2.0], [1.5]], [[1.0, -1.0, 3.0], []], [[0.25]]],  # step missing
    ],
)
def test_count_mismatch_is_invalid_argument(weights):
    layer = T.SequenceFeatures([T.embedding_column(weighted(), 3, "sum", W)])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="one weight per id .* at every step"
    ):
        layer(features(weights=weights))
    traced = tf.function(lambda f: layer(f))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one weight per id"):
        traced(features(weights=weights))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one weight per id"):
        layer(features(weights=weights, sparse=False))


def test_dense_inputs_with_sequence_length():
    ids = np.array([[1, 2, -1], [4, -1, -1]], np.int64)[..., None]  # [B, T, 1]
    w = np.array([[0.5, 2.0, 0.0], [3.0, 0.0, 0.0]], np.float32)[..., None]
    layer = T.SequenceFeatures([T.embedding_column(weighted(), 3, "sum", W)])
    out, length = layer({"ids": ids, "w": w}, sequence_length=[2, 1])
    want = numpy_embedding([[[1], [2]], [[4]]], [[[0.5], [2.0]], [[3.0]]], W, "sum", 3)
    np.testing.assert_allclose(out.numpy()[:, :2], want[:, :2], rtol=1e-6)
    np.testing.assert_array_equal(length.numpy(), [2, 1])


def test_serialization_round_trip():
    col = T.embedding_column(weighted(), 3, "mean", W)
    layer = T.SequenceFeatures([col, T.indicator_column(weighted())])
    clone = T.SequenceFeatures.from_config(layer.get_config())
    assert clone.feature_columns == layer.feature_columns
    np.testing.assert_array_equal(clone(features())[0], layer(features())[0])
    again = pickle.loads(pickle.dumps(weighted()))
    assert again == weighted() and hash(again) == hash(weighted())
