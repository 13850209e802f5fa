"""Worked examples E1-E8 of the reference semantics (TF 2.21), as literal fixtures."""

import numpy as np
import pytest
import tensorflow as tf

import transforms as T

F32 = np.float32


def sp(rows, dtype=None):
    """2-D SparseTensor from ragged Python lists (TF's parse_example layout)."""
    return tf.ragged.constant(rows, dtype=dtype).to_sparse()


def onehot(i, n):
    v = np.zeros(n, F32)
    v[i] = 1
    return v


def run(columns, features):
    out, length = T.SequenceFeatures(columns)(features)
    return out.numpy(), length.numpy()


def table_e4():
    return np.array([[0.2 * i + 0.1, 0.2 * i + 0.2] for i in range(5)], F32)


def test_e1_seed_example():
    rating = T.sequence_numeric_column("rating")
    watches = T.sequence_categorical_column_with_identity("watches", 10)
    layer = T.SequenceFeatures([T.indicator_column(watches), rating])
    assert [c.name for c in layer.feature_columns] == ["rating", "watches_indicator"]
    out, length = layer({
        "rating": sp([[3.0, 4.5, 5.0], [2.0]]),
        "watches": sp([[1, 5, 9], [2]], tf.int64),
    })
    assert out.dtype == tf.float32 and length.dtype == tf.int64
    assert out.shape == (2, 3, 11)
    expected = np.zeros((2, 3, 11), F32)
    expected[0, 0] = [3.0, *onehot(1, 10)]
    expected[0, 1] = [4.5, *onehot(5, 10)]
    expected[0, 2] = [5.0, *onehot(9, 10)]
    expected[1, 0] = [2.0, *onehot(2, 10)]
    np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal(length.numpy(), [3, 1])


def test_e2_order_and_shape():
    b_num = T.sequence_numeric_column("b_num")
    a_num = T.sequence_numeric_column("a_num", shape=(2,))
    c_ind = T.indicator_column(T.sequence_categorical_column_with_identity("c_ids", 4))
    out, length = run([b_num, c_ind, a_num], {
        "b_num": sp([[1.0, 2.0], [3.0]]),
        "a_num": sp([[10.0, 11, 12, 13], [14.0, 15]]),
        "c_ids": sp([[1, 2], [3]], tf.int64),
    })
    np.testing.assert_array_equal(out, [
        [[10, 11, 1, 0, 1, 0, 0], [12, 13, 2, 0, 0, 1, 0]],
        [[14, 15, 3, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ])
    np.testing.assert_array_equal(length, [2, 1])
