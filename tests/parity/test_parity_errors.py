"""Every validation error of the reference, raised by ours: same type, same message.

Each case is run against both APIs. Messages are compared after replacing
class paths (`<class 'a.b.C'>` -> `<class 'C'>`), Keras' call wrappers removed.
"""

import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from parity_helpers import sp

import transforms

pytestmark = pytest.mark.parity

REF_SF = tf_keras.experimental.SequenceFeatures


def layer_cls(m):
    return transforms.SequenceFeatures if m is transforms else REF_SF


def normalize(message):
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    for head in (
        "Exception encountered when calling layer",
        "Exception encountered when calling",
    ):
        if message.startswith(head):
            message = message.split("\n\n", 2)[1]
    message = re.sub(r"<class '([\w.]*\.)?(\w+)'>", r"<class '\2'>", message)
    return message


def outcome(fn, m):
    try:
        fn(m)
    except Exception as e:  # noqa: BLE001 - we compare whatever is raised
        return type(e), normalize(str(e))
    return None, None


def ident(m, key="w", n=5):
    return m.sequence_categorical_column_with_identity(key, n)


def call(m, columns, features):
    return layer_cls(m)(columns)(features)


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "v.txt"
    path.write_text("a\nb\n")
    return str(path)


CONSTRUCTION = {
    "key_int_identity": lambda m: m.sequence_categorical_column_with_identity(3, 10),
    "key_int_hash": lambda m: m.sequence_categorical_column_with_hash_bucket(3, 10),
    "key_int_vocab_list": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        3, ["a"]
    ),
    "numeric_shape_float": lambda m: m.sequence_numeric_column("x", shape=(2.0,)),
    "numeric_shape_np_int": lambda m: m.sequence_numeric_column(
        "x", shape=(np.int64(2),)
    ),
    "numeric_shape_negative": lambda m: m.sequence_numeric_column("x", shape=(2, -1)),
    "numeric_shape_zero_int": lambda m: m.sequence_numeric_column("x", shape=0),
    "numeric_dtype_string": lambda m: m.sequence_numeric_column("x", dtype=tf.string),
    "numeric_dtype_bool": lambda m: m.sequence_numeric_column("x", dtype=tf.bool),
    "numeric_normalizer": lambda m: m.sequence_numeric_column("x", normalizer_fn=3),
    "identity_buckets_zero": lambda m: m.sequence_categorical_column_with_identity(
        "w", 0
    ),
    "identity_buckets_none": lambda m: m.sequence_categorical_column_with_identity(
        "w", None
    ),
    "identity_default_negative": lambda m: m.sequence_categorical_column_with_identity(
        "w", 10, -1
    ),
    "identity_default_too_big": lambda m: m.sequence_categorical_column_with_identity(
        "w", 10, 10
    ),
    "hash_none": lambda m: m.sequence_categorical_column_with_hash_bucket("h", None),
    "hash_zero": lambda m: m.sequence_categorical_column_with_hash_bucket("h", 0),
    "hash_float_dtype": lambda m: m.sequence_categorical_column_with_hash_bucket(
        "h", 10, dtype=tf.float32
    ),
    "vocab_empty": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", []
    ),
    "vocab_none": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", None
    ),
    "vocab_duplicates": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", ["a", "a"]
    ),
    "vocab_floats": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", [1.5, 2.5]
    ),
    "vocab_dtype_mismatch": lambda m: (
        m.sequence_categorical_column_with_vocabulary_list("v", ["a"], dtype=tf.int64)
    ),
    "vocab_dtype_float": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", [1, 2], dtype=tf.float32
    ),
    "vocab_oov_negative": lambda m: m.sequence_categorical_column_with_vocabulary_list(
        "v", ["a"], num_oov_buckets=-1
    ),
    "vocab_oov_and_default": lambda m: (
        m.sequence_categorical_column_with_vocabulary_list(
            "v", ["a"], default_value=0, num_oov_buckets=2
        )
    ),
    "vocab_oov_and_default_none": lambda m: (
        m.sequence_categorical_column_with_vocabulary_list(
            "v", ["a"], default_value=None, num_oov_buckets=2
        )
    ),
    "vfile_empty_name": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", ""
    ),
    "vfile_none": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", None
    ),
    "vfile_missing": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", "/nonexistent/v.txt"
    ),
    "vfile_size_zero": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", "/nonexistent/v.txt", vocabulary_size=0
    ),
    "vfile_size_negative": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", "/nonexistent/v.txt", vocabulary_size=-3
    ),
    "vfile_oov_negative": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", "/x", vocabulary_size=3, num_oov_buckets=-2
    ),
    "vfile_oov_and_default": lambda m: (
        m.sequence_categorical_column_with_vocabulary_file(
            "f", "/x", vocabulary_size=3, num_oov_buckets=1, default_value=-1
        )
    ),
    "vfile_dtype_float": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        "f", "/x", vocabulary_size=3, dtype=tf.float32
    ),
    "vfile_key_int": lambda m: m.sequence_categorical_column_with_vocabulary_file(
        3, "/x", vocabulary_size=3
    ),
    "embedding_dim_zero": lambda m: m.embedding_column(ident(m), 0),
    "embedding_dim_none": lambda m: m.embedding_column(ident(m), None),
    "embedding_half_ckpt": lambda m: m.embedding_column(
        ident(m), 2, ckpt_to_load_from="/ckpt"
    ),
    "embedding_half_ckpt_name": lambda m: m.embedding_column(
        ident(m), 2, tensor_name_in_ckpt="t"
    ),
    "embedding_initializer_not_callable": lambda m: m.embedding_column(
        ident(m), 2, initializer=3
    ),
    "indicator_of_numeric": lambda m: m.indicator_column(
        m.sequence_numeric_column("x")
    ),
    "indicator_of_string": lambda m: m.indicator_column("x"),
    "spec_not_a_column": lambda m: m.make_parse_example_spec(["x"]),
    "spec_conflict": lambda m: m.make_parse_example_spec(
        [ident(m, "k"), m.sequence_numeric_column("k")]
    ),
    "layer_dict": lambda m: layer_cls(m)({"a": m.sequence_numeric_column("x")}),
    "layer_empty": lambda m: layer_cls(m)([]),
    "layer_none": lambda m: layer_cls(m)(None),
    "layer_not_a_column": lambda m: layer_cls(m)(["n"]),
    "layer_bare_categorical": lambda m: layer_cls(m)([ident(m)]),
    "layer_duplicate_names": lambda m: layer_cls(m)(
        [m.sequence_numeric_column("x"), m.sequence_numeric_column("x", shape=(2,))]
    ),
}

NUM = lambda m: [m.sequence_numeric_column("n")]  # noqa: E731
CALL = {
    "not_a_dict": lambda m: call(m, NUM(m), [sp([[1.0]])]),
    "missing_key": lambda m: call(m, NUM(m), {"x": sp([[1.0]])}),
    "rank_0": lambda m: call(m, NUM(m), {"n": 1.0}),
    "numeric_dense_input": lambda m: call(m, NUM(m), {"n": tf.constant([[1.0, 2.0]])}),
    "numeric_int_input": lambda m: call(m, NUM(m), {"n": sp([[1, 2]], tf.int64)}),
    "numeric_int_column_float_default": lambda m: call(
        m,
        [m.sequence_numeric_column("n", dtype=tf.int64)],
        {"n": sp([[1, 2]], tf.int64)},
    ),
    "numeric_not_multiple": lambda m: call(
        m,
        [m.sequence_numeric_column("n", shape=(2,))],
        {"n": sp([[1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5]])},
    ),
    "identity_string_input": lambda m: call(
        m, [m.indicator_column(ident(m))], {"w": sp([["a"]])}
    ),
    "hash_float_input": lambda m: call(
        m,
        [m.indicator_column(m.sequence_categorical_column_with_hash_bucket("h", 3))],
        {"h": sp([[1.5]])},
    ),
    "hash_string_column_int_input": lambda m: call(
        m,
        [m.indicator_column(m.sequence_categorical_column_with_hash_bucket("h", 3))],
        {"h": sp([[1]], tf.int64)},
    ),
    "hash_int_column_string_input": lambda m: call(
        m,
        [
            m.indicator_column(
                m.sequence_categorical_column_with_hash_bucket("h", 3, dtype=tf.int64)
            )
        ],
        {"h": sp([["a"]])},
    ),
    "vocab_string_column_int_input": lambda m: call(
        m,
        [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list("v", ["a"])
            )
        ],
        {"v": sp([[1]], tf.int64)},
    ),
    "vocab_int_column_float_input": lambda m: call(
        m,
        [
            m.indicator_column(
                m.sequence_categorical_column_with_vocabulary_list("v", [1, 2])
            )
        ],
        {"v": sp([[1.0]])},
    ),
    "embedding_id_out_of_range": lambda m: call(
        m, [m.embedding_column(ident(m), 2)], {"w": sp([[1, 7]], tf.int64)}
    ),
    "length_mismatch": lambda m: call(
        m,
        [m.sequence_numeric_column("n"), m.indicator_column(ident(m))],
        {"n": sp([[1.0, 2.0], [3.0]]), "w": sp([[1], [2, 3]], tf.int64)},
    ),
    "T_mismatch_concat": lambda m: call(
        m,
        [m.sequence_numeric_column("n"), m.indicator_column(ident(m))],
        {
            "n": tf.SparseTensor([[0, 0]], [1.0], [2, 4]),
            "w": tf.SparseTensor([[0, 0]], tf.constant([1], tf.int64), [2, 2]),
        },
    ),
    "static_batch_mismatch": lambda m: call(
        m,
        [m.sequence_numeric_column("n"), m.indicator_column(ident(m))],
        {"n": sp([[1.0], [2.0]]), "w": sp([[1]], tf.int64)},
    ),
    "mixed_int_and_float_numeric": lambda m: call(
        m,
        [
            m.sequence_numeric_column("a", dtype=tf.int64, default_value=0),
            m.sequence_numeric_column("b"),
        ],
        {"a": sp([[1]], tf.int64), "b": sp([[1.0]])},
    ),
}


def vocab_file_cases(tmp_path):
    lines = {"empty_line": "a\nb\n\nc\n", "duplicate": "a\nb\na\n"}
    cases = {}
    for name, text in lines.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        cases[name] = (str(path), None)
    short = tmp_path / "short.txt"
    short.write_text("a\nb\nc\nd\ne\n")
    cases["too_few_lines"] = (str(short), 20)
    return cases


@pytest.mark.parametrize("case", sorted(CONSTRUCTION))
def test_construction_error_parity(case):
    ref = outcome(CONSTRUCTION[case], tf.feature_column)
    ours = outcome(CONSTRUCTION[case], transforms)
    assert ref[0] is not None, "the reference accepts this"
    assert ours == ref


@pytest.mark.parametrize("case", sorted(CALL))
def test_call_error_parity(case):
    ref = outcome(CALL[case], tf.feature_column)
    ours = outcome(CALL[case], transforms)
    assert ref[0] is not None, "the reference accepts this"
    assert ours[0] is ref[0]
    if ref[0] is tf.errors.InvalidArgumentError:  # op messages carry node names
        first = lambda s: s.split("\n")[0].split(" [Op:")[0].split("\n\t")[0]  # noqa: E731
        assert first(ours[1]) == first(ref[1])
    else:
        assert ours[1] == ref[1]


@pytest.mark.parametrize("name", ["empty_line", "duplicate", "too_few_lines"])
def test_vocabulary_file_content_error_parity(tmp_path, name):
    path, size = vocab_file_cases(tmp_path)[name]

    def run(m):
        cat = m.sequence_categorical_column_with_vocabulary_file(
            "f", path, vocabulary_size=size
        )
        return call(m, [m.indicator_column(cat)], {"f": sp([["a"]])})

    ref, ours = outcome(run, tf.feature_column), outcome(run, transforms)
    assert ref[0] is not None and ours[0] is ref[0]
    assert (
        ours[1].split(" [Op:")[0].split("\n")[0]
        == ref[1].split(" [Op:")[0].split("\n")[0]
    )


def test_combiner_error_same_message_but_raised_at_construction():
    """Deviation: TF validates `combiner` at call time, we at construction."""
    ref_layer = REF_SF(
        [
            tf.feature_column.embedding_column(
                ident(tf.feature_column), 2, combiner="max"
            )
        ]
    )
    ref = outcome(lambda m: ref_layer({"w": sp([[1]], tf.int64)}), None)
    ours = outcome(
        lambda m: transforms.embedding_column(ident(transforms), 2, combiner="max"),
        None,
    )
    assert (
        ours
        == ref
        == (ValueError, "combiner must be one of 'mean', 'sqrtn' or 'sum', got max")
    )


def _given_type_as_tf(message):
    """The message with the class in `Given (type <class ...>)` cut to its
    name (TF's and ours live in different modules)."""
    return re.sub(r"Given \(type <class '[^']*'>\)", "Given (type X)", message)


NON_SEQUENCE = {
    "identity": lambda m: m.categorical_column_with_identity("w", 5),
    "hash": lambda m: m.categorical_column_with_hash_bucket("w", 5, dtype=tf.int64),
    "weighted": lambda m: m.weighted_categorical_column(
        m.categorical_column_with_identity("w", 5), "v"
    ),
}


@pytest.mark.parametrize("inner", sorted(NON_SEQUENCE))
@pytest.mark.parametrize("kind", ["embedding_column", "indicator_column"])
@pytest.mark.parametrize("how", ["tf_column", "our_constructor"])
def test_non_sequence_categorical_error_parity(kind, inner, how):
    """TF's embedding/indicator over a NON-sequence categorical column passes
    construction (column and layer) and fails at the layer's call; ours too,
    with TF's message, given the TF column or the TF categorical column
    inside our embedding_column / indicator_column."""
    fc = tf.feature_column
    cat = NON_SEQUENCE[inner](fc)
    build = {
        "embedding_column": lambda m: m.embedding_column(cat, 2),
        "indicator_column": lambda m: m.indicator_column(cat),
    }[kind]
    features = {"w": sp([[1]], tf.int64), "v": sp([[1.0]])}
    ref_layer = REF_SF([build(fc)])
    layer = transforms.SequenceFeatures(
        [build(fc if how == "tf_column" else transforms)]
    )
    ref = outcome(lambda m: ref_layer(features), None)
    ours = outcome(lambda m: layer(features), None)
    assert ref[0] is ours[0] is ValueError
    assert _given_type_as_tf(ours[1]) == _given_type_as_tf(ref[1])
    name = "w" if inner != "weighted" else "w_weighted_by_v"
    suffix = "embedding" if kind == "embedding_column" else "indicator"
    assert ours[1].startswith(
        f"In {kind}: {name}_{suffix}. categorical_column must be of type "
        "SequenceCategoricalColumn to use SequenceFeatures. Suggested fix: Use one "
        "of sequence_categorical_column_with_*. Given (type "
    )


def test_non_sequence_dense_tf_column_error_parity():
    column = tf.feature_column.numeric_column("x")
    ref = outcome(lambda m: REF_SF([column]), None)
    ours = outcome(lambda m: transforms.SequenceFeatures([column]), None)
    assert ref[0] is ValueError and ours == ref
