"""`shared_layout.plan`: which inputs get the shared-layout check, and the
check's verdict per batch (the outputs on both sides are compared with
tf_keras in tests/parity/test_parity_traced.py)."""

import os

import numpy as np
import pytest
import tensorflow as tf

import transforms as T
from transforms import shared_layout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _layer():
    ids = T.sequence_categorical_column_with_identity("c", 6)
    words = T.sequence_categorical_column_with_vocabulary_list("v", ["a", "b"])
    layer = T.SequenceFeatures(
        [
            T.sequence_numeric_column("p", shape=(2,)),
            T.embedding_column(ids, 3),
            T.indicator_column(words),
        ]
    )
    layer.build()
    return layer


def _plan(layer, features):
    return shared_layout.plan(
        layer.feature_columns, features, layer._lookups, layer._state
    )


def _st3(indices, values, shape):
    return tf.SparseTensor(np.array(indices, np.int64).reshape(-1, 3), values, shape)


def _sp3(rows, dtype=None):
    return tf.ragged.constant(rows, dtype=dtype, ragged_rank=2).to_sparse()


def _full():
    return {
        "p": _sp3([[[1.0, 2], [3.0, 4]], [], [[5.0, 6]]]),
        "c": _sp3([[[1], [2]], [], [[4]]], tf.int64),
        "v": _sp3([[["a"], ["zz"]], [], [["b"]]]),
    }


BROKEN = {
    "numeric_slot_missing": {"p": _sp3([[[1.0, 2], [3.0]], [], [[5.0, 6]]])},
    "numeric_slots_swapped": {
        "p": _st3(
            [[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 1, 1], [2, 0, 0], [2, 0, 1]],
            [1.0, 2, 3, 4, 5, 6],
            [3, 2, 2],
        )
    },
    "numeric_k_not_width": {
        "p": tf.sparse.reset_shape(_full()["p"], [3, 2, 3]),
    },
    "id_step_missing": {
        "c": _st3([[0, 1, 0], [0, 2, 0], [2, 0, 0]], [1, 2, 4], [3, 3, 1])
    },
    "id_rows_out_of_order": {
        "c": _st3([[2, 0, 0], [0, 0, 0], [0, 1, 0]], [4, 1, 2], [3, 2, 1])
    },
    "id_negative_row": {
        "c": _st3([[-1, 0, 0], [0, 1, 0], [2, 0, 0]], [1, 2, 4], [3, 2, 1])
    },
    "id_beyond_t": {"c": tf.SparseTensor(_full()["c"].indices, [1, 2, 4], [3, 1, 1])},
    "t_differs": {"v": tf.sparse.reset_shape(_full()["v"], [3, 4, 1])},
    "negative_embedding_id": {"c": _sp3([[[1], [-1]], [], [[4]]], tf.int64)},
    "two_ids_in_a_step": {"v": _sp3([[["a", "b"], ["zz"]], [], [["b"]]])},
}


def _verdict(layer, features):
    @tf.function
    def full(f):
        return _plan(layer, f).full

    return bool(full(features))


def test_plan_holds_for_the_full_layout_with_its_lengths():
    layer = _layer()
    features = _full()

    @tf.function
    def run(f):
        layout = _plan(layer, f)
        return layout.full, layout.lengths, layout.splits

    full, lengths, splits = run(features)
    assert bool(full)
    np.testing.assert_array_equal(lengths, [2, 0, 1])
    np.testing.assert_array_equal(splits, [0, 2, 2, 3])


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_plan_rejects_a_batch_without_the_layout(case):
    layer = _layer()
    assert not _verdict(layer, {**_full(), **BROKEN[case]})


def test_plan_is_none_eagerly_for_2d_inputs_and_for_max_norm():
    layer = _layer()
    assert _plan(layer, _full()) is None  # eager: the general path's errors
    flat = {k: tf.sparse.reshape(v, [3, -1]) for k, v in _full().items()}

    @tf.function
    def plans(f):
        assert _plan(layer, f) is None
        return tf.constant(0)

    plans(flat)
    ids = T.sequence_categorical_column_with_identity("c", 6)
    clipped = T.SequenceFeatures([T.embedding_column(ids, 3, max_norm=1.0)])
    clipped.build()

    @tf.function
    def plans_clipped(f):
        assert _plan(clipped, f) is None
        return tf.constant(0)

    plans_clipped({"c": _full()["c"]})
