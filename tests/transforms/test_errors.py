"""Validation errors: type and exact message (TF 2.21's wording, copied here)."""

import re

import numpy as np
import pytest
import tensorflow as tf

import transforms as T

SEQ_DENSE = "<class 'transforms._base.SequenceDenseColumn'>"


def ident(key="w", n=5):
    return T.sequence_categorical_column_with_identity(key, n)


CONSTRUCTION = [
    (
        lambda: T.sequence_categorical_column_with_identity(3, 10),
        ValueError,
        "key must be a string. Got: type <class 'int'>. Given key: 3.",
    ),
    (
        lambda: T.sequence_categorical_column_with_hash_bucket(3, 10),
        ValueError,
        "key must be a string. Got: type <class 'int'>. Given key: 3.",
    ),
    (
        lambda: T.sequence_numeric_column("x", shape=(2.0,)),
        TypeError,
        "shape dimensions must be integer. shape: (2.0,), key: x",
    ),
    (
        lambda: T.sequence_numeric_column("x", shape=(np.int64(2),)),
        TypeError,
        "shape dimensions must be integer. shape: (np.int64(2),), key: x",
    ),
    (
        lambda: T.sequence_numeric_column("x", shape=(2, -1)),
        ValueError,
        "shape dimensions must be greater than 0. shape: (2, -1), key: x",
    ),
    (
        lambda: T.sequence_numeric_column("x", dtype=tf.string),
        ValueError,
        "dtype must be convertible to float. dtype: <dtype: 'string'>, key: x",
    ),
    (
        lambda: T.sequence_numeric_column("x", normalizer_fn=3),
        TypeError,
        "normalizer_fn must be a callable. Given: 3",
    ),
    (
        lambda: T.sequence_categorical_column_with_identity("w", 0),
        ValueError,
        "num_buckets 0 < 1, column_name w",
    ),
    (
        lambda: T.sequence_categorical_column_with_identity("w", 10, -1),
        ValueError,
        "default_value -1 not in range [0, 10), column_name w",
    ),
    (
        lambda: T.sequence_categorical_column_with_hash_bucket("h", None),
        ValueError,
        "hash_bucket_size must be set. key: h",
    ),
    (
        lambda: T.sequence_categorical_column_with_hash_bucket("h", 0),
        ValueError,
        "hash_bucket_size must be at least 1. hash_bucket_size: 0, key: h",
    ),
    (
        lambda: T.sequence_categorical_column_with_hash_bucket(
            "h", 3, dtype=tf.float32
        ),
        ValueError,
        "column_name: h dtype must be string or integer. dtype: <dtype: 'float32'>.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list("v", [1.5]),
        ValueError,
        "column_name: v vocabulary dtype must be string or integer. dtype: <dtype: 'float64'>.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list(
            "v", ["a"], dtype=tf.int64
        ),
        ValueError,
        "dtype <dtype: 'int64'> and vocabulary dtype <dtype: 'string'> do not match, column_name: v",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list("v", []),
        ValueError,
        "vocabulary_list [] must be non-empty, column_name: v",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list("v", ["a", "a"]),
        ValueError,
        "Duplicate keys in vocabulary_list ['a', 'a'], column_name: v",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list(
            "v", ["a"], num_oov_buckets=-1
        ),
        ValueError,
        "Invalid num_oov_buckets -1 in v.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_list(
            "v", ["a"], default_value=None, num_oov_buckets=1
        ),
        ValueError,
        "Can't specify both num_oov_buckets and default_value in v.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_file("f", ""),
        ValueError,
        "Missing vocabulary_file in f.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_file(
            "f", "/nonexistent/v.txt"
        ),
        ValueError,
        "vocabulary_file in f does not exist.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_file(
            "f", "/x", vocabulary_size=0
        ),
        ValueError,
        "Invalid vocabulary_size in f.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_file(
            "f", "/x", 3, num_oov_buckets=-2
        ),
        ValueError,
        "Invalid num_oov_buckets -2 in f.",
    ),
    (
        lambda: T.sequence_categorical_column_with_vocabulary_file(
            "f", "/x", 3, num_oov_buckets=1, default_value=-1
        ),
        ValueError,
        "Can't specify both num_oov_buckets and default_value in f.",
    ),
    (lambda: T.embedding_column(ident(), 0), ValueError, "Invalid dimension 0."),
    (lambda: T.embedding_column(ident(), None), ValueError, "Invalid dimension None."),
    (
        lambda: T.embedding_column(ident(), 2, ckpt_to_load_from="/c"),
        ValueError,
        "Must specify both `ckpt_to_load_from` and `tensor_name_in_ckpt` or none of them.",
    ),
    (
        lambda: T.embedding_column(ident(), 2, initializer=3),
        ValueError,
        "initializer must be callable if specified. Embedding of column_name: w",
    ),
    (
        lambda: T.embedding_column(ident(), 2, combiner="max"),
        ValueError,
        "combiner must be one of 'mean', 'sqrtn' or 'sum', got max",
    ),
    (
        lambda: T.indicator_column(T.sequence_numeric_column("x")),
        ValueError,
        "Unsupported input type. Input must be a CategoricalColumn. Given: SequenceNumericColumn(key='x', "
        "shape=(1,), default_value=0.0, dtype=tf.float32, normalizer_fn=None)",
    ),
    (
        lambda: T.make_parse_example_spec(["x"]),
        ValueError,
        "All feature_columns must be FeatureColumn instances. Given: x",
    ),
    (
        lambda: T.make_parse_example_spec([ident("k"), T.sequence_numeric_column("k")]),
        ValueError,
        "feature_columns contain different parse_spec for key k. Given VarLenFeature(dtype=tf.float32) "
        "and VarLenFeature(dtype=tf.int64)",
    ),
    (
        lambda: T.SequenceFeatures({"a": T.sequence_numeric_column("x")}),
        ValueError,
        "Expected feature_columns to be iterable, found dict.",
    ),
    (lambda: T.SequenceFeatures([]), ValueError, "feature_columns must not be empty."),
    (
        lambda: T.SequenceFeatures(["n"]),
        ValueError,
        "Items of feature_columns must be a FeatureColumn. Given (type <class 'str'>): n.",
    ),
    (
        lambda: T.SequenceFeatures([ident()]),
        ValueError,
        f"Items of feature_columns must be a {SEQ_DENSE}. You can wrap a categorical column with an "
        "embedding_column or indicator_column. Given: SequenceCategoricalColumn(categorical_column="
        "IdentityCategoricalColumn(key='w', number_buckets=5, default_value=None))",
    ),
    (
        lambda: T.SequenceFeatures(
            [T.sequence_numeric_column("x"), T.sequence_numeric_column("x", shape=2)]
        ),
        ValueError,
        "Duplicate feature column name found for columns: SequenceNumericColumn(key='x', shape=(2,), "
        "default_value=0.0, dtype=tf.float32, normalizer_fn=None) and SequenceNumericColumn(key='x', "
        "shape=(1,), default_value=0.0, dtype=tf.float32, normalizer_fn=None). This usually means that "
        "these columns refer to same base feature. Either one must be discarded or a duplicated but "
        "renamed item must be inserted in features dict.",
    ),
]


@pytest.mark.parametrize(
    "make, error, message", CONSTRUCTION, ids=[c[2][:40] for c in CONSTRUCTION]
)
def test_construction_errors(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert type(info.value) is error
    assert str(info.value) == message


def test_layer_none_is_type_error():
    with pytest.raises(TypeError):
        T.SequenceFeatures(None)


def sp(rows, dtype=None):
    return tf.ragged.constant(rows, dtype=dtype).to_sparse()


NUM = [T.sequence_numeric_column("n")]
CALL = [
    (NUM, [1.0], ValueError, "We expected a dictionary here. Instead we got: "),
    (NUM, {"x": sp([[1.0]])}, ValueError, "Feature n is not in features dictionary."),
    (NUM, {"n": 1.0}, ValueError, "Feature (key: n) cannot have rank 0. Given: 1.0"),
    (NUM, {"n": tf.constant([[1.0]])}, TypeError, "Input must be a SparseTensor."),
    (
        NUM,
        {"n": sp([[1]], tf.int64)},
        TypeError,
        "Cannot convert 0.0 to EagerTensor of dtype int64",
    ),
    (
        [T.sequence_numeric_column("n", shape=(2,))],
        {"n": sp([[1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5]])},
        tf.errors.InvalidArgumentError,
        "Input to reshape is a tensor with 10 values, but the requested shape requires a multiple of 4",
    ),
    (
        [T.indicator_column(ident())],
        {"w": sp([["a"]])},
        ValueError,
        "Invalid input, not integer. key: w dtype: <dtype: 'string'>",
    ),
    (
        [
            T.indicator_column(
                T.sequence_categorical_column_with_vocabulary_list("c", ["a"])
            )
        ],
        {"c": sp([[1]], tf.int64)},
        ValueError,
        "Column dtype and SparseTensors dtype must be compatible. key: c, column dtype: <dtype: 'string'>, "
        "tensor dtype: <dtype: 'int64'>",
    ),
    (
        [T.embedding_column(ident(), 2)],
        {"w": sp([[1, 7]], tf.int64)},
        tf.errors.InvalidArgumentError,
        "indices[1] = 7 is not in [0, 5)",
    ),
    (
        [T.sequence_numeric_column("n"), T.indicator_column(ident())],
        {"n": sp([[1.0, 2.0], [3.0]]), "w": sp([[1], [2, 3]], tf.int64)},
        tf.errors.InvalidArgumentError,
        "Condition x == y did not hold.",
    ),
    (
        [T.sequence_numeric_column("n"), T.indicator_column(ident())],
        {
            "n": tf.SparseTensor([[0, 0]], [1.0], [2, 4]),
            "w": tf.SparseTensor([[0, 0]], tf.constant([1], tf.int64), [2, 2]),
        },
        tf.errors.InvalidArgumentError,
        "ConcatOp : Dimension 1 in both shapes must be equal",
    ),
    (
        [T.sequence_numeric_column("n"), T.indicator_column(ident())],
        {"n": sp([[1.0], [2.0]]), "w": sp([[1]], tf.int64)},
        ValueError,
        "Batch size (first dimension) of each feature must be same. Batch size of columns (n, w_indicator): (2, 1)",
    ),
]


@pytest.mark.parametrize(
    "columns, features, error, message", CALL, ids=[c[3][:40] for c in CALL]
)
def test_call_errors(columns, features, error, message):
    with pytest.raises(error) as info:
        T.SequenceFeatures(columns)(features)
    assert type(info.value) is error
    assert message in re.sub(r"\x1b\[[0-9;]*m", "", str(info.value))


@pytest.mark.parametrize(
    "text, size, error, message",
    [
        (
            "a\nb\n\nc\n",
            None,
            tf.errors.InvalidArgumentError,
            "empty line found at position",
        ),
        (
            "a\nb\nc\nd\ne\n",
            20,
            tf.errors.InvalidArgumentError,
            "expected 20 but got 5",
        ),
        (
            "a\nb\na\n",
            None,
            tf.errors.FailedPreconditionError,
            "HashTable has different value for same key. Key a has 0 and trying to add value 2",
        ),
    ],
)
def test_vocabulary_file_content_errors(tmp_path, text, size, error, message):
    path = tmp_path / "v.txt"
    path.write_text(text)
    column = T.sequence_categorical_column_with_vocabulary_file(
        "f", str(path), vocabulary_size=size
    )
    if "empty line" in message:
        message = f"Invalid content in {path}: {message}"
    with pytest.raises(error, match=re.escape(message)):
        T.SequenceFeatures([T.indicator_column(column)])({"f": sp([["a"]])})


def test_mismatch_errors_inside_tf_function():
    """In a graph the checks are single Asserts: same error type as TF's."""
    columns = [T.sequence_numeric_column("n"), T.indicator_column(ident())]
    layer = T.SequenceFeatures(columns)
    spec = {
        "n": tf.SparseTensorSpec([None, None], tf.float32),
        "w": tf.SparseTensorSpec([None, None], tf.int64),
    }
    step = tf.function(layer, input_signature=[spec])
    lengths = {"n": sp([[1.0, 2.0], [3.0]]), "w": sp([[1], [2, 3]], tf.int64)}
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Condition x == y did not hold"
    ):
        step(lengths)
    steps = {
        "n": tf.SparseTensor([[0, 0]], [1.0], [2, 4]),
        "w": tf.SparseTensor([[0, 0]], tf.constant([1], tf.int64), [2, 2]),
    }
    with pytest.raises(tf.errors.InvalidArgumentError, match="ConcatOp : Dimension 1"):
        step(steps)
    out, length = step({"n": sp([[1.0], [2.0, 3.0]]), "w": sp([[1], [2, 3]], tf.int64)})
    np.testing.assert_array_equal(length.numpy(), [1, 2])


def test_indices_beyond_dense_shape_raise():
    bad = tf.SparseTensor([[0, 5]], [1.0], [1, 2])
    with pytest.raises(tf.errors.InvalidArgumentError):
        T.SequenceFeatures([T.sequence_numeric_column("n")])({"n": bad})
