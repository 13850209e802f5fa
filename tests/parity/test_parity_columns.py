"""Parity of every column kind against tf.feature_column + tf_keras SequenceFeatures.

Same columns (built through both APIs, which share function names), same
embedding tables, same batch; outputs must be bit-identical float32.
"""

import numpy as np
import pytest
import tensorflow as tf
from parity_helpers import Oracle, sp, sp3

pytestmark = pytest.mark.parity

RNG = np.random.default_rng(7)
W5 = np.array([[0.2 * i + 0.1, 0.2 * i + 0.2] for i in range(5)], np.float32)
W100 = RNG.normal(size=(100, 8)).astype(np.float32)
W1000 = RNG.normal(size=(1000, 10)).astype(np.float32)


def ident(m, key="w", n=5, default=None):
    return m.sequence_categorical_column_with_identity(key, n, default_value=default)


def emb(m, cat, table, **kw):
    return m.embedding_column(
        cat, table.shape[1], initializer=Oracle.init(m, table), **kw
    )


def many_ids(batch, max_steps, max_k, n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        steps = rng.integers(0, max_steps + 1)
        rows.append(
            [
                list(rng.integers(-1, n, size=rng.integers(0, max_k + 1)))
                for _ in range(steps)
            ]
        )
    return sp3(rows, tf.int64)


def norm10(x):
    return tf.SparseTensor(x.indices, x.values * 10 + 1, x.dense_shape)


CASES = {
    # numeric
    "numeric_default": (
        lambda m: [m.sequence_numeric_column("n", default_value=-7.0)],
        {"n": sp([[1.0, 2, 3], [4.0], []])},
    ),
    "numeric_holes": (
        lambda m: [m.sequence_numeric_column("n", default_value=-7.0)],
        {"n": tf.SparseTensor([[0, 0], [0, 2]], [1.0, 3.0], [1, 3])},
    ),
    "numeric_shape2": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,), default_value=-1.0)],
        {"n": sp([[1.0, 2, 3, 4], [5.0]])},
    ),
    "numeric_shape2_odd": (
        lambda m: [m.sequence_numeric_column("n", shape=2)],
        {"n": sp([[1.0, 2, 3], [1.0, 2, 3, 4]])},
    ),
    "numeric_shape2x3": (
        lambda m: [m.sequence_numeric_column("n", shape=(2, 3))],
        {"n": sp([list(np.arange(12.0)), [0.5]])},
    ),
    "numeric_scalar_shape": (
        lambda m: [m.sequence_numeric_column("n", shape=())],
        {"n": sp([[1.0, 2], [3.0]])},
    ),
    "numeric_normalizer": (
        lambda m: [m.sequence_numeric_column("n", normalizer_fn=norm10)],
        {"n": sp([[1.0, 2], [3.0]])},
    ),
    "numeric_3d": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,))],
        {"n": sp3([[[1.0, 2], [3.0, 4]], [[5.0, 6]]])},
    ),
    "numeric_3d_quirk": (
        lambda m: [m.sequence_numeric_column("n")],
        {"n": tf.SparseTensor([[0, 0, 0], [0, 1, 1]], [1.0, 2.0], [1, 2, 2])},
    ),
    "numeric_float64": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,))],
        {"n": sp([[1.5, 2.25], [3.0, 4, 5, 6]], tf.float64)},
    ),
    "numeric_int_alone": (
        lambda m: [m.sequence_numeric_column("n", dtype=tf.int64, default_value=0)],
        {"n": sp([[1, 2], [3]], tf.int64)},
    ),
    "numeric_sparse_length": (
        lambda m: [m.sequence_numeric_column("n")],
        {"n": tf.SparseTensor([[0, 3], [1, 0]], [1.0, 2.0], [2, 6])},
    ),
    "numeric_rank1": (
        lambda m: [m.sequence_numeric_column("n")],
        {"n": tf.SparseTensor([[0], [2]], [1.0, 2.0], [3])},
    ),
    "numeric_empty_T0": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,))],
        {"n": tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0]), [3, 0])},
    ),
    "numeric_batch0": (
        lambda m: [m.sequence_numeric_column("n")],
        {"n": tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0]), [0, 4])},
    ),
    "numeric_batch1": (
        lambda m: [m.sequence_numeric_column("n", shape=(3,))],
        {"n": sp([[1.0, 2, 3, 4, 5, 6]])},
    ),
    # identity
    "identity_indicator": (
        lambda m: [m.indicator_column(ident(m, n=10))],
        {"w": sp([[1, 5, 9], [2]], tf.int64)},
    ),
    "identity_negative": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": sp([[1, -3, 2]], tf.int64)},
    ),
    "identity_out_of_range_indicator": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": sp([[1, 7, 2], [9]], tf.int64)},
    ),
    "identity_default": (
        lambda m: [
            m.indicator_column(ident(m, default=0)),
            emb(m, ident(m, default=0), W5),
        ],
        {"w": sp([[1, 7, -3]], tf.int64)},
    ),
    "identity_int32_input": (
        lambda m: [emb(m, ident(m), W5)],
        {"w": sp([[1, 2], [3]], tf.int32)},
    ),
    "identity_3d_multi": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {"w": sp3([[[1], [2, 3], [2]], [[4]]], tf.int64)},
    ),
    "identity_dups": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {"w": sp3([[[2, 2]]], tf.int64)},
    ),
    "identity_invalid_steps": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {"w": sp3([[[1, -1], [-1]]], tf.int64)},
    ),
    "identity_4d": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5, combiner="sum")],
        {
            "w": tf.SparseTensor(
                [[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 1, 1]],
                tf.constant([1, 2, 3], tf.int64),
                [1, 2, 2, 2],
            )
        },
    ),
    "identity_empty_rows": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {"w": sp([[1], [], [2, 3]], tf.int64)},
    ),
    "identity_T0": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {
            "w": tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [3, 0]
            )
        },
    ),
    "identity_3d_T0": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {
            "w": tf.SparseTensor(
                tf.zeros([0, 3], tf.int64), tf.zeros([0], tf.int64), [2, 0, 0]
            )
        },
    ),
    "identity_batch0": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {
            "w": tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 4]
            )
        },
    ),
    "identity_rank1": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": tf.SparseTensor([[0], [1]], tf.constant([3, 4], tf.int64), [2])},
    ),
    # embedding combiners / max_norm
    **{
        f"embedding_{c}": (
            lambda m, c=c: [emb(m, ident(m, n=100), W100, combiner=c)],
            {"w": many_ids(16, 12, 9, 100, seed=1)},
        )
        for c in ("mean", "sum", "sqrtn")
    },
    **{
        f"embedding_max_norm_{c}": (
            lambda m, c=c: [emb(m, ident(m, n=100), W100, combiner=c, max_norm=0.7)],
            {"w": many_ids(16, 12, 9, 100, seed=2)},
        )
        for c in ("mean", "sum", "sqrtn")
    },
    "embedding_max_norm_e4": (
        lambda m: [
            emb(
                m,
                ident(m),
                np.array([[3, 4], [0.3, 0.4], [6, 8], [1, 0], [0, 2]], np.float32),
                combiner="sum",
                max_norm=1.0,
            )
        ],
        {"w": sp3([[[0, 2], [1]]], tf.int64)},
    ),
    # hash
    "hash_string": (
        lambda m: [
            m.indicator_column(m.sequence_categorical_column_with_hash_bucket("h", 10)),
            emb(m, m.sequence_categorical_column_with_hash_bucket("h", 10), W100[:10]),
        ],
        {"h": sp([["hello", "world", ""], ["a", "日本"]])},
    ),
    "hash_int": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_hash_bucket("h", 10, dtype=tf.int64)
            )
        ],
        {"h": sp([[1, -1, 12345], [7]], tf.int64)},
    ),
    "hash_int32_column": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_hash_bucket(
                    "h", 1000, dtype=tf.int32
                )
            )
        ],
        {"h": sp([[1, -1, 12345], [0]], tf.int32)},
    ),
    # vocabulary list
    "vocab_oov": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", ["R", "G", "B"], num_oov_buckets=4
                )
            )
        ],
        {"v": sp([["R", "X", "Y", "zebra", "", "B"]])},
    ),
    "vocab_int_oov": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", [10, 20, 30], num_oov_buckets=3
                )
            )
        ],
        {"v": sp([[10, 99, -5, 7]], tf.int64)},
    ),
    "vocab_int32": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", [10, 20, 30], dtype=tf.int32
                )
            )
        ],
        {"v": sp([[10, 99, 30], [20]], tf.int32)},
    ),
    "vocab_miss": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list("v", ["R", "G", "B"])
            ),
            emb(
                m,
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", ["R", "G", "B"]
                ),
                W5[:3],
            ),
        ],
        {"v": sp([["R", "X", "B"], ["r", "R"], [" R", "R "], ["X", "Y"]])},
    ),
    "vocab_default": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", ["R", "G", "B"], default_value=1
                )
            )
        ],
        {"v": sp([["R", "X", "B"]])},
    ),
    "vocab_default_out_of_range_emb_free": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", ["R", "G"], default_value=99
                )
            )
        ],
        {"v": sp([["R", "X"]])},
    ),
    # mixed (E5)
    "mixed_e5": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_hash_bucket("tok", 10)
            ),
            emb(
                m,
                m.sequence_categorical_column_with_vocabulary_list(
                    "color", ["R", "G", "B"], num_oov_buckets=2
                ),
                W5,
                combiner="sum",
            ),
            m.sequence_numeric_column("pos", shape=(2,), default_value=-1.0),
        ],
        {
            "tok": sp([["hello", "world"], ["a"]]),
            "color": sp([["G", "zebra"], ["B"]]),
            "pos": sp([[1.0, 2, 3, 4], [5.0, 6]]),
        },
    ),
    "embedding_and_indicator_same_column": (
        lambda m: [
            m.indicator_column(ident(m, n=100)),
            emb(m, ident(m, n=100), W100),
            m.sequence_numeric_column("x", shape=(2,)),
        ],
        {
            "w": sp([[1, 2, 3], [4], []], tf.int64),
            "x": sp([[1.0, 2, 3, 4, 5, 6], [1.0, 2], []]),
        },
    ),
    # dense categorical inputs
    "dense_int": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": tf.constant([[1, 2], [3, -1]], tf.int64)},
    ),
    "dense_int_zero": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": tf.constant([[1, 2], [3, 0]], tf.int64)},
    ),
    "dense_int_hole": (
        lambda m: [m.indicator_column(ident(m)), emb(m, ident(m), W5)],
        {"w": tf.constant([[1, -1, 2]], tf.int64)},
    ),
    "dense_int_negatives": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": tf.constant([[1, -3, -1], [-1, -1, -1]], tf.int64)},
    ),
    "dense_strings": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list("v", ["a", "b", "c"])
            )
        ],
        {"v": tf.constant([["a", ""], ["b", "c"]])},
    ),
    "dense_strings_empty": (
        lambda m: [
            m.indicator_column(m.sequence_categorical_column_with_hash_bucket("v", 7))
        ],
        {"v": tf.constant([["", ""], ["", "b"]])},
    ),
    "dense_rank1": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": tf.constant([1, 2], tf.int64)},
    ),
    "dense_3d": (
        lambda m: [
            m.indicator_column(ident(m)),
            emb(m, ident(m), W5, combiner="sqrtn"),
        ],
        {"w": tf.constant([[[1, 2], [3, -1]]], tf.int64)},
    ),
    # A wide numeric column with a non-zero default outweighs the others: the
    # embedding's and indicator's empty steps still hold 0.0.
    "wide_numeric_default_with_embedding_indicator": (
        lambda m: [
            m.sequence_numeric_column("n", shape=(8,), default_value=1.0),
            emb(m, ident(m), W5),
            m.indicator_column(ident(m)),
        ],
        {
            "n": sp([[1.0] * 16, [2.0] * 8]),
            "w": sp([[1, 2], [3]], tf.int64),
        },
    ),
    "dense_numpy": (
        lambda m: [m.indicator_column(ident(m))],
        {"w": np.array([[1, 2], [3, -1]])},
    ),
    "dense_list": (lambda m: [m.indicator_column(ident(m))], {"w": [[1, 2], [3, -1]]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity(oracle, case):
    build, features = CASES[case]
    oracle.compare(build, features)


def test_parity_extra_keys_ignored(oracle):
    oracle.compare(
        lambda m: [m.sequence_numeric_column("n")],
        {"n": sp([[1.0]]), "unused": tf.constant([1, 2])},
    )


def test_parity_seed_example_parsed(oracle, seed_serialized):
    """The docstring example: rating + watches embedding dim 10 over 1000 ids."""

    def build(m):
        watches = m.sequence_categorical_column_with_identity(
            "watches", num_buckets=1000
        )
        return [m.sequence_numeric_column("rating"), emb(m, watches, W1000)]

    import transforms

    spec = transforms.make_parse_example_spec(build(transforms))
    assert spec == tf.feature_column.make_parse_example_spec(build(tf.feature_column))
    features = tf.io.parse_example(seed_serialized, spec)
    out, length = oracle.compare(build, features)
    assert out.shape == (2, 5, 11)
    np.testing.assert_array_equal(length, [2, 5])
    np.testing.assert_array_equal(out[1, :, 1:], W1000[[33, 78, 2, 73, 1]])
    np.testing.assert_array_equal(out[0, :, 0], np.float32([1.0, 1.1, 0, 0, 0]))
