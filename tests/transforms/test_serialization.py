"""Columns: hashable, picklable, config round-trip; layer config and .keras files."""

import pickle

import dill
import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T


@keras.saving.register_keras_serializable(package="seqshards_tests")
def times_ten(x):
    return tf.SparseTensor(x.indices, x.values * 10, x.dense_shape)


@keras.saving.register_keras_serializable(package="seqshards_tests")
class StepMask(keras.layers.Layer):
    """`tf.sequence_mask(sequence_length, T)` as a layer (functional models)."""

    def call(self, sequence_input, sequence_length):
        return tf.sequence_mask(sequence_length, tf.shape(sequence_input)[1])

    def compute_output_spec(self, sequence_input, sequence_length):
        return keras.KerasTensor(sequence_input.shape[:2], dtype="bool")


def all_columns(vocab_path):
    ident = T.sequence_categorical_column_with_identity("w", 20, default_value=0)
    vocab = T.sequence_categorical_column_with_vocabulary_list(
        "v", ["a", "b"], num_oov_buckets=2
    )
    vfile = T.sequence_categorical_column_with_vocabulary_file(
        "f", vocab_path, dtype=tf.string
    )
    hashed = T.sequence_categorical_column_with_hash_bucket("h", 7, dtype=tf.int32)
    return [
        T.sequence_numeric_column(
            "n", shape=(2,), default_value=-1.0, normalizer_fn=times_ten
        ),
        T.sequence_numeric_column("m", shape=(), dtype=tf.float64),
        T.embedding_column(ident, 3, combiner="sqrtn", max_norm=2.0, trainable=False),
        T.embedding_column(
            vocab, 2, initializer=np.arange(8, dtype=np.float32).reshape(4, 2)
        ),
        T.embedding_column(hashed, 2, initializer=keras.initializers.Constant(0.5)),
        T.indicator_column(vfile),
        T.indicator_column(vocab),
    ]


@pytest.fixture
def vocab_path(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("x\ny\nz\n")
    return str(path)


def features():
    sp = lambda rows, dtype=None: tf.ragged.constant(rows, dtype=dtype).to_sparse()  # noqa: E731
    return {
        "n": sp([[1.0, 2, 3, 4], [5.0, 6]]),
        "m": sp([[1.0, 2], [3.0]], tf.float64),
        "w": sp([[1, 25], [3]], tf.int64),
        "v": sp([["a", "q"], ["b"]]),
        "f": sp([["x", "z"], ["nope"]]),
        "h": sp([[1, 2], [3]], tf.int32),
    }


def test_columns_are_frozen_hashable_and_comparable(vocab_path):
    columns = all_columns(vocab_path)
    again = all_columns(vocab_path)
    assert columns == again
    assert [hash(c) for c in columns] == [hash(c) for c in again]
    assert len(set(columns + again)) == len(columns)
    with pytest.raises(AttributeError):
        columns[0].key = "other"


def test_columns_attributes(vocab_path):
    n, m, e_w, e_v, e_h, i_f, i_v = all_columns(vocab_path)
    assert (n.name, n.variable_shape, n.output_width) == ("n", tf.TensorShape([2]), 2)
    assert (m.variable_shape, m.output_width) == (tf.TensorShape([]), 1)
    assert (e_w.name, e_w.dimension, e_w.variable_shape, e_w.output_width) == (
        "w_embedding",
        3,
        tf.TensorShape([3]),
        3,
    )
    assert (i_v.name, i_v.variable_shape, i_v.output_width) == (
        "v_indicator",
        tf.TensorShape([1, 4]),
        4,
    )
    assert (
        e_w.categorical_column.num_buckets == 20
        and e_w.categorical_column.dtype == tf.int64
    )
    assert i_f.categorical_column.num_buckets == 3 and i_f.categorical_column.key == "f"
    assert e_h.categorical_column.dtype == tf.int32
    assert n.parse_example_spec == {"n": tf.io.VarLenFeature(tf.float32)}
    assert T.make_parse_example_spec(all_columns(vocab_path)) == {
        "n": tf.io.VarLenFeature(tf.float32),
        "m": tf.io.VarLenFeature(tf.float64),
        "w": tf.io.VarLenFeature(tf.int64),
        "v": tf.io.VarLenFeature(tf.string),
        "h": tf.io.VarLenFeature(tf.int32),
        "f": tf.io.VarLenFeature(tf.string),
    }
    assert list(T.make_parse_example_spec([i_v, n, e_v])) == ["v", "n"]


def test_column_layout_matches_output(vocab_path):
    columns = all_columns(vocab_path)
    layout = T.column_layout(columns)
    assert [s.name for s in layout] == sorted(c.name for c in columns)
    assert layout[0] == T.ColumnSlot("f_indicator", 0, 3)
    out, _ = T.SequenceFeatures(columns)(features())
    assert layout[-1].offset + layout[-1].width == out.shape[-1] == 17
    n_slot = next(s for s in layout if s.name == "n")
    np.testing.assert_array_equal(
        out[0, :, n_slot.offset : n_slot.offset + n_slot.width], [[10, 20], [30, 40]]
    )


def test_pickle_and_dill(vocab_path):
    for column in all_columns(vocab_path):
        assert pickle.loads(pickle.dumps(column)) == column
    lam = T.sequence_numeric_column("x", normalizer_fn=lambda x: x)
    back = dill.loads(dill.dumps(lam))
    assert back.key == "x" and callable(back.normalizer_fn)


def test_column_config_round_trip(vocab_path):
    from transforms.serialization import deserialize_column, serialize_column

    for column in all_columns(vocab_path):
        config = serialize_column(column)
        assert config["class_name"] == column.config_class_name
        assert deserialize_column(config) == column


def test_layer_config_round_trip(vocab_path):
    layer = T.SequenceFeatures(all_columns(vocab_path), name="seq")
    config = layer.get_config()
    assert {"name", "trainable", "dtype", "partitioner", "feature_columns"} <= set(
        config
    )
    assert config["name"] == "seq" and config["partitioner"] is None
    assert [c["class_name"] for c in config["feature_columns"]][:3] == [
        "IndicatorColumn",
        "EmbeddingColumn",
        "SequenceNumericColumn",
    ]
    clone = T.SequenceFeatures.from_config(config)
    assert clone.feature_columns == layer.feature_columns
    out, length = layer(features())
    clone.set_embedding_weights(layer.get_embedding_weights())
    out2, length2 = clone(features())
    np.testing.assert_array_equal(out.numpy(), out2.numpy())
    np.testing.assert_array_equal(length.numpy(), length2.numpy())


def test_default_layer_names():
    a = T.SequenceFeatures([T.sequence_numeric_column("x")])
    assert a.name.startswith("sequence_features")


def build_model(columns):
    spec = T.make_parse_example_spec(columns)
    inputs = {
        k: keras.Input(shape=(None,), sparse=True, dtype=v.dtype.name, name=k)
        for k, v in spec.items()
    }
    seq, length = T.SequenceFeatures(columns)(inputs)
    hidden = keras.layers.SimpleRNN(4)(seq, mask=StepMask()(seq, length))
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def test_keras_file_save_load_identical_output(vocab_path, tmp_path):
    columns = all_columns(vocab_path)
    model = build_model(columns)
    before = model(features()).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(features()).numpy(), before)
    layer = next(x for x in loaded.layers if isinstance(x, T.SequenceFeatures))
    original = next(x for x in model.layers if isinstance(x, T.SequenceFeatures))
    for name, table in original.get_embedding_weights().items():
        np.testing.assert_array_equal(layer.get_embedding_weights()[name], table)


def test_lambda_normalizer_needs_unsafe_mode(tmp_path):
    """Documented limit: lambdas serialize as bytecode; loading needs safe_mode=False."""
    columns = [T.sequence_numeric_column("n", normalizer_fn=lambda x: x)]
    model = build_model(columns)
    path = str(tmp_path / "lam.keras")
    model.save(path)
    with pytest.raises(ValueError, match="lambda"):
        keras.models.load_model(path)
    loaded = keras.models.load_model(path, safe_mode=False)
    batch = {"n": tf.ragged.constant([[1.0, 2.0]]).to_sparse()}
    np.testing.assert_array_equal(loaded(batch).numpy(), model(batch).numpy())
