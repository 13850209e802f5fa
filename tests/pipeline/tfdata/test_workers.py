"""The tfdata engine's worker processes do not show in its output.

With worker processes (`tfdata.workers`) chunks are validated and featurized
in other processes, come back in reading order, features through shared
memory (or pickled, when a chunk's rows outgrow a slot): the bytes written
must equal an in-process run's, dead letters, duplicate ids and truncated
records included, and a worker's error must stop the job as in-process.
"""

import shutil

import numpy as np
import pytest
from pipeline_data import dir_bytes, frame, good_record, run_job

from pipeline.stages.validate import InvalidRecordError
from pipeline.tfdata import workers


@pytest.fixture(scope="module")
def with_duplicates(dataset, tmp_path_factory):
    """The `dataset` fixture's files plus one holding records whose ids the
    others already have (duplicates) and new ones."""
    directory = tmp_path_factory.mktemp("dups")
    for path in dataset["paths"]:
        shutil.copy(path, directory)
    rng = np.random.default_rng(3)
    ids = [f"ok-0-{i:04d}" for i in range(0, 150, 7)] + [f"new-{i}" for i in range(40)]
    ids += [f"ok-2-{i:04d}" for i in range(5)] + ["new-1", "new-2"]
    path = directory / "in-00003.tfrecord"
    path.write_bytes(b"".join(frame(good_record(rng, i)) for i in ids))
    return {**dataset, "pattern": str(directory / "in-*.tfrecord")}


def _run(data, out, monkeypatch, count, **kw):
    """The tfdata engine with `count` worker processes (`--tfdata_workers`)."""
    return run_job(data, out, engine="tfdata", tfdata_workers=count, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"max_sequence_length": 6, "on_long": "truncate"},
        {"static_shapes": True, "bucket_boundaries": "auto"},
    ],
    ids=["default", "truncate", "static"],
)
def test_workers_write_the_bytes_of_the_in_process_run(
    with_duplicates, tmp_path, monkeypatch, kw
):
    here = _run(with_duplicates, tmp_path / "here", monkeypatch, 0, **kw)
    monkeypatch.setattr(workers, "CHUNK", 23)  # many chunks, every worker
    monkeypatch.setattr(workers, "SLOT_BYTES", 4096)  # some come back pickled
    there = _run(with_duplicates, tmp_path / "there", monkeypatch, 2, **kw)
    counts = here.metadata["counts"]
    # 29 records repeat an id; under truncation some fail validation first.
    assert 20 < counts["errors"]["duplicate_id"] <= 29
    assert counts["examples_written"] > 0
    assert there.metadata["counts"] == counts
    assert dir_bytes(tmp_path / "there") == dir_bytes(tmp_path / "here")


def test_a_workers_error_stops_the_job_as_in_process(
    with_duplicates, tmp_path, monkeypatch
):
    messages = []
    for count in (0, 2):
        out = tmp_path / f"out{count}"
        with pytest.raises(InvalidRecordError) as info:
            _run(with_duplicates, out, monkeypatch, count, on_invalid="fail")
        messages.append(str(info.value))
        assert not out.exists()
    assert messages[0] == messages[1]
    assert "(id_out_of_range) at file" in messages[0]


def test_worker_count_follows_cores_memory_and_input_size():
    big, few = workers.MIN_INPUT_BYTES, workers.MIN_CORES
    plenty = 64 << 30
    assert workers.worker_count(1, 3, cores=1) == 3  # as asked
    assert workers.worker_count(big, 0, cores=64) == 0  # none, as asked
    auto = None  # the default
    assert workers.worker_count(big, cores=64, memory_bytes=plenty) == (
        workers.MAX_WORKERS
    )
    assert workers.worker_count(big, auto, cores=1, memory_bytes=plenty) == 0
    assert workers.worker_count(big, auto, cores=few - 1, memory_bytes=plenty) == 0
    assert workers.worker_count(big - 1, auto, cores=8, memory_bytes=plenty) == 0
    assert workers.worker_count(big, auto, cores=few, memory_bytes=plenty) == few
    # Memory: 1 GB per worker beside 2 GB for this process.
    assert workers.worker_count(big, auto, cores=16, memory_bytes=6 << 30) == 4
    assert workers.worker_count(big, auto, cores=16, memory_bytes=1 << 30) == 0
    assert workers.available_memory() > 0
