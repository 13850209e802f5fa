"""The tfdata engine's chunking does not show in its output.

Records are read, validated and featurized in chunks, and examples wait for a
full batch in per-bucket growable buffers. Tiny chunks exercise every path on
the small dataset (batches made of many chunks, buffers growing and shifting,
several batches of a bucket completed by one chunk with the default size): the
bytes must equal a run with the default chunk size.
"""

import numpy as np
from pipeline_data import BATCH_SIZE, COLUMNS_PY, dir_bytes, frame, good_record

from pipeline import decode, job, tfdata_engine, validate
from pipeline.config import JobConfig


def _run(dataset, out):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        engine="tfdata",
        progress=False,
    )
    return job.run(config, [])


def test_chunk_sizes_do_not_change_the_bytes(dataset, tmp_path, monkeypatch):
    default = _run(dataset, tmp_path / "default")
    monkeypatch.setattr(tfdata_engine, "_CHUNK", 7)
    small = _run(dataset, tmp_path / "small")
    assert small.metadata["counts"] == default.metadata["counts"]
    assert default.metadata["counts"]["batches"] > 3
    assert dir_bytes(tmp_path / "small") == dir_bytes(tmp_path / "default")


def _spec():
    namespace: dict = {}
    exec(COLUMNS_PY, namespace)
    return decode.record_spec(namespace["COLUMNS"], namespace["CONTEXT"], "id")


def test_lengths_pass_tfdata_and_reader_paths_agree(tmp_path):
    """Healthy files take the tf.data path; it must count what the reader path
    counts (first position of an id wins, the length policy applies)."""
    rng = np.random.default_rng(0)
    records = [good_record(rng, f"id{i % 40}") for i in range(90)]  # duplicates
    files = []
    for k in range(2):
        path = tmp_path / f"in-{k}.tfrecord"
        path.write_bytes(b"".join(frame(r) for r in records[k * 45 : (k + 1) * 45]))
        files.append(str(path))
    light = decode.length_spec(_spec())
    for policy in (
        validate.Policy(),
        validate.Policy(max_length=5, on_long="truncate"),
        validate.Policy(max_length=5),
    ):
        fast = tfdata_engine._count_lengths(
            tfdata_engine._tfdata_lengths(files, light), policy, None
        )
        exact = tfdata_engine._count_lengths(
            tfdata_engine._reader_lengths(files, light), policy, None
        )
        assert fast == exact and sum(fast.values()) > 0
    assert sum(fast.values()) < 40  # ids seen once; long ones left out


def test_waiting_views_survive_later_adds_and_drops():
    """Batches are built on a record thread from views of a bucket's buffers
    while the main thread goes on adding and dropping examples."""

    def segment(first, n):
        lengths = np.arange(first, first + n, dtype=np.int64) % 3 + 1
        steps = int(lengths.sum())  # every row distinct
        x = (1000 * first + np.arange(2 * steps, dtype=np.float32)).reshape(steps, 2)
        ctx = {"c": (np.arange(first, first + n, dtype=np.int64), np.ones(n, np.int64))}
        ids = np.array([f"id{i}".encode() for i in range(first, first + n)], object)
        return tfdata_engine._Segment(x, lengths, ctx, ids)

    def copied(seg):
        return (seg.x.copy(), seg.lengths.copy(), seg.context["c"][0].copy(),
                seg.ids.copy())  # fmt: skip

    waiting = tfdata_engine._Waiting(segment(0, 1))
    first = segment(0, 5)
    waiting.add(first.range(0, 5, first.offsets()))
    view = waiting.view()
    batch = view.range(0, 3, view.offsets())
    before = copied(batch)
    waiting.drop(3, view.offsets())
    for start in (5, 9):  # in place while there is room, then grown
        more = segment(start, 4)
        waiting.add(more.range(0, 4, more.offsets()))
    waiting.drop(2, waiting.view().offsets())
    for a, b in zip(before, copied(batch), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(waiting) == 8
    assert waiting.view().ids.tolist() == [f"id{i}".encode() for i in range(5, 13)]
