"""Decode + validate: every bad-record kind gets its Reason; good records pass."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to
from pipeline_data import (
    COLUMNS_PY,
    EXPECTED_REASON,
    bad_records,
    good_record,
    make_record,
)

from pipeline.beam import validate as beam_validate
from pipeline.stages import decode, validate
from pipeline.stages.validate import Reason


@pytest.fixture(scope="module")
def spec():
    namespace = {}
    exec(COLUMNS_PY, namespace)
    return decode.record_spec(namespace["COLUMNS"], namespace["CONTEXT"])


@pytest.fixture(scope="module")
def decoder(spec):
    return decode.Decoder(spec)


def test_record_spec_from_columns(spec):
    assert set(spec.sequence) == {"rating", "watches", "genre"}
    assert spec.numeric_widths == {"rating": 1}
    assert spec.id_ranges == {"watches": 50}


def test_good_records_pass_with_reference_lengths(spec, decoder):
    rng = np.random.default_rng(0)
    records = [good_record(rng, f"g{i}") for i in range(40)]
    records.append(
        make_record(
            "trail", ratings=(1.0, 2.0, 3.0), genres=[[b"drama"], [], [b"action"]]
        )
    )
    chunk = [((0, i), r) for i, r in enumerate(records)]
    valid, errors, _, _ = validate.validate_chunk(decoder, spec, chunk)
    assert errors == []
    assert [v[0] for v in valid] == [c[0] for c in chunk]
    assert valid[-1][1] == 3


@pytest.mark.parametrize("kind", sorted(EXPECTED_REASON))
def test_bad_record_kinds(kind, spec, decoder):
    rng = np.random.default_rng(1)
    chunk = [
        ((0, 0), good_record(rng, "a")),
        ((0, 1), bad_records()[kind]),
        ((0, 2), good_record(rng, "b")),
    ]
    valid, errors, _, _ = validate.validate_chunk(decoder, spec, chunk)
    assert [v[0] for v in valid] == [(0, 0), (0, 2)]
    assert len(errors) == 1
    assert errors[0].reason == Reason(EXPECTED_REASON[kind])
    assert errors[0].position == (0, 1) and errors[0].data == bad_records()[kind]
    assert errors[0].detail


def test_all_bad_kinds_in_one_batch(spec, decoder):
    items = sorted(bad_records().items())
    chunk = [((0, i), data) for i, (_, data) in enumerate(items)]
    valid, errors, _, _ = validate.validate_chunk(decoder, spec, chunk)
    assert valid == []
    assert [e.reason.value for e in errors] == [EXPECTED_REASON[k] for k, _ in items]


def test_trailing_empty_categorical_step_is_unequal_length(spec, decoder):
    # Reference length of genre is 2 (last step with a value + 1), rating's is 3.
    record = make_record("t", ratings=(1.0, 2.0, 3.0), genres=[[b"drama"], [b"x"], []])
    errors = validate.validate_chunk(decoder, spec, [((0, 0), record)]).errors
    assert errors[0].reason == Reason.UNEQUAL_LENGTHS
    assert "genre=2" in errors[0].detail and "rating=3" in errors[0].detail


def test_reasons_are_a_closed_str_enum():
    assert Reason("empty_sequence") is Reason.EMPTY_SEQUENCE
    assert all(isinstance(r.value, str) and r.value == r.value.lower() for r in Reason)
    assert validate.classify_parse_error("Invalid protocol message input") is (
        Reason.NOT_A_SEQUENCE_EXAMPLE
    )


def test_validate_records_transform(spec):
    rng = np.random.default_rng(2)
    good = good_record(rng, "g")
    empty = bad_records()["empty_sequence"]
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.beam.runner import make_runner

    with BeamPipeline(runner=make_runner(PipelineOptions())) as p:
        out = (
            p
            | "Make" >> beam.Create([[((0, 0), good), ((0, 1), empty)]])
            | "Validate" >> beam_validate.ValidateRecords(spec)
        )
        positions = out.valid | "Pos" >> beam.FlatMap(
            lambda block: [m[0] for m in block.members()]
        )
        reasons = out.errors | "Reason" >> beam.Map(lambda e: e.reason)
        assert_that(positions, equal_to([(0, 0)]), label="OneValid")
        assert_that(reasons, equal_to([Reason.EMPTY_SEQUENCE]), label="OneError")


def test_strings_as_tensors_decode_the_same_values(spec):
    """The tfdata engine keeps string values as tensors: same values, same
    validation outcome, the numeric arrays unchanged."""
    rng = np.random.default_rng(1)
    chunk = [((0, i), good_record(rng, f"s{i}")) for i in range(12)]
    plain = validate.validate_decoded(decode.Decoder(spec), spec, chunk)
    kept = validate.validate_decoded(
        decode.Decoder(spec, strings_as_tensors=True), spec, chunk
    )
    assert plain[0] == kept[0]
    for key, (values, step_splits, row_splits) in plain[1].features.items():
        other = kept[1].features[key]
        if values.dtype == object:
            assert isinstance(other[0], tf.Tensor)
            assert other[0].numpy().tolist() == values.tolist()
        else:
            np.testing.assert_array_equal(other[0], values)
        np.testing.assert_array_equal(other[1], step_splits)
        np.testing.assert_array_equal(other[2], row_splits)


def test_length_spec_parses_the_narrowest_numeric_list(spec):
    light = decode.length_spec(spec)
    assert list(light.sequence) == ["rating"]  # not "genre" (strings, first by name)
