"""`SequenceFeatures.step_rows`: the output's present steps without padding,
bit for bit `call`'s values at t < sequence_length, on its fast path (ragged
inputs, every step full) and on every fallback."""

import os

import numpy as np
import pytest
import tensorflow as tf

import transforms as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RNG = np.random.default_rng(11)
W = RNG.normal(size=(50, 4)).astype(np.float32)
VOCAB = ["a", "b", "c", "d"]


def columns(combiner="mean", vocab_default=None):
    """Every column kind with a step-rows form."""
    genre = T.sequence_categorical_column_with_vocabulary_list(
        "genre", VOCAB, num_oov_buckets=0 if vocab_default is not None else 2,
        default_value=vocab_default if vocab_default is not None else -1,
    )  # fmt: skip
    return [
        T.sequence_numeric_column("rating", default_value=-1.0),
        T.sequence_numeric_column(
            "pair",
            shape=(2,),
            normalizer_fn=lambda x: x * 2.0,  # TF hands it the SparseTensor
        ),
        T.embedding_column(
            T.sequence_categorical_column_with_identity("ids", 50),
            4,
            combiner=combiner,
            initializer=W,
        ),
        T.embedding_column(
            T.sequence_categorical_column_with_hash_bucket("tag", 7),
            3,
            combiner="sqrtn",
        ),
        T.indicator_column(genre),
        T.embedding_column(genre, 2, combiner="sum"),
    ]


def ragged_batch(lengths, *, empty_step=None, two_ids=None, genre_words=VOCAB):
    """Ragged [B, (T), (K)] inputs, one id / prod(shape) numbers per step,
    except `empty_step` / `two_ids` = (row, step) in `ids`."""
    rows = {"rating": [], "pair": [], "ids": [], "tag": [], "genre": []}
    for b, n in enumerate(lengths):
        rows["rating"].append([[float(RNG.normal())] for _ in range(n)])
        rows["pair"].append([list(RNG.normal(size=2)) for _ in range(n)])
        ids = [[int(RNG.integers(0, 50))] for _ in range(n)]
        if empty_step is not None and empty_step[0] == b:
            ids[empty_step[1]] = []
        if two_ids is not None and two_ids[0] == b:
            ids[two_ids[1]] = [1, 2]
        rows["ids"].append(ids)
        rows["tag"].append([[f"t{RNG.integers(0, 99)}"] for _ in range(n)])
        rows["genre"].append(
            [[genre_words[RNG.integers(0, len(genre_words))]] for _ in range(n)]
        )
    dtypes = {"rating": tf.float32, "pair": tf.float32, "ids": tf.int64}
    return {
        key: tf.ragged.constant(
            value, dtypes.get(key, tf.string), ragged_rank=2, inner_shape=()
        )
        if any(value)
        else tf.RaggedTensor.from_nested_row_lengths(
            tf.zeros([0], dtypes.get(key, tf.string)),
            [tf.zeros([len(lengths)], tf.int64), tf.zeros([0], tf.int64)],
        )
        for key, value in rows.items()
    }


def expected(layer, features):
    x, length = layer(features)
    mask = tf.sequence_mask(length, tf.shape(x)[1])
    return tf.boolean_mask(x, mask).numpy(), length.numpy()


def traced(layer):
    return tf.function(lambda f: layer.step_rows(f))


def fast_path(layer, features):
    """None when `step_rows` has no fast path for these inputs, else whether
    this batch passes its check (it then returns the step rows)."""
    layer.build()
    built = []

    @tf.function
    def check(f):
        fast = layer._ragged_step_rows(f)
        built.append(fast is not None)
        return fast[0] if fast is not None else tf.constant(False)

    full = bool(check(features))
    return full if built[0] else None


def assert_same(got, want):
    rows, length = (np.asarray(g) for g in got)
    np.testing.assert_array_equal(length, want[1])
    assert rows.dtype == np.float32 and rows.shape == want[0].shape
    # Bit for bit (NaN-free data: array_equal on the bits' views).
    np.testing.assert_array_equal(rows.view(np.uint32), want[0].view(np.uint32))


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
@pytest.mark.parametrize("lengths", [[3, 1, 5, 2], [1], [7]])
def test_fast_path_equals_call(combiner, lengths):
    layer = T.SequenceFeatures(columns(combiner))
    layer.build()
    features = ragged_batch(lengths)
    assert layer._ragged_step_rows(features) is None  # eager: no fast path
    assert fast_path(layer, features) is True
    fn = traced(layer)
    assert_same(fn(features), expected(layer, features))
    assert sum(lengths) == len(fn(features)[0])


@pytest.mark.parametrize(
    "case",
    [
        dict(empty_step=(1, 0)),  # a step without an id: zeros, not a row
        dict(two_ids=(0, 1)),  # two ids in a step: the combiner's mean
        dict(genre_words=VOCAB + ["zz"]),  # unknown word: default id -1, no row
    ],
)
def test_fallback_equals_call(case):
    layer = T.SequenceFeatures(
        columns(vocab_default=-1 if "genre_words" in case else None)
    )
    features = ragged_batch([3, 2, 4], **case)
    assert fast_path(layer, features) is False
    assert_same(traced(layer)(features), expected(layer, features))


def test_eager_and_sparse_inputs_take_call():
    layer = T.SequenceFeatures(columns())
    features = ragged_batch([2, 3])
    want = expected(layer, features)
    assert_same(layer.step_rows(features), want)  # eager
    sparse = {k: v.to_sparse() for k, v in features.items()}
    assert fast_path(layer, sparse) is None
    assert_same(traced(layer)(sparse), want)


def test_unequal_lengths_raise_like_call():
    layer = T.SequenceFeatures(columns())
    features = ragged_batch([2, 3])
    features["rating"] = ragged_batch([2, 4])["rating"]
    with pytest.raises(tf.errors.InvalidArgumentError) as call_error:
        tf.function(lambda f: layer(f))(features)
    assert fast_path(layer, features) is False
    with pytest.raises(tf.errors.InvalidArgumentError) as rows_error:
        traced(layer)(features)
    assert type(rows_error.value) is type(call_error.value)


def test_empty_batch_and_weighted_columns():
    layer = T.SequenceFeatures(columns())
    rows, length = traced(layer)(ragged_batch([0, 0]))
    assert rows.shape == (0, layer.output_width) and length.numpy().tolist() == [0, 0]
    weighted = T.SequenceFeatures(
        [
            T.embedding_column(
                T.sequence_weighted_categorical_column(
                    T.sequence_categorical_column_with_identity("ids", 50), "w"
                ),
                4,
                initializer=W,
            )
        ]
    )
    features = {
        "ids": tf.ragged.constant([[[1], [2]], [[3]]], tf.int64, ragged_rank=2),
        "w": tf.ragged.constant([[[0.5], [2.0]], [[1.5]]], ragged_rank=2),
    }
    assert fast_path(weighted, features) is None  # no step rows: `call`
    assert_same(traced(weighted)(features), expected(weighted, features))
