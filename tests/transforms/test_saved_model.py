"""The layer inside a SavedModel: saved, loaded, and the same outputs."""

import tensorflow as tf

import transforms as T


def test_saved_model_round_trip(tmp_path):
    columns = [
        T.embedding_column(T.sequence_categorical_column_with_identity("ids", 10), 4),
        T.indicator_column(
            T.sequence_categorical_column_with_vocabulary_list("word", ["a", "b"])
        ),
        T.sequence_numeric_column("x"),
    ]
    module = tf.Module()
    module.layer = T.SequenceFeatures(columns)
    signature = {
        "ids": tf.SparseTensorSpec([None, None], tf.int64),
        "word": tf.SparseTensorSpec([None, None], tf.string),
        "x": tf.SparseTensorSpec([None, None], tf.float32),
    }
    module.features = tf.function(
        lambda features: module.layer(features), input_signature=[signature]
    )
    features = {
        "ids": tf.sparse.from_dense(tf.constant([[1, 2, 0], [3, 0, 0]], tf.int64)),
        "word": tf.sparse.from_dense(tf.constant([["a", "b", ""], ["c", "", ""]])),
        "x": tf.sparse.from_dense(tf.constant([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0]])),
    }
    want, want_length = module.features(features)
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    got, got_length = loaded.features(features)
    assert got.shape == want.shape and got.shape[-1] == 4 + 2 + 1
    tf.debugging.assert_equal(got, want)
    tf.debugging.assert_equal(got_length, want_length)
