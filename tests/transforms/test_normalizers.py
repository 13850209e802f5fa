"""transforms.zscore / transforms.minmax: values vs NumPy (float64 arithmetic),
degenerate scales, checks, serialization (safe mode), every input form."""

import os
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VALUES = [[1.5, -2.25, 3.0], [0.1]]


def run(normalizer, features=None, **kw):
    layer = T.SequenceFeatures(
        [T.sequence_numeric_column("x", normalizer_fn=normalizer)]
    )
    features = features or {"x": tf.ragged.constant(VALUES)}
    return layer(features, **kw)[0].numpy()[..., 0]


@pytest.mark.parametrize(
    "normalizer, formula",
    [
        (T.zscore(0.7, 1.3), lambda v: (v - 0.7) / 1.3),
        (T.minmax(-2.25, 3.0), lambda v: (v + 2.25) / 5.25),
        (T.zscore(0.7, 0.0), lambda v: v - 0.7),  # zero scale: shift only
        (T.minmax(1.0, 1.0), lambda v: v - 1.0),
    ],
)
def test_values_are_float64_arithmetic(normalizer, formula):
    out = run(normalizer)
    for b, row in enumerate(VALUES):
        want = formula(np.asarray(row, np.float32).astype(np.float64))
        np.testing.assert_array_equal(out[b, : len(row)], want.astype(np.float32))


def test_sparse_ragged_and_dense_inputs_agree():
    norm = T.zscore(1.0, 2.0)
    a = run(norm, {"x": tf.ragged.constant(VALUES).to_sparse()})
    b = run(norm, {"x": tf.ragged.constant(VALUES)})
    dense = np.array([[1.5, -2.25, 3.0], [0.1, 0.0, 0.0]], np.float32)
    c = run(norm, {"x": dense}, sequence_length=[3, 1])
    d = run(norm, {"x": np.where(dense == 0, 9, dense)}, padding_value=9.0)
    for other in (b, c, d):
        np.testing.assert_array_equal(a, other)
    # Absent steps keep the default value (not normalized).
    assert a[1, 1] == 0.0


def test_checks():
    with pytest.raises(ValueError, match="std"):
        T.zscore(0.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        T.zscore(float("nan"), 1.0)
    with pytest.raises(TypeError, match="mean"):
        T.zscore("a", 1.0)
    with pytest.raises(ValueError, match="max"):
        T.minmax(2.0, 1.0)
    assert T.zscore(np.float64(1.0), np.float32(2.0)) == T.zscore(1.0, 2.0)


def test_serialization_safe_mode(tmp_path):
    column = T.sequence_numeric_column("x", normalizer_fn=T.minmax(-1.0, 4.0))
    again = type(column).from_config(column.get_config())
    assert again == column and hash(again) == hash(column)
    assert pickle.loads(pickle.dumps(column)) == column
    inputs = {"x": keras.Input(shape=(None,), dtype="float32", name="x")}
    lengths = keras.Input(shape=(), dtype="int64", name="n")
    x, _ = T.SequenceFeatures([column])(inputs, sequence_length=lengths)
    model = keras.Model([inputs, lengths], x)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    data = [{"x": np.array([[-1.0, 4.0, 1.5]], np.float32)}, np.array([2])]
    np.testing.assert_array_equal(np.asarray(loaded(data)), np.asarray(model(data)))
    np.testing.assert_allclose(np.asarray(model(data))[0, :, 0], [0.0, 1.0, 0.0])
