"""FeatureComputer: one trace for every batch shape, zero padding, batch records."""

import numpy as np
import tensorflow as tf
from conftest import COLUMNS_PY, make_record

import transforms
from pipeline import features


def computer(columns=None, context=None):
    namespace = {}
    exec(COLUMNS_PY, namespace)
    columns = namespace["COLUMNS"] if columns is None else columns
    context = namespace["CONTEXT"] if context is None else context
    weights = features.build_embedding_weights(columns)
    return features.FeatureComputer(columns, context, weights, "id")


def test_one_trace_for_all_batch_sizes_and_lengths():
    c = computer()
    for b, t in [(1, 1), (3, 5), (7, 2), (2, 40)]:
        records = [make_record(f"r{i}", ratings=[1.0] * t) for i in range(b)]
        x, lengths, ctx = c(records)
        assert x.shape == (b, t, 9) and lengths.tolist() == [t] * b
        assert ctx["id"][0].tolist() == [f"r{i}".encode() for i in range(b)]
    assert c._compute.experimental_get_tracing_count() == 1


def test_padding_is_zero_even_with_a_numeric_default_value():
    columns = [transforms.sequence_numeric_column("rating", default_value=-7.0)]
    c = computer(columns, {})
    x, lengths, _ = c(
        [make_record("a", ratings=[1.0, 2.0, 3.0]), make_record("b", ratings=[4.0])]
    )
    assert lengths.tolist() == [3, 1]
    np.testing.assert_array_equal(x[:, :, 0], [[1, 2, 3], [4, 0, 0]])
    assert not np.signbit(x).any()  # +0.0, not -0.0: stable bytes


def test_batch_record_stats_and_var_len_context():
    columns = [transforms.sequence_numeric_column("rating")]
    context = {
        "tags": tf.io.VarLenFeature(tf.string),
        "id": tf.io.FixedLenFeature([], tf.string),
    }
    c = features.FeatureComputer(columns, context, {}, "id")

    def rec(ident, n, tags):
        ex = tf.train.SequenceExample.FromString(make_record(ident, ratings=[1.0] * n))
        ex.context.feature["tags"].bytes_list.value.extend(tags)
        return ex.SerializeToString()

    members = [((0, 0), 2, rec("a", 2, [b"x", b"y"])), ((0, 1), 5, rec("b", 5, []))]
    record, stats = c.batch_record(members)
    assert (stats.examples, stats.real_steps, stats.padded_steps) == (2, 7, 3)
    f = tf.train.Example.FromString(record).features.feature
    assert list(f["shape"].int64_list.value) == [2, 5, 1]
    assert list(f["tags"].bytes_list.value) == [b"x", b"y"]
    assert list(f["tags/row_lengths"].int64_list.value) == [2, 0]
    assert list(f["example_id"].bytes_list.value) == [b"a", b"b"]
