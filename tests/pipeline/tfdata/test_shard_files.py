"""The tfdata engine's writer process writes the bytes `ShardFiles` writes
here, and its errors reach the main process."""

import numpy as np
import pytest

from pipeline.stages import output
from pipeline.stages.features import RecordMaker
from pipeline.tfdata import shard_files

MAKER = RecordMaker(depth=3, fixed=frozenset({"label"}), id_feature="id")


def _batches(rng):
    for b in (4, 2, 3):
        lengths = rng.integers(1, 6, b)
        rows = rng.standard_normal((int(lengths.sum()), 3)).astype(np.float32)
        context = {"label": (rng.integers(0, 2, b), np.ones(b, np.int64))}
        ids = np.array([f"id{i}".encode() for i in range(b)], object)
        yield ([(rows, lengths)], lengths, context, ids), None


def test_writer_process_writes_the_bytes_of_shard_files(tmp_path):
    (tmp_path / "here" / "shards").mkdir(parents=True)
    (tmp_path / "there" / "shards").mkdir(parents=True)
    here = shard_files.ShardFiles(
        str(tmp_path / "here"), 2, "none", MAKER.record_pieces
    )
    there = shard_files.WriterProcess(str(tmp_path / "there"), 2, "none", MAKER)
    for contents, length in _batches(np.random.default_rng(0)):
        here.write(contents, length)
        there.write(contents, length)
    counts_here, counts_there = here.close(), there.close()
    assert counts_there == counts_here
    assert counts_here.totals.batches == 3 and counts_here.batches == [2, 1]
    for k in range(2):
        shard = output.shard_file(k, 2)
        data = (tmp_path / "here" / shard).read_bytes()
        assert data and (tmp_path / "there" / shard).read_bytes() == data


def test_writer_process_error_is_raised_at_close(tmp_path):
    writer = shard_files.WriterProcess(str(tmp_path / "missing"), 1, "none", MAKER)
    with pytest.raises(FileNotFoundError):
        for contents, length in _batches(np.random.default_rng(1)):
            writer.write(contents, length)
        writer.close()
    with pytest.raises(FileNotFoundError):  # the engine's `finally` closes again
        writer.close()
