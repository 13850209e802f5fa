"""FeatureComputer: one trace for every batch shape, zero padding, batch records."""

import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import COLUMNS_PY, make_record

import transforms
from pipeline.stages import batch_format, features


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


def _proto_record(x, lengths, context, example_id):
    """The batch record built as a tf.train.Example message (the format spec)."""

    def listed(values):
        values = np.asarray(values)
        if values.dtype.kind in "iub":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        if values.dtype.kind == "f":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    x = np.ascontiguousarray(x, "<f4")
    feature = {
        "sequence_input": listed(np.asarray([x.tobytes()], object)),
        "shape": listed(np.asarray(x.shape, np.int64)),
        "sequence_length": listed(np.asarray(lengths, np.int64)),
    }
    if example_id is not None:
        feature["example_id"] = listed(np.asarray(example_id, object))
    for name, (values, row_lengths) in context.items():
        feature[name] = listed(values)
        if row_lengths is not None:
            feature[f"{name}/row_lengths"] = listed(np.asarray(row_lengths, np.int64))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def test_encode_batch_bytes_equal_the_example_proto():
    from pipeline.stages import batch_format

    rng = np.random.default_rng(0)
    for b, t in [(0, 0), (1, 1), (3, 5), (2, 0)]:
        x = rng.normal(size=(b, t, 3)).astype(np.float32)
        lengths = rng.integers(0, t + 1, size=b)
        context = {
            "label": (rng.integers(-5, 2**40, size=b), None),
            "w": (rng.normal(size=2 * b), None),
            "s": (np.asarray([b"\x00a" * i for i in range(b)], object), np.ones(b)),
            "s/x": (np.zeros(0, np.float32), np.zeros(b, np.int64)),
            "é": (np.asarray([b"v"] * b, object), None),
        }
        for ids in ([f"id{i}".encode() for i in range(b)], None):
            assert batch_format.encode_batch(x, lengths, context, ids) == _proto_record(
                x, lengths, context, ids
            )


@pytest.mark.parametrize("strings_as_tensors", [False, True])
def test_flat_rows_give_the_padded_batch_bytes_with_one_trace(strings_as_tensors):
    from pipeline.stages import decode, validate

    namespace = {}
    exec(COLUMNS_PY, namespace)
    c = computer()
    spec = decode.record_spec(namespace["COLUMNS"], namespace["CONTEXT"], "id")
    decoder = decode.Decoder(spec, strings_as_tensors=strings_as_tensors)
    c.trace()  # ahead of the data, as the engine does: still one trace
    genres = [[b"drama"], [], [b"comedy", b"horror"], [b"nope"], [b"action"]]
    for n in (1, 4, 9):
        records = []
        for i in range(n):
            steps = 1 + (i * 7) % 6  # an empty genre step inside, never last
            g = [genres[(i + s) % 5] for s in range(steps - 1)] + [[b"war"]]
            ratings = [float(i + s) for s in range(steps)]
            records.append(make_record(f"r{n}-{i}", ratings=ratings, genres=g))
        chunk = [((0, i), r) for i, r in enumerate(records)]
        checked, decoded, rows = validate.validate_decoded(decoder, spec, chunk)
        assert len(checked.valid) == n
        lengths = np.asarray([m[1] for m in checked.valid], np.int64)
        x = c.flat_rows(decoded, rows, lengths)
        assert x.shape == (int(lengths.sum()), 9)
        context = {k: v for k, v in decoded.context.items()}
        # The tfdata engine's record: the examples' steps in two runs (as from
        # two blocks), the padding added as shared zeros, never one array.
        half = int(lengths[: n // 2].sum())
        runs = [(x[:half], lengths[: n // 2]), (x[half:], lengths[n // 2 :])]
        pieces, stats = c.record_pieces(runs, lengths, context, decoded.ids[rows])
        record = b"".join(memoryview(p).cast("B") for p in pieces)
        assert (record, stats) == c.batch_record(checked.valid)
        # The padded layer call (`__call__`, [B, T, D]) gives the same bytes.
        x_padded, padded_lengths, padded_context = c(records)
        ids = [bytes(v) for v in padded_context["id"][0].tolist()]
        assert record == batch_format.encode_batch(
            x_padded, padded_lengths, padded_context, ids
        )
    assert c.traces == {"rows": 1}
