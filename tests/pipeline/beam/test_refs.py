"""Records by reference: bytes read back by extent equal the first read's."""

import io

import numpy as np
import pytest
from pipeline_data import frame

from pipeline.beam import refs
from pipeline.stages import tfrecord, validate
from pipeline.stages.blocks import Block, LocatedChunk


class CountingFile(io.FileIO):
    """A local file that counts the bytes read through it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        CountingFile.read_bytes += len(data)
        return data


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def damaged(damage: str) -> bytes:
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
    return data


def test_located_records_are_the_records_with_their_offsets():
    data = b"".join(frame(b"r" * i) for i in range(5))
    located = list(tfrecord.iter_located(io.BytesIO(data)))
    assert [(i, d) for i, _, d in located] == list(
        tfrecord.iter_records(io.BytesIO(data))
    )
    assert [offset for _, offset, _ in located] == [
        sum(16 + k for k in range(i)) for i in range(5)
    ]


@pytest.mark.parametrize("damage", ["none", "data_crc", "header_crc", "truncated"])
def test_fetch_by_extent_returns_what_the_first_read_read(tmp_path, damage):
    path = write(tmp_path / "a.tfrecord", damaged(damage))
    (chunk,) = [
        LocatedChunk(records, np.asarray(offsets))
        for records, _, offsets in tfrecord.read_file_located(path, 0)
    ]
    expected = dict(chunk.records)
    assert len(expected) == (6 if damage in ("none", "truncated") else 5)
    block = Block.of(
        [(p, 1, d) for p, d in chunk.records],
        keep_bytes=False,
        extents=chunk.extents([p for p, _ in chunk.records]),
    )
    members = block.take(np.arange(len(block))[::-1]).members()
    assert all(isinstance(m[2], tuple) for m in members)  # (offset, size)
    fetcher = refs.RecordFetcher([path], validate.Policy())
    filled = fetcher.fill(members)
    fetcher.close()
    assert [(m[0], m[2]) for m in filled] == [
        (p, expected[p]) for p in sorted(expected, reverse=True)
    ]


def test_fetch_reads_only_the_records_asked_for(tmp_path, monkeypatch):
    """No walk over the headers: a record's data and CRC, nothing else."""
    records = [b"x" * 1000 for _ in range(50)]
    path = write(tmp_path / "a.tfrecord", b"".join(frame(r) for r in records))
    (chunk,) = [
        LocatedChunk(r, np.asarray(o))
        for r, _, o in tfrecord.read_file_located(path, 0)
    ]
    monkeypatch.setattr(tfrecord.fileio, "open_read", lambda p: CountingFile(p, "rb"))
    CountingFile.read_bytes = 0
    fetcher = refs.RecordFetcher([path], validate.Policy())
    ((offset, size),) = chunk.extents([(0, 37)]).tolist()
    assert fetcher.fetch(0, offset, size) == records[37]
    fetcher.close()
    assert CountingFile.read_bytes == 0  # pread: not through read() at all
    f = CountingFile(path, "rb")  # a file object without pread (remote-like)
    assert tfrecord.read_at(io.BufferedReader(f), offset, size) == records[37]
    assert CountingFile.read_bytes <= 1000 + 4 + io.DEFAULT_BUFFER_SIZE


def test_fill_keeps_bytes_and_reads_extents_in_order(tmp_path):
    path = write(tmp_path / "a.tfrecord", frame(b"hello") + frame(b"world"))
    fetcher = refs.RecordFetcher([path], validate.Policy())
    members = [((0, 1), 1, (21, 5)), ((0, 0), 1, b"kept"), ((0, 0), 1, (0, 5))]
    assert [m[2] for m in fetcher.fill(members)] == [b"world", b"kept", b"hello"]
    fetcher.close()


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
    assert fetcher.fetch(0, 21, 5) == b"world"
    data = bytearray((tmp_path / "a.tfrecord").read_bytes())
    data[16 + 5 + 12] ^= 0x01  # a byte of "world"
    (tmp_path / "a.tfrecord").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="changed while the job ran"):
        fetcher.fetch(0, 21, 5)
    fetcher.close()
