"""Parity of the traced (tf.function) layer, bit for bit, on both sides of its
graph-only fast paths: one id per step (embedding rows gathered, indicator
writes not deduplicated) and several or repeated ids per step (segment
reduction, counted writes); every column full at every step (output built from
step rows) and any batch that is not (scatter)."""

import numpy as np
import pytest
import tensorflow as tf
from parity_helpers import Oracle, sp, sp3

from transforms import sequence_features

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


# Traced, a batch whose columns all fill every step before each row's length is
# built from step rows (RaggedTensorToTensor); any other batch takes the
# scatter. Both through one traced function, against the eager reference.
def _st(indices, values, shape):
    return tf.SparseTensor(np.array(indices, np.int64).reshape(-1, 2), values, shape)


def _full_batch():
    return {
        "n": sp([[0.5, -0.0, 1.0], [], [2.0, 3.0]]),
        "p": sp([[1.0, 2, 3, 4, 5, 6], [], [7.0, 8, 9, 10]]),
        "c": sp([[1, 2, 5], [], [4, 2]], tf.int64),
        "v": sp([["a", "zz", "b"], [], ["c", "a"]]),
    }


def _with(**changes):
    return {**_full_batch(), **changes}


STEP_ROW_CASES = {
    "full_steps_2d": _full_batch(),
    "full_steps_3d": {
        "n": sp3([[[0.5], [-0.0]], [[2.0]]]),
        "p": sp3([[[1.0, 2], [3.0, 4]], [[5.0, 6]]]),
        "c": sp3([[[1], [2]], [[4]]], tf.int64),
        "v": sp3([[["a"], ["zz"]], [["c"]]]),
    },
    "numeric_step_missing": _with(
        n=_st([[0, 0], [0, 2], [2, 0], [2, 1]], [0.5, 1.0, 2.0, 3.0], [3, 3])
    ),
    "numeric_slot_missing": _with(p=sp([[1.0, 2, 3, 4, 5, 6], [], [7.0, 8, 9]])),
    "id_step_missing": _with(
        c=_st([[0, 0], [0, 2], [2, 0], [2, 1]], np.array([1, 5, 4, 2]), [3, 3])
    ),
    "negative_embedding_id": _with(c=sp([[1, -1, 5], [], [4, 2]], tf.int64)),
    "two_ids_in_a_step": _with(
        v=sp3([[["a", "b"], ["zz"], ["b"]], [], [["c"], ["a"]]])
    ),
    "all_rows_empty": {
        "n": sp([[], []], tf.float32),
        "p": sp([[], []], tf.float32),
        "c": sp([[], []], tf.int64),
        "v": sp([[], []], tf.string),
    },
}


# 3-D inputs (parse_sequence_example's form) first take the shared-layout
# check (transforms/shared_layout.py): the full layout is laid out directly,
# every other batch falls back to the per-column path.
def _full_3d():
    return {
        "n": sp3([[[0.5], [-0.0]], [], [[2.0], [1.0], [4.0]]]),
        "p": sp3([[[1.0, 2], [3.0, 4]], [], [[5.0, 6], [7.0, 8], [9.0, 1]]]),
        "c": sp3([[[1], [2]], [], [[4], [5], [0]]], tf.int64),
        "v": sp3([[["a"], ["zz"]], [], [["c"], ["b"], ["a"]]]),
    }


def _with_3d(**changes):
    return {**_full_3d(), **changes}


def _st3(indices, values, shape):
    return tf.SparseTensor(np.array(indices, np.int64).reshape(-1, 3), values, shape)


STEP_ROW_CASES.update(
    {
        "shared_layout_3d": _full_3d(),
        "shared_layout_padded_t_3d": {
            k: tf.sparse.reset_shape(v, [3, 5, v.dense_shape[2]])
            for k, v in _full_3d().items()
        },
        "numeric_slot_missing_3d": _with_3d(
            p=sp3([[[1.0, 2], [3.0]], [], [[5.0, 6], [7.0, 8], [9.0, 1]]])
        ),
        "numeric_step_missing_3d": _with_3d(
            n=_st3(
                [[0, 1, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0]],
                [0.5, 2.0, 1.0, 4.0],
                [3, 3, 1],
            )
        ),
        "id_step_missing_3d": _with_3d(
            c=_st3(
                [[0, 1, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0]], [2, 4, 5, 0], [3, 3, 1]
            )
        ),
        "id_in_second_slot_3d": _with_3d(
            v=_st3(
                [[0, 0, 1], [0, 1, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0]],
                ["a", "zz", "c", "b", "a"],
                [3, 3, 2],
            )
        ),
        "two_ids_in_a_step_3d": _with_3d(
            v=sp3([[["a", "b"], ["zz"]], [], [["c"], ["b"], ["a"]]])
        ),
        "negative_embedding_id_3d": _with_3d(
            c=sp3([[[1], [-1]], [], [[4], [5], [0]]], tf.int64)
        ),
    }
)


@pytest.fixture(params=["ragged", "gather"])
def step_rows_by(request, monkeypatch):
    """Both layouts of step rows: gather from the first output value on."""
    if request.param == "gather":
        monkeypatch.setattr(sequence_features, "_GATHER_OUTPUT_SIZE", 0)
    return request.param


@pytest.mark.parametrize("case", sorted(STEP_ROW_CASES))
def test_traced_step_rows_or_scatter_bits_match_reference(oracle, case, step_rows_by):
    def build(m):
        cat = m.sequence_categorical_column_with_identity("c", 6)
        vocab = m.sequence_categorical_column_with_vocabulary_list("v", ["a", "b", "c"])
        return [
            m.sequence_numeric_column("n"),
            m.sequence_numeric_column("p", shape=(2,), default_value=-1.0),
            m.embedding_column(cat, 3, initializer=Oracle.init(m, W)),
            m.indicator_column(vocab),
        ]

    batch = STEP_ROW_CASES[case]
    ref, ours = oracle.layers(build)
    ref_out, ref_len = ref(batch)
    out, length = tf.function(ours)(batch)
    np.testing.assert_array_equal(_bits(out), _bits(ref_out))
    np.testing.assert_array_equal(length, ref_len)


def test_traced_step_rows_of_ragged_input_match_reference(oracle, step_rows_by):
    def build(m):
        cat = m.sequence_categorical_column_with_identity("c", 6)
        return [
            m.sequence_numeric_column("n", default_value=7.0),
            m.embedding_column(cat, 3, initializer=Oracle.init(m, W)),
        ]

    ragged = {
        "n": tf.ragged.constant([[0.5, -0.0], [], [2.0]]),
        "c": tf.ragged.constant([[1, 2], [], [4]], tf.int64),
    }
    ref, ours = oracle.layers(build)
    ref_out, ref_len = ref({k: v.to_sparse() for k, v in ragged.items()})
    out, length = tf.function(ours)(ragged)
    np.testing.assert_array_equal(_bits(out), _bits(ref_out))
    np.testing.assert_array_equal(length, ref_len)
