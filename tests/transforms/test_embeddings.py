"""Embedding tables: seeded default, NumPy / checkpoint initializers, naming,
max_norm, trainable flags, get/set weights."""

import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ident(key="w", n=50):
    return T.sequence_categorical_column_with_identity(key, n)


def sp(rows, dtype=tf.int64):
    return tf.ragged.constant(rows, dtype=dtype).to_sparse()


DIGEST_SCRIPT = """
import hashlib, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import transforms as T
cols = [T.embedding_column(T.sequence_categorical_column_with_identity("watches", 1000), 10),
        T.embedding_column(T.sequence_categorical_column_with_hash_bucket("tok", 64), 4)]
weights = T.SequenceFeatures(cols).get_embedding_weights()
print(",".join(k + ":" + hashlib.sha256(v.tobytes()).hexdigest() for k, v in sorted(weights.items())))
"""


def test_default_init_identical_across_processes():
    env = dict(
        os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    digests = [
        subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=300,
        )
        .stdout.strip()
        .splitlines()[-1]
        for _ in range(2)
    ]
    assert digests[0] == digests[1]
    assert digests[0].startswith("tok_embedding:")
    layer = T.SequenceFeatures(
        [
            T.embedding_column(ident("watches", 1000), 10),
            T.embedding_column(
                T.sequence_categorical_column_with_hash_bucket("tok", 64), 4
            ),
        ]
    )
    here = ",".join(
        k + ":" + hashlib.sha256(v.tobytes()).hexdigest()
        for k, v in sorted(layer.get_embedding_weights().items())
    )
    assert here == digests[0]


def test_default_init_distribution_and_per_column_seed():
    weights = T.SequenceFeatures(
        [
            T.embedding_column(ident("a", 4000), 16),
            T.embedding_column(ident("b", 4000), 16),
        ]
    ).get_embedding_weights()
    a, b = weights["a_embedding"], weights["b_embedding"]
    assert a.shape == (4000, 16) and a.dtype == np.float32
    assert not np.array_equal(a, b)
    stddev = 1 / np.sqrt(16)
    assert np.abs(a).max() <= 2 * stddev + 1e-6  # truncated at 2 stddev
    assert abs(a.mean()) < 0.01
    assert (
        0.85 * stddev < a.std() < 0.9 * stddev
    )  # 2-sigma truncation shrinks std by ~12%


def test_numpy_initializer_and_output():
    table = np.arange(100, dtype=np.float32).reshape(50, 2)
    layer = T.SequenceFeatures(
        [T.embedding_column(ident(), 2, initializer=table, combiner="sum")]
    )
    out, _ = layer({"w": sp([[3, 4]])})
    np.testing.assert_array_equal(out[0].numpy(), table[[3, 4]])
    np.testing.assert_array_equal(layer.get_embedding_weights()["w_embedding"], table)


def test_numpy_initializer_wrong_shape():
    layer = T.SequenceFeatures(
        [T.embedding_column(ident(), 2, initializer=np.zeros((3, 2), np.float32))]
    )
    with pytest.raises(ValueError, match=r"Expected an array of shape \(50, 2\)"):
        layer.build()


def test_callable_initializer():
    layer = T.SequenceFeatures(
        [T.embedding_column(ident(), 3, initializer=tf.constant_initializer(0.25))]
    )
    np.testing.assert_array_equal(
        layer.get_embedding_weights()["w_embedding"], np.full((50, 3), 0.25, np.float32)
    )


def test_checkpoint_initializer(tmp_path):
    table = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    ckpt = tf.train.Checkpoint(emb=tf.Variable(table))
    prefix = ckpt.write(str(tmp_path / "ckpt"))
    name = "emb/.ATTRIBUTES/VARIABLE_VALUE"
    assert name in dict(tf.train.list_variables(prefix))
    column = T.embedding_column(
        ident(), 4, ckpt_to_load_from=prefix, tensor_name_in_ckpt=name, combiner="sum"
    )
    layer = T.SequenceFeatures([column])
    out, _ = layer({"w": sp([[7], [1, 2]])})
    np.testing.assert_array_equal(layer.get_embedding_weights()["w_embedding"], table)
    np.testing.assert_array_equal(out.numpy()[1, 1], table[2])
    bad = T.embedding_column(
        ident("w", 10), 4, ckpt_to_load_from=prefix, tensor_name_in_ckpt=name
    )
    with pytest.raises(ValueError, match=r"Expected a tensor of shape \(10, 4\)"):
        T.SequenceFeatures([bad]).build()


def test_variable_names_follow_reference():
    column = T.embedding_column(
        T.sequence_categorical_column_with_identity("my key/with:chars", 5), 2
    )
    layer = T.SequenceFeatures([column, T.sequence_numeric_column("n")], name="seq")
    assert not layer.built and not layer.weights
    layer.build()
    assert layer.built
    (table,) = layer.weights
    assert table.path == "seq/my_key_with_chars_embedding/embedding_weights"
    assert table.value.name == "seq/my_key_with_chars_embedding/embedding_weights:0"
    assert table.shape == (5, 2) and table.dtype == "float32"


def test_built_on_first_call():
    layer = T.SequenceFeatures([T.embedding_column(ident(), 2)])
    layer({"w": sp([[1]])})
    assert layer.built and len(layer.weights) == 1


@pytest.mark.parametrize(
    "column_trainable, layer_trainable, trainable",
    [
        (True, True, True),
        (False, True, False),
        (True, False, False),
        (False, False, False),
    ],
)
def test_trainable_flags(column_trainable, layer_trainable, trainable):
    layer = T.SequenceFeatures(
        [T.embedding_column(ident(), 2, trainable=column_trainable)],
        trainable=layer_trainable,
    )
    layer.build()
    assert len(layer.trainable_weights) == int(trainable)
    assert len(layer.non_trainable_weights) == int(not trainable)


def test_non_trainable_table_is_not_updated():
    columns = [
        T.embedding_column(ident("a"), 2),
        T.embedding_column(ident("b"), 2, trainable=False),
    ]
    layer = T.SequenceFeatures(columns)
    before = layer.get_embedding_weights()
    batch = {"a": sp([[1, 2]]), "b": sp([[3, 4]])}
    with tf.GradientTape() as tape:
        out, _ = layer(batch)
        loss = tf.reduce_sum(out)
    grads = tape.gradient(loss, layer.trainable_weights)
    keras.optimizers.SGD(0.1).apply_gradients(
        zip(grads, layer.trainable_weights, strict=True)
    )
    after = layer.get_embedding_weights()
    np.testing.assert_array_equal(after["b_embedding"], before["b_embedding"])
    changed = np.any(after["a_embedding"] != before["a_embedding"], axis=1)
    assert changed.tolist() == [
        i in (1, 2) for i in range(50)
    ]  # sparse update: only used rows


def test_max_norm_clips_rows():
    table = np.array([[3, 4], [0.3, 0.4], [6, 8], [1, 0], [0, 2]], np.float32)
    column = T.embedding_column(
        ident("c", 5), 2, initializer=table, combiner="sum", max_norm=1.0
    )
    out, _ = T.SequenceFeatures([column])(
        {
            "c": tf.ragged.constant(
                [[[0, 2], [1]]], dtype=tf.int64, ragged_rank=2
            ).to_sparse()
        }
    )
    np.testing.assert_allclose(out[0].numpy(), [[1.2, 1.6], [0.3, 0.4]], rtol=1e-6)


def test_get_set_embedding_weights():
    layer = T.SequenceFeatures(
        [T.embedding_column(ident(), 2), T.sequence_numeric_column("n")]
    )
    new = {"w_embedding": np.ones((50, 2), np.float32)}
    layer.set_embedding_weights(new)
    np.testing.assert_array_equal(
        layer.get_embedding_weights()["w_embedding"], new["w_embedding"]
    )
    with pytest.raises(ValueError, match="Expected keys among"):
        layer.set_embedding_weights({"nope": np.ones((50, 2))})
    with pytest.raises(ValueError, match=r"Expected shape \(50, 2\)"):
        layer.set_embedding_weights({"w_embedding": np.ones((5, 2))})
