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
    out, length = layer(
        {
            "rating": sp([[3.0, 4.5, 5.0], [2.0]]),
            "watches": sp([[1, 5, 9], [2]], tf.int64),
        }
    )
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
    out, length = run(
        [b_num, c_ind, a_num],
        {
            "b_num": sp([[1.0, 2.0], [3.0]]),
            "a_num": sp([[10.0, 11, 12, 13], [14.0, 15]]),
            "c_ids": sp([[1, 2], [3]], tf.int64),
        },
    )
    np.testing.assert_array_equal(
        out,
        [
            [[10, 11, 1, 0, 1, 0, 0], [12, 13, 2, 0, 0, 1, 0]],
            [[14, 15, 3, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        ],
    )
    np.testing.assert_array_equal(length, [2, 1])


@pytest.mark.parametrize(
    "shape, default, rows, expected, lengths",
    [
        (
            (1,),
            -7.0,
            [[1.0, 2, 3], [4.0], []],
            [[[1], [2], [3]], [[4], [-7], [-7]], [[-7], [-7], [-7]]],
            [3, 1, 0],
        ),
        (
            (2,),
            -1.0,
            [[1.0, 2, 3, 4], [5.0]],
            [[[1, 2], [3, 4]], [[5, -1], [-1, -1]]],
            [2, 1],
        ),
        (
            (2,),
            0.0,
            [[1.0, 2, 3], [1.0, 2, 3, 4]],
            [[[1, 2], [3, 0]], [[1, 2], [3, 4]]],
            [2, 2],
        ),
        (
            (2, 3),
            0.0,
            [list(np.arange(1.0, 13.0)), [0.5]],
            [
                [list(np.arange(1.0, 7.0)), list(np.arange(7.0, 13.0))],
                [[0.5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
            ],
            [2, 1],
        ),
    ],
)
def test_e3_numeric_padding(shape, default, rows, expected, lengths):
    column = T.sequence_numeric_column("n", shape=shape, default_value=default)
    out, length = run([column], {"n": sp(rows)})
    np.testing.assert_array_equal(out, np.array(expected, F32))
    np.testing.assert_array_equal(length, lengths)


def test_e3_numeric_holes_and_normalizer():
    column = T.sequence_numeric_column("n", default_value=-7.0)
    out, length = run(
        [column], {"n": tf.SparseTensor([[0, 0], [0, 2]], [1.0, 3.0], [1, 3])}
    )
    np.testing.assert_array_equal(out, [[[1], [-7], [3]]])
    np.testing.assert_array_equal(length, [3])

    def norm(x):
        return tf.SparseTensor(x.indices, x.values * 10 + 1, x.dense_shape)

    out, _ = run(
        [T.sequence_numeric_column("n", normalizer_fn=norm)],
        {"n": sp([[1.0, 2], [3.0]])},
    )
    np.testing.assert_array_equal(out[..., 0], [[11, 21], [31, 0]])


def embed(cat, table, **kw):
    return T.embedding_column(cat, table.shape[1], initializer=table, **kw)


@pytest.mark.parametrize(
    "combiner, step01",
    [
        ("mean", [0.6, 0.7]),
        ("sum", [1.2, 1.4]),
        ("sqrtn", [0.84853, 0.98995]),
    ],
)
def test_e4_combiners(combiner, step01):
    w = table_e4()
    cat = T.sequence_categorical_column_with_identity("c", 5)
    ids = tf.SparseTensor(
        [[0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0]],
        tf.constant([1, 2, 3, 2, 4], tf.int64),
        [2, 3, 2],
    )
    out, length = run([embed(cat, w, combiner=combiner)], {"c": ids})
    np.testing.assert_array_equal(length, [3, 1])
    np.testing.assert_allclose(out[0, 1], step01, rtol=1e-5)
    np.testing.assert_array_equal(out[0, 0], w[1])
    np.testing.assert_array_equal(out[0, 2], w[2])
    np.testing.assert_array_equal(out[1], [w[4], [0, 0], [0, 0]])


def test_e4_duplicates_and_invalid_ids():
    w = table_e4()
    cat = T.sequence_categorical_column_with_identity("c", 5)
    out, _ = run(
        [embed(cat, w), T.indicator_column(cat)],
        {
            "c": tf.ragged.constant(
                [[[2, 2]]], dtype=tf.int64, ragged_rank=2
            ).to_sparse()
        },
    )
    np.testing.assert_allclose(out[0, 0, :2], [0.5, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(out[0, 0, 2:], [0, 0, 2, 0, 0])
    out, length = run(
        [embed(cat, w)],
        {
            "c": tf.ragged.constant(
                [[[1, -1], [-1]]], dtype=tf.int64, ragged_rank=2
            ).to_sparse()
        },
    )
    np.testing.assert_array_equal(out[0], [w[1], [0, 0]])
    np.testing.assert_array_equal(length, [2])


@pytest.mark.parametrize(
    "table, max_norm, combiner, steps, expected",
    [
        (
            [[3, 4], [0.3, 0.4], [6, 8], [1, 0], [0, 2]],
            1.0,
            "sum",
            [[0, 2], [1]],
            [[1.2, 1.6], [0.3, 0.4]],
        ),
        (
            [[3, 4], [0, 0.1], [0, 2], [0, 0], [0, 0]],
            0.5,
            "mean",
            [[0, 1], [2]],
            [[0.15, 0.25], [0, 0.5]],
        ),
    ],
)
def test_e4_max_norm(table, max_norm, combiner, steps, expected):
    cat = T.sequence_categorical_column_with_identity("c", 5)
    column = embed(cat, np.array(table, F32), combiner=combiner, max_norm=max_norm)
    ids = tf.ragged.constant([steps], dtype=tf.int64, ragged_rank=2).to_sparse()
    out, _ = run([column], {"c": ids})
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_e5_mixed():
    tok = T.indicator_column(T.sequence_categorical_column_with_hash_bucket("tok", 10))
    color = embed(
        T.sequence_categorical_column_with_vocabulary_list(
            "color", ["R", "G", "B"], num_oov_buckets=2
        ),
        table_e4(),
        combiner="sum",
    )
    pos = T.sequence_numeric_column("pos", shape=(2,), default_value=-1.0)
    layer = T.SequenceFeatures([tok, color, pos])
    assert [c.name for c in layer.feature_columns] == [
        "color_embedding",
        "pos",
        "tok_indicator",
    ]
    out, length = layer(
        {
            "tok": sp([["hello", "world"], ["a"]]),
            "color": sp([["G", "zebra"], ["B"]]),
            "pos": sp([[1.0, 2, 3, 4], [5.0, 6]]),
        }
    )
    assert out.shape == (2, 2, 14)
    np.testing.assert_array_equal(length, [2, 1])
    w = table_e4()
    expected = np.array(
        [
            [[*w[1], 1, 2, *onehot(6, 10)], [*w[3], 3, 4, *onehot(8, 10)]],
            [[*w[2], 5, 6, *onehot(9, 10)], [0, 0, -1, -1, *np.zeros(10)]],
        ],
        F32,
    )
    np.testing.assert_array_equal(out.numpy(), expected)


def ids_of(column, values, dtype=None):
    """Ids via an indicator (each value its own step): argmax, -1 for a zero row."""
    out, _ = run([T.indicator_column(column)], {column.key: sp([values], dtype)})
    rows = out[0]
    return [int(r.argmax()) if r.any() else -1 for r in rows]


def test_e6_vocabulary_ids():
    vl = T.sequence_categorical_column_with_vocabulary_list
    assert ids_of(
        vl("v", ["R", "G", "B"], num_oov_buckets=4), ["R", "X", "Y", "zebra", "", "B"]
    ) == [0, 3, 6, 5, 6, 2]
    assert ids_of(
        vl("v", [10, 20, 30], num_oov_buckets=3), [10, 99, -5, 7], tf.int64
    ) == [0, 3, 3, 4]
    assert ids_of(vl("v", ["R", "G", "B"]), ["R", "X", "B"]) == [0, -1, 2]
    assert ids_of(vl("v", ["R", "G", "B"], default_value=1), ["X"]) == [1]
    assert ids_of(vl("v", ["R", "G", "B"]), ["r", "R"]) == [-1, 0]
    assert ids_of(vl("v", ["R", "G", "B"]), [" R", "R "]) == [-1, -1]
    out, length = run(
        [embed(vl("v", ["R", "G", "B"]), table_e4()[:3])], {"v": sp([["R", "X", "B"]])}
    )
    np.testing.assert_array_equal(out[0], [table_e4()[0], [0, 0], table_e4()[2]])
    np.testing.assert_array_equal(length, [3])
    out, length = run(
        [T.indicator_column(vl("v", ["R", "G", "B"]))], {"v": sp([["X", "Y"], ["R"]])}
    )
    np.testing.assert_array_equal(out[0], np.zeros((2, 3)))
    np.testing.assert_array_equal(length, [2, 1])


def test_e6_vocabulary_file_ids(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n c\nd\ne\n")
    vf = T.sequence_categorical_column_with_vocabulary_file
    assert ids_of(vf("f", str(path)), ["a", "b", " c", "c", "d", "", "e", "zz"]) == [
        0,
        1,
        2,
        -1,
        3,
        -1,
        4,
        -1,
    ]
    assert ids_of(
        vf("f", str(path), vocabulary_size=2, num_oov_buckets=3), ["a", "b", "d", "zz"]
    ) == [0, 1, 4, 3]


def test_e6_identity_ids():
    idc = T.sequence_categorical_column_with_identity
    out, length = run(
        [T.indicator_column(idc("w", 5))], {"w": sp([[1, -3, 2]], tf.int64)}
    )
    np.testing.assert_array_equal(out[0], [onehot(1, 5), np.zeros(5), onehot(2, 5)])
    np.testing.assert_array_equal(length, [3])
    assert ids_of(idc("w", 5, default_value=0), [1, 7, -3], tf.int64) == [1, 0, 0]


FP64_MOD = {  # E7: FarmHash Fingerprint64 mod 10 / mod 1000
    "": (3, 263),
    "a": (9, 939),
    "b": (2, 822),
    "hello": (6, 296),
    "world": (8, 598),
    "R": (8, 928),
    "zebra": (2, 162),
    "日本": (3, 883),
}
INT_MOD = {0: (5, 735), 1: (9, 849), -1: (0, 430), 7: (8, 88), 12345: (8, 728)}


@pytest.mark.parametrize("value", sorted(FP64_MOD))
def test_e7_string_hash(value):
    hb = T.sequence_categorical_column_with_hash_bucket
    assert ids_of(hb("h", 10), [value]) == [FP64_MOD[value][0]]
    assert ids_of(hb("h", 1000), [value]) == [FP64_MOD[value][1]]


def test_e7_int_hash():
    hb = T.sequence_categorical_column_with_hash_bucket
    values = sorted(INT_MOD)
    assert ids_of(hb("h", 10, dtype=tf.int64), values, tf.int64) == [
        INT_MOD[v][0] for v in values
    ]
    assert ids_of(hb("h", 1000, dtype=tf.int64), values, tf.int64) == [
        INT_MOD[v][1] for v in values
    ]
    assert ids_of(hb("h", 10, dtype=tf.int64), [1, -1, 12345], tf.int64) == [9, 0, 8]


def test_e8_lengths_from_step_index():
    out, length = run(
        [T.sequence_numeric_column("n")],
        {"n": tf.SparseTensor([[0, 3], [1, 0]], [1.0, 2.0], [2, 6])},
    )
    assert out.shape == (2, 6, 1)
    np.testing.assert_array_equal(length, [4, 1])
    out, _ = run(
        [T.sequence_numeric_column("n")],
        {"n": tf.SparseTensor([[0, 0]], [1.0], [1, 5])},
    )
    assert out.shape == (1, 5, 1)


@pytest.mark.parametrize(
    "dense, lengths, zero_steps",
    [
        ([[1, 2], [3, -1]], [2, 1], [(1, 1)]),
        ([[1, 2], [3, 0]], [2, 2], []),
        ([[1, -1, 2]], [3], [(0, 1)]),
        ([[1, -3, -1], [-1, -1, -1]], [2, 0], [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]),
    ],
)
def test_e8_dense_int_ids(dense, lengths, zero_steps):
    col = T.indicator_column(T.sequence_categorical_column_with_identity("w", 5))
    out, length = run([col], {"w": tf.constant(dense, tf.int64)})
    np.testing.assert_array_equal(length, lengths)
    for b, t in zero_steps:
        assert not out[b, t].any()


@pytest.mark.parametrize(
    "dense, lengths",
    [([["a", ""], ["b", "c"]], [1, 2]), ([["", ""], ["", "b"]], [0, 2])],
)
def test_e8_dense_strings(dense, lengths):
    col = T.indicator_column(
        T.sequence_categorical_column_with_vocabulary_list("v", ["a", "b", "c"])
    )
    _, length = run([col], {"v": tf.constant(dense)})
    np.testing.assert_array_equal(length, lengths)


def test_e8_dense_rank1_and_3d():
    col = T.indicator_column(T.sequence_categorical_column_with_identity("w", 5))
    out, length = run([col], {"w": tf.constant([1, 2], tf.int64)})
    assert out.shape == (2, 1, 5)
    np.testing.assert_array_equal(length, [1, 1])
    out, length = run([col], {"w": tf.constant([[[1, 2], [3, -1]]], tf.int64)})
    np.testing.assert_array_equal(out[0], [[0, 1, 1, 0, 0], [0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(length, [2])
    sp4 = tf.SparseTensor(
        [[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 1, 1]],
        tf.constant([1, 2, 3], tf.int64),
        [1, 2, 2, 2],
    )
    out, length = run([col], {"w": sp4})
    np.testing.assert_array_equal(out[0], [[0, 1, 1, 0, 0], [0, 0, 0, 1, 0]])


@pytest.mark.parametrize(
    "dense_shape, expected_shape", [([3, 0], (3, 0)), ([0, 4], (0, 4))]
)
def test_e8_empty_batches(dense_shape, expected_shape):
    cat = T.sequence_categorical_column_with_identity("w", 5)
    cols = [T.indicator_column(cat), embed(cat, table_e4())]
    for columns, key, dtype in (
        (cols, "w", tf.int64),
        ([T.sequence_numeric_column("n")], "n", tf.float32),
    ):
        width = sum(c.output_width for c in columns)
        empty = tf.SparseTensor(
            tf.zeros([0, 2], tf.int64), tf.zeros([0], dtype), dense_shape
        )
        out, length = run(columns, {key: empty})
        assert out.shape == (*expected_shape, width)
        np.testing.assert_array_equal(length, np.zeros(dense_shape[0]))
    empty3 = tf.SparseTensor(
        tf.zeros([0, 3], tf.int64), tf.zeros([0], tf.int64), [2, 0, 0]
    )
    out, length = run(cols, {"w": empty3})
    assert out.shape == (2, 0, 7)


def test_e8_empty_row_lengths():
    col = T.indicator_column(T.sequence_categorical_column_with_identity("w", 5))
    _, length = run([col], {"w": sp([[1], [], [2, 3]], tf.int64)})
    np.testing.assert_array_equal(length, [1, 0, 2])


def _sequence_example(rating, watches):
    ex = tf.train.SequenceExample()
    for r in rating:
        ex.feature_lists.feature_list["rating"].feature.add().float_list.value.append(r)
    for w in watches:
        ex.feature_lists.feature_list["watches"].feature.add().int64_list.value.extend(
            w
        )
    return ex.SerializeToString()


def test_e8_parsed_sequence_example_length_mismatch():
    rating = T.sequence_numeric_column("rating")
    watches = T.indicator_column(
        T.sequence_categorical_column_with_identity("watches", 100)
    )
    serialized = [_sequence_example([1.0, 2.0, 3.0], [[5], [6, 7], []])] * 2
    _, features, _ = tf.io.parse_sequence_example(
        serialized, sequence_features=T.make_parse_example_spec([rating, watches])
    )
    out, length = run([watches], features)
    assert out.shape == (2, 3, 100)
    np.testing.assert_array_equal(length, [2, 2])
    _, length = run([rating], features)
    np.testing.assert_array_equal(length, [3, 3])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Condition x == y did not hold"
    ):
        run([rating, watches], features)


def test_unsorted_sparse_input():
    """Deviation (lenient): TF raises "out of order" for numeric/indicator inputs
    whose indices are not row-major; ours computes the same values as for the
    sorted input. Embeddings whose steps interleave raise InvalidArgumentError."""
    values = tf.SparseTensor([[1, 0], [0, 1], [0, 0]], [3.0, 2.0, 1.0], [2, 2])
    out, length = run([T.sequence_numeric_column("n")], {"n": values})
    np.testing.assert_array_equal(out[..., 0], [[1, 2], [3, 0]])
    np.testing.assert_array_equal(length, [2, 1])
    ids = tf.SparseTensor([[0, 1], [0, 0]], tf.constant([2, 1], tf.int64), [1, 2])
    out, _ = run(
        [T.indicator_column(T.sequence_categorical_column_with_identity("w", 3))],
        {"w": ids},
    )
    np.testing.assert_array_equal(out[0], [[0, 1, 0], [0, 0, 1]])
    interleaved = tf.SparseTensor(
        [[0, 0, 0], [0, 1, 0], [0, 0, 1]], tf.constant([1, 2, 3], tf.int64), [1, 2, 2]
    )
    column = T.embedding_column(
        T.sequence_categorical_column_with_identity("w", 5), 2, initializer=table_e4()
    )
    with pytest.raises(tf.errors.InvalidArgumentError):
        run([column], {"w": interleaved})


def test_compute_output_shape_and_symbolic_spec():
    import keras

    columns = [
        T.sequence_numeric_column("n", shape=(2, 3)),
        T.indicator_column(T.sequence_categorical_column_with_identity("w", 10)),
    ]
    layer = T.SequenceFeatures(columns)
    assert layer.compute_output_shape((4, 7)) == (4, 7, 16)
    seq, length = layer(
        {
            "n": keras.Input(shape=(None,), sparse=True, name="n"),
            "w": keras.Input(shape=(None,), sparse=True, dtype="int64", name="w"),
        }
    )
    assert tuple(seq.shape) == (None, None, 16) and seq.dtype == "float32"
    assert tuple(length.shape) == (None,) and length.dtype == "int64"


def test_single_column_tuple_and_generator_accepted():
    column = T.sequence_numeric_column("n")
    for given in (column, (column,), [column], (c for c in [column])):
        assert T.SequenceFeatures(given).feature_columns == [column]


def test_columns_sorted_by_code_point():
    names = ["b", "a_x", "B", "a"]
    layer = T.SequenceFeatures([T.sequence_numeric_column(n) for n in names])
    assert [c.name for c in layer.feature_columns] == ["B", "a", "a_x", "b"]
    assert [s.name for s in T.column_layout(layer.feature_columns)] == [
        "B",
        "a",
        "a_x",
        "b",
    ]
