"""SequenceExample wire format: feature-list step counts and truncation, no parsing.

Place in the flow: read -> **wire** (--max_sequence_length) -> decode -> validate.
A record far longer than the rest must not be decoded into big tensors just to be
found too long: these functions walk the serialized bytes (protobuf wire format)
without building messages, stopping after `limit + 1` steps of each feature list,
so their cost and memory do not grow with the record. A step is one `Feature`
entry of a `FeatureList`; each takes at least 2 bytes on the wire, so a record of
`2 * limit` bytes or fewer cannot hold more than `limit` steps and is not walked.

The fields are walked by `protowire`. Wire layout: SequenceExample {1: context, 2: feature_lists}; FeatureLists
{1: map entry {1: key, 2: FeatureList}}; FeatureList {1: Feature (repeated)}.
Protobuf merge rules are followed: repeated `feature_lists` fields merge, a map
key seen again replaces the earlier entry, a repeated FeatureList value field
concatenates. Encodings this walker does not handle (groups) fall back to the
protobuf parser.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from pipeline.stages.protowire import Malformed, fields


def _entries(data: bytes, start: int, end: int):
    """Yields (key, [(start, end) of FeatureList values]) per map entry of the
    FeatureLists message in data[start:end]."""
    for n, wt, _, e_start, e_end in fields(data, start, end):
        if n != 1:
            continue
        if wt != 2:
            raise Malformed
        key, values = b"", []
        for f, fwt, _, v_start, v_end in fields(data, e_start, e_end):
            if f == 1 and fwt == 2:
                key = data[v_start:v_end]
            elif f == 2 and fwt == 2:
                values.append((v_start, v_end))
            elif f in (1, 2):
                raise Malformed
        yield key, values


def _feature_lists(data: bytes):
    """Yields (tag start, value start, value end) of each `feature_lists` field;
    other top-level fields are only checked."""
    for number, wire_type, tag_start, start, end in fields(data, 0, len(data)):
        if number == 2:
            if wire_type != 2:
                raise Malformed
            yield tag_start, start, end


def _first_steps(data: bytes, values, n: int) -> tuple[int, list[tuple[int, int]]]:
    """Counts up to `n` Feature entries over `values`; returns (count, byte ranges
    of the counted entries, tags included)."""
    count, ranges = 0, []
    for start, end in values:
        if count >= n:
            break
        first = last = None
        for f, wt, tag_start, _, e in fields(data, start, end):
            if f != 1:
                continue
            if wt != 2:
                raise Malformed
            if first is None:
                first = tag_start
            last = e
            count += 1
            if count >= n:
                break
        if first is not None:
            ranges.append((first, last))
    return count, ranges


def max_steps(data: bytes, limit: int) -> int:
    """Steps of the longest feature list of `data`, counted up to `limit + 1`.

    Returns 0 for bytes that are not a SequenceExample (the decoder reports them).
    """
    if len(data) <= 2 * limit:
        return 0  # each step takes >= 2 bytes
    try:
        steps = {}
        for _, start, end in _feature_lists(data):
            for key, values in _entries(data, start, end):
                steps[key] = _first_steps(data, values, limit + 1)[0]
        return max(steps.values(), default=0)
    except Malformed:
        proto = _parse(data)
        if proto is None:
            return 0
        lists = proto.feature_lists.feature_list
        return max((len(fl.feature) for fl in lists.values()), default=0)


def truncate(data: bytes, n: int) -> bytes:
    """`data` with every feature list cut to its first `n` steps (context kept)."""
    try:
        return _truncate_wire(data, n)
    except Malformed:
        proto = _parse(data)
        if proto is None:
            return data
        for feature_list in proto.feature_lists.feature_list.values():
            del feature_list.feature[n:]
        return proto.SerializeToString(deterministic=True)


def _truncate_wire(data: bytes, n: int) -> bytes:
    out, pos = [], 0
    for tag_start, start, end in _feature_lists(data):
        out.append(data[pos:tag_start])  # other fields, verbatim
        entries = []
        for key, values in _entries(data, start, end):
            _, ranges = _first_steps(data, values, n)
            feature_list = b"".join(data[s:e] for s, e in ranges)
            entry = _len_field(1, key) + _len_field(2, feature_list)
            entries.append(_len_field(1, entry))
        out.append(_len_field(2, b"".join(entries)))
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def encode_varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative `value`."""
    if value < 0x80:  # tags and short lengths: most calls
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_ONE_BYTE = tuple(bytes((b,)) for b in range(0x80))


def _len_field(number: int, payload: bytes) -> bytes:
    return encode_varint((number << 3) | 2) + encode_varint(len(payload)) + payload


def _parse(data: bytes):
    import tensorflow as tf

    try:
        return tf.train.SequenceExample.FromString(data)
    except DecodeError:
        return None
