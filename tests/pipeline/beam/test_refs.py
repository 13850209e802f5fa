"""Records by reference: bytes read back by position equal the first read's."""

import io

import pytest
from pipeline_data import frame

from pipeline.beam import refs
from pipeline.stages import tfrecord, validate


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def first_read(path):
    with open(path, "rb") as f:
        return {
            i: d
            for i, d in tfrecord.iter_records(f)
            if not isinstance(d, tfrecord.ReadError)
        }


def test_header_offsets_of_a_clean_file():
    data = b"".join(frame(b"r" * i) for i in range(5))
    offsets, complete = refs.header_offsets(io.BytesIO(data))
    assert complete and offsets == [sum(16 + k for k in range(i)) for i in range(5)]


@pytest.mark.parametrize("damage", ["none", "data_crc", "header_crc", "truncated"])
def test_fetch_returns_what_the_reader_read(tmp_path, damage):
    good = [frame(b"rec%03d" % i) for i in range(6)]
    if damage == "data_crc":
        bad = bytearray(good[2])
        bad[14] ^= 0x01
        good[2] = bytes(bad)
    elif damage == "header_crc":
        bad = bytearray(good[2])
        bad[2] ^= 0xFF
        good[2] = bytes(bad)
    data = b"".join(good)
    if damage == "truncated":
        data += frame(b"0123456789")[:20]
    path = write(tmp_path / "a.tfrecord", data)
    expected = first_read(path)
    fetcher = refs.RecordFetcher([path], validate.Policy())
    members = [((0, i), 1, None) for i in sorted(expected, reverse=True)]
    filled = fetcher.fill(members)
    fetcher.close()
    assert [(m[0][1], m[2]) for m in filled] == [
        (i, expected[i]) for i in sorted(expected, reverse=True)
    ]


def test_fetch_applies_the_truncation_policy(monkeypatch):
    policy = validate.Policy(max_length=3, on_long="truncate")
    monkeypatch.setattr(validate.wire, "max_steps", lambda data, limit: 5)
    monkeypatch.setattr(validate.wire, "truncate", lambda data, limit: data[:limit])
    assert validate.apply_max_length(b"abcdef", policy) == b"abc"
    assert validate.apply_max_length(b"abcdef", validate.Policy()) == b"abcdef"
    assert validate.apply_max_length(b"abcdef", validate.Policy(max_length=3)) is None


def test_a_changed_file_is_an_error(tmp_path):
    path = write(tmp_path / "a.tfrecord", frame(b"hello") + frame(b"world"))
    fetcher = refs.RecordFetcher([path], validate.Policy())
    assert fetcher.fetch((0, 1)) == b"world"
    data = bytearray((tmp_path / "a.tfrecord").read_bytes())
    data[16 + 5 + 12] ^= 0x01  # a byte of "world"
    (tmp_path / "a.tfrecord").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="changed while the job ran"):
        fetcher.fetch((0, 1))
    fetcher.close()
