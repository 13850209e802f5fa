"""The TFRecord reader: positions, CRC mismatches, truncation, resync."""

import io
import struct

import google_crc32c
import numpy as np
import pytest
from pipeline_data import frame

from pipeline.stages import tfrecord


def records_of(data: bytes):
    return list(tfrecord.iter_records(io.BytesIO(data)))


def test_reads_records_with_indices():
    data = b"".join(frame(b"rec%d" % i) for i in range(5))
    assert records_of(data) == [(i, b"rec%d" % i) for i in range(5)]


def test_matches_tensorflow_framing(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "x.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(3):
            w.write(b"x" * i)
    with open(path, "rb") as f:
        assert [d for _, d in tfrecord.iter_records(f)] == [b"", b"x", b"xx"]


def test_data_crc_mismatch_is_one_dead_letter_then_reading_goes_on():
    bad = bytearray(frame(b"hello world"))
    bad[14] ^= 0x01
    data = frame(b"a") + bytes(bad) + frame(b"b")
    out = records_of(data)
    assert out[0] == (0, b"a") and out[2] == (2, b"b")
    assert out[1][0] == 1 and out[1][1].reason == "corrupt_record"
    assert out[1][1].data == b"hemlo world"  # the damaged bytes are kept


def test_bad_length_header_resyncs():
    bad = bytearray(frame(b"payload"))
    bad[2] ^= 0xFF
    data = frame(b"a") + bytes(bad) + frame(b"b") + frame(b"c")
    out = records_of(data)
    assert [o[1] for o in out if isinstance(o[1], bytes)] == [b"a", b"b", b"c"]
    errors = [o for o in out if not isinstance(o[1], bytes)]
    assert len(errors) == 1 and errors[0][1].reason == "corrupt_record"
    assert "skipped 23 bytes" in errors[0][1].detail


@pytest.mark.parametrize("cut", [3, 12, 20])
def test_truncated_tail(cut):
    tail = frame(b"0123456789")[:cut]
    out = records_of(frame(b"a") + tail)
    assert out[0] == (0, b"a")
    assert out[1][0] == 1 and out[1][1].reason == "truncated_record"
    assert out[1][1].data == tail


def test_read_file_chunks(tmp_path):
    path = tmp_path / "f.tfrecord"
    path.write_bytes(b"".join(frame(b"%d" % i) for i in range(7)))
    chunks = list(tfrecord.read_file(str(path), 3, chunk_size=3))
    assert [len(r) for r, _ in chunks] == [3, 3, 1]
    assert chunks[2][0] == [((3, 6), b"6")]


def test_match_files_sorted_and_missing(tmp_path):
    for name in ("b.tfrecord", "a.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    assert tfrecord.match_files(str(tmp_path / "*.tfrecord")) == [
        str(tmp_path / "a.tfrecord"),
        str(tmp_path / "b.tfrecord"),
    ]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        tfrecord.match_files(str(tmp_path / "*.nothing"))


def test_masked_crc_matches_known_value():
    header = struct.pack("<Q", 0)
    # The masked CRC TensorFlow writes for an empty record's length header.
    assert tfrecord.masked_crc32c(header) == struct.unpack("<I", frame(b"")[8:12])[0]


def test_crc32c_combine_is_the_crc_of_the_concatenation():
    rng = np.random.default_rng(0)
    for size_a, size_b in [(0, 0), (5, 0), (0, 7), (1, 1), (100, 3000), (13, 1 << 20)]:
        a, b = rng.bytes(size_a), rng.bytes(size_b)
        got = tfrecord.crc32c_combine(
            google_crc32c.value(a), google_crc32c.value(b), size_b
        )
        assert got == google_crc32c.value(a + b)


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_agrees_with_the_record_by_record_path(seed, monkeypatch):
    # The reader walks the healthy records already buffered in one loop and
    # leaves damage and buffer ends to the general path; with a 7-byte read
    # block nearly every record takes the general path. Both must agree on
    # random damage: flipped bytes (data or header), a cut tail.
    import random

    rng = random.Random(seed)
    data = bytearray(
        b"".join(frame(bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
                 for _ in range(60))
    )  # fmt: skip
    for _ in range(4):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    data = bytes(data[: len(data) - rng.randrange(10)])

    def located():
        return list(tfrecord.iter_located(io.BytesIO(data)))

    fast = located()
    monkeypatch.setattr(tfrecord, "_BLOCK", 7)
    assert located() == fast
    assert any(isinstance(item, tfrecord.ReadError) for _, _, item in fast)
    assert sum(isinstance(item, bytes) for _, _, item in fast) >= 30
