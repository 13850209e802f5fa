"""stages/protowire.py: varints and fields, checked against protobuf's own bytes."""

import pytest
import tensorflow as tf

from pipeline.stages import protowire
from pipeline.stages.wire import encode_varint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1])
def test_varint_reads_what_encode_varint_writes(value):
    data = b"\x07" + encode_varint(value) + b"\x09"
    assert protowire.varint(data, 1, len(data)) == (value, len(data) - 1)


def test_fields_of_an_example_and_signed_int64s():
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3, 5])),
                "f": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
            }
        )
    )
    data = example.SerializeToString(deterministic=True)
    ((number, wire_type, tag_start, start, end),) = protowire.fields(data, 0, len(data))
    assert (number, wire_type, tag_start, end) == (1, 2, 0, len(data))
    entries = list(protowire.fields(data, start, end))
    assert [(n, w) for n, w, *_ in entries] == [(1, 2), (1, 2)]
    # Entry "n": key, then Feature {3: Int64List {1: packed}}.
    values = {}
    for *_, e_start, e_end in entries:
        (key, value) = list(protowire.fields(data, e_start, e_end))
        name = data[key[3] : key[4]].decode()
        (kind,) = list(protowire.fields(data, value[3], value[4]))
        (packed,) = list(protowire.fields(data, kind[3], kind[4]))
        values[name] = (kind[0], data[packed[3] : packed[4]])
    assert values["f"][0] == 2 and len(values["f"][1]) == 4
    kind, packed = values["n"]
    assert kind == 3 and protowire.varints(packed, 0, len(packed)) == [-3, 5]


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05abc", b"\x08", b"\x00\x01", b"\x0b", b"\x08\xff\xff\xff\xff\xff"],
    ids=["past_end", "no_value", "field_zero", "group", "cut_varint"],
)
def test_malformed_bytes_raise_malformed(data):
    with pytest.raises(protowire.Malformed):
        list(protowire.fields(data, 0, len(data)))
