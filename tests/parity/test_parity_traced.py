"""Parity of the traced (tf.function) layer, bit for bit, on both sides of its
graph-only fast paths: one id per step (embedding rows gathered, indicator
writes not deduplicated) and several or repeated ids per step (segment
reduction, counted writes)."""

import numpy as np
import pytest
import tensorflow as tf
from parity_helpers import Oracle, sp, sp3

pytestmark = pytest.mark.parity

W = np.random.default_rng(5).normal(size=(6, 3)).astype(np.float32)
W[2] = [-0.0, 0.0, -0.0]  # a lone row is copied as is: its -0.0 must survive

CASES = {
    "one_id_per_step_2d": sp([[1, 2, 3], [], [4, 2]], tf.int64),
    "one_id_per_step_3d": sp3([[[1], [2], [3]], [], [[4], [2]]], tf.int64),
    "several_ids_per_step": sp3([[[1, 5], [2], [0, 3, 4]], [[4]], []], tf.int64),
    "repeated_id_in_step": sp3([[[1, 1], [2]], [[3, 4, 3]]], tf.int64),
    "unsorted_ids_in_step": sp3([[[5, 1], [2]], [[4, 0]]], tf.int64),
}


def _bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def _negative_zeros_at_steps(ids):
    """-0.0 at every occupied step of `ids` (same T and lengths)."""
    steps = np.unique(ids.indices.numpy()[:, :2], axis=0)
    shape = ids.dense_shape.numpy()[:2]
    if ids.shape.rank == 3:
        steps = np.concatenate([steps, np.zeros([len(steps), 1], np.int64)], 1)
        shape = [*shape, 1]
    return tf.SparseTensor(steps, np.full(len(steps), -0.0, np.float32), shape)


@pytest.mark.parametrize("combiner", ["mean", "sqrtn", "sum"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_traced_embedding_and_indicator_bits_match_reference(oracle, combiner, case):
    def build(m):
        cat = m.sequence_categorical_column_with_identity("c", 6, default_value=None)
        return [
            m.embedding_column(cat, 3, combiner, initializer=Oracle.init(m, W)),
            m.indicator_column(cat),
            m.sequence_numeric_column("n"),
        ]

    ids = CASES[case]
    batch = {"c": ids, "n": _negative_zeros_at_steps(ids)}
    ref, ours = oracle.layers(build)
    ref_out, ref_len = ref(batch)
    out, length = tf.function(ours)(batch)
    np.testing.assert_array_equal(_bits(out), _bits(ref_out))
    np.testing.assert_array_equal(length, ref_len)


@pytest.mark.parametrize(
    "words",
    [
        [["a", "c", "b"], ["c"]],  # every id valid: rows gathered
        [["a", "zz", "b"], ["zz"]],  # out-of-vocabulary ids (-1) dropped
    ],
    ids=["all_valid", "with_oov"],
)
def test_traced_vocabulary_embedding_bits_match_reference(oracle, words):
    def build(m):
        cat = m.sequence_categorical_column_with_vocabulary_list("v", ["a", "b", "c"])
        return [
            m.embedding_column(cat, 3, initializer=Oracle.init(m, W[:3])),
            m.indicator_column(cat),
        ]

    batch = {"v": sp(words)}
    ref, ours = oracle.layers(build)
    ref_out, ref_len = ref(batch)
    out, length = tf.function(ours)(batch)
    np.testing.assert_array_equal(_bits(out), _bits(ref_out))
    np.testing.assert_array_equal(length, ref_len)
