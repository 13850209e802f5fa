"""Parity for vocabulary files, parsed SequenceExamples, ragged and traced inputs."""

import numpy as np
import pytest
import tensorflow as tf
from parity_helpers import Oracle, sp

import transforms

pytestmark = pytest.mark.parity

W = np.random.default_rng(3).normal(size=(12, 4)).astype(np.float32)


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n c\nd\ne\n")
    return str(path)


@pytest.mark.parametrize(
    "kwargs, values",
    [
        ({}, [["a", "b", " c", "c"], ["d", "", "e", "zz"]]),
        ({"vocabulary_size": 2, "num_oov_buckets": 3}, [["a", "b", "d", "zz"]]),
        ({"default_value": 1}, [["a", "zz", "e"]]),
        ({"num_oov_buckets": 5}, [["a", "zz", "yy"], ["e"]]),
    ],
)
def test_vocabulary_file(oracle, vocab_file, kwargs, values):
    def build(m):
        cat = m.sequence_categorical_column_with_vocabulary_file(
            "f", vocab_file, **kwargs
        )
        n = cat.num_buckets
        return [
            m.indicator_column(cat),
            m.embedding_column(cat, 4, initializer=Oracle.init(m, W[:n])),
        ]

    oracle.compare(build, {"f": sp(values)})


def test_vocabulary_file_int_and_crlf(oracle, tmp_path):
    path = tmp_path / "ints.txt"
    path.write_bytes(b"10\r\n20\r\n-5\r\n")
    oracle.compare(
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_file(
                    "f", str(path), dtype=tf.int64, num_oov_buckets=2
                )
            )
        ],
        {"f": sp([[10, -5, 7], [20]], tf.int64)},
    )


def _sequence_example(rating, watches):
    ex = tf.train.SequenceExample()
    for r in rating:
        ex.feature_lists.feature_list["rating"].feature.add().float_list.value.append(r)
    for w in watches:
        ex.feature_lists.feature_list["watches"].feature.add().int64_list.value.extend(
            w
        )
    return ex.SerializeToString()


def test_parse_sequence_example_3d(oracle):
    def build(m):
        watches = m.sequence_categorical_column_with_identity("watches", 12)
        return [
            m.sequence_numeric_column("rating"),
            m.indicator_column(watches),
            m.embedding_column(watches, 4, initializer=Oracle.init(m, W)),
        ]

    serialized = [
        _sequence_example([1.0, 2.0], [[5], [6, 7]]),
        _sequence_example([3.0], [[1, 2, 3]]),
    ]
    spec = transforms.make_parse_example_spec(build(transforms))
    _, features, _ = tf.io.parse_sequence_example(serialized, sequence_features=spec)
    assert features["watches"].shape.rank == 3
    out, length = oracle.compare(build, features)
    np.testing.assert_array_equal(length, [2, 1])


def test_parse_sequence_example_length_mismatch_with_empty_step(oracle):
    """watches has an empty last step: its length is 2 while rating's is 3."""

    def build_w(m):
        return [
            m.indicator_column(
                m.sequence_categorical_column_with_identity("watches", 100)
            )
        ]

    serialized = [_sequence_example([1.0, 2.0, 3.0], [[5], [6, 7], []])] * 2
    _, features, _ = tf.io.parse_sequence_example(
        serialized,
        sequence_features={
            "rating": tf.io.VarLenFeature(tf.float32),
            "watches": tf.io.VarLenFeature(tf.int64),
        },
    )
    out, length = oracle.compare(build_w, features)
    assert out.shape == (2, 3, 100)
    np.testing.assert_array_equal(length, [2, 2])

    def build_both(m):
        return build_w(m) + [m.sequence_numeric_column("rating")]

    ref, ours = oracle.layers(build_both)
    for layer in (ref, ours):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="Condition x == y did not hold"
        ):
            layer(features)


RAGGED_CASES = {
    "numeric_2d": (
        lambda m: [m.sequence_numeric_column("n", default_value=-2.0)],
        {"n": tf.ragged.constant([[1.0, 2.0, 3.0], [4.0], []])},
    ),
    "numeric_shape2_flat": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,))],
        {"n": tf.ragged.constant([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]])},
    ),
    "numeric_shape2_uniform_inner": (
        lambda m: [m.sequence_numeric_column("n", shape=(2,))],
        {
            "n": tf.RaggedTensor.from_row_lengths(
                tf.constant([[1.0, 2], [3, 4], [5, 6]]), [2, 1]
            )
        },
    ),
    "numeric_float64": (
        lambda m: [m.sequence_numeric_column("n")],
        {"n": tf.ragged.constant([[1.5, 2.5], [3.5]], dtype=tf.float64)},
    ),
    "ids_2d": (
        lambda m: [
            m.indicator_column(m.sequence_categorical_column_with_identity("w", 12)),
            m.embedding_column(
                m.sequence_categorical_column_with_identity("w", 12),
                4,
                initializer=Oracle.init(m, W),
            ),
        ],
        {"w": tf.ragged.constant([[1, 5, 9], [2], []], dtype=tf.int64)},
    ),
    "ids_3d_with_empty_steps": (
        lambda m: [
            m.indicator_column(m.sequence_categorical_column_with_identity("w", 12)),
            m.embedding_column(
                m.sequence_categorical_column_with_identity("w", 12),
                4,
                combiner="sqrtn",
                initializer=Oracle.init(m, W),
            ),
        ],
        {
            "w": tf.ragged.constant(
                [[[1, 2], [], [3]], [[4, 4, 5]], []], dtype=tf.int64, ragged_rank=2
            )
        },
    ),
    "strings_3d": (
        lambda m: [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list(
                    "v", ["a", "b"], num_oov_buckets=2
                )
            )
        ],
        {"v": tf.ragged.constant([[["a", "zz"], ["b"]], [["q"]]], ragged_rank=2)},
    ),
    "mixed": (
        lambda m: [
            m.sequence_numeric_column("n", shape=(2,)),
            m.indicator_column(m.sequence_categorical_column_with_hash_bucket("h", 9)),
        ],
        {
            "n": tf.ragged.constant([[1.0, 2, 3, 4], [5.0, 6]]),
            "h": tf.ragged.constant([["x", "y"], ["z"]]),
        },
    ),
}


@pytest.mark.parametrize("case", sorted(RAGGED_CASES))
def test_ragged_matches_reference_on_equivalent_sparse(oracle, case):
    build, ragged = RAGGED_CASES[case]
    sparse = {k: v.to_sparse() for k, v in ragged.items()}
    oracle.compare(build, sparse, ours_features=ragged)


def test_ragged_T_is_max_row_length():
    layer = transforms.SequenceFeatures([transforms.sequence_numeric_column("n")])
    out, length = layer({"n": tf.ragged.constant([[1.0], [2.0, 3.0], []])})
    assert out.shape == (3, 2, 1)
    np.testing.assert_array_equal(length, [1, 2, 0])


def test_traced_matches_reference_eager(oracle):
    def build(m):
        cat = m.sequence_categorical_column_with_vocabulary_list(
            "v", ["a", "b", "c"], num_oov_buckets=1
        )
        return [
            m.sequence_numeric_column("n", shape=(2,), default_value=-1.0),
            m.embedding_column(cat, 4, initializer=Oracle.init(m, W[:4])),
            m.indicator_column(cat),
        ]

    ref, ours = oracle.layers(build)
    traced = tf.function(ours)
    for batch in (
        {"n": sp([[1.0, 2, 3, 4], [5.0, 6]]), "v": sp([["a", "zz"], ["c"]])},
        {"n": sp([[1.0, 2]]), "v": sp([["b"]])},
        {
            "n": sp([[1.0, 2, 3, 4, 5, 6], [], [7.0, 8]]),
            "v": sp([["a", "b", "c"], [], ["q"]]),
        },
    ):
        ref_out, ref_len = ref(batch)
        out, length = traced(batch)
        np.testing.assert_array_equal(out.numpy(), ref_out.numpy())
        np.testing.assert_array_equal(length.numpy(), ref_len.numpy())
