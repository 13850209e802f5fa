"""Fuzzing decode + validate (pure functions, no Beam) with hypothesis.

Random SequenceExample protos (any mix of list kinds, values, lengths, context),
mutated valid records and random bytes: `validate_chunk` never raises (except
`InvalidRecordError` when asked to fail), and every input comes back exactly
once, valid or as an ErrorRecord with a Reason. Outcomes do not depend on the
other records of the batch. The wire walker agrees with the protobuf parser.
"""

import math

import pytest
import tensorflow as tf
from bad_inputs import CATALOG_YAML, GENRES, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.stages import config, decode, validate, wire
from pipeline.stages.validate import INVALID_VALUES, Policy, Reason

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run (CI), no database
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = ["rating", "pos", "watches", "genre", "tags", "other"]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "columns.yaml"
    path.write_text(CATALOG_YAML)
    columns = config.load_columns(str(path))
    spec = decode.record_spec(columns.columns, columns.context, "id")
    return spec, decode.Decoder(spec)


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
ints = st.one_of(st.integers(-3, 60), st.integers(-(2**63), 2**63 - 1))
words = st.one_of(st.sampled_from(GENRES), st.binary(max_size=6))
step_values = st.one_of(
    st.tuples(st.just("float"), st.lists(floats, max_size=4)),
    st.tuples(st.just("int"), st.lists(ints, max_size=4)),
    st.tuples(st.just("bytes"), st.lists(words, max_size=4)),
    st.tuples(st.just("empty"), st.just([])),
)


def _feature(kind, values):
    f = tf.train.Feature()
    if kind == "float":
        f.float_list.value.extend(values)
    elif kind == "int":
        f.int64_list.value.extend(values)
    elif kind == "bytes":
        f.bytes_list.value.extend(values)
    return f


@st.composite
def protos(draw):
    ex = tf.train.SequenceExample()
    for name in ("id", "label"):
        kind, values = draw(
            st.one_of(
                st.just(("missing", [])),
                st.tuples(st.just("bytes"), st.lists(words, min_size=1, max_size=2)),
                st.tuples(st.just("int"), st.lists(ints, min_size=1, max_size=2)),
                st.tuples(st.just("float"), st.lists(floats, min_size=1, max_size=1)),
            )
        )
        if kind != "missing":
            ex.context.feature[name].CopyFrom(_feature(kind, values))
    n = draw(st.integers(0, 6))
    for key in draw(st.sets(st.sampled_from(KEYS), max_size=len(KEYS))):
        steps = draw(st.one_of(st.just(n), st.integers(0, 7)))
        fl = ex.feature_lists.feature_list[key]
        for _ in range(steps):
            fl.feature.append(_feature(*draw(step_values)))
    return ex.SerializeToString(deterministic=True)


@st.composite
def mutated(draw):
    data = bytearray(record(draw(st.text("ab", max_size=3)), draw(st.integers(0, 4))))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


records = st.one_of(
    protos(),
    mutated(),
    st.binary(max_size=200),
    st.builds(lambda i, n: record(f"ok{i}", n), st.integers(0, 3), st.integers(1, 5)),
)
policies = st.builds(
    Policy,
    max_length=st.one_of(st.none(), st.integers(1, 4)),
    on_long=st.sampled_from(["dead_letter", "truncate"]),
    on_invalid=st.sampled_from(["dead_letter", "fail"]),
)


def _check(stage, batch, policy):
    spec, decoder = stage
    chunk = [((0, i), data) for i, data in enumerate(batch)]
    return chunk, validate.validate_chunk(decoder, spec, chunk, policy)


@SETTINGS
@given(batch=st.lists(records, min_size=1, max_size=8), policy=policies)
def test_every_input_is_accounted_for_and_nothing_raises(stage, batch, policy):
    try:
        chunk, checked = _check(stage, batch, policy)
    except validate.InvalidRecordError as e:
        assert policy.on_invalid == "fail"
        lenient = Policy(policy.max_length, policy.on_long, "dead_letter")
        _, checked = _check(stage, batch, lenient)
        assert any(err.reason in INVALID_VALUES for err in checked.errors)
        assert "record" in str(e)
        return
    positions = [v[0] for v in checked.valid] + [e.position for e in checked.errors]
    assert sorted(positions) == [c[0] for c in chunk]  # each exactly once
    assert len(checked.ids) == len(checked.valid)
    for error in checked.errors:
        assert isinstance(error.reason, Reason) and error.detail
        assert error.data == batch[error.position[1]]  # original bytes
        if policy.on_invalid == "fail":
            assert error.reason not in INVALID_VALUES
    for position, length, data in checked.valid:
        assert length >= 1
        if policy.max_length is not None:
            assert length <= policy.max_length
            if position not in checked.truncated:
                assert data == batch[position[1]]
    # A record's outcome does not depend on the rest of its batch.
    for i, data in enumerate(batch):
        _, alone = _check(stage, [data], policy)
        together = [e.reason for e in checked.errors if e.position == (0, i)]
        assert [e.reason for e in alone.errors] == together


@SETTINGS
@given(data=st.one_of(protos(), mutated(), st.binary(max_size=300)))
def test_wire_walker_agrees_with_the_protobuf_parser(data):
    limit = 2
    steps = wire.max_steps(data, limit)  # never raises
    try:
        proto = tf.train.SequenceExample.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError (any flavour)
        return
    lengths = [len(fl.feature) for fl in proto.feature_lists.feature_list.values()]
    true_steps = max(lengths, default=0)
    assert (steps > limit) == (true_steps > limit)
    cut = tf.train.SequenceExample.FromString(wire.truncate(data, limit))
    for feature_list in proto.feature_lists.feature_list.values():
        del feature_list.feature[limit:]
    # The walker rewrites feature-list entries without their unknown fields
    # (which every parser ignores); compare what parsers see.
    proto.DiscardUnknownFields()
    cut.DiscardUnknownFields()
    assert cut.context == proto.context
    assert cut.feature_lists == proto.feature_lists


def test_wire_walker_cost_does_not_grow_with_the_record():
    import time

    from bad_inputs import long_record

    data = long_record("long", 200_000)
    start = time.perf_counter()
    assert wire.max_steps(data, 10) == 11
    cut = wire.truncate(data, 10)
    assert time.perf_counter() - start < 0.5  # walks ~11 steps per list, not 1e6
    ex = tf.train.SequenceExample.FromString(cut)
    assert {len(f.feature) for f in ex.feature_lists.feature_list.values()} == {10}
    assert len(cut) < 2000 and not math.isnan(len(cut))


def test_a_record_with_two_problems_always_gets_the_same_reason(stage):
    # Found by this fuzzing: genre holds an int64 list (wrong dtype) and tags a
    # protobuf group; TF's parser reports either problem at random, the decoder
    # re-parses feature by feature in sorted order: always genre's dtype.
    spec, decoder = stage
    ex = tf.train.SequenceExample.FromString(record("two", 2))
    ex.feature_lists.feature_list["genre"].feature[1].Clear()
    ex.feature_lists.feature_list["genre"].feature[1].int64_list.value.append(3)
    data = ex.SerializeToString(deterministic=True)
    data += b"\x12\x0c\n\n\n\x04tags\x12\x02\x0b\x0c"  # a tags entry with a group
    outcomes = {
        (e.reason, e.detail)
        for _ in range(20)
        for batch in ([data], [b"", data])
        for e in validate.validate_chunk(decoder, spec, [((0, 0), d) for d in batch])[1]
        if e.data == data
    }
    assert len(outcomes) == 1
    ((reason, detail),) = outcomes
    assert reason == Reason.WRONG_DTYPE and "genre" in detail
