"""sequence_shared_embedding_columns: one variable, TF parity (graph mode, as TF
requires), NumPy, gradients reaching both columns' rows, checks, serialization."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*deprecated.*")

W = np.random.default_rng(11).normal(size=(12, 3)).astype(np.float32)
A = [[[1, 2], [3]], [[4], [5, 5]]]
C = [[[6], [7, 8]], [[9, 10, 11], [0]]]


def ident(key, n=12):
    return T.sequence_categorical_column_with_identity(key, n)


def feats(a=A, c=C):
    return {
        "a": tf.ragged.constant(a, tf.int64, ragged_rank=2),
        "c": tf.ragged.constant(c, tf.int64, ragged_rank=2),
    }


def shared(**kw):
    kw.setdefault("initializer", W)
    return T.sequence_shared_embedding_columns([ident("c"), ident("a")], 3, **kw)


def test_names_and_default_collection_name():
    cols = shared()
    assert [c.name for c in cols] == ["c_shared_embedding", "a_shared_embedding"]
    assert {c.table_name for c in cols} == {"a_c_shared_embedding"}  # sorted names
    named = shared(shared_embedding_collection_name="items")
    assert {c.table_name for c in named} == {"items"}
    assert all(c.output_width == 3 and c.dimension == 3 for c in cols)


def test_one_variable_shared_by_all_columns():
    layer = T.SequenceFeatures(shared())
    layer.build()
    assert len(layer.variables) == 1 and len(layer.trainable_variables) == 1
    assert layer.variables[0].path.endswith("a_c_shared_embedding/embedding_weights")
    weights = layer.get_embedding_weights()
    assert list(weights) == ["a_c_shared_embedding"]
    np.testing.assert_array_equal(weights["a_c_shared_embedding"], W)
    # Setting the one table changes both columns' lookups.
    layer.set_embedding_weights({"a_c_shared_embedding": W * 2})
    out = layer(feats())[0].numpy()
    np.testing.assert_allclose(out[0, 0, :3], W[1] + W[2], rtol=1e-6)  # a: mean
    np.testing.assert_allclose(out[0, 0, 3:], W[6] * 2, rtol=1e-6)  # c


@pytest.mark.parametrize("combiner", ["mean", "sqrtn", "sum"])
def test_equals_separate_embeddings_with_the_same_table(combiner):
    ours = T.SequenceFeatures(shared(combiner=combiner))
    separate = T.SequenceFeatures(
        [T.embedding_column(ident(k), 3, combiner, W) for k in ("a", "c")]
    )
    out, length = ours(feats())
    ref, ref_length = separate(feats())
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_array_equal(length.numpy(), ref_length.numpy())
    # NumPy: step (0, 1) of `c` holds ids 7, 8.
    combine = {"mean": 2.0, "sqrtn": np.sqrt(2.0), "sum": 1.0}[combiner]
    np.testing.assert_allclose(
        out.numpy()[0, 1, 3:], (W[7] + W[8]) / combine, rtol=1e-6
    )


def test_gradient_updates_rows_of_both_columns():
    layer = T.SequenceFeatures(shared(combiner="sum"))
    with tf.GradientTape() as tape:
        out, _ = layer(feats())
        loss = tf.reduce_sum(out)
    (grad,) = tape.gradient(loss, layer.trainable_variables)
    grad = tf.convert_to_tensor(grad).numpy()
    counts = np.bincount(
        [i for rows in (A, C) for row in rows for step in row for i in step],
        minlength=12,
    )
    # d loss / d row i = (occurrences of id i) * ones(dim) for combiner sum.
    np.testing.assert_array_equal(grad, counts[:, None] * np.ones((1, 3)))
    before = layer.get_embedding_weights()["a_c_shared_embedding"]
    keras.optimizers.SGD(0.1).apply_gradients(
        zip([tf.constant(grad)], layer.trainable_variables, strict=True)
    )
    after = layer.get_embedding_weights()["a_c_shared_embedding"]
    changed = np.flatnonzero((after != before).any(axis=1))
    assert set(changed) >= {1, 2, 3, 4, 5} | {6, 7, 8, 9, 10, 11}


@pytest.mark.parity
@pytest.mark.parametrize("combiner", ["mean", "sqrtn", "sum"])
def test_matches_tf_shared_embeddings_in_graph_mode(combiner):
    """TF's shared_embeddings only work in graph mode: run tf_keras there."""
    import tf_keras

    fc = tf.feature_column
    with tf.Graph().as_default():
        cols = fc.shared_embeddings(
            [
                fc.sequence_categorical_column_with_identity("c", 12),
                fc.sequence_categorical_column_with_identity("a", 12),
            ],
            3,
            combiner=combiner,
            initializer=tf.constant_initializer(W),
        )
        assert cols[0].shared_embedding_column_creator._name == "a_c_shared_embedding"
        sparse = {k: v.to_sparse() for k, v in feats().items()}
        out, length = tf_keras.experimental.SequenceFeatures(cols)(sparse)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            ref, ref_length = session.run([out, length])
    assert [v.name for v in variables] == ["a_c_shared_embedding:0"]
    ours = T.SequenceFeatures(shared(combiner=combiner))
    got, got_length = ours(feats())
    assert [c.name for c in ours.feature_columns] == sorted(c.name for c in cols)
    np.testing.assert_array_equal(got.numpy(), ref)
    np.testing.assert_array_equal(got_length.numpy(), ref_length)


def test_weighted_columns_can_share():
    w = T.sequence_weighted_categorical_column(ident("a"), "wa")
    cols = T.sequence_shared_embedding_columns([w, ident("c")], 3, "sum", W)
    assert cols[0].table_name == "a_weighted_by_wa_c_shared_embedding"
    f = feats()
    f["wa"] = tf.ragged.constant(
        [[[2.0, 1.0], [1.0]], [[1.0], [1.0, 1.0]]], ragged_rank=2
    )
    out = T.SequenceFeatures(cols)(f)[0].numpy()
    np.testing.assert_allclose(out[0, 0, :3], 2 * W[1] + W[2], rtol=1e-6)


@pytest.mark.parametrize(
    "columns, match",
    [
        (
            [ident("c"), ident("a", 11)],
            r"same number of buckets\. Given column: IdentityCategoricalColumn\(key='a', "
            r"number_buckets=11, default_value=None\) with buckets: 11 does  not match",
        ),
        (
            [ident("c"), T.sequence_categorical_column_with_hash_bucket("a", 12)],
            r"must have the same type, or be weighted_categorical_column or sequence "
            r"column of the same type\. Given column: HashedCategoricalColumn\(key='a'",
        ),
        ([T.sequence_numeric_column("x")], "must be subclasses of CategoricalColumn"),
        ([], "Expected a non-empty list"),
    ],
)
def test_tf_checks(columns, match):
    with pytest.raises(ValueError, match=match):
        T.sequence_shared_embedding_columns(columns, 3)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"dimension": 0}, "Invalid dimension 0"),
        ({"ckpt_to_load_from": "x"}, "Must specify both"),
        ({"initializer": "zeros"}, "initializer must be callable"),
        ({"combiner": "max"}, "combiner must be one of"),
    ],
)
def test_argument_checks(kw, match):
    kw = {"dimension": 3, **kw}
    with pytest.raises(ValueError, match=match):
        T.sequence_shared_embedding_columns([ident("a"), ident("c")], **kw)


def test_conflicting_tables_in_one_layer_are_refused():
    one = T.sequence_shared_embedding_columns(
        [ident("a")], 3, shared_embedding_collection_name="t"
    )
    two = T.sequence_shared_embedding_columns(
        [ident("c")], 4, shared_embedding_collection_name="t"
    )
    with pytest.raises(ValueError, match="sharing the embedding table 't'"):
        T.SequenceFeatures(one + two)


def test_default_table_is_seeded_from_the_collection_name():
    a = T.SequenceFeatures(
        T.sequence_shared_embedding_columns([ident("a"), ident("c")], 3)
    )
    b = T.SequenceFeatures(
        T.sequence_shared_embedding_columns([ident("c"), ident("a")], 3)
    )
    np.testing.assert_array_equal(
        a.get_embedding_weights()["a_c_shared_embedding"],
        b.get_embedding_weights()["a_c_shared_embedding"],
    )


def test_serialization_keeps_one_variable(tmp_path):
    layer = T.SequenceFeatures(shared())
    clone = T.SequenceFeatures.from_config(layer.get_config())
    assert clone.feature_columns == layer.feature_columns
    clone.build()
    assert len(clone.variables) == 1
    np.testing.assert_array_equal(clone(feats())[0], layer(feats())[0])
    assert "SharedEmbeddingColumnCreator(name='a_c_shared_embedding'" in repr(
        shared()[0]
    )
