"""Protobuf wire format, walked without a protobuf library: varints and fields.

Place in the flow: under **wire** (step counts and truncation of serialized
SequenceExamples, before decode) and under `pipeline.numpy_reader` (batch
records read without TensorFlow). Imports nothing, so the NumPy reader stays
free of TensorFlow and protobuf.

A message is a run of fields: a varint tag (field number << 3 | wire type),
then the value: a varint (type 0), 8 bytes (1), a varint length and that many
bytes (2: bytes, strings, sub-messages, packed repeated numbers) or 4 bytes
(5). Groups (3, 4) are not handled.
"""

from __future__ import annotations


class Malformed(ValueError):
    """The bytes are not a message this walker handles (cut short, a field
    number 0, a group or an invalid wire type)."""


def varint(data, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at `data[pos:end]`.

    Raises:
      Malformed: the varint runs past `end` or over 64 bits.
    """
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data, pos: int, end: int):
    """Yields (number, wire type, tag start, value start, value end) of each
    field in `data[pos:end]` (a varint's value: its bytes, see `varints`).

    Raises:
      Malformed: see the class.
    """
    while pos < end:
        tag_start = pos
        tag, pos = varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise Malformed
        if wire_type == 0:
            start = pos
            _, pos = varint(data, pos, end)
        elif wire_type == 1:
            start, pos = pos, pos + 8
        elif wire_type == 2:
            length, start = varint(data, pos, end)
            pos = start + length
        elif wire_type == 5:
            start, pos = pos, pos + 4
        else:  # groups (3, 4) and invalid wire types
            raise Malformed
        if pos > end:
            raise Malformed
        yield number, wire_type, tag_start, start, pos


def varints(data, start: int, end: int) -> list[int]:
    """The varints in `data[start:end]` (a packed repeated field, or one
    varint field's value) as signed 64-bit ints (int64's two's complement)."""
    values, pos = [], start
    while pos < end:
        value, pos = varint(data, pos, end)
        values.append(value - (1 << 64) if value >= 1 << 63 else value)
    return values
