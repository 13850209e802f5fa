"""from_tf_feature_columns: TF columns (and a built tf_keras layer's tables) -> ours."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from parity_helpers import sp

import transforms

pytestmark = pytest.mark.parity
fc = tf.feature_column


def tf_columns(vocab_path):
    watches = fc.sequence_categorical_column_with_identity(
        "watches", 100, default_value=0
    )
    genre = fc.sequence_categorical_column_with_vocabulary_list(
        "genre", ["a", "b", "c"], num_oov_buckets=2
    )
    tok = fc.sequence_categorical_column_with_hash_bucket("tok", 20)
    vf = fc.sequence_categorical_column_with_vocabulary_file(
        "vf", vocab_path, num_oov_buckets=1
    )
    return [
        fc.sequence_numeric_column("rating", default_value=-1.0),
        fc.sequence_numeric_column("price", shape=(2,)),
        fc.embedding_column(watches, 6, combiner="sqrtn", max_norm=1.5),
        fc.embedding_column(genre, 3, combiner="sum", trainable=False),
        fc.indicator_column(genre),
        fc.indicator_column(tok),
        fc.embedding_column(vf, 2),
    ]


@pytest.fixture
def vocab_path(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("x\ny\n")
    return str(path)


def batch():
    return {
        "rating": sp([[1.0, 2.0, 3.0], [4.0]]),
        "price": sp([[1.0, 2, 3, 4, 5, 6], [7.0, 8]]),
        "watches": sp([[1, 150, 3], [4]], tf.int64),
        "genre": sp([["a", "zz", "c"], ["b"]]),
        "tok": sp([["hello", "world", "x"], ["a"]]),
        "vf": sp([["x", "q", "y"], ["y"]]),
    }


def test_convert_with_layer_copies_weights(vocab_path):
    columns = tf_columns(vocab_path)
    ref = tf_keras.experimental.SequenceFeatures(columns)
    ref_out, ref_len = ref(batch())
    ours_columns = transforms.from_tf_feature_columns(columns, layer=ref)
    assert [c.name for c in ours_columns] == [c.name for c in columns]
    ours = transforms.SequenceFeatures(ours_columns)
    out, length = ours(batch())
    np.testing.assert_array_equal(out.numpy(), ref_out.numpy())
    np.testing.assert_array_equal(length.numpy(), ref_len.numpy())
    ref_tables = {v.name.split("/")[1]: v.numpy() for v in ref.variables}
    for name, table in ours.get_embedding_weights().items():
        np.testing.assert_array_equal(table, ref_tables[name])
    assert len(ours.non_trainable_weights) == 1


def test_convert_without_layer_uses_seeded_default(vocab_path):
    ours_columns = transforms.from_tf_feature_columns(tf_columns(vocab_path))
    emb = ours_columns[2]
    assert emb.initializer is None  # TF's unseeded default -> our seeded default
    assert (emb.dimension, emb.combiner, emb.max_norm) == (6, "sqrtn", 1.5)
    assert ours_columns[0] == transforms.sequence_numeric_column(
        "rating", default_value=-1.0
    )
    assert ours_columns[4] == transforms.indicator_column(
        transforms.sequence_categorical_column_with_vocabulary_list(
            "genre", ["a", "b", "c"], num_oov_buckets=2
        )
    )
    assert transforms.make_parse_example_spec(
        ours_columns
    ) == fc.make_parse_example_spec(tf_columns(vocab_path))
    assert [repr(c) for c in ours_columns[4:6]] == [
        repr(c) for c in tf_columns(vocab_path)[4:6]
    ]


def test_reprs_match_tf(vocab_path):
    """Error messages quote column reprs, so ours print like TF's."""
    for ours, theirs in zip(
        transforms.from_tf_feature_columns(tf_columns(vocab_path)),
        tf_columns(vocab_path),
        strict=True,
    ):
        if not isinstance(
            theirs,
            type(
                fc.embedding_column(
                    fc.sequence_categorical_column_with_identity("a", 2), 2
                )
            ),
        ):
            assert repr(ours) == repr(theirs)


def test_layer_accepts_tf_columns_directly(vocab_path):
    layer = transforms.SequenceFeatures(tf_columns(vocab_path))
    out, length = layer(batch())
    assert out.shape == (2, 3, 1 + 2 + 6 + 3 + 5 + 20 + 2)
    np.testing.assert_array_equal(length.numpy(), [3, 1])


def test_unbuilt_layer_is_rejected(vocab_path):
    with pytest.raises(ValueError, match="Expected a built SequenceFeatures"):
        transforms.from_tf_feature_columns(
            tf_columns(vocab_path),
            layer=tf_keras.experimental.SequenceFeatures(tf_columns(vocab_path)),
        )


def test_custom_initializer_is_kept():
    init = tf.constant_initializer(0.5)
    (column,) = transforms.from_tf_feature_columns(
        [
            fc.embedding_column(
                fc.sequence_categorical_column_with_identity("w", 4),
                2,
                initializer=init,
            )
        ]
    )
    assert column.initializer is init
    weights = transforms.SequenceFeatures([column]).get_embedding_weights()
    np.testing.assert_array_equal(
        weights["w_embedding"], np.full((4, 2), 0.5, np.float32)
    )
